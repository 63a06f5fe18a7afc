//! Partitioned ticket tables, tracked through the partitioned table.
//!
//! PostgreSQL clones the row trigger of a partitioned table to each
//! partition, present and future, but fires statement triggers only on the
//! table a statement names: an INSERT, DELETE or TRUNCATE that names a
//! partition fires that partition's own. So every partition gets pg_sla's
//! statement triggers, and an event trigger keeps that true as partitions
//! come and go:
//!
//! - `CREATE TABLE … PARTITION OF` and `ALTER TABLE … ATTACH PARTITION`
//!   (at `ddl_command_end`): the new partitions get the triggers, and the
//!   rows an attached table already has become tickets with clocks;
//! - `ALTER TABLE … DETACH PARTITION` (at `ddl_command_end`): the tickets
//!   of the detached table lose their clocks, and it loses the triggers;
//! - `DROP TABLE` of a partition (at `ddl_command_start`, while its rows
//!   can still be read): its tickets lose their clocks. No trigger fires on
//!   DROP, and once dropped, nothing says which tickets it held.
//!
//! A TRUNCATE of a partition is seen by its BEFORE TRUNCATE trigger
//! (`ticket_triggers::tickets_truncated`). Tickets are identified by the id
//! column across all partitions, so a row an UPDATE moves to another
//! partition keeps its clocks (`ticket_triggers`).
use std::ffi::CStr;

use pgrx::prelude::*;
use pgrx::PgList;

use crate::configuration::{self, TrackedTable};
use crate::identity::{current_user, has_privileges_of};
use crate::recompute::{resync_tickets, RESYNC_CHUNK};
use crate::store::clocks;
use crate::store::ticket_definitions::{self, column_type};
use crate::store::tickets;

/// Gives the partitions of a tracked partitioned table that lack them
/// pg_sla's statement triggers; with `backfill`, the rows those partitions
/// already hold get their clocks. Returns how many tickets it found.
pub fn equip_partitions(table: &TrackedTable, backfill: bool) -> i64 {
    let mut seen = 0;
    for partition in ticket_definitions::partitions_without_triggers(table.relid) {
        ticket_definitions::create_partition_triggers(&partition.qualified);
        if backfill && partition.leaf {
            let ids = tickets::ids_in_relation(partition.relid, &table.id_column);
            for chunk in ids.chunks(RESYNC_CHUNK) {
                seen += resync_tickets(table, chunk);
            }
            if !ids.is_empty() {
                pgrx::notice!(
                    "pg_sla: the {} tickets of partition {} have their clocks",
                    ids.len(),
                    partition.qualified
                );
            }
        }
    }
    seen
}

/// Removes pg_sla's statement triggers from every partition of a table
/// (`sla.untrack`).
pub fn unequip_partitions(root: pg_sys::Oid) {
    for partition in ticket_definitions::all_partitions(root) {
        ticket_definitions::drop_partition_triggers(partition.relid, &partition.qualified);
    }
}

/// Tables that were partitions of a tracked table and are no longer (or
/// whose partitioned table is no longer tracked): their tickets lose the
/// clocks they had there, and the tables lose pg_sla's triggers.
fn forget_former_partitions(roots: &[std::rc::Rc<TrackedTable>]) {
    let root_ids: Vec<pg_sys::Oid> = roots.iter().map(|r| r.relid).collect();
    for former in ticket_definitions::former_partitions(&root_ids) {
        if former.leaf {
            for root in roots {
                if column_type(former.relid, &root.id_column).is_none() {
                    continue;
                }
                let ids = tickets::ids_in_relation(former.relid, &root.id_column);
                for chunk in ids.chunks(RESYNC_CHUNK) {
                    let gone = tickets::missing(root, chunk);
                    if !gone.is_empty() {
                        clocks::delete_tickets(root, gone);
                    }
                }
            }
        }
        ticket_definitions::drop_partition_triggers(former.relid, &former.qualified);
    }
}

/// The tracked partitioned tables.
fn partitioned_roots() -> Vec<std::rc::Rc<TrackedTable>> {
    configuration::current()
        .tracked
        .values()
        .filter(|t| t.partitioned)
        .cloned()
        .collect()
}

/// `DROP TABLE` is about to run: the tickets of any partition of a
/// tracked table it names (with their partitions) lose their clocks.
unsafe fn partitions_dropping(stmt: *mut pg_sys::DropStmt) {
    if unsafe { (*stmt).removeType } != pg_sys::ObjectType::OBJECT_TABLE {
        return;
    }
    let configuration = configuration::current();
    if !configuration.tracked.values().any(|t| t.partitioned) {
        return;
    }
    let objects = unsafe { PgList::<pg_sys::List>::from_pg((*stmt).objects) };
    for names in objects.iter_ptr() {
        let relid = unsafe {
            let range = pg_sys::makeRangeVarFromNameList(names);
            pg_sys::RangeVarGetRelidExtended(
                range,
                pg_sys::NoLock as pg_sys::LOCKMODE,
                pg_sys::RVROption::RVR_MISSING_OK,
                None,
                std::ptr::null_mut(),
            )
        };
        if relid == pg_sys::InvalidOid || configuration.tracked(relid).is_some() {
            // Not there, or a tracked table itself (`sla.tables_dropped`).
            continue;
        }
        let Some((owner, Some(parent))) = ticket_definitions::owner_and_parent(relid) else {
            continue;
        };
        let root = ticket_definitions::partition_root(relid);
        let Some(table) = configuration.tracked(root).filter(|t| t.partitioned) else {
            continue;
        };
        if !has_privileges_of(current_user(), owner) {
            // DROP refuses it; take no lock for it.
            continue;
        }
        // The locks DROP takes, in its order, so that no ticket is written
        // into the partition after its ids are read.
        unsafe {
            pg_sys::LockRelationOid(parent, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE);
            pg_sys::LockRelationOid(relid, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE);
        }
        let ids = tickets::ids_in_relation(relid, &table.id_column);
        for chunk in ids.chunks(RESYNC_CHUNK) {
            clocks::delete_tickets(&table, chunk.to_vec());
        }
    }
}

/// `CREATE TABLE` or `ALTER TABLE` ran: partitions created or attached
/// get their triggers and clocks, detached ones lose them.
fn partitions_changed_end() {
    let roots = partitioned_roots();
    if roots.is_empty() {
        return;
    }
    for root in &roots {
        equip_partitions(root, true);
    }
    forget_former_partitions(&roots);
}

/// Whether a CREATE TABLE or ALTER TABLE adds or removes a partition:
/// other DDL (a restore's indexes and constraints, whose partitions get
/// their triggers from the dump) is left alone.
unsafe fn changes_partitions(parsetree: *mut pg_sys::Node) -> bool {
    unsafe {
        match (*parsetree).type_ {
            pg_sys::NodeTag::T_CreateStmt => !(*(parsetree as *mut pg_sys::CreateStmt))
                .partbound
                .is_null(),
            pg_sys::NodeTag::T_AlterTableStmt => {
                let stmt = parsetree as *mut pg_sys::AlterTableStmt;
                PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds)
                    .iter_ptr()
                    .any(|cmd| {
                        matches!(
                            (*cmd).subtype,
                            pg_sys::AlterTableType::AT_AttachPartition
                                | pg_sys::AlterTableType::AT_DetachPartition
                                | pg_sys::AlterTableType::AT_DetachPartitionFinalize
                        )
                    })
            }
            _ => false,
        }
    }
}

/// The event trigger function `sla.partitions_changed()`, for
/// `ddl_command_start` of `DROP TABLE` and `ddl_command_end` of
/// `CREATE TABLE` and `ALTER TABLE` (pgrx has no event trigger functions:
/// this is a plain version-1 C function).
#[unsafe(no_mangle)]
#[doc(hidden)]
pub extern "C" fn pg_finfo_partitions_changed() -> &'static pg_sys::Pg_finfo_record {
    const V1_API: pg_sys::Pg_finfo_record = pg_sys::Pg_finfo_record { api_version: 1 };
    &V1_API
}

#[pg_guard]
#[unsafe(no_mangle)]
pub unsafe extern "C-unwind" fn partitions_changed(
    fcinfo: pg_sys::FunctionCallInfo,
) -> pg_sys::Datum {
    let context = unsafe { (*fcinfo).context };
    if context.is_null() || unsafe { (*context).type_ } != pg_sys::NodeTag::T_EventTriggerData {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            "sla.partitions_changed() is an event trigger function"
        );
    }
    let data = context as *mut pg_sys::EventTriggerData;
    let event = unsafe { CStr::from_ptr((*data).event) };
    let parsetree = unsafe { (*data).parsetree };
    if event == c"ddl_command_start" {
        if !parsetree.is_null() && unsafe { (*parsetree).type_ } == pg_sys::NodeTag::T_DropStmt {
            unsafe { partitions_dropping(parsetree as *mut pg_sys::DropStmt) };
        }
    } else if event == c"ddl_command_end"
        && !parsetree.is_null()
        && unsafe { changes_partitions(parsetree) }
    {
        partitions_changed_end();
    }
    pg_sys::Datum::from(0)
}
