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
//! Only the tables a statement names are looked at: other tenants' tables
//! and a restore's own DDL (whose dump holds the triggers) are left alone,
//! and pg_sla's triggers are known by their function, which only pg_sla may
//! attach, not by their names. Ids are read a page at a time.
//!
//! A TRUNCATE of a partition is seen by its BEFORE TRUNCATE trigger
//! (`ticket_triggers::tickets_truncated`). Tickets are identified by the id
//! column across all partitions, so a row an UPDATE moves to another
//! partition keeps its clocks (`ticket_triggers`).
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::prelude::*;
use pgrx::PgList;

use crate::configuration::{self, Configuration, TrackedTable};
use crate::identity::current_user;
use crate::recompute::resync_tickets;
use crate::store::clocks;
use crate::store::ticket_definitions;
use crate::store::tickets;

/// Ids read from a partition at a time: a partition may hold millions of
/// tickets, which are never all in memory.
const PAGE: i32 = 10_000;

/// Gives `subtree` (the tracked table itself, or a partition just created
/// or attached) and its partitions pg_sla's statement triggers where they
/// lack them; with `backfill`, the rows of those partitions get their
/// clocks. Returns how many tickets it found.
pub fn equip(table: &TrackedTable, subtree: pg_sys::Oid, backfill: bool) -> i64 {
    let mut seen = 0;
    for partition in ticket_definitions::partition_tree(subtree) {
        if partition.relid == table.relid || partition.equipped {
            continue;
        }
        if partition.foreign {
            ereport!(
                WARNING,
                PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                format!(
                    "pg_sla: foreign table {} is a partition of tracked table {}; writes that name it are not seen",
                    partition.qualified, table.name
                ),
                "Write its tickets through the partitioned table."
            );
            continue;
        }
        ticket_definitions::create_partition_triggers(&partition.qualified);
        if backfill && partition.leaf {
            let mut found = 0;
            each_page_of_ids(table, partition.relid, |ids| {
                found += resync_tickets(table, &ids);
            });
            if found > 0 {
                pgrx::notice!(
                    "pg_sla: the {found} tickets of partition {} have their clocks",
                    partition.qualified
                );
            }
            seen += found;
        }
    }
    seen
}

/// Calls `f` with the ids a leaf partition holds, a page at a time, read
/// in id order by its unique index as the partition's owner.
fn each_page_of_ids(table: &TrackedTable, leaf: pg_sys::Oid, mut f: impl FnMut(Vec<String>)) {
    let mut after: Option<String> = None;
    loop {
        let ids = tickets::ids_after_in(table, leaf, after.as_deref(), PAGE);
        let Some(last) = ids.last().cloned() else {
            break;
        };
        let full = ids.len() as i32 == PAGE;
        f(ids);
        if !full {
            break;
        }
        after = Some(last);
    }
}

/// The tickets `subtree` holds (a partition detached, truncated or about
/// to be dropped, with its partitions) lose their clocks, but for ids a
/// row elsewhere in the table still has (they share the clocks).
pub fn forget_tickets(table: &TrackedTable, subtree: pg_sys::Oid) {
    let tree = ticket_definitions::partition_tree(subtree);
    let excluded: Vec<pg_sys::Oid> = tree.iter().map(|p| p.relid).collect();
    for partition in &tree {
        if partition.leaf && !partition.foreign {
            each_page_of_ids(table, partition.relid, |ids| {
                let gone = if table.id_unique {
                    ids
                } else {
                    tickets::missing_outside(table, &ids, &excluded)
                };
                if !gone.is_empty() {
                    clocks::delete_tickets(table, gone);
                }
            });
        }
    }
}

/// Removes pg_sla's statement triggers from `subtree` and its partitions.
fn unequip(subtree: pg_sys::Oid) {
    for partition in ticket_definitions::partition_tree(subtree) {
        if partition.equipped {
            ticket_definitions::drop_partition_triggers(partition.relid, &partition.qualified);
        }
    }
}

/// Removes pg_sla's statement triggers from every partition of a tracked
/// table (`sla.untrack`).
pub fn unequip_partitions(root: pg_sys::Oid) {
    unequip(root)
}

/// The tracked partitioned table whose tickets `relid`'s rows are: the
/// nearest tracked table among `relid` and the tables it is a partition
/// of.
fn tracked_table_of(configuration: &Configuration, relid: pg_sys::Oid) -> Option<Rc<TrackedTable>> {
    if let Some(table) = configuration.tracked(relid) {
        return table.partitioned.then_some(table);
    }
    ticket_definitions::partition_ancestors(relid)
        .into_iter()
        .find_map(|ancestor| configuration.tracked(ancestor))
        .filter(|table| table.partitioned)
}

/// A relation named in a statement, if it exists (no lock taken).
unsafe fn named_relation(range: *mut pg_sys::RangeVar) -> Option<pg_sys::Oid> {
    if range.is_null() {
        return None;
    }
    let relid = unsafe {
        pg_sys::RangeVarGetRelidExtended(
            range,
            pg_sys::NoLock as pg_sys::LOCKMODE,
            pg_sys::RVROption::RVR_MISSING_OK,
            None,
            std::ptr::null_mut(),
        )
    };
    (relid != pg_sys::InvalidOid).then_some(relid)
}

fn has_tracked_partitioned_tables(configuration: &Configuration) -> bool {
    configuration.tracked.values().any(|t| t.partitioned)
}

/// `DROP TABLE` is about to run: the tickets of any partition of a
/// tracked table it names (with their partitions) lose their clocks.
unsafe fn partitions_dropping(stmt: *mut pg_sys::DropStmt) {
    if unsafe { (*stmt).removeType } != pg_sys::ObjectType::OBJECT_TABLE {
        return;
    }
    let configuration = configuration::current();
    if !has_tracked_partitioned_tables(&configuration) {
        return;
    }
    let objects = unsafe { PgList::<pg_sys::List>::from_pg((*stmt).objects) };
    for names in objects.iter_ptr() {
        let Some(relid) = (unsafe { named_relation(pg_sys::makeRangeVarFromNameList(names)) })
        else {
            continue;
        };
        if configuration.tracked(relid).is_some() {
            // A tracked table itself (`sla.tables_dropped`).
            continue;
        }
        let Some((parent, droppable)) =
            ticket_definitions::parent_and_droppable(relid, current_user())
        else {
            continue;
        };
        let Some(table) = tracked_table_of(&configuration, relid) else {
            continue;
        };
        if !droppable {
            // DROP refuses it; take no lock for it.
            continue;
        }
        // The locks DROP takes, in its order, so that no ticket is written
        // into the partition after its ids are read.
        unsafe {
            pg_sys::LockRelationOid(parent, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE);
            pg_sys::LockRelationOid(relid, pg_sys::AccessExclusiveLock as pg_sys::LOCKMODE);
        }
        forget_tickets(&table, relid);
    }
}

/// A partition was created or attached (`attached`) or detached from
/// `parent`.
enum PartitionChange {
    Added {
        parent: pg_sys::Oid,
        partition: pg_sys::Oid,
    },
    Detached {
        parent: pg_sys::Oid,
        partition: pg_sys::Oid,
    },
}

/// What a CREATE TABLE or ALTER TABLE did to partitions.
unsafe fn partition_changes(parsetree: *mut pg_sys::Node) -> Vec<PartitionChange> {
    let mut changes = Vec::new();
    unsafe {
        match (*parsetree).type_ {
            pg_sys::NodeTag::T_CreateSchemaStmt => {
                // CREATE SCHEMA s CREATE TABLE t PARTITION OF …: t is s.t.
                let stmt = parsetree as *mut pg_sys::CreateSchemaStmt;
                for element in PgList::<pg_sys::Node>::from_pg((*stmt).schemaElts).iter_ptr() {
                    if (*element).type_ != pg_sys::NodeTag::T_CreateStmt
                        || (*stmt).schemaname.is_null()
                    {
                        continue;
                    }
                    let create = element as *mut pg_sys::CreateStmt;
                    let relation = (*create).relation;
                    if relation.is_null() || (*create).partbound.is_null() {
                        continue;
                    }
                    let qualified =
                        pg_sys::makeRangeVar((*stmt).schemaname, (*relation).relname, -1);
                    let parents = PgList::<pg_sys::RangeVar>::from_pg((*create).inhRelations);
                    if let (Some(partition), Some(parent)) = (
                        named_relation(qualified),
                        parents.get_ptr(0).and_then(|p| named_relation(p)),
                    ) {
                        changes.push(PartitionChange::Added { parent, partition });
                    }
                }
            }
            pg_sys::NodeTag::T_CreateStmt => {
                let stmt = parsetree as *mut pg_sys::CreateStmt;
                if (*stmt).partbound.is_null() {
                    return changes;
                }
                let parents = PgList::<pg_sys::RangeVar>::from_pg((*stmt).inhRelations);
                if let (Some(partition), Some(parent)) = (
                    named_relation((*stmt).relation),
                    parents.get_ptr(0).and_then(|p| named_relation(p)),
                ) {
                    changes.push(PartitionChange::Added { parent, partition });
                }
            }
            pg_sys::NodeTag::T_AlterTableStmt => {
                let stmt = parsetree as *mut pg_sys::AlterTableStmt;
                let Some(parent) = named_relation((*stmt).relation) else {
                    return changes;
                };
                for cmd in PgList::<pg_sys::AlterTableCmd>::from_pg((*stmt).cmds).iter_ptr() {
                    let subtype = (*cmd).subtype;
                    let attach = subtype == pg_sys::AlterTableType::AT_AttachPartition;
                    let detach = subtype == pg_sys::AlterTableType::AT_DetachPartition
                        || subtype == pg_sys::AlterTableType::AT_DetachPartitionFinalize;
                    if !(attach || detach) || (*cmd).def.is_null() {
                        continue;
                    }
                    let command = (*cmd).def as *mut pg_sys::PartitionCmd;
                    let Some(partition) = named_relation((*command).name) else {
                        continue;
                    };
                    changes.push(if attach {
                        PartitionChange::Added { parent, partition }
                    } else {
                        PartitionChange::Detached { parent, partition }
                    });
                }
            }
            _ => {}
        }
    }
    changes
}

/// `CREATE TABLE` or `ALTER TABLE` ran: the partitions it created or
/// attached under a tracked table get their triggers and clocks; those it
/// detached lose them. Only the tables the statement names are looked at.
unsafe fn partitions_changed_end(parsetree: *mut pg_sys::Node) {
    let configuration = configuration::current();
    if !has_tracked_partitioned_tables(&configuration) {
        return;
    }
    for change in unsafe { partition_changes(parsetree) } {
        // The statement names tables; what it did is read from the
        // catalog (CREATE TABLE IF NOT EXISTS may have created nothing,
        // and a name may find another table than the one it made).
        match change {
            PartitionChange::Added { parent, partition } => {
                let attached = ticket_definitions::parent_and_droppable(partition, current_user())
                    .is_some_and(|(actual, _)| actual == parent);
                if let Some(table) = tracked_table_of(&configuration, parent).filter(|_| attached) {
                    equip(&table, partition, true);
                }
            }
            PartitionChange::Detached { parent, partition } => {
                let detached = ticket_definitions::parent_and_droppable(partition, current_user())
                    .is_none_or(|(actual, _)| actual != parent);
                if let Some(table) = tracked_table_of(&configuration, parent).filter(|_| detached) {
                    forget_tickets(&table, partition);
                    unequip(partition);
                }
            }
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
    } else if event == c"ddl_command_end" && !parsetree.is_null() {
        unsafe { partitions_changed_end(parsetree) };
    }
    pg_sys::Datum::from(0)
}
