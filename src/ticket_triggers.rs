//! Triggers `sla.track` installs on a ticket table.
//!
//! - `zz_pg_sla_row`, BEFORE INSERT OR UPDATE, per row: chooses the policy and
//!   writes the ticket's SLA columns into the row itself (no second write);
//!   on UPDATE it also brings the ticket's clocks in line, keeping their
//!   changes for the statement's end (`store::clocks::defer`).
//! - `zz_pg_sla_updated`, AFTER UPDATE, per statement: writes those changes
//!   of all the statement's tickets in one statement per table.
//! - `zz_pg_sla_inserted`, AFTER INSERT, per statement: creates the new
//!   tickets' clocks from the transition table in one statement, so a bulk
//!   insert pays one write per clock rather than one query per row (and rows
//!   skipped by ON CONFLICT get none).
//! - `zz_pg_sla_deleted` and `zz_pg_sla_truncated`: drop the clocks.
//!
//! `store::ticket_definitions` installs them; their names sort after most
//! user triggers, so the row trigger sees the row as other BEFORE triggers
//! left it.
use std::cell::{Cell, RefCell};
use std::collections::HashSet;
use std::rc::Rc;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use pgrx::trigger_support::{
    trigger_fired_after, trigger_fired_before, trigger_fired_by_delete, trigger_fired_by_insert,
    trigger_fired_by_truncate, trigger_fired_by_update, trigger_fired_for_row,
    trigger_fired_for_statement, PgTriggerError,
};
use pgrx::{AllocatedByPostgres, PgTrigger, PgTupleDesc};
use sla_core::policy::Policy;
use sla_core::Summary;

use crate::configuration::{self, Configuration, TrackedTable};
use crate::convert::timestamptz;
use crate::gucs::event_time;
use crate::invalidation::transactions_ended;
use crate::store::clocks::{self, ClockChanges};
use crate::store::ticket_definitions;
use crate::store::tickets;
use crate::ticket::{reconcile_ticket, warn_deadline_unavailable, Row, Ticket};
use crate::ticket_columns::{columns_for, Columns};
use crate::trigger_support::{
    for_each_transition_row, require_firing, trigger_fires, untracked, TriggerResult,
};

/// The row with its SLA columns replaced.
unsafe fn with_sla_columns(
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    columns: &Columns,
    policy: Option<&str>,
    summary: &Summary,
) -> pg_sys::HeapTuple {
    let Some(sla) = &columns.sla else {
        // Tracked with add_columns => false: the row stays as written.
        return tuple;
    };
    let text = |s: Option<&str>| s.and_then(|s| s.into_datum());
    let instant = |t: Option<sla_core::Micros>| t.and_then(|t| timestamptz(t).into_datum());
    let values = [
        text(policy),
        text(summary.status.map(sla_core::ClockStatus::as_str)),
        instant(summary.due_at),
        instant(summary.breached_at),
    ];
    let mut attnums = [
        sla.policy.attnum,
        sla.status.attnum,
        sla.due_at.attnum,
        sla.breached_at.attnum,
    ];
    let mut datums = values.map(|v| v.unwrap_or(pg_sys::Datum::from(0)));
    let mut nulls = values.map(|v| v.is_none());
    unsafe {
        pg_sys::heap_modify_tuple_by_cols(
            tuple,
            tupdesc,
            attnums.len() as i32,
            attnums.as_mut_ptr(),
            datums.as_mut_ptr(),
            nulls.as_mut_ptr(),
        )
    }
}

/// A tracked table's columns for rows of `tupdesc`.
fn table_columns(
    table: &TrackedTable,
    tupdesc: pg_sys::TupleDesc,
    configuration: &Configuration,
) -> Rc<Columns> {
    columns_for(
        table,
        &table.columns,
        tupdesc,
        &configuration.condition_columns,
    )
}

#[pg_trigger]
fn ticket_row_changed<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    let data = trigger.trigger_data();
    let event = data.tg_event;
    require_firing(
        trigger,
        trigger_fired_for_row(event)
            && trigger_fired_before(event)
            && (trigger_fired_by_insert(event) || trigger_fired_by_update(event)),
        "BEFORE INSERT OR UPDATE, FOR EACH ROW",
    );
    let is_partition = unsafe { (*(*data.tg_relation).rd_rel).relispartition };
    let configuration = configuration::current();
    if is_partition && configuration.tracked(trigger.relid()?).is_some() {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!(
                "tracked table {} has become a partition; pg_sla cannot track it there",
                trigger.table_name().unwrap_or_default()
            ),
            "Detach it, or call sla.untrack() on it and track the partitioned table."
        );
    }
    let Some(table) = configuration.tracked_relation(data.tg_relation) else {
        untracked(trigger);
        return Ok(trigger.new());
    };
    let tupdesc = unsafe { (*data.tg_relation).rd_att };
    let columns = table_columns(&table, tupdesc, &configuration);
    let updating = trigger_fired_by_update(data.tg_event);
    let new_tuple = if updating {
        data.tg_newtuple
    } else {
        data.tg_trigtuple
    };
    let new = Ticket {
        table: &table,
        columns: &columns,
        row: Row::Heap(new_tuple, tupdesc),
    };
    let policy = new.matching_policy(&configuration);
    let now = event_time();

    let mut clocks = Vec::new();
    if updating {
        let old = Ticket {
            table: &table,
            columns: &columns,
            row: Row::Heap(data.tg_trigtuple, tupdesc),
        };
        let old_id = old.id();
        let new_id = new.id();
        if is_partition {
            // The row may move to another partition: PostgreSQL then
            // inserts it there, and that is no new ticket.
            remember_update(table.relid, &new_id);
        }
        // The policy the row had: its sla_policy column, or the one its
        // old values matched.
        let same_policy = match &columns.sla {
            Some(_) => {
                policy.map(|p| p.name.as_str()) == new.sla_policy_name(&configuration).as_deref()
            }
            None => policy.map(|p| &p.name) == old.matching_policy(&configuration).map(|p| &p.name),
        };
        let policy_ref = policy.map(|p| &**p);
        if same_policy
            && old_id == new_id
            && old.facts(policy_ref, now) == new.facts(policy_ref, now)
        {
            // Nothing the clocks depend on changed (this includes pg_sla's own
            // updates of the SLA columns).
            return Ok(trigger.new());
        }
        let stored = clocks::rename_and_read(&table, &old_id, &new_id);
        clocks.extend(stored.iter().map(|s| s.clock.clone()));
        if stored.is_empty() {
            note_nested_change();
        }
        let summary = match reconcile_ticket(&new, Some(&old), policy, &mut clocks, now) {
            Ok(summary) => summary,
            Err(error) => {
                warn_deadline_unavailable(&new, policy.map(|p| &**p), &error);
                return Ok(trigger.new());
            }
        };
        // A logical replication worker applying changes fires no statement
        // triggers, whatever their setting.
        let statement_trigger_fires = !unsafe { pg_sys::IsLogicalWorker() }
            && trigger_fires(
                data.tg_relation,
                ticket_definitions::UPDATED_TRIGGER,
                c"tickets_updated",
            );
        if statement_trigger_fires {
            // Written with the statement's other tickets' at its end.
            clocks::defer(&table, &new_id, &stored, &clocks);
        } else {
            // A table tracked by an older schema, without that trigger.
            let mut changes = ClockChanges::default();
            changes.add_ticket(&new_id, &stored, &clocks);
            changes.write(&table);
        }
        return Ok(Some(modified(
            new_tuple, tupdesc, &columns, policy, &summary,
        )));
    }
    if is_partition && moved_by_update(table.relid, &new.id()) {
        // The row an UPDATE moves out of another partition, its SLA
        // columns and clocks already brought in line there.
        return Ok(trigger.new());
    }
    if columns.sla.is_none() {
        // A new row without SLA columns has nothing to show: its clocks
        // come from the statement trigger.
        return Ok(trigger.new());
    }
    match reconcile_ticket(&new, None, policy, &mut clocks, now) {
        Ok(summary) => Ok(Some(modified(
            new_tuple, tupdesc, &columns, policy, &summary,
        ))),
        Err(error) => {
            // No policy in the row: the statement trigger creates no clocks.
            warn_deadline_unavailable(&new, policy.map(|p| &**p), &error);
            Ok(Some(modified(
                new_tuple,
                tupdesc,
                &columns,
                None,
                &Summary::default(),
            )))
        }
    }
}

fn modified<'a>(
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    columns: &Columns,
    policy: Option<&Rc<Policy>>,
    summary: &Summary,
) -> PgHeapTuple<'a, AllocatedByPostgres> {
    unsafe {
        let changed = with_sla_columns(
            tuple,
            tupdesc,
            columns,
            policy.map(|p| p.name.as_str()),
            summary,
        );
        PgHeapTuple::from_heap_tuple(PgTupleDesc::from_pg_unchecked(tupdesc), changed)
    }
}

thread_local! {
    /// The tickets row triggers on partitions last saw updated, with the
    /// transaction and client statement they were updated in: an UPDATE
    /// that moves a row to another partition fires BEFORE UPDATE on the old
    /// one, then BEFORE INSERT on the new one, for the same row in the same
    /// statement, with only other triggers (of the partitions, on the
    /// application's side) in between. (The command counter does not tell:
    /// pg_sla's own writes in between advance it.) A DELETE forgets them,
    /// so that a ticket updated, deleted and inserted again by one
    /// statement (a function) is a new ticket.
    static LAST_UPDATED: RefCell<Vec<(pg_sys::Oid, String, StatementKey)>> =
        const { RefCell::new(Vec::new()) };
}

/// Tickets remembered as possibly moving.
const UPDATES_REMEMBERED: usize = 8;

/// This transaction, client statement and subtransaction: a statement's
/// work that a caught error rolled back must not be taken for what comes
/// after it in the same statement.
type StatementKey = (u64, pg_sys::TimestampTz, pg_sys::SubTransactionId);

fn this_statement() -> StatementKey {
    unsafe {
        (
            transactions_ended(),
            pg_sys::GetCurrentStatementStartTimestamp(),
            pg_sys::GetCurrentSubTransactionId(),
        )
    }
}

fn remember_update(table: pg_sys::Oid, id: &str) {
    let statement = this_statement();
    LAST_UPDATED.with(|last| {
        let mut last = last.borrow_mut();
        last.retain(|(_, _, s)| *s == statement);
        if last.len() >= UPDATES_REMEMBERED {
            last.remove(0);
        }
        last.push((table, id.to_owned(), statement));
    });
}

fn forget_updates() {
    LAST_UPDATED.with(|last| last.borrow_mut().clear());
}

/// Whether the row being inserted is one updated in this very statement
/// (and forgets it: one insert per move).
fn moved_by_update(table: pg_sys::Oid, id: &str) -> bool {
    let statement = this_statement();
    LAST_UPDATED.with(|last| {
        let mut last = last.borrow_mut();
        let found = last
            .iter()
            .position(|(t, i, s)| *t == table && i == id && *s == statement);
        if let Some(position) = found {
            last.remove(position);
        }
        found.is_some()
    })
}

thread_local! {
    /// Tickets whose clocks were created or removed by statements nested in
    /// an INSERT (a user's AFTER ROW trigger updating or deleting the new
    /// row), with the transaction they happened in: the INSERT's statement
    /// trigger must then not create those tickets' clocks again.
    static NESTED_CHANGES: Cell<(u64, u64)> = const { Cell::new((0, 0)) };
}

fn note_nested_change() {
    let transaction = transactions_ended();
    NESTED_CHANGES.with(|c| {
        let (seen, count) = c.get();
        c.set((transaction, if seen == transaction { count + 1 } else { 1 }));
    });
}

fn nested_changes_in_this_transaction() -> bool {
    NESTED_CHANGES.with(|c| c.get().0 == transactions_ended() && c.get().1 > 0)
}

/// New clocks gathered by `tickets_inserted` before a bulk insert.
const INSERT_BATCH: usize = 20_000;

/// Inserts new tickets' clocks; when statements nested in this transaction
/// may already have created clocks for some of them, or deleted them, those
/// tickets are skipped.
fn insert_new_clocks(table: &TrackedTable, mut new_clocks: ClockChanges) {
    if new_clocks.inserts_len() == 0 {
        return;
    }
    if nested_changes_in_this_transaction() {
        let ids = new_clocks.inserted_tickets();
        let mut skip: HashSet<String> = clocks::tickets_with_clocks(table, &ids)
            .into_iter()
            .collect();
        skip.extend(tickets::missing(table, &ids));
        new_clocks.skip_inserts(|id| skip.contains(id));
    }
    if table.partitioned && !table.id_unique {
        // A partitioned table's unique key holds its partition key too, so
        // an id may be taken by a ticket in another partition. pg_sla
        // identifies tickets by id: the new row shares that ticket's
        // clocks, and the application's insert goes through.
        let repeated = new_clocks.skip_repeated_inserts();
        let ids = new_clocks.inserted_tickets();
        let mut taken: HashSet<String> = clocks::tickets_with_clocks(table, &ids)
            .into_iter()
            .collect();
        new_clocks.skip_inserts(|id| taken.contains(id));
        taken.extend(repeated);
        if !taken.is_empty() {
            let mut shown: Vec<&str> = taken.iter().map(String::as_str).collect();
            shown.sort();
            shown.truncate(10);
            ereport!(
                WARNING,
                PgSqlErrorCode::ERRCODE_UNIQUE_VIOLATION,
                format!(
                    "pg_sla: {} new rows of partitioned table {} have the id of a ticket it already has (ids {}); they share that ticket's clocks",
                    taken.len(),
                    table.name,
                    shown.join(", ")
                ),
                "pg_sla identifies tickets by the id column across partitions: give each ticket its own id."
            );
        }
    }
    new_clocks.write(table);
}

/// A tracked table as a statement trigger sees it: mapping, columns, row type.
type StatementTable = (Rc<TrackedTable>, Rc<Columns>, pg_sys::TupleDesc);

/// The tracked table a statement trigger fired on; `None` on a table not
/// tracked (see `trigger_support::untracked`).
fn statement_table(
    trigger: &PgTrigger,
    configuration: &Configuration,
) -> Result<Option<StatementTable>, PgTriggerError> {
    let Some(table) = configuration.tracked_relation(trigger.trigger_data().tg_relation) else {
        untracked(trigger);
        return Ok(None);
    };
    let tupdesc = unsafe { (*trigger.trigger_data().tg_relation).rd_att };
    let columns = table_columns(&table, tupdesc, configuration);
    Ok(Some((table, columns, tupdesc)))
}

#[pg_trigger]
fn tickets_inserted<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    let data = trigger.trigger_data();
    let event = data.tg_event;
    require_firing(
        trigger,
        trigger_fired_for_statement(event)
            && trigger_fired_after(event)
            && trigger_fired_by_insert(event)
            && !data.tg_newtable.is_null(),
        "AFTER INSERT, FOR EACH STATEMENT, with a NEW TABLE",
    );
    let configuration = configuration::current();
    let Some((table, columns, tupdesc)) = statement_table(trigger, &configuration)? else {
        return Ok(None);
    };
    let now = event_time();
    let mut new_clocks = ClockChanges::default();
    let mut clocks = Vec::new();
    // Tickets whose messages may have arrived before them.
    let with_messages = configuration.has_messages(table.relid);
    let mut inserted = Vec::new();
    for_each_transition_row(data.tg_newtable, tupdesc, |row| {
        let ticket = Ticket {
            table: &table,
            columns: &columns,
            row,
        };
        if with_messages {
            inserted.push(ticket.id());
        }
        // The row trigger chose the policy and stored its name (or, without
        // SLA columns, the row's values choose it again).
        let Some(policy) = ticket
            .sla_policy_name(&configuration)
            .and_then(|name| configuration.by_name.get(&name))
        else {
            return;
        };
        clocks.clear();
        if reconcile_ticket(&ticket, None, Some(policy), &mut clocks, now).is_err() {
            // The row trigger computed these deadlines a moment ago; should
            // they fail now, the ticket gets no clocks, as it would have.
            return;
        }
        let id = ticket.id();
        for clock in clocks.drain(..) {
            new_clocks.insert(&id, clock);
        }
        if new_clocks.inserts_len() >= INSERT_BATCH {
            insert_new_clocks(&table, std::mem::take(&mut new_clocks));
        }
    });
    insert_new_clocks(&table, new_clocks);
    if !inserted.is_empty() {
        crate::messages::apply_early(&table, &inserted);
    }
    Ok(None)
}

#[pg_trigger]
fn tickets_updated<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    let event = trigger.trigger_data().tg_event;
    require_firing(
        trigger,
        trigger_fired_for_statement(event)
            && trigger_fired_after(event)
            && trigger_fired_by_update(event),
        "AFTER UPDATE, FOR EACH STATEMENT",
    );
    clocks::write_deferred();
    Ok(None)
}

#[pg_trigger]
fn tickets_deleted<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    let data = trigger.trigger_data();
    let event = data.tg_event;
    require_firing(
        trigger,
        trigger_fired_for_statement(event)
            && trigger_fired_after(event)
            && trigger_fired_by_delete(event)
            && !data.tg_oldtable.is_null(),
        "AFTER DELETE, FOR EACH STATEMENT, with an OLD TABLE",
    );
    let configuration = configuration::current();
    let Some((table, columns, tupdesc)) = statement_table(trigger, &configuration)? else {
        return Ok(None);
    };
    let mut ids = Vec::new();
    for_each_transition_row(data.tg_oldtable, tupdesc, |row| {
        let ticket = Ticket {
            table: &table,
            columns: &columns,
            row,
        };
        ids.push(ticket.id());
    });
    if table.partitioned && !table.id_unique && !ids.is_empty() {
        // Rows sharing an id share clocks: they go with the last row.
        ids = tickets::missing(&table, &ids);
    }
    if !ids.is_empty() {
        note_nested_change();
        forget_updates();
        clocks::delete_tickets(&table, ids);
    }
    Ok(None)
}

thread_local! {
    /// A tracked partitioned table being truncated as a whole, with the
    /// transaction and statement: its partitions' BEFORE TRUNCATE triggers
    /// then leave the clocks to its AFTER TRUNCATE trigger, which removes
    /// them all at once.
    static TRUNCATING: Cell<Option<(pg_sys::Oid, StatementKey)>> = const { Cell::new(None) };
}

#[pg_trigger]
fn tickets_truncated<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    let data = trigger.trigger_data();
    let event = data.tg_event;
    // Which of pg_sla's two TRUNCATE triggers fired is told by its name:
    // the table's own (AFTER), or the one of a partitioned table and its
    // partitions (BEFORE).
    let before = trigger.name().unwrap_or("") == ticket_definitions::PARTITION_TRUNCATED_TRIGGER;
    require_firing(
        trigger,
        trigger_fired_for_statement(event)
            && trigger_fired_by_truncate(event)
            && if before {
                trigger_fired_before(event)
            } else {
                trigger_fired_after(event)
            },
        if before {
            "BEFORE TRUNCATE, FOR EACH STATEMENT"
        } else {
            "AFTER TRUNCATE, FOR EACH STATEMENT"
        },
    );
    let relid = trigger.relid()?;
    let configuration = configuration::current();
    if !before {
        if configuration.tracked(relid).is_none() {
            untracked(trigger);
        }
        TRUNCATING.with(|t| t.set(None));
        clocks::delete_table(relid);
        return Ok(None);
    }
    if configuration.tracked(relid).is_some_and(|t| t.partitioned) {
        TRUNCATING.with(|t| t.set(Some((relid, this_statement()))));
        return Ok(None);
    }
    // A partition's tickets are those of its tracked table that it holds:
    // read before they go.
    let Some(table) = configuration.tracked_relation(data.tg_relation) else {
        // No longer a partition of a tracked table (a trigger left behind).
        return Ok(None);
    };
    if TRUNCATING.with(Cell::get) == Some((table.relid, this_statement())) {
        return Ok(None);
    }
    note_nested_change();
    crate::partitions::forget_tickets(&table, relid);
    Ok(None)
}
