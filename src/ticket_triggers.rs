//! Triggers `sla.track` installs on a ticket table.
//!
//! - `zz_pg_sla_row`, BEFORE INSERT OR UPDATE, per row: chooses the policy and
//!   writes the ticket's SLA columns into the row itself (no second write);
//!   on UPDATE it also brings the ticket's clocks in line.
//! - `zz_pg_sla_inserted`, AFTER INSERT, per statement: creates the new
//!   tickets' clocks from the transition table in one statement, so a bulk
//!   insert pays one write per clock rather than one query per row (and rows
//!   skipped by ON CONFLICT get none).
//! - `zz_pg_sla_deleted` and `zz_pg_sla_truncated`: drop the clocks.
//!
//! The names sort after most user triggers, so the row trigger sees the row
//! as other BEFORE triggers left it.
use std::cell::Cell;
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
use sla_core::{reconcile, summarize, Clock, Summary};

use crate::calendar_cache::transactions_ended;

use crate::bulk_insert;
use crate::catalog::{self, ClockChanges};
use crate::convert::{or_raise, timestamptz};
use crate::gucs::event_time;
use crate::security::{as_sla_owner, clocks_relid, run_as};
use crate::settings::{self, hours, Policy, Settings, TrackedTable};
use crate::tickets::{columns_for, Columns, Row, Ticket};

pub const ROW_TRIGGER: &str = "zz_pg_sla_row";
pub const INSERTED_TRIGGER: &str = "zz_pg_sla_inserted";
pub const DELETED_TRIGGER: &str = "zz_pg_sla_deleted";
pub const TRUNCATED_TRIGGER: &str = "zz_pg_sla_truncated";

pub type TriggerResult<'a> = Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError>;

/// Brings one ticket's clocks in line with its row and the policy that
/// matches it; returns the ticket's summary.
pub fn reconcile_ticket(
    ticket: &Ticket,
    policy: Option<&Rc<Policy>>,
    clocks: &mut Vec<Clock>,
    now: sla_core::Micros,
) -> Summary {
    let facts = ticket.facts(policy.map(|p| &**p), now);
    let calendar = policy.and_then(|p| p.calendar());
    let releasable = ticket.table.assignee_column.is_some();
    let result = reconcile(
        clocks,
        &facts,
        policy.map(|p| (p.name.as_str(), &p.targets)),
        hours(&calendar),
        now,
        releasable,
    );
    or_raise(result, policy.and_then(|p| p.calendar.as_deref()));
    summarize(clocks)
}

/// The row with its SLA columns replaced.
unsafe fn with_sla_columns(
    tuple: pg_sys::HeapTuple,
    tupdesc: pg_sys::TupleDesc,
    columns: &Columns,
    policy: Option<&str>,
    summary: &Summary,
) -> pg_sys::HeapTuple {
    let text = |s: Option<&str>| s.and_then(|s| s.into_datum());
    let instant = |t: Option<sla_core::Micros>| t.and_then(|t| timestamptz(t).into_datum());
    let values = [
        text(policy),
        text(summary.status.map(sla_core::ClockStatus::as_str)),
        instant(summary.due_at),
        instant(summary.breached_at),
    ];
    let mut attnums = [
        columns.sla_policy.attnum,
        columns.sla_status.attnum,
        columns.sla_due_at.attnum,
        columns.sla_breached_at.attnum,
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

/// Refuses to run a trigger function fired in a way it was not written for
/// (someone attaching it to another table or event by hand).
pub fn require_firing(trigger: &PgTrigger, expected: bool, what: &str) {
    if !expected {
        let name = trigger.name().unwrap_or("?");
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            format!("trigger \"{name}\": this pg_sla function must be fired {what}"),
            "pg_sla installs its triggers itself (sla.track); do not attach its functions by hand."
        );
    }
}

/// Whether the trigger's table is `sla.<name>`.
pub fn fired_on_sla_table(data: &pg_sys::TriggerData, name: &str) -> bool {
    unsafe {
        let rel = (*data.tg_relation).rd_rel;
        let relname = std::ffi::CStr::from_ptr((*rel).relname.data.as_ptr());
        let namespace = pg_sys::get_namespace_name((*rel).relnamespace);
        !namespace.is_null()
            && std::ffi::CStr::from_ptr(namespace).to_bytes() == b"sla"
            && relname.to_bytes() == name.as_bytes()
    }
}

fn tracked(settings: &Settings, relid: pg_sys::Oid) -> Option<Rc<TrackedTable>> {
    settings.tracked.get(&relid).cloned()
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
    if unsafe { (*(*data.tg_relation).rd_rel).relispartition } {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!(
                "tracked table {} has become a partition; pg_sla cannot track it there",
                trigger.table_name().unwrap_or_default()
            ),
            "Detach it, or call sla.untrack() on it."
        );
    }
    let settings = settings::current();
    let Some(table) = tracked(&settings, trigger.relid()?) else {
        return Ok(trigger.new());
    };
    let tupdesc = unsafe { (*data.tg_relation).rd_att };
    let columns = columns_for(&table, tupdesc, &settings);
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
    let policy = new.matching_policy(&settings);
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
        let same_policy = policy.map(|p| p.name.as_str()) == new.sla_policy().as_deref();
        let policy_ref = policy.map(|p| &**p);
        if same_policy
            && old_id == new_id
            && old.facts(policy_ref, now) == new.facts(policy_ref, now)
        {
            // Nothing the clocks depend on changed (this includes pg_sla's own
            // updates of the SLA columns).
            return Ok(trigger.new());
        }
        let stored = as_sla_owner(|| {
            if old_id != new_id {
                catalog::rename_ticket(table.relid, &old_id, &new_id);
            }
            catalog::read_clocks(table.relid, std::slice::from_ref(&new_id), true)
                .remove(&new_id)
                .unwrap_or_default()
        });
        clocks.extend(stored.iter().map(|s| s.clock.clone()));
        if stored.is_empty() {
            note_nested_change();
        }
        let summary = reconcile_ticket(&new, policy, &mut clocks, now);
        let mut changes = ClockChanges::default();
        changes.add_ticket(&new_id, &stored, &clocks);
        as_sla_owner(|| changes.write(table.relid));
        return Ok(Some(modified(
            new_tuple, tupdesc, &columns, policy, &summary,
        )));
    }
    let summary = reconcile_ticket(&new, policy, &mut clocks, now);
    Ok(Some(modified(
        new_tuple, tupdesc, &columns, policy, &summary,
    )))
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

/// The text values of column `attnum` in a trigger's transition table.
pub fn transition_texts(
    store: *mut pg_sys::Tuplestorestate,
    tupdesc: pg_sys::TupleDesc,
    attnum: i32,
) -> Vec<String> {
    let mut texts = Vec::new();
    for_each_transition_row(store, tupdesc, |row| {
        let Row::Slot(slot) = row else { return };
        let mut is_null = false;
        let datum = unsafe { pg_sys::slot_getattr(slot, attnum, &mut is_null) };
        if let Some(text) = unsafe { String::from_datum(datum, is_null) } {
            texts.push(text);
        }
    });
    texts
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
fn insert_new_clocks(table: &TrackedTable, mut clocks: Vec<(String, Clock)>) {
    if clocks.is_empty() {
        return;
    }
    if nested_changes_in_this_transaction() {
        let mut ids: Vec<String> = clocks.iter().map(|(id, _)| id.clone()).collect();
        ids.dedup();
        let mut skip: HashSet<String> =
            as_sla_owner(|| catalog::tickets_with_clocks(table.relid, &ids))
                .into_iter()
                .collect();
        skip.extend(run_as(table.owner, || {
            catalog::missing_tickets(table, &ids)
        }));
        clocks.retain(|(id, _)| !skip.contains(id));
    }
    bulk_insert::insert_clocks(clocks_relid(), table.relid, clocks);
}

/// A tracked table as a statement trigger sees it: mapping, columns, row type.
type StatementTable = (Rc<TrackedTable>, Rc<Columns>, pg_sys::TupleDesc);

/// The tracked table a statement trigger fired on; `None` when the table is
/// not tracked.
fn statement_table(
    trigger: &PgTrigger,
    settings: &Settings,
) -> Result<Option<StatementTable>, PgTriggerError> {
    let Some(table) = tracked(settings, trigger.relid()?) else {
        return Ok(None);
    };
    let tupdesc = unsafe { (*trigger.trigger_data().tg_relation).rd_att };
    let columns = columns_for(&table, tupdesc, settings);
    Ok(Some((table, columns, tupdesc)))
}

/// Calls `each` for every row of a trigger's transition table.
fn for_each_transition_row(
    store: *mut pg_sys::Tuplestorestate,
    tupdesc: pg_sys::TupleDesc,
    mut each: impl FnMut(Row),
) {
    if store.is_null() {
        return;
    }
    unsafe {
        let slot = pg_sys::MakeSingleTupleTableSlot(tupdesc, &pg_sys::TTSOpsMinimalTuple);
        pg_sys::tuplestore_rescan(store);
        while pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
            each(Row::Slot(slot));
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
    }
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
    let settings = settings::current();
    let Some((table, columns, tupdesc)) = statement_table(trigger, &settings)? else {
        return Ok(None);
    };
    let now = event_time();
    let mut new_clocks = Vec::new();
    let mut clocks = Vec::new();
    for_each_transition_row(data.tg_newtable, tupdesc, |row| {
        let ticket = Ticket {
            table: &table,
            columns: &columns,
            row,
        };
        // The row trigger chose the policy and stored its name.
        let Some(policy) = ticket
            .sla_policy()
            .and_then(|name| settings.by_name.get(&name))
        else {
            return;
        };
        clocks.clear();
        reconcile_ticket(&ticket, Some(policy), &mut clocks, now);
        let id = ticket.id();
        new_clocks.extend(clocks.drain(..).map(|clock| (id.clone(), clock)));
        if new_clocks.len() >= INSERT_BATCH {
            insert_new_clocks(&table, std::mem::take(&mut new_clocks));
        }
    });
    insert_new_clocks(&table, new_clocks);
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
    let settings = settings::current();
    let Some((table, columns, tupdesc)) = statement_table(trigger, &settings)? else {
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
    if !ids.is_empty() {
        note_nested_change();
        as_sla_owner(|| catalog::delete_clocks(table.relid, Some(ids)));
    }
    Ok(None)
}

#[pg_trigger]
fn tickets_truncated<'a>(trigger: &'a PgTrigger<'a>) -> TriggerResult<'a> {
    let event = trigger.trigger_data().tg_event;
    require_firing(
        trigger,
        trigger_fired_for_statement(event)
            && trigger_fired_after(event)
            && trigger_fired_by_truncate(event),
        "AFTER TRUNCATE, FOR EACH STATEMENT",
    );
    let relid = trigger.relid()?;
    as_sla_owner(|| catalog::delete_clocks(relid, None));
    Ok(None)
}
