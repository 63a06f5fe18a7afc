//! `sla.track` and `sla.untrack`: pointing pg_sla at a ticket table.
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use crate::catalog;
use crate::engine::{resync_tickets, RESYNC_CHUNK};
use crate::regclass::RegClass;
use crate::security::{as_sla_owner, current_user};
use crate::settings;
use crate::tickets::{SLA_BREACHED_AT, SLA_DUE_AT, SLA_POLICY, SLA_STATUS};
use crate::triggers::{DELETED_TRIGGER, INSERTED_TRIGGER, ROW_TRIGGER, TRUNCATED_TRIGGER};

struct TableInfo {
    /// The name as the caller would write it (for messages and the caller's
    /// own DDL).
    name: String,
    /// Schema-qualified and quoted, for DDL run with pg_sla's search_path.
    qualified: String,
    relkind: String,
    temporary: bool,
    /// A partition, or a parent or child in table inheritance.
    in_hierarchy: bool,
    owned_by_caller: bool,
}

fn table_info(table: pg_sys::Oid) -> TableInfo {
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
                        OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname)
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
        })
    })
    .unwrap_or_else(|e| pgrx::error!("pg_sla: {e}"))
}

fn require_owner(info: &TableInfo, action: &str) {
    if !info.owned_by_caller {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be owner of table {} to {action} it", info.name)
        );
    }
}

/// A required argument, or 22004 naming it.
fn required<T>(value: Option<T>, argument: &str) -> T {
    value.unwrap_or_else(|| {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{argument} must not be NULL")
        );
    })
}

/// Whether a single-column unique index without predicate covers `column`.
fn has_unique_key(table: pg_sys::Oid, column: &str) -> bool {
    Spi::get_one_with_args::<bool>(
        "SELECT EXISTS (
             SELECT FROM pg_catalog.pg_index i
               JOIN pg_catalog.pg_attribute a
                 ON a.attrelid OPERATOR(pg_catalog.=) i.indrelid
                AND a.attnum OPERATOR(pg_catalog.=) i.indkey[0]
              WHERE i.indrelid OPERATOR(pg_catalog.=) $1 AND i.indisunique AND i.indisvalid
                AND i.indnkeyatts OPERATOR(pg_catalog.=) 1
                AND i.indpred IS NULL AND i.indexprs IS NULL
                AND a.attname OPERATOR(pg_catalog.=) $2::name)",
        &[table.into(), column.into()],
    )
    .ok()
    .flatten()
    .unwrap_or(false)
}

/// A column's type as SQL and its catalog facts, or `None` when absent.
struct ColumnType {
    type_name: String,
    type_oid: pg_sys::Oid,
    is_enum: bool,
    not_null: bool,
}

fn column_type(table: pg_sys::Oid, column: &str) -> Option<ColumnType> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT pg_catalog.format_type(a.atttypid, a.atttypmod), a.atttypid,
                    t.typtype OPERATOR(pg_catalog.=) 'e', a.attnotnull
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
        }))
    })
    .unwrap_or_else(|e| pgrx::error!("pg_sla: {e}"))
}

/// Checks that a mapped column exists with an accepted type.
fn check_column(
    table: pg_sys::Oid,
    table_name: &str,
    argument: &str,
    column: &str,
    accepted: &[pg_sys::Oid],
    accept_enum: bool,
    expected: &str,
) -> ColumnType {
    let Some(found) = column_type(table, column) else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("{argument} \"{column}\" is not a column of table {table_name}"),
            format!("Add the column, or pass {argument} => the column that holds it.")
        );
    };
    let type_ok =
        accepted.is_empty() || accepted.contains(&found.type_oid) || (accept_enum && found.is_enum);
    if !type_ok {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
            format!(
                "{argument} \"{column}\" of table {table_name} has type {}; expected {expected}",
                found.type_name
            )
        );
    }
    found
}

/// Starts tracking SLAs on a ticket table: checks the mapping, adds the SLA
/// columns, installs the triggers and backfills clocks for existing rows.
/// Returns how many tickets it backfilled.
#[allow(clippy::too_many_arguments)]
#[pg_extern(volatile, parallel_unsafe)]
fn track(
    ticket_table: Option<RegClass>,
    id_column: default!(Option<&str>, "'id'"),
    created_at_column: default!(Option<&str>, "'created_at'"),
    status_column: default!(Option<&str>, "'status'"),
    closed_statuses: default!(Option<Vec<Option<String>>>, "'{solved,closed}'"),
    customer_message_at_column: default!(Option<&str>, "'last_customer_message_at'"),
    agent_reply_at_column: default!(Option<&str>, "'last_agent_reply_at'"),
    assignee_column: default!(Option<&str>, "NULL"),
) -> i64 {
    let ticket_table = required(ticket_table, "ticket_table").0;
    let id_column = required(id_column, "id_column");
    let created_at_column = required(created_at_column, "created_at_column");
    let status_column = required(status_column, "status_column");
    let closed_statuses = required(closed_statuses, "closed_statuses");
    let customer_message_at_column =
        required(customer_message_at_column, "customer_message_at_column");
    let agent_reply_at_column = required(agent_reply_at_column, "agent_reply_at_column");
    let info = table_info(ticket_table);
    require_owner(&info, "track");
    // Rows of a partitioned or inherited table live in several relations,
    // where row addresses and statement triggers do not add up.
    if info.relkind != "r" || info.in_hierarchy {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!(
                "{} is not a plain table; pg_sla tracks tables that are not partitioned, partitions or part of table inheritance",
                info.name
            )
        );
    }
    if info.temporary {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!(
                "{} is a temporary table; only permanent tables can be tracked",
                info.name
            )
        );
    }
    if closed_statuses.iter().any(Option::is_none) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            "closed_statuses must not contain NULL"
        );
    }
    let settings = settings::current();
    if settings.tracked.contains_key(&ticket_table) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("table {} is already tracked", info.name),
            "Call sla.untrack() first to change its mapping."
        );
    }

    let name = info.name.as_str();
    use pg_sys::BuiltinOid::*;
    let timestamptz = [TIMESTAMPTZOID.value()];
    check_column(
        ticket_table,
        name,
        "id_column",
        id_column,
        &[
            INT2OID.value(),
            INT4OID.value(),
            INT8OID.value(),
            TEXTOID.value(),
            VARCHAROID.value(),
            UUIDOID.value(),
        ],
        false,
        "integer, bigint, uuid or text",
    );
    if !has_unique_key(ticket_table, id_column) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_COLUMN_REFERENCE,
            format!("id_column \"{id_column}\" of table {name} has no primary key or unique index"),
            "pg_sla finds tickets by this column: give it a primary key or a unique index of its own."
        );
    }
    let timestamp = |argument: &str, column: &str| {
        check_column(
            ticket_table,
            name,
            argument,
            column,
            &timestamptz,
            false,
            "timestamp with time zone",
        );
    };
    timestamp("created_at_column", created_at_column);
    check_column(
        ticket_table,
        name,
        "status_column",
        status_column,
        &[TEXTOID.value(), VARCHAROID.value()],
        true,
        "text, varchar or an enum",
    );
    timestamp("customer_message_at_column", customer_message_at_column);
    timestamp("agent_reply_at_column", agent_reply_at_column);
    if let Some(assignee) = assignee_column {
        let found = check_column(
            ticket_table,
            name,
            "assignee_column",
            assignee,
            &[],
            false,
            "",
        );
        if found.not_null {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                format!("assignee_column \"{assignee}\" of table {name} is NOT NULL; releasing ownership sets it to NULL")
            );
        }
    }
    // The SLA columns, added when absent; existing ones must fit.
    let sla_columns = [
        (SLA_POLICY, TEXTOID.value(), "text"),
        (SLA_STATUS, TEXTOID.value(), "text"),
        (SLA_DUE_AT, TIMESTAMPTZOID.value(), "timestamptz"),
        (SLA_BREACHED_AT, TIMESTAMPTZOID.value(), "timestamptz"),
    ];
    let mut additions = Vec::new();
    for (column, type_oid, type_sql) in sla_columns {
        match column_type(ticket_table, column) {
            Some(found) if found.type_oid != type_oid => {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                    format!(
                        "column \"{column}\" of table {name} has type {}; pg_sla needs {type_sql}",
                        found.type_name
                    )
                );
            }
            Some(found) if found.not_null => {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("column \"{column}\" of table {name} must allow NULL")
                );
            }
            Some(_) => {}
            None => additions.push(format!("ADD COLUMN {column} {type_sql}")),
        }
    }

    let closed: Vec<String> = closed_statuses.into_iter().flatten().collect();
    // DDL runs as the caller, who owns the table.
    // The columns are added by the caller, who owns the table; the triggers
    // by the owner of pg_sla's tables, the only role that may execute their
    // functions (so that nobody attaches them elsewhere).
    if !additions.is_empty() {
        Spi::run(&format!("ALTER TABLE {name} {}", additions.join(", ")))
            .unwrap_or_else(|e| pgrx::error!("pg_sla: {e}"));
    }
    let name = info.qualified.as_str();
    let mut ddl = Vec::new();
    ddl.push(format!(
        "CREATE TRIGGER {ROW_TRIGGER} BEFORE INSERT OR UPDATE ON {name}
           FOR EACH ROW EXECUTE FUNCTION sla.ticket_row_changed()"
    ));
    ddl.push(format!(
        "CREATE TRIGGER {INSERTED_TRIGGER} AFTER INSERT ON {name}
           REFERENCING NEW TABLE AS pg_sla_new_tickets
           FOR EACH STATEMENT EXECUTE FUNCTION sla.tickets_inserted()"
    ));
    ddl.push(format!(
        "CREATE TRIGGER {DELETED_TRIGGER} AFTER DELETE ON {name}
           REFERENCING OLD TABLE AS pg_sla_old_tickets
           FOR EACH STATEMENT EXECUTE FUNCTION sla.tickets_deleted()"
    ));
    ddl.push(format!(
        "CREATE TRIGGER {TRUNCATED_TRIGGER} AFTER TRUNCATE ON {name}
           FOR EACH STATEMENT EXECUTE FUNCTION sla.tickets_truncated()"
    ));
    as_sla_owner(|| {
        Spi::connect_mut(|client| {
            for statement in &ddl {
                client.update(statement, None, &[])?;
            }
            Ok::<_, pgrx::spi::Error>(())
        })
    })
    .unwrap_or_else(|e| pgrx::error!("pg_sla: {e}"));

    as_sla_owner(|| {
        Spi::run_with_args(
            "INSERT INTO sla.tracked_tables (ticket_table, id_column, created_at_column,
                 status_column, closed_statuses, customer_message_at_column,
                 agent_reply_at_column, assignee_column)
             VALUES ($1::oid::regclass, $2, $3, $4, $5, $6, $7, $8)",
            &[
                ticket_table.into(),
                id_column.into(),
                created_at_column.into(),
                status_column.into(),
                closed.into(),
                customer_message_at_column.into(),
                agent_reply_at_column.into(),
                assignee_column.into(),
            ],
        )
    })
    .unwrap_or_else(|e| pgrx::error!("pg_sla: {e}"));
    unsafe { pg_sys::CommandCounterIncrement() };

    backfill(ticket_table)
}

/// Creates clocks for the rows a table already has, in batches.
fn backfill(ticket_table: pg_sys::Oid) -> i64 {
    let settings = settings::current();
    let Some(table) = settings.tracked.get(&ticket_table).cloned() else {
        pgrx::error!("pg_sla: the table just tracked is missing from sla.tracked_tables");
    };
    let ids = catalog::all_tickets(&table);
    // Clocks left from an earlier tracking of tickets deleted meanwhile.
    as_sla_owner(|| {
        Spi::run_with_args(
            "DELETE FROM sla.clocks WHERE ticket_table = $1::oid::regclass AND ticket_id <> ALL($2)",
            &[ticket_table.into(), ids.clone().into()],
        )
    })
    .unwrap_or_else(|e| pgrx::error!("pg_sla: {e}"));
    let mut seen = 0;
    for batch in ids.chunks(RESYNC_CHUNK) {
        seen += resync_tickets(&table, batch);
    }
    seen
}

/// Stops tracking a table: removes pg_sla's triggers and leaves the rows,
/// their SLA columns and their clocks alone. Its clocks no longer advance.
#[pg_extern(volatile, parallel_unsafe)]
fn untrack(ticket_table: Option<RegClass>) {
    let ticket_table = required(ticket_table, "ticket_table").0;
    let info = table_info(ticket_table);
    require_owner(&info, "untrack");
    let settings = settings::current();
    if !settings.tracked.contains_key(&ticket_table) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("table {} is not tracked", info.name)
        );
    }
    let name = info.name.as_str();
    Spi::connect_mut(|client| {
        for trigger in [
            ROW_TRIGGER,
            INSERTED_TRIGGER,
            DELETED_TRIGGER,
            TRUNCATED_TRIGGER,
        ] {
            client.update(
                &format!("DROP TRIGGER IF EXISTS {trigger} ON {name}"),
                None,
                &[],
            )?;
        }
        Ok::<_, pgrx::spi::Error>(())
    })
    .unwrap_or_else(|e| pgrx::error!("pg_sla: {e}"));
    as_sla_owner(|| {
        Spi::run_with_args(
            "DELETE FROM sla.tracked_tables WHERE ticket_table = $1::oid::regclass",
            &[ticket_table.into()],
        )?;
        // Nothing will process them: keep them out of the due index.
        Spi::run_with_args(
            "UPDATE sla.clocks SET next_transition_at = NULL
              WHERE ticket_table = $1::oid::regclass AND next_transition_at IS NOT NULL",
            &[ticket_table.into()],
        )
    })
    .unwrap_or_else(|e| pgrx::error!("pg_sla: {e}"));
}
