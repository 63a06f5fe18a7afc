//! One ticket's clocks, read and locked through the primary key of
//! `sla.clocks` without SPI. A row trigger does this for every ticket an
//! `UPDATE` changes (and due processing and recomputation when they lock
//! one ticket), and going through SPI (a kept plan, an executor started and
//! ended, the rows copied and converted) cost several times the probe
//! itself. With `ignore_system_indexes` set the scan below would read the
//! whole table: callers then take the SPI path (`usable`).
//!
//! It reads what `SELECT … FOR UPDATE` through SPI read: a snapshot taken as
//! SPI takes one (after a command counter increment, so this transaction's
//! earlier writes are seen), the rows in key order, each locked in its
//! latest version, waiting for another writer as `FOR UPDATE` does, and
//! left out if that version is deleted or now belongs to another ticket.
//! Under REPEATABLE READ a row changed since the snapshot is a
//! serialization failure, as there.
use pgrx::prelude::*;
use pgrx::{FromDatum, IntoDatum, PgSqlErrorCode};
use sla_core::Clock;

use super::bulk_insert::push_statement_snapshot;
use super::clock_layout::{clock_columns, read_clock_from, ClockColumn, ClockSource, CLOCK_ROW};
use super::clocks::StoredClock;
use crate::identity::clocks_relid;

/// Whether `read_one_locked` probes the primary key (`systable_beginscan`
/// scans the table instead when system indexes are ignored).
pub fn usable() -> bool {
    !unsafe { pg_sys::IgnoreSystemIndexes }
}

/// The clocks of ticket `ticket_id` of table `relid`, locked, in key order.
pub fn read_one_locked(relid: pg_sys::Oid, ticket_id: &str) -> Vec<StoredClock> {
    let mut clocks = Vec::new();
    unsafe {
        let relation = pg_sys::table_open(clocks_relid(), pg_sys::RowShareLock as i32);
        let primary_key = pg_sys::RelationGetPrimaryKeyIndex(relation);
        let columns = Columns::of(relation);
        if primary_key == pg_sys::InvalidOid {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
                "pg_sla's table sla.clocks has lost its primary key",
                "Drop and create the extension again."
            );
        }

        let (snapshot, repeatable_read) = push_statement_snapshot();

        let id_datum = ticket_id.into_datum().expect("a text datum");
        let mut keys: [pg_sys::ScanKeyData; 2] = std::mem::zeroed();
        pg_sys::ScanKeyEntryInitialize(
            &mut keys[0],
            0,
            columns.ticket_table,
            pg_sys::BTEqualStrategyNumber as u16,
            pg_sys::InvalidOid,
            pg_sys::InvalidOid,
            pg_sys::Oid::from(pg_sys::F_OIDEQ),
            pg_sys::Datum::from(relid),
        );
        pg_sys::ScanKeyEntryInitialize(
            &mut keys[1],
            0,
            columns.ticket_id,
            pg_sys::BTEqualStrategyNumber as u16,
            pg_sys::InvalidOid,
            pg_sys::C_COLLATION_OID,
            pg_sys::Oid::from(pg_sys::F_TEXTEQ),
            id_datum,
        );
        let scan = pg_sys::systable_beginscan(
            relation,
            primary_key,
            true,
            snapshot,
            keys.len() as i32,
            keys.as_mut_ptr(),
        );
        let locked = pg_sys::table_slot_create(relation, std::ptr::null_mut());
        let command = pg_sys::GetCurrentCommandId(true);
        // The flags `FOR UPDATE` locks with (nodeLockRows.c).
        let flags = (pg_sys::TUPLE_LOCK_FLAG_LOCK_UPDATE_IN_PROGRESS
            | if repeatable_read {
                0
            } else {
                pg_sys::TUPLE_LOCK_FLAG_FIND_LAST_VERSION
            }) as u8;
        loop {
            let tuple = pg_sys::systable_getnext(scan);
            if tuple.is_null() {
                break;
            }
            let mut tid = (*tuple).t_self;
            let mut failure: pg_sys::TM_FailureData = std::mem::zeroed();
            let result = pg_sys::table_tuple_lock(
                relation,
                &mut tid,
                snapshot,
                locked,
                command,
                pg_sys::LockTupleMode::LockTupleExclusive,
                pg_sys::LockWaitPolicy::LockWaitBlock,
                flags,
                &mut failure,
            );
            match result {
                pg_sys::TM_Result::TM_Ok => {}
                // Changed by this transaction after the snapshot: as
                // `FOR UPDATE` does, left out.
                pg_sys::TM_Result::TM_SelfModified => continue,
                pg_sys::TM_Result::TM_Deleted if !repeatable_read => continue,
                pg_sys::TM_Result::TM_Updated | pg_sys::TM_Result::TM_Deleted => {
                    ereport!(
                        ERROR,
                        PgSqlErrorCode::ERRCODE_T_R_SERIALIZATION_FAILURE,
                        "could not serialize access due to a concurrent change of SLA clocks"
                    );
                }
                other => {
                    ereport!(
                        ERROR,
                        PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
                        format!("pg_sla could not lock a row of sla.clocks (result {other})")
                    );
                }
            }
            pg_sys::slot_getsomeattrs_int(locked, columns.count);
            let row = LockedRow {
                slot: locked,
                columns: &columns,
            };
            if failure.traversed && !row.belongs_to(relid, ticket_id) {
                // Its latest version is another ticket's now.
                continue;
            }
            let clock = read_clock_from(&row).unwrap_or_else(|e| {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                    format!("pg_sla could not read a row of sla.clocks: {e}")
                );
            });
            clocks.push(StoredClock {
                ctid: (*locked).tts_tid,
                clock,
            });
        }
        pg_sys::systable_endscan(scan);
        pg_sys::ExecDropSingleTupleTableSlot(locked);
        pg_sys::PopActiveSnapshot();
        // The lock is kept until the transaction ends, as the executor's.
        pg_sys::table_close(relation, pg_sys::NoLock as i32);
    }
    // Key order whatever the scan was (without indexes it is a heap scan).
    clocks.sort_by(|a, b| order(&a.clock).cmp(&order(&b.clock)));
    clocks
}

fn order(clock: &Clock) -> (&'static str, i32) {
    (clock.metric.as_str(), clock.cycle)
}

/// Attribute numbers of `sla.clocks`' columns, by name (an upgraded table
/// may have dropped columns between them).
struct Columns {
    ticket_table: pg_sys::AttrNumber,
    ticket_id: pg_sys::AttrNumber,
    /// Those of `clock_columns()`, in order, with their types.
    clock: Vec<(pg_sys::AttrNumber, pg_sys::Oid)>,
    /// How many attributes to deform.
    count: i32,
}

impl Columns {
    unsafe fn of(relation: pg_sys::Relation) -> Columns {
        let descriptor = unsafe { (*relation).rd_att };
        let natts = unsafe { (*descriptor).natts };
        let attributes = unsafe { (*descriptor).attrs.as_slice(natts as usize) };
        let named = |a: &pg_sys::FormData_pg_attribute, column: ClockColumn| {
            !a.attisdropped
                && unsafe { std::ffi::CStr::from_ptr(a.attname.data.as_ptr()) }.to_bytes()
                    == column.name().as_bytes()
        };
        let find = |column: ClockColumn| -> (pg_sys::AttrNumber, pg_sys::Oid) {
            // Where `CLOCK_ROW` puts it, unless columns were dropped.
            let expected = CLOCK_ROW.iter().position(|c| *c == column).unwrap_or(0);
            attributes
                .get(expected)
                .filter(|a| named(a, column))
                .map(|a| (expected, a))
                .or_else(|| {
                    attributes
                        .iter()
                        .enumerate()
                        .find(|(_, a)| named(a, column))
                })
                .map(|(i, a)| ((i + 1) as pg_sys::AttrNumber, a.atttypid))
                .unwrap_or_else(|| {
                    ereport!(
                        ERROR,
                        PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                        format!("pg_sla's table sla.clocks has no column {}", column.name()),
                        "Drop and create the extension again."
                    );
                })
        };
        let clock: Vec<_> = clock_columns().map(find).collect();
        let ticket_table = find(ClockColumn::TicketTable).0;
        let ticket_id = find(ClockColumn::TicketId).0;
        let count = clock
            .iter()
            .map(|(attnum, _)| *attnum)
            .chain([ticket_table, ticket_id])
            .max()
            .unwrap_or(0) as i32;
        Columns {
            ticket_table,
            ticket_id,
            clock,
            count,
        }
    }
}

/// A locked row of `sla.clocks`, deformed in its slot.
struct LockedRow<'a> {
    slot: *mut pg_sys::TupleTableSlot,
    columns: &'a Columns,
}

impl LockedRow<'_> {
    fn datum(&self, attnum: pg_sys::AttrNumber) -> (pg_sys::Datum, bool) {
        let i = (attnum - 1) as usize;
        unsafe {
            (
                *(*self.slot).tts_values.add(i),
                *(*self.slot).tts_isnull.add(i),
            )
        }
    }

    fn belongs_to(&self, relid: pg_sys::Oid, ticket_id: &str) -> bool {
        let (table, table_null) = self.datum(self.columns.ticket_table);
        let (id, id_null) = self.datum(self.columns.ticket_id);
        let id: Option<String> = unsafe { String::from_datum(id, id_null) };
        !table_null && table.value() as u32 == relid.to_u32() && id.as_deref() == Some(ticket_id)
    }
}

impl ClockSource for LockedRow<'_> {
    fn value<T: FromDatum + IntoDatum>(
        &self,
        column: ClockColumn,
        i: usize,
    ) -> Result<Option<T>, pgrx::spi::Error> {
        let (attnum, type_oid) = self.columns.clock[i];
        if !T::is_compatible_with(type_oid) {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
                format!(
                    "pg_sla's table sla.clocks has column {} of an unexpected type",
                    column.name()
                ),
                "Drop and create the extension again."
            );
        }
        let (datum, is_null) = self.datum(attnum);
        Ok(unsafe { T::from_polymorphic_datum(datum, is_null, type_oid) })
    }
}
