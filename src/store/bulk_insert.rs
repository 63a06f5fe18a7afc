//! Writing clocks straight into `sla.clocks`: new ones the way COPY does,
//! changed ones by row address.
//!
//! A bulk insert of tickets creates two clocks per ticket in the statement
//! trigger. Through SPI that meant building one array per column, unnesting
//! them and planning an INSERT: more than the table writes themselves. Here
//! the rows go to the table access method in batches (`table_multi_insert`)
//! and into its indexes (`ExecInsertIndexTuples`, which also enforces the
//! primary key and evaluates the partial index's predicate). Changed clocks
//! (`update_clocks`) were an `UPDATE … FROM unnest(…)` joined by row
//! address, whose arrays, function scan and executor cost about as much as
//! the row writes; they are now updated one by one through the access
//! method, as that `UPDATE` did.
//!
//! The rows are built by pg_sla and satisfy the table's CHECK and NOT NULL
//! constraints by construction (updates still check the CHECK constraints,
//! once parsed per statement, as the `UPDATE` did: an administrator may
//! have added one); `sla.clocks` has no triggers or foreign keys for this
//! path to honour, and its row security governs what roles read, not what
//! pg_sla writes (the access method checks no privileges). These writes do
//! not show in `auto_explain` or `pg_stat_statements`.
use pgrx::prelude::*;
use pgrx::{PgBox, PgMemoryContexts};
use sla_core::Clock;

use super::clock_layout::{ClockColumn, ClockValue, Role, CLOCK_ROW};
use crate::convert::timestamptz;

/// Rows handed to the table access method at once.
const BATCH: usize = 1000;

/// Columns of `sla.clocks`.
const NATTS: usize = CLOCK_ROW.len();

/// Inserts the clocks of new tickets, `(ticket id, clock)` pairs, into
/// `sla.clocks`. Sorting by key first keeps the primary key's inserts
/// local in its B-tree.
pub(super) fn insert_clocks(
    clocks_relid: pg_sys::Oid,
    ticket_table: pg_sys::Oid,
    mut rows: Vec<(String, Clock)>,
) {
    if rows.is_empty() {
        return;
    }
    rows.sort_by(|(a, x), (b, y)| {
        (a, x.metric.as_str(), x.cycle).cmp(&(b, y.metric.as_str(), y.cycle))
    });
    unsafe {
        let rel = open_for_writing(clocks_relid);
        let estate = pg_sys::CreateExecutorState();
        let result_rel =
            PgBox::<pg_sys::ResultRelInfo>::alloc_node(pg_sys::NodeTag::T_ResultRelInfo).into_pg();
        pg_sys::InitResultRelInfo(result_rel, rel, 0, std::ptr::null_mut(), 0);
        pg_sys::ExecOpenIndices(result_rel, false);
        #[cfg(feature = "pg13")]
        {
            (*estate).es_result_relation_info = result_rel;
        }
        let bulk_state = pg_sys::GetBulkInsertState();
        let command = pg_sys::GetCurrentCommandId(true);
        let slots: Vec<*mut pg_sys::TupleTableSlot> = (0..BATCH.min(rows.len()))
            .map(|_| pg_sys::table_slot_create(rel, std::ptr::null_mut()))
            .collect();
        let mut batch_memory = PgMemoryContexts::new("pg_sla clock batch");
        let per_tuple = pg_sys::MakePerTupleExprContext(estate);

        for chunk in rows.chunks(BATCH) {
            batch_memory.reset();
            batch_memory.switch_to(|_| {
                for ((ticket_id, clock), &slot) in chunk.iter().zip(&slots) {
                    fill_slot(slot, ticket_table, ticket_id, clock);
                }
            });
            let mut batch_slots = slots[..chunk.len()].to_vec();
            pg_sys::table_multi_insert(
                rel,
                batch_slots.as_mut_ptr(),
                chunk.len() as i32,
                command,
                0,
                bulk_state,
            );
            for &slot in &batch_slots {
                insert_index_entries(result_rel, slot, estate, false, false);
                pg_sys::MemoryContextReset((*per_tuple).ecxt_per_tuple_memory);
            }
        }

        for slot in slots {
            pg_sys::ExecDropSingleTupleTableSlot(slot);
        }
        pg_sys::FreeBulkInsertState(bulk_state);
        pg_sys::ExecCloseIndices(result_rel);
        pg_sys::FreeExecutorState(estate);
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
}

/// `sla.clocks`, locked for writing, checked to have the columns this
/// version writes.
unsafe fn open_for_writing(clocks_relid: pg_sys::Oid) -> pg_sys::Relation {
    unsafe {
        let rel = pg_sys::table_open(clocks_relid, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
        if (*(*rel).rd_att).natts as usize != NATTS {
            pg_sys::table_close(rel, pg_sys::RowExclusiveLock as pg_sys::LOCKMODE);
            pgrx::ereport!(
                ERROR,
                pgrx::PgSqlErrorCode::ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE,
                "sla.clocks does not have the columns this version of pg_sla writes",
                "Run ALTER EXTENSION pg_sla UPDATE."
            );
        }
        rel
    }
}

/// Pushes the snapshot SPI takes for a statement that writes (this
/// transaction's earlier writes seen; a new one per statement under READ
/// COMMITTED) and says whether the transaction is REPEATABLE READ or
/// stricter. The caller pops it.
pub(super) unsafe fn push_statement_snapshot() -> (pg_sys::Snapshot, bool) {
    unsafe {
        pg_sys::CommandCounterIncrement();
        pg_sys::PushActiveSnapshot(pg_sys::GetTransactionSnapshot());
        pg_sys::UpdateActiveSnapshotCommandId();
        (
            pg_sys::GetActiveSnapshot(),
            pg_sys::XactIsoLevel >= pg_sys::XACT_REPEATABLE_READ as i32,
        )
    }
}

/// Updates clocks in place: each row at its address gets the state of its
/// `Clock` (the columns of `Role::State`; its key, start and bookkeeping
/// stay). As the `UPDATE` by row address it replaces did, a row this
/// transaction cannot see or has changed since is left alone, and one
/// changed by another transaction since is left alone under READ COMMITTED
/// (the `UPDATE`'s recheck of its address failed) and a serialization
/// failure under REPEATABLE READ. The clocks written here were read locked,
/// so neither happens in practice.
pub(super) fn update_clocks(
    clocks_relid: pg_sys::Oid,
    mut rows: Vec<(pg_sys::ItemPointerData, Clock)>,
) {
    if rows.is_empty() {
        return;
    }
    // In address order: each page is visited once.
    rows.sort_by_key(|(tid, _)| {
        (
            (u32::from(tid.ip_blkid.bi_hi) << 16) | u32::from(tid.ip_blkid.bi_lo),
            tid.ip_posid,
        )
    });
    unsafe {
        let rel = open_for_writing(clocks_relid);
        // The snapshot an `UPDATE` run through SPI would take.
        let (snapshot, repeatable_read) = push_statement_snapshot();

        let estate = pg_sys::CreateExecutorState();
        let result_rel =
            PgBox::<pg_sys::ResultRelInfo>::alloc_node(pg_sys::NodeTag::T_ResultRelInfo).into_pg();
        // No range table entry (index 0): the index insertions of an update
        // then take every index's key as unchanged, their hint for removing
        // the row's older versions first. Right for the primary key and the
        // breached index; for the due index a wasted try when a page fills.
        pg_sys::InitResultRelInfo(result_rel, rel, 0, std::ptr::null_mut(), 0);
        // What the executor checks before an UPDATE of a published table.
        pg_sys::CheckCmdReplicaIdentity(rel, pg_sys::CmdType::CMD_UPDATE);
        // Constraints an administrator added to the table are honoured, as
        // the UPDATE this replaces did (pg_sla's own hold by construction).
        let has_checks =
            !(*(*rel).rd_att).constr.is_null() && (*(*(*rel).rd_att).constr).num_check > 0;
        pg_sys::ExecOpenIndices(result_rel, false);
        #[cfg(feature = "pg13")]
        {
            (*estate).es_result_relation_info = result_rel;
        }
        let command = pg_sys::GetCurrentCommandId(true);
        let old = pg_sys::table_slot_create(rel, std::ptr::null_mut());
        let new = pg_sys::table_slot_create(rel, std::ptr::null_mut());
        let mut row_memory = PgMemoryContexts::new("pg_sla clock update");
        let per_tuple = pg_sys::MakePerTupleExprContext(estate);

        for (tid, clock) in &rows {
            let mut tid = *tid;
            if !pg_sys::table_tuple_fetch_row_version(rel, &mut tid, snapshot, old) {
                continue;
            }
            pg_sys::slot_getallattrs(old);
            row_memory.reset();
            row_memory.switch_to(|_| fill_updated_slot(new, old, clock));
            if has_checks {
                pg_sys::ExecConstraints(result_rel, new, estate);
            }
            let mut failure: pg_sys::TM_FailureData = std::mem::zeroed();
            let mut lock_mode: pg_sys::LockTupleMode::Type = 0;
            #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
            let mut update_indexes = false;
            #[cfg(any(feature = "pg16", feature = "pg17"))]
            let mut update_indexes = pg_sys::TU_UpdateIndexes::TU_None;
            let result = pg_sys::table_tuple_update(
                rel,
                &mut tid,
                new,
                command,
                snapshot,
                std::ptr::null_mut(),
                true,
                &mut failure,
                &mut lock_mode,
                &mut update_indexes,
            );
            match result {
                pg_sys::TM_Result::TM_Ok => {}
                pg_sys::TM_Result::TM_SelfModified => continue,
                pg_sys::TM_Result::TM_Updated | pg_sys::TM_Result::TM_Deleted
                    if !repeatable_read =>
                {
                    continue
                }
                pg_sys::TM_Result::TM_Updated | pg_sys::TM_Result::TM_Deleted => {
                    pgrx::ereport!(
                        ERROR,
                        pgrx::PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
                        "could not serialize access due to a concurrent change of SLA clocks"
                    );
                }
                other => {
                    pgrx::ereport!(
                        ERROR,
                        pgrx::PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                        format!("pg_sla could not update a row of sla.clocks (result {other})")
                    );
                }
            }
            #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
            if update_indexes {
                insert_index_entries(result_rel, new, estate, true, false);
            }
            #[cfg(any(feature = "pg16", feature = "pg17"))]
            if update_indexes != pg_sys::TU_UpdateIndexes::TU_None {
                insert_index_entries(
                    result_rel,
                    new,
                    estate,
                    true,
                    update_indexes == pg_sys::TU_UpdateIndexes::TU_Summarizing,
                );
            }
            pg_sys::MemoryContextReset((*per_tuple).ecxt_per_tuple_memory);
        }

        pg_sys::ExecDropSingleTupleTableSlot(old);
        pg_sys::ExecDropSingleTupleTableSlot(new);
        pg_sys::ExecCloseIndices(result_rel);
        pg_sys::FreeExecutorState(estate);
        pg_sys::PopActiveSnapshot();
        pg_sys::table_close(rel, pg_sys::NoLock as pg_sys::LOCKMODE);
    }
}

/// Stores in `new` the row in `old` (all its attributes deformed) with the
/// state columns of `clock`; values allocated in the current memory context.
unsafe fn fill_updated_slot(
    new: *mut pg_sys::TupleTableSlot,
    old: *mut pg_sys::TupleTableSlot,
    clock: &Clock,
) {
    unsafe {
        pg_sys::ExecClearTuple(new);
        let old_datums = std::slice::from_raw_parts((*old).tts_values, NATTS);
        let old_nulls = std::slice::from_raw_parts((*old).tts_isnull, NATTS);
        let datums = std::slice::from_raw_parts_mut((*new).tts_values, NATTS);
        let nulls = std::slice::from_raw_parts_mut((*new).tts_isnull, NATTS);
        for (i, column) in CLOCK_ROW.into_iter().enumerate() {
            let value = if column.role() == Role::State {
                clock_datum(column, clock)
            } else if old_nulls[i] {
                None
            } else {
                Some(old_datums[i])
            };
            datums[i] = value.unwrap_or(pg_sys::Datum::from(0));
            nulls[i] = value.is_none();
        }
        pg_sys::ExecStoreVirtualTuple(new);
    }
}

unsafe fn insert_index_entries(
    result_rel: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    estate: *mut pg_sys::EState,
    update: bool,
    only_summarizing: bool,
) {
    unsafe {
        #[cfg(feature = "pg13")]
        pg_sys::ExecInsertIndexTuples(
            slot,
            estate,
            false,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        #[cfg(any(feature = "pg14", feature = "pg15"))]
        pg_sys::ExecInsertIndexTuples(
            result_rel,
            slot,
            estate,
            update,
            false,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        #[cfg(any(feature = "pg16", feature = "pg17"))]
        pg_sys::ExecInsertIndexTuples(
            result_rel,
            slot,
            estate,
            update,
            false,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            only_summarizing,
        );
        #[cfg(feature = "pg13")]
        let _ = (result_rel, update);
        #[cfg(not(any(feature = "pg16", feature = "pg17")))]
        let _ = only_summarizing;
    }
}

/// Stores one clock row in a slot, its values allocated in the current
/// memory context.
unsafe fn fill_slot(
    slot: *mut pg_sys::TupleTableSlot,
    ticket_table: pg_sys::Oid,
    ticket_id: &str,
    clock: &Clock,
) {
    let values: [Option<pg_sys::Datum>; NATTS] = CLOCK_ROW.map(|column| match column {
        ClockColumn::TicketTable => Some(pg_sys::Datum::from(ticket_table)),
        ClockColumn::TicketId => Some(text_datum(ticket_id)),
        // A new clock has no bookkeeping yet.
        ClockColumn::RetryAt => None,
        _ => clock_datum(column, clock),
    });
    unsafe {
        pg_sys::ExecClearTuple(slot);
        let datums = std::slice::from_raw_parts_mut((*slot).tts_values, NATTS);
        let nulls = std::slice::from_raw_parts_mut((*slot).tts_isnull, NATTS);
        for (i, value) in values.into_iter().enumerate() {
            datums[i] = value.unwrap_or(pg_sys::Datum::from(0));
            nulls[i] = value.is_none();
        }
        pg_sys::ExecStoreVirtualTuple(slot);
    }
}

/// A clock's value of a column it holds, as a datum allocated in the
/// current memory context (`None`: SQL NULL, or a column it does not hold).
fn clock_datum(column: ClockColumn, clock: &Clock) -> Option<pg_sys::Datum> {
    match column.value(clock)? {
        ClockValue::Text(s) => Some(text_datum(s)),
        ClockValue::Int(i) => Some(pg_sys::Datum::from(i)),
        // Out of PostgreSQL's range: 22008, as the statements did.
        ClockValue::Instant(t) => t.and_then(|t| timestamptz(t).into_datum()),
        ClockValue::Duration(micros) => unsafe {
            let value = pg_sys::palloc(size_of::<pg_sys::Interval>()).cast::<pg_sys::Interval>();
            value.write(pg_sys::Interval {
                time: micros,
                day: 0,
                month: 0,
            });
            Some(pg_sys::Datum::from(value))
        },
    }
}

fn text_datum(s: &str) -> pg_sys::Datum {
    unsafe {
        pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
            s.as_ptr().cast(),
            s.len() as i32,
        ))
    }
}
