//! The definition of users' ticket tables: what `sla.track` reads of them
//! in the system catalogs (as the caller), the SLA columns it adds (as the
//! caller, who owns the table) and pg_sla's triggers, created as the owner
//! of pg_sla's tables, the only role that may execute their functions (so
//! that nobody attaches them elsewhere) and dropped as the caller.
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use super::spi::execute;
use crate::errors::SpiResultExt;
use crate::identity::{as_sla_owner, current_user};

/// The triggers `sla.track` installs (see `ticket_triggers`). The names sort
/// after most user triggers, so the row trigger sees the row as other
/// BEFORE triggers left it.
pub const ROW_TRIGGER: &str = "zz_pg_sla_row";
pub const INSERTED_TRIGGER: &str = "zz_pg_sla_inserted";
pub const DELETED_TRIGGER: &str = "zz_pg_sla_deleted";
/// Writes the clock changes of a statement's updated tickets at its end.
pub const UPDATED_TRIGGER: &str = "zz_pg_sla_updated";
pub const TRUNCATED_TRIGGER: &str = "zz_pg_sla_truncated";
/// On each partition of a tracked partitioned table: BEFORE TRUNCATE, when
/// its rows can still be read.
pub const PARTITION_TRUNCATED_TRIGGER: &str = "zz_pg_sla_partition_truncated";
/// The triggers `sla.track_messages` installs on a messages table (see
/// `messages`).
pub const MESSAGES_INSERTED_TRIGGER: &str = "zz_pg_sla_messages_inserted";
pub const MESSAGES_UPDATED_TRIGGER: &str = "zz_pg_sla_messages_updated";
const TICKET_TRIGGERS: [&str; 6] = [
    ROW_TRIGGER,
    INSERTED_TRIGGER,
    DELETED_TRIGGER,
    UPDATED_TRIGGER,
    TRUNCATED_TRIGGER,
    PARTITION_TRUNCATED_TRIGGER,
];
const MESSAGE_TRIGGERS: [&str; 2] = [MESSAGES_INSERTED_TRIGGER, MESSAGES_UPDATED_TRIGGER];
/// Every trigger name pg_sla installs.
pub const TRIGGERS: [&str; 8] = [
    ROW_TRIGGER,
    INSERTED_TRIGGER,
    DELETED_TRIGGER,
    UPDATED_TRIGGER,
    TRUNCATED_TRIGGER,
    PARTITION_TRUNCATED_TRIGGER,
    MESSAGES_INSERTED_TRIGGER,
    MESSAGES_UPDATED_TRIGGER,
];

pub struct TableInfo {
    /// The name as the caller would write it (for messages and the caller's
    /// own DDL).
    pub name: String,
    /// Schema-qualified and quoted, for DDL run with pg_sla's search_path.
    pub qualified: String,
    pub relkind: String,
    pub temporary: bool,
    /// A partition, or a parent or child in table inheritance.
    pub in_hierarchy: bool,
    /// A partition of a partitioned table.
    pub is_partition: bool,
    pub owned_by_caller: bool,
}

/// What `sla.track` needs to know of a table, read from the system catalogs
/// as the caller.
pub fn table_info(table: pg_sys::Oid) -> TableInfo {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT c.oid::pg_catalog.regclass::text, c.relkind::text,
                    pg_catalog.pg_has_role($2, c.relowner, 'USAGE'),
                    c.relpersistence OPERATOR(pg_catalog.=) 't',
                    c.relispartition OR EXISTS (
                        SELECT FROM pg_catalog.pg_inherits i
                         WHERE i.inhrelid OPERATOR(pg_catalog.=) c.oid
                            OR i.inhparent OPERATOR(pg_catalog.=) c.oid),
                    pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'
                        OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname),
                    c.relispartition
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
              WHERE c.oid OPERATOR(pg_catalog.=) $1",
            Some(1),
            &[table.into(), current_user().into()],
        )?;
        if rows.is_empty() {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
                format!("table with OID {} does not exist", table.to_u32())
            );
        }
        let row = rows.first();
        Ok::<_, pgrx::spi::Error>(TableInfo {
            name: row.get(1)?.unwrap_or_default(),
            relkind: row.get(2)?.unwrap_or_default(),
            owned_by_caller: row.get(3)?.unwrap_or(false),
            temporary: row.get(4)?.unwrap_or(false),
            in_hierarchy: row.get(5)?.unwrap_or(false),
            qualified: row.get(6)?.unwrap_or_default(),
            is_partition: row.get(7)?.unwrap_or(false),
        })
    })
    .or_raise("read the table's definition")
}

/// Whether a valid unique index without predicate has `column` as its
/// first key column, and as its only one when `alone`. A partitioned
/// table's unique indexes must contain its partition key; one led by the
/// id still finds a ticket by id with one index probe per partition.
pub fn has_unique_key(table: pg_sys::Oid, column: &str, alone: bool) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (
             SELECT FROM pg_catalog.pg_index i
               JOIN pg_catalog.pg_attribute a
                 ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
                AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
              WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisunique AND i.indisvalid
                AND (NOT $3 OR i.indnkeyatts OPERATOR(pg_catalog.=) 1)
                AND i.indpred IS NULL AND i.indexprs IS NULL
                AND a.attname OPERATOR(pg_catalog.=) $2::name)",
        &[table.into(), column.into(), alone.into()],
    )
    .or_raise("read the table's indexes")
    .unwrap_or(false)
}

/// A column's type as SQL and its catalog facts, or `None` when absent.
#[derive(Clone)]
pub struct ColumnType {
    pub type_name: String,
    pub type_oid: pg_sys::Oid,
    pub is_enum: bool,
    pub not_null: bool,
    /// A generated column (`GENERATED ALWAYS AS … STORED`).
    pub generated: bool,
    pub type_modifier: i32,
}

pub fn column_type(table: pg_sys::Oid, column: &str) -> Option<ColumnType> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod), a.atttypid,
                    t.typtype OPERATOR(pg_catalog.=) 'e', a.attnotnull,
                    a.attgenerated OPERATOR(pg_catalog.<>) '', a.atttypmod
               FROM pg_catalog.pg_attribute a
               JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) a.atttypid
              WHERE a.attrelid OPERATOR(pg_catalog.=) $1
                AND a.attname OPERATOR(pg_catalog.=) $2::name
                AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped",
            Some(1),
            &[table.into(), column.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let row = rows.first();
        Ok(Some(ColumnType {
            type_name: row.get(1)?.unwrap_or_default(),
            type_oid: row.get(2)?.unwrap_or(pg_sys::InvalidOid),
            is_enum: row.get(3)?.unwrap_or(false),
            not_null: row.get(4)?.unwrap_or(false),
            generated: row.get(5)?.unwrap_or(false),
            type_modifier: row.get(6)?.unwrap_or(-1),
        }))
    })
    .or_raise("read the table's columns")
}

/// Adds columns (`ADD COLUMN name type` clauses) to a table, as the caller.
pub fn add_columns(table_name: &str, additions: &[String]) {
    execute(
        &format!("ALTER TABLE {table_name} {}", additions.join(", ")),
        &[],
        "add the SLA columns",
    );
}

/// Installs pg_sla's triggers on a table (`qualified`: schema-qualified and
/// quoted).
pub fn create_triggers(qualified: &str, partitioned: bool) {
    let name = qualified;
    let mut ddl = vec![format!(
        "CREATE TRIGGER {ROW_TRIGGER} BEFORE INSERT OR UPDATE ON {name}
           FOR EACH ROW EXECUTE FUNCTION sla.ticket_row_changed()"
    )];
    ddl.extend(statement_triggers(name));
    ddl.push(format!(
        "CREATE TRIGGER {TRUNCATED_TRIGGER} AFTER TRUNCATE ON {name}
           FOR EACH STATEMENT EXECUTE FUNCTION sla.tickets_truncated()"
    ));
    if partitioned {
        // Tells the partitions' own BEFORE TRUNCATE triggers that the
        // whole table goes: its AFTER TRUNCATE trigger removes every clock.
        ddl.push(partition_truncated_trigger(name));
    }
    create_as_sla_owner(&ddl);
}

/// Installs pg_sla's statement triggers on a partition of a tracked
/// partitioned table (`qualified`: schema-qualified and quoted). Row
/// triggers of the partitioned table are cloned to its partitions by
/// PostgreSQL; statement triggers are not, and fire only for the table a
/// statement names, so a write that names the partition needs its own.
pub fn create_partition_triggers(qualified: &str) {
    let mut ddl = statement_triggers(qualified);
    ddl.push(partition_truncated_trigger(qualified));
    create_as_sla_owner(&ddl);
}

/// The statement triggers that give new tickets their clocks, take
/// deleted tickets' away and write updated tickets' changes (on a schema
/// older than 0.3.0, which a new library may run until updated, there is
/// no function for the last: the row trigger then writes them itself).
fn statement_triggers(name: &str) -> Vec<String> {
    let mut ddl = Vec::new();
    if has_updated_trigger_function() {
        ddl.push(updated_trigger(name));
    }
    ddl.extend([
        format!(
            "CREATE TRIGGER {INSERTED_TRIGGER} AFTER INSERT ON {name}
               REFERENCING NEW TABLE AS pg_sla_new_tickets
               FOR EACH STATEMENT EXECUTE FUNCTION sla.tickets_inserted()"
        ),
        format!(
            "CREATE TRIGGER {DELETED_TRIGGER} AFTER DELETE ON {name}
               REFERENCING OLD TABLE AS pg_sla_old_tickets
               FOR EACH STATEMENT EXECUTE FUNCTION sla.tickets_deleted()"
        ),
    ]);
    ddl
}

fn has_updated_trigger_function() -> bool {
    Spi::get_one::<bool>("SELECT pg_catalog.to_regprocedure('sla.tickets_updated()') IS NOT NULL")
        .or_raise("look for sla.tickets_updated()")
        .unwrap_or(false)
}

/// The trigger that writes, at the end of an UPDATE, the clock changes its
/// rows' triggers kept (`clocks::defer`).
pub fn updated_trigger(name: &str) -> String {
    format!(
        "CREATE TRIGGER {UPDATED_TRIGGER} AFTER UPDATE ON {name}
           FOR EACH STATEMENT EXECUTE FUNCTION sla.tickets_updated()"
    )
}

fn partition_truncated_trigger(name: &str) -> String {
    format!(
        "CREATE TRIGGER {PARTITION_TRUNCATED_TRIGGER} BEFORE TRUNCATE ON {name}
           FOR EACH STATEMENT EXECUTE FUNCTION sla.tickets_truncated()"
    )
}

fn create_as_sla_owner(ddl: &[String]) {
    as_sla_owner(|| {
        for statement in ddl {
            execute(statement, &[], "create pg_sla's triggers");
        }
    });
}

/// A table in a partition tree.
pub struct Partition {
    pub relid: pg_sys::Oid,
    /// Schema-qualified and quoted.
    pub qualified: String,
    /// Holds rows (not itself partitioned).
    pub leaf: bool,
    /// A foreign table: PostgreSQL gives foreign tables no transition
    /// tables, so pg_sla cannot see writes that name it.
    pub foreign: bool,
    /// Has pg_sla's partition triggers (known by their function, which
    /// only pg_sla may attach, not by their names).
    pub equipped: bool,
}

/// `subtree` and its partitions at every level, parents first.
pub fn partition_tree(subtree: pg_sys::Oid) -> Vec<Partition> {
    Spi::connect(|client| {
        let rows = client.select(
            &format!(
                "SELECT c.oid, pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'
                            OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname),
                        p.isleaf, c.relkind OPERATOR(pg_catalog.=) 'f',
                        EXISTS (SELECT FROM pg_catalog.pg_trigger g
                                 WHERE g.tgrelid OPERATOR(pg_catalog.=) p.relid
                                   AND g.tgname OPERATOR(pg_catalog.=) '{PARTITION_TRUNCATED_TRIGGER}'
                                   AND g.tgfoid OPERATOR(pg_catalog.=)
                                       pg_catalog.to_regprocedure('sla.tickets_truncated()'))
                   FROM (SELECT t.relid, t.isleaf, t.level FROM pg_catalog.pg_partition_tree($1) t
                         -- A plain table (a partition just detached) has
                         -- no tree: it is its own.
                         UNION ALL
                         SELECT $1, true, 0
                          WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_partition_tree($1))) p
                   JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) p.relid
                   JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
                  ORDER BY p.level, c.oid"
            ),
            None,
            &[subtree.into()],
        )?;
        let mut found = Vec::new();
        for row in rows {
            if let (Some(relid), Some(qualified)) = (row.get(1)?, row.get(2)?) {
                found.push(Partition {
                    relid,
                    qualified,
                    leaf: row.get::<bool>(3)?.unwrap_or(true),
                    foreign: row.get::<bool>(4)?.unwrap_or(false),
                    equipped: row.get::<bool>(5)?.unwrap_or(false),
                });
            }
        }
        Ok::<_, pgrx::spi::Error>(found)
    })
    .or_raise("read the partitions of a table")
}

/// The partitioned tables `relid` is a partition of, nearest first.
pub fn partition_ancestors(relid: pg_sys::Oid) -> Vec<pg_sys::Oid> {
    Spi::connect(|client| {
        let mut found = Vec::new();
        for row in client.select(
            "SELECT a.relid FROM pg_catalog.pg_partition_ancestors($1) WITH ORDINALITY AS a(relid, i)
              WHERE a.relid OPERATOR(pg_catalog.<>) $1 ORDER BY a.i",
            None,
            &[relid.into()],
        )? {
            if let Some(ancestor) = row.get::<pg_sys::Oid>(1)? {
                found.push(ancestor);
            }
        }
        Ok::<_, pgrx::spi::Error>(found)
    })
    .or_raise("find the partitioned tables of a partition")
}

/// For a partition: its partitioned table, and whether `role` may drop it
/// (as the owner of the table or of its schema). `None` when the table is
/// gone or not a partition.
pub fn parent_and_droppable(relid: pg_sys::Oid, role: pg_sys::Oid) -> Option<(pg_sys::Oid, bool)> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT i.inhparent,
                    pg_catalog.pg_has_role($2, c.relowner, 'USAGE')
                        OR pg_catalog.pg_has_role($2, n.nspowner, 'USAGE')
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
               JOIN pg_catalog.pg_inherits i ON i.inhrelid OPERATOR(pg_catalog.=) c.oid
              WHERE c.oid OPERATOR(pg_catalog.=) $1 AND c.relispartition",
            Some(1),
            &[relid.into(), role.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let row = rows.first();
        Ok(row
            .get::<pg_sys::Oid>(1)?
            .map(|parent| (parent, row.get::<bool>(2).ok().flatten().unwrap_or(false))))
    })
    .or_raise("read the table's partitioned table")
}

/// Installs pg_sla's triggers on a messages table (`qualified`:
/// schema-qualified and quoted).
pub fn create_message_triggers(qualified: &str) {
    let name = qualified;
    let ddl = [
        format!(
            "CREATE TRIGGER {MESSAGES_INSERTED_TRIGGER} AFTER INSERT ON {name}
               REFERENCING NEW TABLE AS pg_sla_new_messages
               FOR EACH STATEMENT EXECUTE FUNCTION sla.messages_written()"
        ),
        format!(
            "CREATE TRIGGER {MESSAGES_UPDATED_TRIGGER} AFTER UPDATE ON {name}
               REFERENCING NEW TABLE AS pg_sla_new_messages
               FOR EACH STATEMENT EXECUTE FUNCTION sla.messages_written()"
        ),
    ];
    create_as_sla_owner(&ddl);
}

/// Drops the triggers of pg_sla's that a ticket table has, as the caller.
pub fn drop_triggers(table: pg_sys::Oid, table_name: &str) {
    drop_named_triggers(table, table_name, &TICKET_TRIGGERS)
}

/// Drops pg_sla's statement triggers from a partition, or from a table
/// that was one, as the owner of pg_sla's tables (who created them): a
/// partition may belong to another role than the partitioned table.
pub fn drop_partition_triggers(table: pg_sys::Oid, table_name: &str) {
    as_sla_owner(|| {
        drop_named_triggers(
            table,
            table_name,
            &[
                INSERTED_TRIGGER,
                DELETED_TRIGGER,
                UPDATED_TRIGGER,
                PARTITION_TRUNCATED_TRIGGER,
            ],
        )
    });
}

/// Drops the triggers of pg_sla's that a messages table has, as the owner
/// of pg_sla's tables (who created them): the owner of the ticket table
/// may end the link without owning the messages table.
pub fn drop_message_triggers(table: pg_sys::Oid, table_name: &str) {
    as_sla_owner(|| drop_named_triggers(table, table_name, &MESSAGE_TRIGGERS));
}

fn drop_named_triggers(table: pg_sys::Oid, table_name: &str, trigger_names: &[&str]) {
    let existing = Spi::connect(|client| {
        let mut names = Vec::new();
        for row in client.select(
            "SELECT tgname::text FROM pg_catalog.pg_trigger
              WHERE tgrelid OPERATOR(pg_catalog.=) $1
                AND tgname OPERATOR(pg_catalog.=) ANY ($2::pg_catalog.name[])
                AND tgfoid OPERATOR(pg_catalog.=) ANY (ARRAY(
                    SELECT p.oid FROM pg_catalog.pg_proc p
                     WHERE p.pronamespace OPERATOR(pg_catalog.=) 'sla'::pg_catalog.regnamespace))",
            None,
            &[
                table.into(),
                trigger_names
                    .iter()
                    .map(|n: &&str| (*n).to_owned())
                    .collect::<Vec<_>>()
                    .into(),
            ],
        )? {
            if let Some(name) = row.get::<String>(1)? {
                names.push(name);
            }
        }
        Ok(names)
    })
    .or_raise("read the table's triggers");
    for trigger in existing {
        execute(
            &format!("DROP TRIGGER {trigger} ON {table_name}"),
            &[],
            "drop pg_sla's triggers",
        );
    }
}

/// Whether `zone` is a time zone name PostgreSQL knows (`pg_timezone_names`):
/// not an abbreviation, whose meaning depends on each session's
/// `timezone_abbreviations`.
pub fn is_time_zone_name(zone: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (SELECT FROM pg_catalog.pg_timezone_names
                         WHERE name OPERATOR(pg_catalog.=) $1)",
        &[zone.into()],
    )
    .or_raise("read the time zone names")
    .unwrap_or(false)
}
