//! Tracked messages tables (`sla.tracked_messages`) and messages that
//! arrived before their ticket (`sla.early_messages`), read and written as
//! the owner of pg_sla's tables.
use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::prelude::*;
use sla_core::Micros;

use super::spi::{execute, owned_by, sla_relation};
use super::tracked_tables::TicketTable;
use crate::convert::{finite_instant, timestamptz};
use crate::errors::SpiResultExt;
use crate::identity::as_sla_owner;

/// A tracked messages table: which ticket table its rows belong to, and
/// how its columns map.
pub struct MessagesTable {
    pub relid: pg_sys::Oid,
    /// The table's name, qualified and quoted, for messages.
    pub name: String,
    pub ticket_table: pg_sys::Oid,
    pub ticket_column: String,
    pub created_at_column: String,
    /// The conditions as written (jsonb text).
    pub customer_message: String,
    pub agent_reply: String,
}

/// Every tracked messages table, with the OID of `sla.tracked_messages`
/// (for cache invalidation), `None` on a schema older than 0.3.0.
pub fn read_all() -> (Vec<MessagesTable>, Option<pg_sys::Oid>) {
    as_sla_owner(|| {
        let table_oid = sla_relation(c"tracked_messages");
        if table_oid.is_none() {
            return (Vec::new(), None);
        }
        Spi::connect(|client| {
            let rows = client.select(
                "SELECT messages_table::oid, messages_table::text, ticket_table::oid,
                        ticket_column::text, created_at_column::text,
                        customer_message::text, agent_reply::text
                   FROM sla.tracked_messages",
                None,
                &[],
            )?;
            let mut tables = Vec::new();
            for row in rows {
                let text = |i: usize| -> Result<String, pgrx::spi::Error> {
                    Ok(row.get::<String>(i)?.unwrap_or_default())
                };
                tables.push(MessagesTable {
                    relid: row.get(1)?.unwrap_or(pg_sys::InvalidOid),
                    name: text(2)?,
                    ticket_table: row.get(3)?.unwrap_or(pg_sys::InvalidOid),
                    ticket_column: text(4)?,
                    created_at_column: text(5)?,
                    customer_message: text(6)?,
                    agent_reply: text(7)?,
                });
            }
            Ok((tables, table_oid))
        })
        .or_raise("read sla.tracked_messages")
    })
}

/// Records a messages table as `sla.track_messages` checked it.
pub fn insert(table: &MessagesTable) {
    let args: Vec<DatumWithOid> = vec![
        table.relid.into(),
        table.ticket_table.into(),
        table.ticket_column.as_str().into(),
        table.created_at_column.as_str().into(),
        table.customer_message.as_str().into(),
        table.agent_reply.as_str().into(),
    ];
    as_sla_owner(|| {
        execute(
            "INSERT INTO sla.tracked_messages (messages_table, ticket_table, ticket_column,
                 created_at_column, customer_message, agent_reply)
             VALUES ($1::oid::regclass, $2::oid::regclass, $3, $4, $5::jsonb, $6::jsonb)",
            &args,
            "record the tracked messages table",
        )
    })
}

/// Forgets a messages table, and the early messages of its ticket table
/// when no other messages table feeds it.
pub fn delete(relid: pg_sys::Oid) {
    as_sla_owner(|| {
        execute(
            "WITH gone AS (DELETE FROM sla.tracked_messages
                            WHERE messages_table = $1::oid::regclass
                        RETURNING ticket_table)
             DELETE FROM sla.early_messages e USING gone
              WHERE e.ticket_table = gone.ticket_table
                AND NOT EXISTS (SELECT FROM sla.tracked_messages m
                                 WHERE m.ticket_table = gone.ticket_table
                                   AND m.messages_table <> $1::oid::regclass)",
            &[relid.into()],
            "forget the tracked messages table",
        )
    })
}

/// A message whose ticket could not be found, kept until it is inserted.
pub struct EarlyMessage {
    pub ticket_id: String,
    pub sent_at: Micros,
    pub from_customer: bool,
}

/// Keeps messages whose tickets do not exist (yet).
pub fn keep_early(table: &TicketTable, messages: Vec<EarlyMessage>) {
    if messages.is_empty() {
        return;
    }
    let mut ids = Vec::with_capacity(messages.len());
    let mut sent = Vec::with_capacity(messages.len());
    let mut from_customer = Vec::with_capacity(messages.len());
    for m in messages {
        ids.push(m.ticket_id);
        sent.push(timestamptz(m.sent_at));
        from_customer.push(m.from_customer);
    }
    let args: Vec<DatumWithOid> = vec![
        table.relid.into(),
        ids.into(),
        sent.into(),
        from_customer.into(),
    ];
    as_sla_owner(|| {
        execute(
            "INSERT INTO sla.early_messages (ticket_table, ticket_id, sent_at, from_customer)
             SELECT $1::oid::regclass, m.id, m.sent, m.customer
               FROM unnest($2::text[], $3::timestamptz[], $4::bool[]) AS m(id, sent, customer)
             ON CONFLICT DO NOTHING",
            &args,
            "keep messages that arrived before their ticket",
        )
    })
}

/// Takes (deletes and returns) the early messages of these tickets.
pub fn take_early(table: &TicketTable, ticket_ids: &[String]) -> Vec<EarlyMessage> {
    as_sla_owner(|| {
        Spi::connect_mut(|client| {
            let rows = client.update(
                "DELETE FROM sla.early_messages
                  WHERE ticket_table = $1::oid::regclass AND ticket_id = ANY ($2::text[])
                 RETURNING ticket_id, sent_at, from_customer",
                None,
                &[table.relid.into(), ticket_ids.to_vec().into()],
            )?;
            let mut messages = Vec::new();
            for row in rows {
                let Some(sent_at) = row
                    .get::<TimestampWithTimeZone>(2)?
                    .and_then(finite_instant)
                else {
                    continue;
                };
                messages.push(EarlyMessage {
                    ticket_id: row.get::<String>(1)?.unwrap_or_default(),
                    sent_at,
                    from_customer: row.get::<bool>(3)?.unwrap_or(false),
                });
            }
            Ok(messages)
        })
        .or_raise("take early messages")
    })
}

/// A row of a messages table as read by `all_messages`: the ticket's id,
/// when it was sent, and the printed values of the condition columns asked
/// for.
pub type MessageRow = (String, Option<Micros>, Vec<Option<String>>);

/// Every row of a messages table (`qualified`), read as the caller, who
/// owns it. `sent_at` is an SQL expression over alias `m` giving a
/// timestamptz.
pub fn all_messages(
    qualified: &str,
    ticket_column: &str,
    sent_at: &str,
    columns: &[String],
) -> Vec<MessageRow> {
    let printed: Vec<String> = columns
        .iter()
        .map(|c| {
            let c = crate::sql_text::quote_identifier(c);
            format!(", CASE WHEN m.{c} IS NULL THEN NULL ELSE pg_catalog.format('%s', m.{c}) END")
        })
        .collect();
    let query = format!(
        "SELECT m.{ticket}::pg_catalog.text, {sent_at}{printed} FROM ONLY {qualified} m
          WHERE m.{ticket} IS NOT NULL",
        ticket = crate::sql_text::quote_identifier(ticket_column),
        printed = printed.concat(),
    );
    Spi::connect(|client| {
        let mut messages = Vec::new();
        for row in client.select(&query, None, &[])? {
            let mut values = Vec::with_capacity(columns.len());
            for i in 0..columns.len() {
                values.push(row.get::<String>(i + 3)?);
            }
            messages.push((
                row.get::<String>(1)?.unwrap_or_default(),
                row.get::<TimestampWithTimeZone>(2)?
                    .and_then(finite_instant),
                values,
            ));
        }
        Ok(messages)
    })
    .or_raise("read the messages table")
}

/// Tickets with early messages, as (table, id), up to `limit` after
/// `after` in (table, id) order (so that ids that never appear cannot keep
/// the others waiting), leaving out
/// `skipped_tables` and, with `owned_by`, the tables that role does not
/// own. Empty on a schema older than 0.3.0.
pub fn early_tickets(
    limit: i32,
    skipped_tables: &[pg_sys::Oid],
    owned_by: Option<pg_sys::Oid>,
    after: Option<(pg_sys::Oid, String)>,
) -> Vec<(pg_sys::Oid, String)> {
    let (after_table, after_id) = match after {
        Some((table, id)) => (Some(table), Some(id)),
        None => (None, None),
    };
    if sla_relation(c"early_messages").is_none() {
        return Vec::new();
    }
    as_sla_owner(|| {
        Spi::connect_mut(|client| {
            let rows = super::kept_plans::run_kept(
                client,
                concat!(
                    r#"SELECT DISTINCT ticket_table::oid, ticket_id FROM sla.early_messages
                  WHERE ticket_table::oid <> ALL ($2::oid[])
                    AND "#,
                    owned_by!(3),
                    r#"
                    AND ($4::oid IS NULL OR (ticket_table::oid, ticket_id) > ($4::oid, $5::text))
                  ORDER BY 1, 2 LIMIT $1"#
                ),
                &[
                    limit.into(),
                    skipped_tables.to_vec().into(),
                    owned_by.into(),
                    after_table.into(),
                    after_id.into(),
                ],
            )?;
            let mut tickets = Vec::new();
            for row in rows {
                tickets.push((
                    row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                    row.get::<String>(2)?.unwrap_or_default(),
                ));
            }
            Ok(tickets)
        })
        .or_raise("find early messages")
    })
}
