//! A ticket as pg_sla reads it: its mapped columns from a heap tuple, a
//! transition table's slot or a query, the policy that applies to it, its
//! facts, and bringing its clocks in line with them.
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use sla_core::policy::{ColumnValue, Policy};
use sla_core::{reconcile, summarize, Clock, ClockStatus, Micros, Summary, TicketFacts};

use crate::configuration::{hours, policy_calendar, Configuration};
use crate::convert::{local_time_in_zone, PG_EPOCH_OFFSET};
use crate::store::tickets::{RowValue, RowValues};
use crate::store::tracked_tables::TicketTable;
use crate::ticket_columns::{Column, Columns};

/// Where a ticket row's values come from.
pub enum Row {
    Heap(pg_sys::HeapTuple, pg_sys::TupleDesc),
    Slot(*mut pg_sys::TupleTableSlot),
    /// Values read by a query (see `Columns::select_list`).
    Values(RowValues),
}

impl Row {
    fn datum(&self, column: &Column) -> Option<pg_sys::Datum> {
        let mut is_null = false;
        let datum = unsafe {
            match self {
                Row::Heap(tuple, tupdesc) => {
                    pg_sys::heap_getattr(*tuple, column.attnum, *tupdesc, &mut is_null)
                }
                Row::Slot(slot) => pg_sys::slot_getattr(*slot, column.attnum, &mut is_null),
                Row::Values(_) => unreachable!("read through text() and instant()"),
            }
        };
        (!is_null).then_some(datum)
    }

    /// The column as PostgreSQL prints it.
    pub fn text(&self, column: &Column) -> Option<String> {
        if let Row::Values(values) = self {
            return match values.get(&(column.attnum, true)) {
                Some(RowValue::Text(text)) => text.clone(),
                _ => None,
            };
        }
        let datum = self.datum(column)?;
        let printed = unsafe { pg_sys::OidOutputFunctionCall(column.output_function, datum) };
        let text = unsafe { CStr::from_ptr(printed) }
            .to_string_lossy()
            .into_owned();
        unsafe { pg_sys::pfree(printed.cast()) };
        Some(text)
    }

    /// A time column as core microseconds (a `timestamp without time zone`
    /// read in its zone); ±infinity reads as NULL.
    pub fn instant(&self, column: &Column) -> Option<Micros> {
        if let Row::Values(values) = self {
            return match values.get(&(column.attnum, false)) {
                Some(RowValue::Instant(t)) => *t,
                _ => None,
            };
        }
        let raw = self.datum(column)?.value() as i64;
        if raw == i64::MIN || raw == i64::MAX {
            return None;
        }
        match &column.local_zone {
            Some(zone) => local_time_in_zone(raw, zone),
            None => Some(raw + PG_EPOCH_OFFSET),
        }
    }
}

/// A ticket row with its table's columns.
pub struct Ticket<'a> {
    pub table: &'a TicketTable,
    pub columns: &'a Columns,
    pub row: Row,
}

impl Ticket<'_> {
    pub fn id(&self) -> String {
        self.row.text(&self.columns.id).unwrap_or_else(|| {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
                format!(
                    "ticket id column \"{}\" of tracked table {} must not be NULL",
                    self.columns.id.name, self.table.name
                )
            );
        })
    }

    pub fn status(&self) -> Option<String> {
        self.row.text(&self.columns.status)
    }

    /// The policy the row's `sla_policy` column names (the row trigger
    /// chose it), or, on a table without SLA columns, the policy that
    /// matches the row.
    pub fn sla_policy_name(&self, configuration: &Configuration) -> Option<String> {
        match &self.columns.sla {
            Some(sla) => self.row.text(&sla.policy),
            None => self.matching_policy(configuration).map(|p| p.name.clone()),
        }
    }

    /// Whether the row's SLA columns already say `policy` and `summary`.
    pub fn shows(&self, policy: Option<&str>, summary: &sla_core::Summary) -> bool {
        // A table without SLA columns shows nothing to update.
        let Some(sla) = &self.columns.sla else {
            return true;
        };
        self.row.text(&sla.policy).as_deref() == policy
            && self.row.text(&sla.status).as_deref()
                == summary.status.map(sla_core::ClockStatus::as_str)
            && self.row.instant(&sla.due_at) == summary.due_at
            && self.row.instant(&sla.breached_at) == summary.breached_at
    }

    /// The policy that applies to this ticket (`PolicyOrder::choose`). A
    /// column is printed once however many policies read it.
    pub fn matching_policy<'c>(&self, configuration: &'c Configuration) -> Option<&'c Rc<Policy>> {
        let mut printed: HashMap<i32, Option<String>> = HashMap::new();
        configuration
            .policies
            .choose(self.table.relid.to_u32(), |name| {
                let Some(column) = self.columns.conditions.get(name) else {
                    return ColumnValue::Absent;
                };
                let value = printed
                    .entry(column.attnum)
                    .or_insert_with(|| self.row.text(column));
                match value {
                    Some(text) => ColumnValue::Text(text.clone().into()),
                    None => ColumnValue::Null,
                }
            })
    }

    /// The ticket's facts under `policy` (which decides what pauses it).
    /// A missing creation time reads as `now`.
    pub fn facts(&self, policy: Option<&Policy>, now: Micros) -> TicketFacts {
        let status = self.status();
        let closed = self.table.is_closed(status.as_deref());
        let paused = !closed
            && policy.is_some_and(|p| {
                status
                    .as_deref()
                    .is_some_and(|s| p.pause_statuses.iter().any(|ps| ps == s))
            });
        TicketFacts {
            created_at: self.row.instant(&self.columns.created_at).unwrap_or(now),
            closed,
            paused,
            // With a "waiting since" column, the customer's wait as the row
            // says it (`reconcile_ticket` adds the replies).
            last_customer_message_at: self
                .columns
                .customer_message_at
                .as_ref()
                .or(self.columns.waiting_since.as_ref())
                .and_then(|c| self.row.instant(c)),
            last_agent_reply_at: self
                .columns
                .agent_reply_at
                .as_ref()
                .and_then(|c| self.row.instant(c)),
        }
    }

    /// Replies of a ticket whose table maps no reply column: with a
    /// "waiting since" column, the customer waits since its value, and a
    /// reply is the column cleared (at `now`, by this change from
    /// `previous`); replies known before are when its response clocks
    /// stopped (a messages table's replies are added by
    /// `reconcile_ticket_with_messages`).
    fn derived_replies(
        &self,
        mut facts: TicketFacts,
        previous: Option<&Ticket>,
        clocks: &[Clock],
        now: Micros,
    ) -> TicketFacts {
        if self.columns.agent_reply_at.is_some() {
            return facts;
        }
        facts.last_agent_reply_at = earlier_reply(clocks);
        if let Some(column) = &self.columns.waiting_since {
            let waited_since = previous.and_then(|p| p.row.instant(column));
            if let (None, Some(since)) = (facts.last_customer_message_at, waited_since) {
                // Cleared now: an agent replied.
                facts.last_customer_message_at = Some(since);
                facts.last_agent_reply_at = Some(now.max(since));
            }
        }
        facts
    }
}

/// The last reply a ticket's clocks know of: when the latest response
/// clock stopped (met or missed).
fn earlier_reply(clocks: &[Clock]) -> Option<Micros> {
    clocks
        .iter()
        .filter(|c| c.metric.is_response())
        .filter(|c| matches!(c.status, ClockStatus::Achieved | ClockStatus::Missed))
        .filter_map(|c| c.stopped_at)
        .max()
}

/// A row of a tracked messages table, as the clocks see it.
#[derive(Debug, Clone, Copy)]
pub struct Message {
    pub sent_at: Micros,
    /// The customer's message; otherwise an agent's reply.
    pub from_customer: bool,
}

/// Brings a ticket's clocks in line with its row and some new messages of
/// its messages table, taken in the order they were sent: each customer
/// message and each reply is applied as the two time columns would have
/// been set at that moment. Returns the ticket's summary (see
/// `reconcile_ticket` for errors).
pub fn reconcile_ticket_with_messages(
    ticket: &Ticket,
    policy: Option<&Rc<Policy>>,
    clocks: &mut Vec<Clock>,
    messages: &[Message],
    now: Micros,
) -> Result<Summary, sla_core::Error> {
    let facts = ticket.facts(policy.map(|p| &**p), now);
    let mut facts = ticket.derived_replies(facts, None, clocks, now);
    let mut messages = messages.to_vec();
    messages.sort_by_key(|m| (m.sent_at, m.from_customer));
    let calendar = policy.and_then(|p| policy_calendar(p));
    let releasable = ticket.table.assignee_column.is_some();
    let mut step = |facts: &TicketFacts| {
        reconcile(
            clocks,
            facts,
            policy.map(|p| (p.name.as_str(), &p.targets)),
            hours(&calendar),
            now,
            releasable,
        )
    };
    if messages.is_empty() {
        step(&facts)?;
    }
    for message in messages {
        let at = Some(message.sent_at);
        if message.from_customer {
            facts.last_customer_message_at = facts.last_customer_message_at.max(at);
        } else {
            facts.last_agent_reply_at = facts.last_agent_reply_at.max(at);
        }
        step(&facts)?;
    }
    Ok(summarize(clocks))
}

/// Brings one ticket's clocks in line with its row and the policy that
/// matches it; returns the ticket's summary. When a deadline cannot be
/// computed (a calendar with no business time left before it, a ticket
/// created near the end of time), the error is returned, for the caller to
/// decide whether it fails its statement; `clocks` may then be half done,
/// and every caller drops them, writing nothing. `previous` is the row
/// before an update, if any (a "waiting since" cleared by it is a reply).
pub fn reconcile_ticket(
    ticket: &Ticket,
    previous: Option<&Ticket>,
    policy: Option<&Rc<Policy>>,
    clocks: &mut Vec<Clock>,
    now: Micros,
) -> Result<Summary, sla_core::Error> {
    let facts = ticket.facts(policy.map(|p| &**p), now);
    let facts = ticket.derived_replies(facts, previous, clocks, now);
    let calendar = policy.and_then(|p| policy_calendar(p));
    let releasable = ticket.table.assignee_column.is_some();
    let result = reconcile(
        clocks,
        &facts,
        policy.map(|p| (p.name.as_str(), &p.targets)),
        hours(&calendar),
        now,
        releasable,
    );
    result.map(|()| summarize(clocks))
}

/// An application's write never fails because of pg_sla's bookkeeping: a
/// ticket whose deadlines cannot be computed keeps its clocks as they were,
/// with a warning that says why.
pub fn warn_deadline_unavailable(
    ticket: &Ticket,
    policy: Option<&Policy>,
    error: &sla_core::Error,
) {
    let id = ticket.row.text(&ticket.columns.id).unwrap_or_default();
    let policy = policy.map_or("none", |p| p.name.as_str());
    pgrx::warning!(
        "pg_sla: the SLA deadlines of ticket {id} of table {} under policy \"{policy}\" cannot be computed, its clocks are left as they were: {error}",
        ticket.table.name
    );
}
