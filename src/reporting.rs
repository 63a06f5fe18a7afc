//! The Rust functions `sql/reporting.sql` builds on, so that reports measure
//! time exactly as the clocks do: the same event time as the ticket
//! triggers, the same business time (24/7 for a policy without calendar).
use pgrx::datum::{AnyElement, Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

use crate::calendar_cache;
use crate::configuration::{self, hours};
use crate::convert::{interval, or_raise, required_instant, timestamptz};
use crate::gucs;
use crate::regclass::RegClass;
use crate::store::clocks;

/// The time reports measure "now" at: `pg_sla.event_time` when set
/// (replays), else the transaction's time, as the ticket triggers do.
#[pg_extern(stable, parallel_safe, name = "event_time")]
fn event_time_now() -> TimestampWithTimeZone {
    timestamptz(gucs::event_time())
}

/// Business time a clock counts in `[from_ts, to_ts)`: in the calendar
/// named, or wall-clock time for a NULL (24/7) calendar; zero when `to_ts`
/// is not after `from_ts`, NULL when either is NULL.
#[pg_extern(stable, parallel_safe)]
fn clock_business_time(
    calendar: Option<&str>,
    from_ts: Option<TimestampWithTimeZone>,
    to_ts: Option<TimestampWithTimeZone>,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Option<Interval> {
    let (from_ts, to_ts) = (from_ts?, to_ts?);
    if to_ts <= from_ts {
        // Nothing counted, whatever the calendar and the bounds.
        return Some(interval(0));
    }
    let from = required_instant(from_ts, "from_ts");
    let to = required_instant(to_ts, "to_ts");
    let found = calendar.map(|name| calendar_cache::by_name_for_call(name, fcinfo));
    Some(interval(or_raise(
        hours(&found).between(from, to),
        calendar,
    )))
}

/// What a ticket shows of its clocks, as the `sla_*` columns would (for a
/// table tracked with `add_columns => false`): its policy, status, nearest
/// deadline still ahead and first breach, read by the ticket's id in its
/// own type through the clocks' primary key. No row for a ticket without
/// clocks; the caller must be able to read the ticket table (42501).
/// Not parallel safe: it reads the clocks as their owner.
#[allow(clippy::type_complexity)]
#[pg_extern(stable)]
fn ticket_sla(
    ticket_table: RegClass,
    ticket_id: AnyElement,
) -> TableIterator<
    'static,
    (
        name!(policy, Option<String>),
        name!(status, Option<String>),
        name!(due_at, Option<TimestampWithTimeZone>),
        name!(breached_at, Option<TimestampWithTimeZone>),
    ),
> {
    let relid = ticket_table.0;
    let readable = unsafe {
        pg_sys::pg_class_aclcheck(
            relid,
            pg_sys::GetUserId(),
            pg_sys::ACL_SELECT as pg_sys::AclMode,
        ) == pg_sys::AclResult::ACLCHECK_OK
    };
    if !readable {
        ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!(
                "permission denied for table {}: sla.ticket_sla reads the SLA of tickets its caller may read",
                unsafe {
                    let name = pg_sys::get_rel_name(relid);
                    if name.is_null() {
                        relid.to_u32().to_string()
                    } else {
                        std::ffi::CStr::from_ptr(name).to_string_lossy().into_owned()
                    }
                }
            )
        );
    }
    let Some(table) = configuration::current().tracked(relid) else {
        return TableIterator::new(Vec::new());
    };
    let id = unsafe {
        let mut output = pg_sys::InvalidOid;
        let mut is_varlena = false;
        pg_sys::getTypeOutputInfo(ticket_id.oid(), &mut output, &mut is_varlena);
        let printed = pg_sys::OidOutputFunctionCall(output, ticket_id.datum());
        std::ffi::CStr::from_ptr(printed)
            .to_string_lossy()
            .into_owned()
    };
    let stored = clocks::read(&table, std::slice::from_ref(&id), false);
    let Some(stored) = stored.get(&id) else {
        return TableIterator::new(Vec::new());
    };
    let clocks: Vec<sla_core::Clock> = stored.iter().map(|s| s.clock.clone()).collect();
    let summary = sla_core::summarize(&clocks);
    // The policy of its open clocks, or of its latest one.
    let policy = clocks
        .iter()
        .find(|c| c.is_open())
        .or_else(|| clocks.iter().max_by_key(|c| c.started_at))
        .map(|c| c.policy.clone());
    TableIterator::new(vec![(
        policy,
        summary.status.map(|s| s.as_str().to_owned()),
        summary.due_at.map(timestamptz),
        summary.breached_at.map(timestamptz),
    )])
}
