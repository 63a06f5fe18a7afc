//! Tracked ticket tables (`sla.tracked_tables`) and how their columns map,
//! read and written as the owner of pg_sla's tables.
use pgrx::prelude::*;

use super::spi::execute;
use crate::errors::SpiResultExt;
use crate::identity::as_sla_owner;

/// A tracked ticket table and how its columns map.
pub struct TicketTable {
    pub relid: pg_sys::Oid,
    /// The table's name, qualified and quoted, for dynamic SQL.
    pub name: String,
    /// A partitioned table: its tickets are in its partitions.
    pub partitioned: bool,
    /// A unique index on the id column alone makes ids unique; a
    /// partitioned table's unique key may also hold its partition key.
    pub id_unique: bool,
    pub owner: pg_sys::Oid,
    pub id_column: String,
    /// The id column's type as SQL, to cast text ids back for index lookups.
    pub id_type: String,
    pub created_at_column: String,
    pub status_column: String,
    pub closed_statuses: Vec<String>,
    /// The two time columns of replies and customer messages, or, instead,
    /// `waiting_since_column`.
    pub customer_message_at_column: Option<String>,
    pub agent_reply_at_column: Option<String>,
    /// When the customer started waiting; cleared by a reply.
    pub waiting_since_column: Option<String>,
    /// `sla.track` added the `sla_*` columns (not with `add_columns =>
    /// false`).
    pub sla_columns: bool,
    pub assignee_column: Option<String>,
    /// The assignee column's type as SQL, to cast `unassigned_value` to.
    pub assignee_type: Option<String>,
    /// The zone `timestamp without time zone` columns are read in (NULL:
    /// UTC).
    pub timestamp_zone: Option<String>,
    /// What releasing ownership writes into the assignee column, as text
    /// (NULL: NULL).
    pub unassigned_value: Option<String>,
}

impl TicketTable {
    /// The relation to read and write tickets from in a FROM clause: the
    /// table only (`ONLY`, no inheritance children that are not
    /// tickets), or a partitioned table with all its partitions.
    pub fn rows(&self) -> String {
        if self.partitioned {
            self.name.clone()
        } else {
            format!("ONLY {}", self.name)
        }
    }

    pub fn is_closed(&self, status: Option<&str>) -> bool {
        status.is_some_and(|s| self.closed_statuses.iter().any(|c| c == s))
    }
}

/// Every tracked table, with the OID of `sla.tracked_tables` (for cache
/// invalidation) when there is a row.
pub fn read_all() -> (Vec<TicketTable>, Option<pg_sys::Oid>) {
    as_sla_owner(|| {
        Spi::connect(|client| {
            let rows = client.select(
                "SELECT t.ticket_table::oid, t.ticket_table::text, c.relowner,
                        t.id_column::text, pg_catalog.format_type(a.atttypid, a.atttypmod),
                        t.created_at_column::text, t.status_column::text, t.closed_statuses,
                        t.customer_message_at_column::text, t.agent_reply_at_column::text,
                        t.assignee_column::text, t.tableoid,
                        pg_catalog.format_type(o.atttypid, o.atttypmod),
                        -- Through jsonb: a schema older than 0.3.0, which a
                        -- new library may run until updated, has neither.
                        pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.->>) 'timestamp_zone',
                        pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.->>) 'unassigned_value',
                        pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.->>) 'waiting_since_column',
                        pg_catalog.to_jsonb(t) OPERATOR(pg_catalog.->>) 'sla_columns',
                        c.relkind OPERATOR(pg_catalog.=) 'p',
                        EXISTS (SELECT FROM pg_catalog.pg_index i
                                 WHERE i.indrelid OPERATOR(pg_catalog.=) t.ticket_table
                                   AND i.indisunique AND i.indnkeyatts OPERATOR(pg_catalog.=) 1
                                   AND i.indkey[0] OPERATOR(pg_catalog.=) a.attnum
                                   AND i.indpred IS NULL AND i.indexprs IS NULL)
                   FROM sla.tracked_tables t
                   JOIN pg_catalog.pg_class c ON c.oid OPERATOR(pg_catalog.=) t.ticket_table
                   LEFT JOIN pg_catalog.pg_attribute a
                          ON a.attrelid OPERATOR(pg_catalog.=) t.ticket_table
                         AND a.attname OPERATOR(pg_catalog.=) t.id_column
                         AND NOT a.attisdropped
                   LEFT JOIN pg_catalog.pg_attribute o
                          ON o.attrelid OPERATOR(pg_catalog.=) t.ticket_table
                         AND o.attname OPERATOR(pg_catalog.=) t.assignee_column
                         AND NOT o.attisdropped",
                None,
                &[],
            )?;
            let mut tables = Vec::new();
            let mut table_oid = None;
            for row in rows {
                let text = |i: usize| -> Result<String, pgrx::spi::Error> {
                    Ok(row.get::<String>(i)?.unwrap_or_default())
                };
                tables.push(TicketTable {
                    relid: row.get(1)?.unwrap_or(pg_sys::InvalidOid),
                    name: text(2)?,
                    partitioned: row.get::<bool>(18)?.unwrap_or(false),
                    id_unique: row.get::<bool>(19)?.unwrap_or(true),
                    owner: row.get(3)?.unwrap_or(pg_sys::InvalidOid),
                    id_column: text(4)?,
                    id_type: text(5)?,
                    created_at_column: text(6)?,
                    status_column: text(7)?,
                    closed_statuses: row
                        .get::<Vec<Option<String>>>(8)?
                        .unwrap_or_default()
                        .into_iter()
                        .flatten()
                        .collect(),
                    customer_message_at_column: row.get(9)?,
                    agent_reply_at_column: row.get(10)?,
                    waiting_since_column: row.get(16)?,
                    sla_columns: row.get::<String>(17)?.is_none_or(|v| v == "true"),
                    assignee_column: row.get(11)?,
                    assignee_type: row.get(13)?,
                    timestamp_zone: row.get(14)?,
                    unassigned_value: row.get(15)?,
                });
                table_oid = row.get::<pg_sys::Oid>(12)?;
            }
            Ok((tables, table_oid))
        })
        .or_raise("read sla.tracked_tables")
    })
}

/// A table's mapping as `sla.track` records it.
pub struct Mapping<'a> {
    pub id_column: &'a str,
    pub created_at_column: &'a str,
    pub status_column: &'a str,
    pub closed_statuses: Vec<String>,
    pub customer_message_at_column: Option<&'a str>,
    pub agent_reply_at_column: Option<&'a str>,
    pub waiting_since_column: Option<&'a str>,
    pub sla_columns: bool,
    pub assignee_column: Option<&'a str>,
    pub timestamp_zone: Option<&'a str>,
    pub unassigned_value: Option<&'a str>,
}

pub fn insert(relid: pg_sys::Oid, mapping: Mapping) {
    // Without the 0.3.0 settings, the columns every version has: a schema
    // older than 0.3.0 (a new library before the update) lacks the others.
    let newer = mapping.timestamp_zone.is_some()
        || mapping.unassigned_value.is_some()
        || mapping.waiting_since_column.is_some()
        || !mapping.sla_columns;
    let query = if newer {
        "INSERT INTO sla.tracked_tables (ticket_table, id_column, created_at_column,
             status_column, closed_statuses, customer_message_at_column,
             agent_reply_at_column, assignee_column, timestamp_zone, unassigned_value,
             waiting_since_column, sla_columns)
         VALUES ($1::oid::regclass, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
    } else {
        "INSERT INTO sla.tracked_tables (ticket_table, id_column, created_at_column,
             status_column, closed_statuses, customer_message_at_column,
             agent_reply_at_column, assignee_column)
         VALUES ($1::oid::regclass, $2, $3, $4, $5, $6, $7, $8)"
    };
    let mut args: Vec<pgrx::datum::DatumWithOid> = vec![
        relid.into(),
        mapping.id_column.into(),
        mapping.created_at_column.into(),
        mapping.status_column.into(),
        mapping.closed_statuses.into(),
        mapping.customer_message_at_column.into(),
        mapping.agent_reply_at_column.into(),
        mapping.assignee_column.into(),
    ];
    if newer {
        args.push(mapping.timestamp_zone.into());
        args.push(mapping.unassigned_value.into());
        args.push(mapping.waiting_since_column.into());
        args.push(mapping.sla_columns.into());
    }
    as_sla_owner(|| execute(query, &args, "record the tracked table"))
}

pub fn delete(relid: pg_sys::Oid) {
    as_sla_owner(|| {
        execute(
            "DELETE FROM sla.tracked_tables WHERE ticket_table = $1::oid::regclass",
            &[relid.into()],
            "forget the tracked table",
        )
    })
}
