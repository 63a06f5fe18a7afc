//! Clock rows (`sla.clocks`), read and written as the owner of pg_sla's
//! tables. The row layout is `clock_layout`'s.
//!
//! This module is the only code that knows where a table's clocks live and
//! how a ticket id is stored in them: callers name the table
//! (`&TicketTable`) and the tickets, so that the clock model written down in
//! docs/development.md (a clock table per tracked table, keyed by the
//! ticket's own key) changes this module and not its callers.
use std::cell::{Cell, RefCell};
use std::collections::{HashMap, HashSet};

use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::prelude::*;
use sla_core::Clock;

use super::clock_layout::{clock_select_list, read_clock};
use super::clock_scan;
use super::kept_plans::run_kept;
use super::spi::{execute, owned_by, text_column, text_column_fresh};
use super::tracked_tables::TicketTable;
use super::{bulk_insert, notifications::NotificationBatch};
use crate::errors::SpiResultExt;
use crate::identity::{as_sla_owner, clocks_relid};
use crate::invalidation::transactions_ended;
use crate::sql_text::{breached_open_status_list, open_status_list};

/// A clock as read, with the row's address for updating it in place (it is
/// locked, so the address holds until the transaction ends).
pub struct StoredClock {
    pub ctid: pg_sys::ItemPointerData,
    pub clock: Clock,
}

/// The clocks of some tickets of one table, by ticket id, in key order,
/// locked when `lock` is set.
pub fn read(
    table: &TicketTable,
    ticket_ids: &[String],
    lock: bool,
) -> HashMap<String, Vec<StoredClock>> {
    write_deferred();
    if let ([id], true) = (ticket_ids, lock) {
        let clocks = read_one_locked(table.relid, id);
        return if clocks.is_empty() {
            HashMap::new()
        } else {
            HashMap::from([(id.clone(), clocks)])
        };
    }
    as_sla_owner(|| read_as_owner(table.relid, ticket_ids, lock))
}

/// One ticket's clocks, locked: through the primary key without SPI
/// (`clock_scan`), unless system indexes are ignored.
fn read_one_locked(relid: pg_sys::Oid, ticket_id: &str) -> Vec<StoredClock> {
    if clock_scan::usable() {
        return clock_scan::read_one_locked(relid, ticket_id);
    }
    as_sla_owner(|| read_as_owner(relid, &[ticket_id.to_owned()], true))
        .remove(ticket_id)
        .unwrap_or_default()
}

fn read_as_owner(
    relid: pg_sys::Oid,
    ticket_ids: &[String],
    lock: bool,
) -> HashMap<String, Vec<StoredClock>> {
    let lock = if lock { " FOR UPDATE OF c" } else { "" };
    let (query, ids) = match ticket_ids {
        // One ticket (read unlocked, or locked with system indexes
        // ignored): a probe of the primary key, which returns the clocks in
        // key order. Starting the executor for the plan below (a join, a
        // sort) cost more than running it.
        [id] => (
            format!(
                "SELECT c.ctid, c.ticket_id, {columns} FROM sla.clocks c
                  WHERE c.ticket_table = $1::oid::regclass AND c.ticket_id = $2::text
                  ORDER BY c.ticket_table, c.ticket_id, c.metric, c.cycle{lock}",
                columns = clock_select_list(),
            ),
            DatumWithOid::from(id.as_str()),
        ),
        // The lateral join probes the primary key once per ticket: with a
        // plain `= ANY` of thousands of ids the planner may scan the table.
        _ => (
            format!(
                "SELECT c.ctid, c.ticket_id, {columns}
                   FROM unnest($2::text[]) AS u(id),
                        LATERAL (SELECT c.ctid, c.* FROM sla.clocks c
                                  WHERE c.ticket_table = $1::oid::regclass AND c.ticket_id = u.id
                                  OFFSET 0) AS c
                  ORDER BY c.ticket_id, c.metric, c.cycle{lock}",
                columns = clock_select_list(),
            ),
            ticket_ids.to_vec().into(),
        ),
    };
    let mut by_ticket: HashMap<String, Vec<StoredClock>> = HashMap::new();
    Spi::connect_mut(|client| {
        let rows = run_kept(client, &query, &[relid.into(), ids])?;
        for row in rows {
            let Some(ctid) = row.get::<pg_sys::ItemPointerData>(1)? else {
                ereport!(
                    ERROR,
                    pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                    "pg_sla read an sla.clocks row without a row address"
                );
            };
            let ticket_id: String = row.get(2)?.unwrap_or_default();
            by_ticket.entry(ticket_id).or_default().push(StoredClock {
                ctid,
                clock: read_clock(&row, 3)?,
            });
        }
        Ok(())
    })
    .or_raise("read sla.clocks");
    by_ticket
}

/// One ticket's clocks, locked, after moving them to a new id when the
/// ticket's key changed (`old_id`). Read without SPI (`clock_scan`): a row
/// trigger reads them for every ticket an `UPDATE` changes.
pub fn rename_and_read(table: &TicketTable, old_id: &str, new_id: &str) -> Vec<StoredClock> {
    let relid = table.relid;
    if old_id != new_id || is_deferred(relid, &[old_id, new_id]) {
        write_deferred();
    }
    if old_id != new_id {
        as_sla_owner(|| {
            execute(
                "UPDATE sla.clocks SET ticket_id = $3
                  WHERE ticket_table = $1::oid::regclass AND ticket_id = $2",
                &[relid.into(), old_id.into(), new_id.into()],
                "move clocks to a ticket's new id",
            )
        });
    }
    read_one_locked(relid, new_id)
}

/// Clocks to write: changed ones, updated in place by address, and new
/// ones, inserted in bulk.
#[derive(Default, Clone)]
pub struct ClockChanges {
    updated: Vec<(pg_sys::ItemPointerData, Clock)>,
    inserts: Vec<(String, Clock)>,
}

impl ClockChanges {
    /// Records what differs between a ticket's clocks as read (`stored`)
    /// and as they are now (`clocks`: the same clocks in the same order,
    /// then any new ones).
    pub fn add_ticket(&mut self, ticket_id: &str, stored: &[StoredClock], clocks: &[Clock]) {
        for (i, clock) in clocks.iter().enumerate() {
            match stored.get(i) {
                Some(before) if before.clock == *clock => {}
                Some(before) => self.updated.push((before.ctid, clock.clone())),
                None => self.inserts.push((ticket_id.to_owned(), clock.clone())),
            }
        }
    }

    /// New clocks of tickets that had none.
    pub fn insert(&mut self, ticket_id: &str, clock: Clock) {
        self.inserts.push((ticket_id.to_owned(), clock));
    }

    pub fn inserts_len(&self) -> usize {
        self.inserts.len()
    }

    /// Leaves out the new clocks of these tickets.
    pub fn skip_inserts(&mut self, skip: impl Fn(&str) -> bool) {
        self.inserts.retain(|(id, _)| !skip(id));
    }

    /// Leaves out new clocks whose key (ticket, metric, cycle) an earlier
    /// one has: rows of one statement sharing an id, which a partitioned
    /// table's key allows. Returns the ids concerned.
    pub fn skip_repeated_inserts(&mut self) -> Vec<String> {
        let mut seen = std::collections::HashSet::new();
        let mut repeated = Vec::new();
        self.inserts.retain(|(id, clock)| {
            let fresh = seen.insert((id.clone(), clock.metric, clock.cycle));
            if !fresh {
                repeated.push(id.clone());
            }
            fresh
        });
        repeated.sort();
        repeated.dedup();
        repeated
    }

    /// The ticket ids of the new clocks, once each.
    pub fn inserted_tickets(&self) -> Vec<String> {
        let mut ids: Vec<String> = self.inserts.iter().map(|(id, _)| id.clone()).collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// Writes the changes to the clocks of `table`.
    pub fn write(self, table: &TicketTable) {
        write_deferred();
        self.write_clocks(table.relid);
    }

    /// Writes the changes and the notifications of due processing.
    pub fn write_with_notifications(
        self,
        table: &TicketTable,
        notifications: NotificationBatch,
        created_at: sla_core::Micros,
    ) {
        write_deferred();
        let relid = table.relid;
        self.write_clocks(relid);
        as_sla_owner(|| notifications.write_as_owner(relid, created_at));
    }

    /// Through the table access method, which checks no privileges: no
    /// identity switch is paid.
    fn write_clocks(self, relid: pg_sys::Oid) {
        bulk_insert::update_clocks(clocks_relid(), self.updated);
        bulk_insert::insert_clocks(clocks_relid(), relid, self.inserts);
    }
}

/// A statement's clock changes of updated tickets, not written yet.
#[derive(Clone)]
struct Deferred {
    relid: pg_sys::Oid,
    /// The subtransaction level they were made at: a caught error that
    /// rolls it back drops them.
    level: i32,
    /// The transaction and client statement they were made in.
    statement: (u64, pg_sys::TimestampTz),
    tickets: HashSet<String>,
    changes: ClockChanges,
}

thread_local! {
    static DEFERRED: RefCell<Vec<Deferred>> = const { RefCell::new(Vec::new()) };
    /// Changes written inside a subtransaction deeper than the level they
    /// were made at, tagged with that subtransaction's level: should it
    /// roll back, the write goes with it and they are kept again.
    static WRITTEN_DEEPER: RefCell<Vec<(i32, Deferred)>> = const { RefCell::new(Vec::new()) };
    static DEFERRED_CALLBACKS: Cell<bool> = const { Cell::new(false) };
}

fn this_statement() -> (u64, pg_sys::TimestampTz) {
    (transactions_ended(), unsafe {
        pg_sys::GetCurrentStatementStartTimestamp()
    })
}

/// Keeps the changes of one updated ticket's clocks, read locked by
/// `rename_and_read`, to write them with the statement's others in one
/// `UPDATE` when the statement's `tickets_updated` trigger calls
/// `write_deferred`. Every other function of this module writes them
/// first, so nothing pg_sla reads misses them.
pub fn defer(table: &TicketTable, ticket_id: &str, stored: &[StoredClock], clocks: &[Clock]) {
    register_deferred_callbacks();
    let statement = this_statement();
    if DEFERRED.with(|d| d.borrow().iter().any(|e| e.statement != statement)) {
        // Left by a statement whose trigger did not run.
        write_deferred();
    }
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    DEFERRED.with(|deferred| {
        let mut deferred = deferred.borrow_mut();
        let same = deferred
            .last()
            .is_some_and(|e| e.relid == table.relid && e.level == level);
        if !same {
            deferred.push(Deferred {
                relid: table.relid,
                level,
                statement,
                tickets: HashSet::new(),
                changes: ClockChanges::default(),
            });
        }
        let entry = deferred.last_mut().expect("just pushed");
        entry.tickets.insert(ticket_id.to_owned());
        entry.changes.add_ticket(ticket_id, stored, clocks);
    });
}

/// Writes the clock changes `defer` kept, one statement per table.
pub fn write_deferred() {
    let deferred = DEFERRED.with(|d| std::mem::take(&mut *d.borrow_mut()));
    if deferred.is_empty() {
        return;
    }
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    for entry in deferred {
        if entry.level < level {
            WRITTEN_DEEPER.with(|w| w.borrow_mut().push((level, entry.clone())));
        }
        entry.changes.write_clocks(entry.relid);
    }
}

fn is_deferred(relid: pg_sys::Oid, ticket_ids: &[&str]) -> bool {
    DEFERRED.with(|d| {
        d.borrow()
            .iter()
            .any(|e| e.relid == relid && ticket_ids.iter().any(|id| e.tickets.contains(*id)))
    })
}

#[pg_guard]
unsafe extern "C-unwind" fn on_xact_event(
    event: pg_sys::XactEvent::Type,
    _arg: *mut std::ffi::c_void,
) {
    use pg_sys::XactEvent::*;
    match event {
        XACT_EVENT_PRE_COMMIT | XACT_EVENT_PARALLEL_PRE_COMMIT | XACT_EVENT_PRE_PREPARE => {
            WRITTEN_DEEPER.with(|w| w.borrow_mut().clear());
            if DEFERRED.with(|d| !d.borrow().is_empty()) {
                // Left by a statement that named a table without pg_sla's
                // statement trigger (an untracked parent of a tracked
                // table): written now, before the transaction commits.
                // `sla.clocks` has no triggers or foreign keys, so no user
                // code runs here.
                unsafe { pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot()) };
                write_deferred();
                unsafe { pg_sys::PopActiveSnapshot() };
            }
        }
        XACT_EVENT_ABORT | XACT_EVENT_PARALLEL_ABORT => {
            DEFERRED.with(|d| d.borrow_mut().clear());
            WRITTEN_DEEPER.with(|w| w.borrow_mut().clear());
        }
        _ => {}
    }
}

#[pg_guard]
unsafe extern "C-unwind" fn on_subxact_event(
    event: pg_sys::SubXactEvent::Type,
    _subxact: pg_sys::SubTransactionId,
    _parent: pg_sys::SubTransactionId,
    _arg: *mut std::ffi::c_void,
) {
    let level = unsafe { pg_sys::GetCurrentTransactionNestLevel() };
    match event {
        pg_sys::SubXactEvent::SUBXACT_EVENT_ABORT_SUB => {
            // Its changes go; outer changes it wrote are kept again.
            let restored: Vec<Deferred> = WRITTEN_DEEPER.with(|w| {
                let mut w = w.borrow_mut();
                let (undone, kept): (Vec<_>, Vec<_>) =
                    w.drain(..).partition(|(tag, _)| *tag >= level);
                *w = kept;
                undone
                    .into_iter()
                    .map(|(_, entry)| entry)
                    .filter(|entry| entry.level < level)
                    .collect()
            });
            DEFERRED.with(|d| {
                let mut d = d.borrow_mut();
                d.retain(|e| e.level < level);
                d.extend(restored);
            });
        }
        pg_sys::SubXactEvent::SUBXACT_EVENT_COMMIT_SUB => {
            // Its changes, and its writes of outer ones, now belong to its
            // parent; a write at the level of its changes is theirs for good.
            DEFERRED.with(|d| {
                for entry in d.borrow_mut().iter_mut() {
                    entry.level = entry.level.min(level - 1);
                }
            });
            WRITTEN_DEEPER.with(|w| {
                let mut w = w.borrow_mut();
                for (tag, _) in w.iter_mut() {
                    *tag = (*tag).min(level - 1);
                }
                w.retain(|(tag, entry)| *tag > entry.level);
            });
        }
        _ => {}
    }
}

fn register_deferred_callbacks() {
    if DEFERRED_CALLBACKS.with(Cell::get) {
        return;
    }
    unsafe {
        pg_sys::RegisterXactCallback(Some(on_xact_event), std::ptr::null_mut());
        pg_sys::RegisterSubXactCallback(Some(on_subxact_event), std::ptr::null_mut());
    }
    DEFERRED_CALLBACKS.with(|r| r.set(true));
}

/// Deletes the clocks of some tickets of a table.
pub fn delete_tickets(table: &TicketTable, ticket_ids: Vec<String>) {
    write_deferred();
    as_sla_owner(|| {
        execute(
            "DELETE FROM sla.clocks WHERE ticket_table = $1::oid::regclass AND ticket_id = ANY($2)",
            &[table.relid.into(), ticket_ids.into()],
            "delete clocks",
        )
    })
}

/// Deletes every clock of a table, tracked or not (it was truncated).
pub fn delete_table(relid: pg_sys::Oid) {
    write_deferred();
    as_sla_owner(|| {
        execute(
            "DELETE FROM sla.clocks WHERE ticket_table = $1::oid::regclass",
            &[relid.into()],
            "delete clocks",
        )
    })
}

/// Deletes the clocks of a table's tickets that are not in `ids` (left
/// from an earlier tracking of tickets deleted meanwhile).
pub fn delete_except(table: &TicketTable, ids: &[String]) {
    write_deferred();
    as_sla_owner(|| {
        execute(
            "DELETE FROM sla.clocks WHERE ticket_table = $1::oid::regclass AND ticket_id <> ALL($2)",
            &[table.relid.into(), ids.to_vec().into()],
            "delete clocks of tickets that are gone",
        )
    })
}

/// Up to `limit` distinct ticket ids of a table's clocks after `after`, in
/// their (text) order.
pub fn ticket_ids_after(table: &TicketTable, after: Option<&str>, limit: i32) -> Vec<String> {
    write_deferred();
    as_sla_owner(|| {
        text_column(
            "SELECT DISTINCT ticket_id FROM sla.clocks
              WHERE ticket_table = $1::oid::regclass AND ($2::text IS NULL OR ticket_id > $2)
              ORDER BY ticket_id LIMIT $3",
            &[table.relid.into(), after.into(), limit.into()],
            "list tickets with clocks",
        )
    })
}

/// Tickets with a transition due at `now`, earliest first, leaving out
/// `skipped_tables`, the `held` tickets (table, id) and, with `owned_by`,
/// the tables that role does not own.
pub fn due_tickets(
    now: TimestampWithTimeZone,
    limit: i32,
    skipped_tables: &[pg_sys::Oid],
    held: &[(pg_sys::Oid, String)],
    owned_by: Option<pg_sys::Oid>,
) -> Vec<(pg_sys::Oid, String)> {
    write_deferred();
    let held_tables: Vec<pg_sys::Oid> = held.iter().map(|(relid, _)| *relid).collect();
    let held_ids: Vec<String> = held.iter().map(|(_, id)| id.clone()).collect();
    as_sla_owner(|| {
        Spi::connect(|client| {
            let rows = client.select(
                concat!(
                    r#"SELECT ticket_table::oid, ticket_id FROM sla.clocks
                  WHERE next_transition_at <= $1
                    AND (retry_at IS NULL OR retry_at <= pg_catalog.clock_timestamp())
                    AND ticket_table::oid <> ALL ($3::oid[])
                    AND (ticket_table::oid, ticket_id) NOT IN
                        (SELECT h.relid, h.id FROM unnest($4::oid[], $5::text[]) AS h(relid, id))
                    AND "#,
                    owned_by!(6),
                    r#"
                  ORDER BY next_transition_at LIMIT $2"#
                ),
                None,
                &[
                    now.into(),
                    limit.into(),
                    skipped_tables.to_vec().into(),
                    held_tables.into(),
                    held_ids.into(),
                    owned_by.into(),
                ],
            )?;
            let mut due = Vec::new();
            for row in rows {
                due.push((
                    row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                    row.get::<String>(2)?.unwrap_or_default(),
                ));
            }
            Ok(due)
        })
        .or_raise("find due clocks")
    })
}

/// Clocks with a transition due at `at`, earliest first, of the tables
/// `reader` may SELECT from: (table, ticket id, clock).
pub fn due_clocks_readable_by(
    at: TimestampWithTimeZone,
    limit: i32,
    reader: pg_sys::Oid,
) -> Vec<(pg_sys::Oid, String, Clock)> {
    write_deferred();
    let query = format!(
        "SELECT c.ticket_table::oid, c.ticket_id, {columns} FROM sla.clocks c
          WHERE c.next_transition_at <= $1
            AND pg_catalog.has_table_privilege($3::oid, c.ticket_table::oid, 'SELECT')
          ORDER BY c.next_transition_at, c.ticket_table, c.ticket_id LIMIT $2",
        columns = clock_select_list()
    );
    as_sla_owner(|| {
        Spi::connect(|client| {
            let mut due = Vec::new();
            for row in client.select(&query, None, &[at.into(), limit.into(), reader.into()])? {
                due.push((
                    row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                    row.get::<String>(2)?.unwrap_or_default(),
                    read_clock(&row, 3)?,
                ));
            }
            Ok(due)
        })
        .or_raise("find due clocks")
    })
}

/// Open clocks' tickets of one table, optionally only those whose policy
/// runs on one of `calendars`.
pub fn tickets_with_open_clocks(
    table: &TicketTable,
    calendars: Option<Vec<String>>,
) -> Vec<String> {
    write_deferred();
    let query = format!(
        "SELECT DISTINCT ticket_id FROM sla.clocks
          WHERE ticket_table = $1::oid::regclass
            AND status IN ({open})
            AND ($2::text[] IS NULL OR policy IN (
                  SELECT name FROM sla.policies WHERE calendar = ANY($2)))",
        open = open_status_list()
    );
    as_sla_owner(|| {
        text_column(
            &query,
            &[table.relid.into(), calendars.into()],
            "find open clocks",
        )
    })
}

/// Which of these tickets already have clocks.
pub fn tickets_with_clocks(table: &TicketTable, ids: &[String]) -> Vec<String> {
    write_deferred();
    // A kept plan: tables whose ids may repeat run it for every INSERT.
    as_sla_owner(|| {
        Spi::connect_mut(|client| {
            let rows = run_kept(
                client,
                "SELECT u.id FROM unnest($2::text[]) AS u(id)
                  WHERE EXISTS (SELECT FROM sla.clocks c
                                 WHERE c.ticket_table = $1::oid::regclass AND c.ticket_id = u.id)",
                &[table.relid.into(), ids.to_vec().into()],
            )?;
            let mut found = Vec::new();
            for row in rows {
                if let Some(id) = row.get::<String>(1)? {
                    found.push(id);
                }
            }
            Ok(found)
        })
        .or_raise("find tickets with clocks")
    })
}

/// Tickets of a table with a breached clock still open (paused or not, so
/// that a pause does not make an alert fire again when it ends).
pub fn breached_open_tickets(table: &TicketTable) -> Vec<String> {
    write_deferred();
    let query = format!(
        "SELECT DISTINCT ticket_id FROM sla.clocks
          WHERE ticket_table = $1::oid::regclass
            AND breached_at IS NOT NULL AND status IN ({breached_open})",
        breached_open = breached_open_status_list()
    );
    // A fresh snapshot: it sees the breaches this very call of process_due
    // just wrote.
    as_sla_owner(|| text_column_fresh(&query, &[table.relid.into()], "count breached tickets"))
}

/// Takes a table's clocks out of the due index: `only_if_untracked`
/// checks again that the table is not tracked (the caller's view of the
/// settings may be older).
pub fn unschedule_table(relid: pg_sys::Oid, only_if_untracked: bool) {
    write_deferred();
    let query = if only_if_untracked {
        "UPDATE sla.clocks SET next_transition_at = NULL
          WHERE ticket_table = $1::oid::regclass AND next_transition_at IS NOT NULL
            AND NOT EXISTS (SELECT FROM sla.tracked_tables
                             WHERE ticket_table = $1::oid::regclass)"
    } else {
        "UPDATE sla.clocks SET next_transition_at = NULL
          WHERE ticket_table = $1::oid::regclass AND next_transition_at IS NOT NULL"
    };
    as_sla_owner(|| execute(query, &[relid.into()], "unschedule clocks"))
}

/// Leaves tickets that due processing failed on alone for a while, so
/// that they do not hold places at the head of the due index.
pub fn postpone_tickets(table: &TicketTable, ticket_ids: &[String], delay: &str) {
    write_deferred();
    as_sla_owner(|| {
        execute(
            // SKIP LOCKED: due processing never waits for a lock.
            "UPDATE sla.clocks SET retry_at = pg_catalog.clock_timestamp() + $3::interval
              WHERE ctid = ANY (ARRAY(
                    SELECT ctid FROM sla.clocks
                     WHERE ticket_table = $1::oid::regclass AND ticket_id = ANY ($2::text[])
                       AND next_transition_at IS NOT NULL
                       FOR UPDATE SKIP LOCKED))",
            &[table.relid.into(), ticket_ids.to_vec().into(), delay.into()],
            "postpone due tickets",
        )
    })
}

/// The next time a clock has a transition due after `now`, for the worker
/// to wake at.
pub fn next_transition_after(now: TimestampWithTimeZone) -> Option<TimestampWithTimeZone> {
    write_deferred();
    as_sla_owner(|| {
        Spi::get_one_with_args(
            "SELECT min(next_transition_at) FROM sla.clocks WHERE next_transition_at >= $1",
            &[now.into()],
        )
        .or_raise("find the next due clock")
    })
}
