//! The Rust functions `sql/reporting.sql` builds on, so that reports measure
//! time exactly as the clocks do: the same event time as the ticket
//! triggers, the same business time (24/7 for a policy without calendar).
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::prelude::*;

use crate::calendar_cache;
use crate::configuration::hours;
use crate::convert::{interval, or_raise, required_instant, timestamptz};
use crate::gucs;

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
