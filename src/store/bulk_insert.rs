//! Writing new tickets' clocks straight into `sla.clocks`, the way COPY does.
//!
//! A bulk insert of tickets creates two clocks per ticket in the statement
//! trigger. Through SPI that meant building one array per column, unnesting
//! them and planning an INSERT: more than the table writes themselves. Here
//! the rows go to the table access method in batches (`table_multi_insert`)
//! and into its indexes (`ExecInsertIndexTuples`, which also enforces the
//! primary key and evaluates the partial index's predicate).
//!
//! The rows are built by pg_sla and satisfy the table's CHECK and NOT NULL
//! constraints by construction; `sla.clocks` has no triggers or foreign keys
//! for this path to honour, and its row security governs what roles read,
//! not what pg_sla writes (the access method checks no privileges).
use pgrx::prelude::*;
use pgrx::{PgBox, PgMemoryContexts};
use sla_core::{Clock, Micros};

use super::clock_layout::{ClockColumn, ClockValue, CLOCK_ROW};
use crate::convert::PG_EPOCH_OFFSET;

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
        let estate = pg_sys::CreateExecutorState();
        let result_rel =
            PgBox::<pg_sys::ResultRelInfo>::alloc_node(pg_sys::NodeTag::T_ResultRelInfo).into_pg();
        pg_sys::InitResultRelInfo(result_rel, rel, 1, std::ptr::null_mut(), 0);
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
                insert_index_entries(result_rel, slot, estate);
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

unsafe fn insert_index_entries(
    result_rel: *mut pg_sys::ResultRelInfo,
    slot: *mut pg_sys::TupleTableSlot,
    estate: *mut pg_sys::EState,
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
            false,
            false,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
        );
        #[cfg(any(feature = "pg16", feature = "pg17"))]
        pg_sys::ExecInsertIndexTuples(
            result_rel,
            slot,
            estate,
            false,
            false,
            std::ptr::null_mut(),
            std::ptr::null_mut(),
            false,
        );
        #[cfg(feature = "pg13")]
        let _ = result_rel;
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
    let text = |s: &str| unsafe {
        Some(pg_sys::Datum::from(pg_sys::cstring_to_text_with_len(
            s.as_ptr().cast(),
            s.len() as i32,
        )))
    };
    let instant = |t: Option<Micros>| t.map(|t| pg_sys::Datum::from(t - PG_EPOCH_OFFSET));
    let interval = |micros: Micros| unsafe {
        let value = pg_sys::palloc(size_of::<pg_sys::Interval>()).cast::<pg_sys::Interval>();
        value.write(pg_sys::Interval {
            time: micros,
            day: 0,
            month: 0,
        });
        Some(pg_sys::Datum::from(value))
    };
    let values: [Option<pg_sys::Datum>; NATTS] = CLOCK_ROW.map(|column| match column {
        ClockColumn::TicketTable => Some(pg_sys::Datum::from(ticket_table)),
        ClockColumn::TicketId => text(ticket_id),
        // A new clock has no bookkeeping yet.
        ClockColumn::RetryAt => None,
        _ => match column.value(clock) {
            Some(ClockValue::Text(s)) => text(s),
            Some(ClockValue::Int(i)) => Some(pg_sys::Datum::from(i)),
            Some(ClockValue::Instant(t)) => instant(t),
            Some(ClockValue::Duration(d)) => interval(d),
            None => None,
        },
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
