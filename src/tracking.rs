//! `sla.track` and `sla.untrack`: pointing pg_sla at a ticket table.
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;

use crate::configuration::{self, TrackedTable};
use crate::convert::{local_time_in_zone, printed_as_type, required};
use crate::partitions;
use crate::policy_fit;
use crate::recompute::{resync_tickets, RESYNC_CHUNK};
use crate::regclass::RegClass;
use crate::store::ticket_definitions::{
    self, column_type, has_unique_key, table_info, ColumnType, TableInfo,
};
use crate::store::tracked_tables::{self, Mapping};
use crate::store::{clocks, tickets};
use crate::ticket_columns::{Accepted, ID_TYPES, SLA_COLUMNS, STATUS_TYPES, TIME_TYPES};
use pgrx::pg_sys::BuiltinOid::TIMESTAMPOID;

fn require_owner(info: &TableInfo, action: &str) {
    if !info.owned_by_caller {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INSUFFICIENT_PRIVILEGE,
            format!("must be owner of table {} to {action} it", info.name)
        );
    }
}

/// Checks that a mapped column exists with an accepted type (`None`: any).
fn check_column(
    table: pg_sys::Oid,
    table_name: &str,
    argument: &str,
    column: &str,
    accepted: Option<&Accepted>,
) -> ColumnType {
    if SLA_COLUMNS.iter().any(|(name, _, _)| *name == column) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{argument} \"{column}\" is one of the columns pg_sla writes itself"),
            format!("Pass {argument} => the application's own column.")
        );
    }
    let Some(found) = column_type(table, column) else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
            format!("{argument} \"{column}\" is not a column of table {table_name}"),
            format!("Add the column, or pass {argument} => the column that holds it.")
        );
    };
    if found.generated {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
            format!("{argument} \"{column}\" of table {table_name} is a generated column"),
            "PostgreSQL computes generated columns after the BEFORE triggers that pg_sla reads tickets in, so pg_sla would read the value before the change. Map the column the generated one is computed from."
        );
    }
    if let Some(accepted) = accepted {
        if !accepted.accepts(found.type_oid, found.is_enum) {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                format!(
                    "{argument} \"{column}\" of table {table_name} has type {}; expected {}",
                    found.type_name, accepted.expected
                )
            );
        }
    }
    found
}

/// A value of a mapped column's type as it prints, or 22P02 naming the
/// argument, the value and the column.
fn printed_as_column(
    value: &str,
    column: &ColumnType,
    argument: &str,
    column_name: &str,
    table_name: &str,
) -> String {
    printed_as_type(value, column.type_oid, column.type_modifier).unwrap_or_else(|| {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
            format!(
                "{argument} value \"{value}\" is not a value of column \"{column_name}\" ({}) of table {table_name}",
                column.type_name
            ),
            "Write the values as the column's values print: '{4,5}' for an integer column."
        );
    })
}

/// `timestamp_zone` must be a zone PostgreSQL knows, and some mapped time
/// column must need it.
fn check_timestamp_zone(zone: &str, table_name: &str, needed: bool) {
    if !needed {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("timestamp_zone is for timestamp without time zone columns, and the time columns of table {table_name} are all timestamp with time zone"),
            "Leave timestamp_zone out."
        );
    }
    if !ticket_definitions::is_time_zone_name(zone) || local_time_in_zone_checked(zone).is_none() {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("timestamp_zone \"{zone}\" is not a time zone PostgreSQL knows"),
            "Use a name from pg_timezone_names, such as 'UTC' or 'Europe/Paris'."
        );
    }
}

/// Whether `AT TIME ZONE zone` works: the time in that zone at PostgreSQL's
/// epoch, or `None`.
fn local_time_in_zone_checked(zone: &str) -> Option<i64> {
    crate::subxact::attempt(|| local_time_in_zone(0, zone))
        .ok()
        .flatten()
}

/// Starts tracking SLAs on a ticket table: checks the mapping, adds the SLA
/// columns, installs the triggers and backfills clocks for existing rows.
/// Returns how many tickets it backfilled.
#[allow(clippy::too_many_arguments)]
#[pg_extern(name = "track", volatile, parallel_unsafe)]
fn track_table(
    ticket_table: Option<RegClass>,
    id_column: default!(Option<&str>, "'id'"),
    created_at_column: default!(Option<&str>, "'created_at'"),
    status_column: default!(Option<&str>, "'status'"),
    closed_statuses: default!(Option<Vec<Option<String>>>, "'{solved,closed}'"),
    customer_message_at_column: default!(Option<&str>, "'last_customer_message_at'"),
    agent_reply_at_column: default!(Option<&str>, "'last_agent_reply_at'"),
    assignee_column: default!(Option<&str>, "NULL"),
    timestamp_zone: default!(Option<&str>, "NULL"),
    unassigned_value: default!(Option<&str>, "NULL"),
    waiting_since_column: default!(Option<&str>, "NULL"),
    backfill: default!(Option<bool>, "true"),
    add_columns: default!(Option<bool>, "true"),
) -> i64 {
    let add_columns = required(add_columns, "add_columns");
    let backfill = required(backfill, "backfill");
    let ticket_table = required(ticket_table, "ticket_table").0;
    let id_column = required(id_column, "id_column");
    let created_at_column = required(created_at_column, "created_at_column");
    let status_column = required(status_column, "status_column");
    let closed_statuses = required(closed_statuses, "closed_statuses");
    // Replies and customer messages come from two time columns, or from a
    // "waiting since" column instead of both.
    if waiting_since_column.is_some()
        && (customer_message_at_column.is_some() || agent_reply_at_column.is_some())
    {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "waiting_since_column replaces customer_message_at_column and agent_reply_at_column",
            "Pass customer_message_at_column => NULL and agent_reply_at_column => NULL with it."
        );
    }
    // Both NULL without "waiting since": the replies will come from a
    // messages table (sla.track_messages).
    if customer_message_at_column.is_some() != agent_reply_at_column.is_some() {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            "customer_message_at_column and agent_reply_at_column go together: pass both columns, or both NULL",
            "With both NULL, replies come from waiting_since_column or from a messages table (sla.track_messages)."
        );
    }
    let info = table_info(ticket_table);
    require_owner(&info, "track");
    // A partitioned table is tracked as a whole, through the partitioned
    // table; the rows of an inherited table live in several relations
    // whose statement triggers do not add up.
    let partitioned = info.relkind == "p";
    if info.is_partition {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!("{} is a partition", info.name),
            "Track the partitioned table: its partitions, present and future, are tracked with it."
        );
    }
    if !(partitioned || info.relkind == "r" && !info.in_hierarchy) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_WRONG_OBJECT_TYPE,
            format!(
                "{} is not a table pg_sla can track; it tracks plain and partitioned tables, not views, foreign tables or tables in table inheritance",
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
    if configuration::current()
        .messages
        .contains_key(&ticket_table)
    {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("table {} is tracked as a messages table", info.name),
            "Call sla.untrack_messages() first to track it as a ticket table."
        );
    }
    if configuration::current().tracked.contains_key(&ticket_table) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_DUPLICATE_OBJECT,
            format!("table {} is already tracked", info.name),
            "Call sla.untrack() first to change its mapping."
        );
    }

    let name = info.name.as_str();
    check_column(ticket_table, name, "id_column", id_column, Some(&ID_TYPES));
    if partitioned && !has_unique_key(ticket_table, id_column, false) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_COLUMN_REFERENCE,
            format!("id_column \"{id_column}\" of partitioned table {name} does not lead a primary key or unique index"),
            "pg_sla finds tickets by this column in every partition: give the table a primary key or unique index whose first column it is, followed by the partition key (PRIMARY KEY (id, created_at))."
        );
    }
    if !partitioned && !has_unique_key(ticket_table, id_column, true) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_COLUMN_REFERENCE,
            format!("id_column \"{id_column}\" of table {name} has no primary key or unique index"),
            "pg_sla finds tickets by this column: give it a primary key or a unique index of its own."
        );
    }
    let timestamp = |argument: &str, column: &str| {
        check_column(ticket_table, name, argument, column, Some(&TIME_TYPES)).type_oid
            == TIMESTAMPOID.value()
    };
    let mut local_times = vec![timestamp("created_at_column", created_at_column)];
    let status = check_column(
        ticket_table,
        name,
        "status_column",
        status_column,
        Some(&STATUS_TYPES),
    );
    for (argument, column) in [
        ("customer_message_at_column", customer_message_at_column),
        ("agent_reply_at_column", agent_reply_at_column),
        ("waiting_since_column", waiting_since_column),
    ] {
        if let Some(column) = column {
            local_times.push(timestamp(argument, column));
        }
    }
    if let Some(zone) = timestamp_zone {
        check_timestamp_zone(zone, name, local_times.contains(&true));
    }
    // Statuses compare as the column's values print: each is read as the
    // column's type and kept as it prints ('true' as 't').
    let closed: Vec<String> = closed_statuses
        .into_iter()
        .flatten()
        .map(|value| printed_as_column(&value, &status, "closed_statuses", status_column, name))
        .collect();
    let unassigned_value = match assignee_column {
        Some(assignee) => {
            let found = check_column(ticket_table, name, "assignee_column", assignee, None);
            if found.not_null && unassigned_value.is_none() {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                    format!("assignee_column \"{assignee}\" of table {name} is NOT NULL; releasing ownership sets it to NULL"),
                    "Pass unassigned_value => the value that means nobody (for example '1'), which releasing ownership writes instead."
                );
            }
            unassigned_value
                .map(|value| printed_as_column(value, &found, "unassigned_value", assignee, name))
        }
        None if unassigned_value.is_some() => {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                "unassigned_value needs an assignee_column: it is what releasing ownership writes there"
            );
        }
        None => None,
    };
    // The SLA columns, added when absent; existing ones must fit. With
    // add_columns => false the table is left as it is.
    let mut additions = Vec::new();
    let sla_columns = if add_columns { &SLA_COLUMNS[..] } else { &[] };
    for &(column, accepted, type_sql) in sla_columns {
        match column_type(ticket_table, column) {
            Some(found) if found.generated => {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!("column \"{column}\" of table {name} is a generated column; pg_sla writes it")
                );
            }
            Some(found) if !accepted.accepts(found.type_oid, found.is_enum) => {
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
            None => additions.push(format!("ADD COLUMN {column} pg_catalog.{type_sql}")),
        }
    }

    if !additions.is_empty() {
        ticket_definitions::add_columns(name, &additions);
    }
    // pg_sla's triggers left from a copy of the table without its tracking
    // (pg_dump -t, a restore of some tables) make way for new ones.
    ticket_definitions::drop_triggers(ticket_table, &info.qualified);
    ticket_definitions::create_triggers(&info.qualified, partitioned);
    tracked_tables::insert(
        ticket_table,
        Mapping {
            id_column,
            created_at_column,
            status_column,
            closed_statuses: closed,
            customer_message_at_column,
            agent_reply_at_column,
            waiting_since_column,
            sla_columns: add_columns,
            assignee_column,
            timestamp_zone,
            unassigned_value: unassigned_value.as_deref(),
        },
    );
    unsafe { pg_sys::CommandCounterIncrement() };
    if partitioned {
        if let Some(table) = configuration::current().tracked(ticket_table) {
            // Their rows get clocks with the table's, below or by
            // sla.backfill().
            partitions::equip(&table, ticket_table, false);
        }
    }
    check_policies_fit(ticket_table);

    if !backfill {
        // The lock sla.track took is held until the caller commits: the
        // existing tickets get their clocks afterwards, batch by batch.
        pgrx::notice!(
            "pg_sla: table {name} is tracked; its existing tickets get their clocks with CALL sla.backfill('{}') after this transaction commits",
            info.name.replace('\'', "''")
        );
        return 0;
    }
    backfill_all(ticket_table)
}

/// Creates the clocks of up to `batch_size` existing tickets after
/// `after_id` (from the first when NULL), in id order, and returns how many
/// it found and the last id. Once none is left, it removes the clocks of
/// tickets that are gone. `CALL sla.backfill()` calls it batch after batch,
/// committing in between; calling it again is harmless.
#[pg_extern(volatile, parallel_unsafe)]
fn backfill_batch(
    ticket_table: Option<RegClass>,
    after_id: Option<&str>,
    batch_size: default!(Option<i32>, 5000),
) -> TableIterator<'static, (name!(tickets, i64), name!(last_id, Option<String>))> {
    let ticket_table = required(ticket_table, "ticket_table").0;
    let batch_size = required(batch_size, "batch_size");
    let info = table_info(ticket_table);
    require_owner(&info, "backfill");
    if batch_size < 1 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("batch_size must be at least 1, got {batch_size}")
        );
    }
    let Some(table) = configuration::current().tracked(ticket_table) else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("table {} is not tracked", info.name)
        );
    };
    let ids = tickets::ids_after(&table, after_id, batch_size);
    if ids.is_empty() {
        remove_stale_clocks(&table);
        return TableIterator::new(vec![(0, None)]);
    }
    resync_tickets(&table, &ids);
    TableIterator::new(vec![(ids.len() as i64, ids.last().cloned())])
}

/// Removes the clocks of tickets no longer in the table (left from an
/// earlier tracking of tickets deleted meanwhile).
fn remove_stale_clocks(table: &TrackedTable) {
    let mut after: Option<String> = None;
    loop {
        let ids = clocks::ticket_ids_after(table, after.as_deref(), RESYNC_CHUNK as i32);
        let Some(last) = ids.last().cloned() else {
            break;
        };
        let missing = tickets::missing(table, &ids);
        if !missing.is_empty() {
            clocks::delete_tickets(table, missing);
        }
        after = Some(last);
    }
}

/// Checks every policy that applies to a newly tracked table against its
/// columns (`policy_fit`): a policy restricted to it that cannot match is
/// refused, and the tracking with it.
fn check_policies_fit(ticket_table: pg_sys::Oid) {
    let configuration = configuration::current();
    let Some(table) = configuration.tracked(ticket_table) else {
        return;
    };
    let mut policies: Vec<&sla_core::policy::Policy> =
        configuration.by_name.values().map(|p| &**p).collect();
    policies.sort_by(|a, b| a.name.cmp(&b.name));
    policy_fit::check(&policies, &[&table]);
}

/// `sla.track` as schemas older than 0.3.0 declare it (C symbol
/// `track_wrapper`), for a new library running such a schema until
/// `ALTER EXTENSION pg_sla UPDATE`. Not part of the current schema.
#[allow(clippy::too_many_arguments)]
#[pg_extern(sql = false)]
fn track(
    ticket_table: Option<RegClass>,
    id_column: Option<&str>,
    created_at_column: Option<&str>,
    status_column: Option<&str>,
    closed_statuses: Option<Vec<Option<String>>>,
    customer_message_at_column: Option<&str>,
    agent_reply_at_column: Option<&str>,
    assignee_column: Option<&str>,
) -> i64 {
    track_table(
        ticket_table,
        id_column,
        created_at_column,
        status_column,
        closed_statuses,
        customer_message_at_column,
        agent_reply_at_column,
        assignee_column,
        None,
        None,
        None,
        Some(true),
        Some(true),
    )
}

/// Creates clocks for the rows a table already has, in batches.
fn backfill_all(ticket_table: pg_sys::Oid) -> i64 {
    let Some(table) = configuration::current().tracked(ticket_table) else {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INTERNAL_ERROR,
            "pg_sla: the table just tracked is missing from sla.tracked_tables"
        );
    };
    let ids = tickets::all_ids(&table);
    // Clocks left from an earlier tracking of tickets deleted meanwhile.
    clocks::delete_except(&table, &ids);
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
    if !configuration::current().tracked.contains_key(&ticket_table) {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_UNDEFINED_OBJECT,
            format!("table {} is not tracked", info.name)
        );
    }
    ticket_definitions::drop_triggers(ticket_table, &info.qualified);
    if info.relkind == "p" {
        partitions::unequip_partitions(ticket_table);
    }
    // Its messages tables go with it (their rows by cascade), and their
    // triggers (dropped as the owner of pg_sla's tables, who made them).
    for messages in configuration::current().messages.values() {
        if messages.table.ticket_table == ticket_table {
            let messages_info = table_info(messages.table.relid);
            ticket_definitions::drop_message_triggers(
                messages.table.relid,
                &messages_info.qualified,
            );
        }
    }
    tracked_tables::delete(ticket_table);
    // Nothing will process them: keep them out of the due index.
    clocks::unschedule_table(ticket_table, false);
}
