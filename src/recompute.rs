//! Recomputation: after an edit of policies or calendars, and when a table
//! starts being tracked, brings tickets' clocks and SLA columns in line
//! with their rows and the current configuration.
use std::collections::HashMap;
use std::rc::Rc;

use pgrx::prelude::*;
use sla_core::policy::Policy;
use sla_core::Clock;

use crate::configuration::{self, Configuration, TrackedTable};
use crate::convert::raise;
use crate::gucs::event_time;
use crate::policy_fit;
use crate::store::clocks::{self, ClockChanges};
use crate::store::tickets::{self, TicketUpdates};
use crate::subxact::{attempt, Failure};
use crate::ticket::{
    reconcile_ticket, reconcile_ticket_with_messages, warn_deadline_unavailable, Message, Row,
    Ticket,
};
use crate::ticket_columns::columns_for;
use crate::trigger_support::{fired_on_sla_table, require_firing, transition_texts, TriggerResult};

/// Recomputes open tickets after an edit of policies (`calendars` `None`:
/// every ticket not closed is matched again) or of calendars (only tickets
/// whose open clocks' policy uses one of them). A failure fails the edit,
/// naming the table.
fn resync_open_tickets(calendars: Option<Vec<String>>) {
    // The settings this backend cached before the edit, if any (the edit's
    // invalidation is delivered by the next command counter increment),
    // then the edit made visible and read afresh.
    let before = configuration::cached();
    unsafe { pg_sys::CommandCounterIncrement() };
    let configuration = configuration::current();
    if calendars.is_none() {
        check_edited_policies(before.as_deref(), &configuration);
    }
    let unchanged = before.is_some_and(|before| configuration.same_matching_and_targets(&before));
    if calendars.is_none() && unchanged {
        // Nothing that decides a ticket's policy or deadlines changed (no
        // row changed, a feedback message, a disabled policy inserted...).
        return;
    }
    let mut tables: Vec<Rc<TrackedTable>> = configuration.tracked.values().cloned().collect();
    tables.sort_by_key(|t| t.relid.to_u32());
    for table in tables {
        let result = attempt(|| {
            let mut ids = clocks::tickets_with_open_clocks(&table, calendars.clone());
            if calendars.is_none() {
                // A new or edited policy may match any ticket not closed,
                // including those with no clock open or no policy yet.
                ids.extend(tickets::open_ids(&table));
            }
            ids.sort();
            ids.dedup();
            let mut progress = Progress::new(&table.name, ids.len());
            for chunk in ids.chunks(RESYNC_CHUNK) {
                resync_tickets(&table, chunk);
                progress.done(chunk.len());
            }
            progress.finish();
        });
        if let Err(Failure { code, message, .. }) = result {
            // The edit must not commit with clocks that do not follow it.
            ereport!(
                ERROR,
                code,
                format!("pg_sla could not recompute the SLA clocks of table {}: {message}", table.name),
                "The edit is refused; fix the cause (often a trigger on that table) and edit again."
            );
        }
    }
}

/// How often a long recomputation says how far it is.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// NOTICEs for a recomputation that takes long: one every
/// `PROGRESS_EVERY` with counts, and one with the total at the end (only
/// when there was one before it).
struct Progress<'a> {
    table: &'a str,
    total: usize,
    done: usize,
    started: std::time::Instant,
    reported: std::time::Instant,
    said_anything: bool,
}

impl<'a> Progress<'a> {
    fn new(table: &'a str, total: usize) -> Self {
        let now = std::time::Instant::now();
        Progress {
            table,
            total,
            done: 0,
            started: now,
            reported: now,
            said_anything: false,
        }
    }

    fn done(&mut self, tickets: usize) {
        self.done += tickets;
        if self.reported.elapsed() >= PROGRESS_EVERY && self.done < self.total {
            pgrx::notice!(
                "pg_sla: recomputing the SLA clocks of table {}: {} of {} tickets",
                self.table,
                self.done,
                self.total
            );
            self.reported = std::time::Instant::now();
            self.said_anything = true;
        }
    }

    fn finish(self) {
        if self.said_anything {
            pgrx::notice!(
                "pg_sla: the SLA clocks of the {} tickets of table {} are recomputed ({:.1} s)",
                self.total,
                self.table,
                self.started.elapsed().as_secs_f64()
            );
        }
    }
}

/// Checks the policies an edit wrote (all of them when the settings before
/// it are unknown) against the tables they apply to (`policy_fit`).
fn check_edited_policies(before: Option<&Configuration>, after: &Configuration) {
    let mut edited: Vec<&Policy> = after
        .by_name
        .values()
        .filter(|policy| {
            before
                .and_then(|before| before.by_name.get(&policy.name))
                .is_none_or(|old| {
                    old.conditions != policy.conditions
                        || old.pause_statuses != policy.pause_statuses
                        || old.tables != policy.tables
                })
        })
        .map(|policy| &**policy)
        .collect();
    edited.sort_by(|a, b| a.name.cmp(&b.name));
    let mut tables: Vec<&TrackedTable> = after.tracked.values().map(|t| &**t).collect();
    tables.sort_by_key(|t| t.relid.to_u32());
    policy_fit::check(&edited, &tables);
}

/// Trigger on `sla.policies` (per statement): any policy edit may change
/// which policy every open ticket gets.
#[pg_trigger]
fn policies_edited<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    let data = trigger.trigger_data();
    require_firing(
        trigger,
        pgrx::trigger_support::trigger_fired_for_statement(data.tg_event)
            && pgrx::trigger_support::trigger_fired_after(data.tg_event)
            && fired_on_sla_table(data, "policies"),
        "AFTER ..., FOR EACH STATEMENT, on sla.policies",
    );
    resync_open_tickets(None);
    Ok(None)
}

/// Trigger on `sla.calendars` (per statement, after UPDATE): recomputes the
/// tickets whose policies use the edited calendars.
#[pg_trigger]
fn calendars_edited<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    let data = trigger.trigger_data();
    require_firing(
        trigger,
        pgrx::trigger_support::trigger_fired_for_statement(data.tg_event)
            && pgrx::trigger_support::trigger_fired_after(data.tg_event)
            && pgrx::trigger_support::trigger_fired_by_update(data.tg_event)
            && !data.tg_oldtable.is_null()
            && fired_on_sla_table(data, "calendars"),
        "AFTER UPDATE, FOR EACH STATEMENT, with an OLD TABLE, on sla.calendars",
    );
    let tupdesc = unsafe { (*data.tg_relation).rd_att };
    let names = transition_texts(data.tg_oldtable, tupdesc, 1);
    resync_open_tickets(Some(names));
    Ok(None)
}

/// Tickets recomputed per statement.
pub const RESYNC_CHUNK: usize = 5000;

/// Brings the clocks and SLA columns of some tickets in line with their rows
/// and the current policies. Returns how many of them it found.
pub fn resync_tickets(table: &TrackedTable, ids: &[String]) -> i64 {
    resync_tickets_with_messages(table, ids, &HashMap::new()).len() as i64
}

/// The same, applying new messages of the tickets' messages table (by
/// ticket id) as they were sent. Returns the ids of the tickets it found.
pub fn resync_tickets_with_messages(
    table: &TrackedTable,
    ids: &[String],
    messages: &HashMap<String, Vec<Message>>,
) -> Vec<String> {
    if ids.is_empty() {
        return Vec::new();
    }
    let configuration = configuration::current();
    let now = event_time();
    let columns = unsafe {
        let relation = pg_sys::relation_open(table.relid, pg_sys::AccessShareLock as i32);
        let columns = columns_for(
            table,
            &table.columns,
            (*relation).rd_att,
            &configuration.condition_columns,
        );
        pg_sys::relation_close(relation, pg_sys::AccessShareLock as i32);
        columns
    };
    let (select_list, layout) = columns.select_list();
    // Locked in id order and read as the table's owner.
    let rows = tickets::lock_and_read(table, ids, &select_list, &layout);

    let tickets: Vec<(tickets::RowAddress, Ticket)> = rows
        .into_iter()
        .map(|(ctid, values)| {
            (
                ctid,
                Ticket {
                    table,
                    columns: &columns,
                    row: Row::Values(values),
                },
            )
        })
        .collect();
    let ids: Vec<String> = tickets.iter().map(|(_, ticket)| ticket.id()).collect();
    let stored = clocks::read(table, &ids, true);
    let mut changes = ClockChanges::default();
    let mut updates = TicketUpdates::default();
    for ((ctid, ticket), id) in tickets.iter().zip(&ids) {
        let policy = ticket.matching_policy(&configuration);
        let stored_clocks = stored.get(id).map_or(&[][..], Vec::as_slice);
        let mut clocks: Vec<Clock> = stored_clocks.iter().map(|s| s.clock.clone()).collect();
        let reconciled = match messages.get(id) {
            Some(messages) => {
                reconcile_ticket_with_messages(ticket, policy, &mut clocks, messages, now)
            }
            None => reconcile_ticket(ticket, None, policy, &mut clocks, now),
        };
        let summary = match reconciled {
            Ok(summary) => summary,
            // A ticket whose deadlines lie beyond year 9999 (its own dates
            // do): it keeps its clocks, as its own writes do, and does not
            // hold the edit up. Other errors are the edit's (a calendar left
            // without business time): they refuse it.
            Err(error @ sla_core::Error::OutOfRange { .. }) => {
                warn_deadline_unavailable(ticket, policy.map(|p| &**p), &error);
                continue;
            }
            Err(error) => raise(error, policy.and_then(|p| p.calendar.as_deref())),
        };
        changes.add_ticket(id, stored_clocks, &clocks);
        let policy = policy.map(|p| p.name.as_str());
        if !ticket.shows(policy, &summary) {
            updates.push(*ctid, policy, &summary, false);
        }
    }
    changes.write(table);
    updates.write(table, true);
    ids
}
