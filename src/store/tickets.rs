//! Users' ticket tables, read and written as each table's owner (never as
//! a superuser, never as whoever changed a ticket).
use std::collections::HashMap;

use pgrx::datum::{DatumWithOid, TimestampWithTimeZone};
use pgrx::prelude::*;
use sla_core::{ClockStatus, Micros, Summary};

use super::spi::text_column;
use super::tracked_tables::TicketTable;
use crate::convert::{finite_instant, timestamptz};
use crate::errors::SpiResultExt;
use crate::identity::run_as;
use crate::sql_text::{quote_identifier, quote_literal};

/// Where a ticket's row is: the relation that holds it (the table, or a
/// partition of a partitioned table) and its address there.
#[derive(Clone, Copy)]
pub struct RowAddress {
    pub relid: pg_sys::Oid,
    pub ctid: pg_sys::ItemPointerData,
}

impl RowAddress {
    /// From the first two columns of a row, `tableoid` and `ctid`.
    fn read(row: &pgrx::spi::SpiHeapTupleData) -> Result<Option<RowAddress>, pgrx::spi::Error> {
        Ok(
            match (
                row.get::<pg_sys::Oid>(1)?,
                row.get::<pg_sys::ItemPointerData>(2)?,
            ) {
                (Some(relid), Some(ctid)) => Some(RowAddress { relid, ctid }),
                _ => None,
            },
        )
    }
}

/// Locks the tickets with these ids that nobody else has locked, and
/// returns their addresses and ids. Never waits: a ticket an application is
/// changing now is left for the next round.
pub fn lock_free(table: &TicketTable, ids: Vec<String>) -> Vec<(RowAddress, String)> {
    let query = format!(
        "SELECT t.tableoid, t.ctid, t.{id}::text
           FROM unnest($1::text[]) AS u(id),
                LATERAL (SELECT t.tableoid, t.ctid, t.{id} FROM {table} t WHERE t.{id} = u.id::{ty} OFFSET 0) AS t
          FOR NO KEY UPDATE OF t SKIP LOCKED",
        id = quote_identifier(&table.id_column),
        table = table.rows(),
        ty = table.id_type,
    );
    run_as(table.owner, || {
        Spi::connect_mut(|client| {
            let rows = client.update(&query, None, &[ids.into()])?;
            let mut locked = Vec::new();
            for row in rows {
                if let Some(address) = RowAddress::read(&row)? {
                    locked.push((address, row.get::<String>(3)?.unwrap_or_default()));
                }
            }
            Ok(locked)
        })
        .or_raise("lock tickets")
    })
}

/// Tickets whose status is not closed (a policy edit may concern any).
pub fn open_ids(table: &TicketTable) -> Vec<String> {
    let query = format!(
        "SELECT t.{id}::text FROM {name} t
          WHERE t.{status} IS NULL OR NOT (pg_catalog.format('%s', t.{status}) = ANY($1))",
        id = quote_identifier(&table.id_column),
        status = quote_identifier(&table.status_column),
        name = table.rows(),
    );
    run_as(table.owner, || {
        text_column(
            &query,
            &[table.closed_statuses.clone().into()],
            "find open tickets",
        )
    })
}

/// Which of these ticket ids no longer exist in the table.
pub fn missing(table: &TicketTable, ids: &[String]) -> Vec<String> {
    missing_outside(table, ids, &[])
}

/// Every ticket id of a table.
pub fn all_ids(table: &TicketTable) -> Vec<String> {
    let query = format!(
        "SELECT t.{id}::text FROM {name} t",
        id = quote_identifier(&table.id_column),
        name = table.rows(),
    );
    run_as(table.owner, || text_column(&query, &[], "list tickets"))
}

/// Up to `limit` ticket ids after `after` (from the first when `None`), in
/// the order of the id column, read as the table's owner: one range scan
/// of its unique index.
pub fn ids_after(table: &TicketTable, after: Option<&str>, limit: i32) -> Vec<String> {
    let query = format!(
        "SELECT t.{id}::text FROM {name} t
          WHERE $1::text IS NULL OR t.{id} > $1::text::{ty}
          ORDER BY t.{id} LIMIT $2",
        id = quote_identifier(&table.id_column),
        name = table.rows(),
        ty = table.id_type,
    );
    run_as(table.owner, || {
        text_column(&query, &[after.into(), limit.into()], "list tickets")
    })
}

/// How many of these tickets each of `recipients` is assigned, by the
/// table's assignee column. Run as the table's owner.
pub fn count_by_assignee(
    table: &TicketTable,
    assignee_column: &str,
    ids: &[String],
    recipients: &[String],
) -> HashMap<String, i64> {
    let query = format!(
        "SELECT t.{assignee}::text, count(*) FROM unnest($1::text[]) AS u(id)
           JOIN {name} t ON t.{id} = u.id::{ty}
          WHERE t.{assignee}::text = ANY($2::text[])
          GROUP BY 1",
        assignee = quote_identifier(assignee_column),
        name = table.rows(),
        id = quote_identifier(&table.id_column),
        ty = table.id_type,
    );
    // Read-write SPI for a fresh snapshot, as in
    // `clocks::breached_open_tickets`.
    run_as(table.owner, || {
        Spi::connect_mut(|client| {
            let rows = client.update(
                &query,
                None,
                &[ids.to_vec().into(), recipients.to_vec().into()],
            )?;
            let mut counts = HashMap::new();
            for row in rows {
                if let (Some(recipient), Some(count)) = (row.get::<String>(1)?, row.get::<i64>(2)?)
                {
                    counts.insert(recipient, count);
                }
            }
            Ok(counts)
        })
        .or_raise("count tickets by assignee")
    })
}

/// New SLA columns for tickets, and whether to release their assignee.
#[derive(Default, Clone)]
pub struct TicketUpdates {
    relid: Vec<pg_sys::Oid>,
    ctid: Vec<pg_sys::ItemPointerData>,
    policy: Vec<Option<String>>,
    status: Vec<Option<&'static str>>,
    due_at: Vec<Option<TimestampWithTimeZone>>,
    breached_at: Vec<Option<TimestampWithTimeZone>>,
    release: Vec<bool>,
    /// A release retried later happens only if the assignee column still
    /// holds what it held then (as text): nobody reassigned the ticket.
    guarded: Vec<bool>,
    assignee_then: Vec<Option<String>>,
}

impl TicketUpdates {
    /// `address` is where the ticket's row is, which the caller holds
    /// locked.
    pub fn push(
        &mut self,
        address: RowAddress,
        policy: Option<&str>,
        summary: &Summary,
        release: bool,
    ) {
        self.relid.push(address.relid);
        self.ctid.push(address.ctid);
        self.policy.push(policy.map(str::to_owned));
        self.status.push(summary.status.map(ClockStatus::as_str));
        self.due_at.push(summary.due_at.map(timestamptz));
        self.breached_at.push(summary.breached_at.map(timestamptz));
        self.release.push(release);
        self.guarded.push(false);
        self.assignee_then.push(None);
    }

    /// Makes the release of the ticket pushed last happen only if its
    /// assignee column still holds `assignee_then` (as text, NULL for
    /// NULL).
    pub fn guard_last_release(&mut self, assignee_then: Option<String>) {
        if let (Some(guarded), Some(then)) =
            (self.guarded.last_mut(), self.assignee_then.last_mut())
        {
            *guarded = true;
            *then = assignee_then;
        }
    }

    /// The assignee column of each ticket, as text, in the order pushed
    /// (all NULL for a table without one).
    pub fn assignees(&self, table: &TicketTable) -> Vec<Option<String>> {
        let Some(column) = &table.assignee_column else {
            return vec![None; self.ctid.len()];
        };
        let query = format!(
            "SELECT u.i, t.{c}::text
               FROM unnest($1::tid[], $2::oid[]) WITH ORDINALITY AS u(ctid, relid, i)
               JOIN {name} t ON t.ctid = u.ctid AND t.tableoid = u.relid
              WHERE t.ctid = ANY($1)",
            c = quote_identifier(column),
            name = table.rows(),
        );
        let mut assignees = vec![None; self.ctid.len()];
        run_as(table.owner, || {
            Spi::connect(|client| {
                for row in client.select(
                    &query,
                    None,
                    &[self.ctid.clone().into(), self.relid.clone().into()],
                )? {
                    let i = row.get::<i64>(1)?.unwrap_or(0) as usize;
                    if let Some(slot) = i.checked_sub(1).and_then(|i| assignees.get_mut(i)) {
                        *slot = row.get::<String>(2)?;
                    }
                }
                Ok::<_, pgrx::spi::Error>(())
            })
            .or_raise("read the assignees of tickets")
        });
        assignees
    }

    /// Whether each ticket's assignee is released, in the order pushed.
    pub fn releases(&self) -> &[bool] {
        &self.release
    }

    /// Each ticket's update on its own, in the order pushed.
    pub fn split(self) -> Vec<TicketUpdates> {
        let mut singles = Vec::with_capacity(self.ctid.len());
        for i in 0..self.ctid.len() {
            singles.push(TicketUpdates {
                relid: vec![self.relid[i]],
                ctid: vec![self.ctid[i]],
                policy: vec![self.policy[i].clone()],
                status: vec![self.status[i]],
                due_at: vec![self.due_at[i]],
                breached_at: vec![self.breached_at[i]],
                release: vec![self.release[i]],
                guarded: vec![self.guarded[i]],
                assignee_then: vec![self.assignee_then[i].clone()],
            });
        }
        singles
    }

    /// Writes the SLA columns (and `sla_policy` when `set_policy`), and
    /// releases assignees. A table without SLA columns only has its
    /// releases written.
    pub fn write(self, table: &TicketTable, set_policy: bool) {
        if self.ctid.is_empty() || (!table.sla_columns && !self.release.iter().any(|r| *r)) {
            return;
        }
        // Releasing writes NULL, or the value that means nobody (cast from
        // text to the column's type).
        let release = match (&table.assignee_column, &table.unassigned_value) {
            (Some(column), unassigned) if self.release.iter().any(|r| *r) => format!(
                ", {c} = CASE WHEN u.release AND (NOT u.guarded
                                OR t.{c}::text IS NOT DISTINCT FROM u.assignee_then)
                         THEN {nobody} ELSE t.{c} END",
                c = quote_identifier(column),
                nobody = match (unassigned, &table.assignee_type) {
                    (Some(value), Some(ty)) => format!("CAST({} AS {ty})", quote_literal(value)),
                    _ => "NULL".to_owned(),
                }
            ),
            _ => String::new(),
        };
        let policy = if set_policy && table.sla_columns {
            ", sla_policy = u.policy"
        } else {
            ""
        };
        let set = if table.sla_columns {
            format!(
                "sla_status = u.status, sla_due_at = u.due_at, sla_breached_at = u.breached_at{policy}{release}"
            )
        } else {
            // Only releases: drop the leading comma.
            release.trim_start_matches(',').to_owned()
        };
        if set.is_empty() {
            return;
        }
        // The ANY() lets the planner fetch the rows by address rather than
        // hash the whole table for a join with the array.
        let query = format!(
            "UPDATE {table} t SET {set}
               FROM unnest($1::tid[], $2::text[], $3::text[], $4::timestamptz[],
                           $5::timestamptz[], $6::bool[], $7::bool[], $8::text[], $9::oid[])
                    AS u(ctid, policy, status, due_at, breached_at, release, guarded,
                         assignee_then, relid)
              WHERE t.ctid = u.ctid AND t.tableoid = u.relid
                AND t.ctid = ANY($1){only_releases}",
            table = table.rows(),
            // Without SLA columns, only the rows released change.
            only_releases = if table.sla_columns {
                ""
            } else {
                " AND u.release"
            },
        );
        let status: Vec<Option<String>> = self
            .status
            .into_iter()
            .map(|s| s.map(str::to_owned))
            .collect();
        let args: Vec<DatumWithOid> = vec![
            self.ctid.into(),
            self.policy.into(),
            status.into(),
            self.due_at.into(),
            self.breached_at.into(),
            self.release.into(),
            self.guarded.into(),
            self.assignee_then.into(),
            self.relid.into(),
        ];
        run_as(table.owner, || {
            Spi::connect_mut(|client| client.update(&query, None, &args).map(|_| ()))
                .or_raise("write the SLA columns of tickets")
        });
    }
}

/// A value read from a ticket row by a query: printed as text, or an
/// instant (±infinity reads as NULL).
pub enum RowValue {
    Text(Option<String>),
    Instant(Option<Micros>),
}

/// What a query read of one ticket: values by attribute number and whether
/// read as text (a timestamp column used in a condition is read both ways).
pub type RowValues = HashMap<(i32, bool), RowValue>;

/// Locks some tickets in id order (waiting for them) and reads them with
/// `select_list` (over alias `t`), whose items are described by `layout`
/// (attribute number, read as text). Tickets that do not exist are left out.
pub fn lock_and_read(
    table: &TicketTable,
    ids: &[String],
    select_list: &str,
    layout: &[(i32, bool)],
) -> Vec<(RowAddress, RowValues)> {
    // One primary-key probe per ticket (the lateral join).
    let query = format!(
        "SELECT t.tableoid, t.ctid, {select_list}
           FROM unnest($1::text[]) AS u(id),
                LATERAL (SELECT t.tableoid, t.ctid, t.* FROM {name} t WHERE t.{id} = u.id::{ty} OFFSET 0) AS t
          ORDER BY u.id FOR NO KEY UPDATE OF t",
        id = quote_identifier(&table.id_column),
        name = table.rows(),
        ty = table.id_type,
    );
    run_as(table.owner, || {
        Spi::connect_mut(|client| {
            let result = client.update(&query, None, &[ids.to_vec().into()])?;
            let mut rows = Vec::new();
            for row in result {
                let Some(address) = RowAddress::read(&row)? else {
                    continue;
                };
                let mut values = HashMap::new();
                for (i, (attnum, is_text)) in layout.iter().enumerate() {
                    let value = if *is_text {
                        RowValue::Text(row.get::<String>(i + 3)?)
                    } else {
                        RowValue::Instant(
                            row.get::<TimestampWithTimeZone>(i + 3)?
                                .and_then(finite_instant),
                        )
                    };
                    values.insert((*attnum, *is_text), value);
                }
                rows.push((address, values));
            }
            Ok(rows)
        })
        .or_raise("read tickets")
    })
}

/// Up to `limit` ticket ids after `after` in partition `relid` of the
/// table (with its own partitions), in id order, read as the partition's
/// owner: one range scan of its unique index per leaf.
pub fn ids_after_in(
    table: &TicketTable,
    relid: pg_sys::Oid,
    after: Option<&str>,
    limit: i32,
) -> Vec<String> {
    let (owner, qualified) = Spi::connect(|client| {
        let rows = client.select(
            "SELECT c.relowner, pg_catalog.quote_ident(n.nspname) OPERATOR(pg_catalog.||) '.'
                                OPERATOR(pg_catalog.||) pg_catalog.quote_ident(c.relname)
               FROM pg_catalog.pg_class c
               JOIN pg_catalog.pg_namespace n ON n.oid OPERATOR(pg_catalog.=) c.relnamespace
              WHERE c.oid OPERATOR(pg_catalog.=) $1",
            Some(1),
            &[relid.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, pgrx::spi::Error>((pg_sys::InvalidOid, None));
        }
        let row = rows.first();
        Ok((
            row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
            row.get::<String>(2)?,
        ))
    })
    .or_raise("read the name of a partition");
    let Some(qualified) = qualified else {
        return Vec::new();
    };
    let query = format!(
        "SELECT t.{id}::text FROM {qualified} t
          WHERE $1::text IS NULL OR t.{id} > $1::text::{ty}
          ORDER BY t.{id} LIMIT $2",
        id = quote_identifier(&table.id_column),
        ty = table.id_type,
    );
    run_as(owner, || {
        text_column(
            &query,
            &[after.into(), limit.into()],
            "list the tickets of a partition",
        )
    })
}

/// Which of these ticket ids no row of the table outside `excluded` (a
/// partition and its own partitions; none for the whole table) has.
pub fn missing_outside(
    table: &TicketTable,
    ids: &[String],
    excluded: &[pg_sys::Oid],
) -> Vec<String> {
    let query = format!(
        "SELECT u.id FROM unnest($1::text[]) AS u(id)
          WHERE NOT EXISTS (SELECT FROM {name} t
                             WHERE t.{id} = u.id::{ty}
                               AND t.tableoid OPERATOR(pg_catalog.<>) ALL ($2::oid[]))",
        id = quote_identifier(&table.id_column),
        name = table.rows(),
        ty = table.id_type,
    );
    run_as(table.owner, || {
        text_column(
            &query,
            &[ids.to_vec().into(), excluded.to_vec().into()],
            "find tickets no longer in the table",
        )
    })
}
