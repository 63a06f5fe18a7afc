//! Ticket rows that due processing could not update after recording their
//! transitions (`sla.pending_ticket_updates`), read and written as the
//! owner of pg_sla's tables. The transition and its notification are the
//! record and are never undone; what is kept here is the row update still
//! owed, retried on its own.
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use super::kept_plans::run_kept;
use super::spi::{execute, owned_by, sla_relation};
use super::tracked_tables::TicketTable;
use crate::errors::SpiResultExt;
use crate::identity::as_sla_owner;

/// Whether the table exists (not on a schema older than 0.3.0).
fn exists() -> bool {
    sla_relation(c"pending_ticket_updates").is_some()
}

/// A ticket row update that failed: which ticket, whether its assignee is
/// still to be released, and the error.
pub struct FailedUpdate {
    pub ticket_id: String,
    pub release_ownership: bool,
    /// The assignee (as text) when the release failed.
    pub assignee: Option<String>,
    pub sqlstate: String,
    pub error: String,
}

/// Records failed updates, to be retried after `delay` (an interval). A
/// ticket already pending keeps its first failure time and release, and
/// counts one more attempt.
///
/// On a schema older than 0.3.0 this raises, failing the transitions with
/// the row: they stay due, as they did before 0.3.0.
pub fn record(table: &TicketTable, failed: Vec<FailedUpdate>, delay: &str) {
    if failed.is_empty() {
        return;
    }
    if !exists() {
        let first = &failed[0];
        ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            format!(
                "updating ticket {} of table {} failed: {} (SQLSTATE {})",
                first.ticket_id, table.name, first.error, first.sqlstate
            ),
            "Its transitions stay due: sla.pending_ticket_updates, where pg_sla 0.3.0 keeps failed ticket updates to retry, is missing until ALTER EXTENSION pg_sla UPDATE."
        );
    }
    let mut ids = Vec::with_capacity(failed.len());
    let mut release = Vec::with_capacity(failed.len());
    let mut sqlstate = Vec::with_capacity(failed.len());
    let mut error = Vec::with_capacity(failed.len());
    let mut assignee = Vec::with_capacity(failed.len());
    for f in failed {
        ids.push(f.ticket_id);
        release.push(f.release_ownership);
        assignee.push(f.assignee);
        sqlstate.push(f.sqlstate);
        error.push(f.error);
    }
    let args: Vec<DatumWithOid> = vec![
        table.relid.into(),
        ids.into(),
        release.into(),
        sqlstate.into(),
        error.into(),
        delay.into(),
        assignee.into(),
    ];
    as_sla_owner(|| {
        execute(
            "INSERT INTO sla.pending_ticket_updates AS p
                    (ticket_table, ticket_id, release_ownership, assignee, retry_at, sqlstate, error)
             SELECT $1::oid::regclass, f.id, f.release, f.assignee,
                    pg_catalog.clock_timestamp() + $6::interval, f.sqlstate, f.error
               FROM unnest($2::text[], $3::bool[], $4::text[], $5::text[], $7::text[])
                    AS f(id, release, sqlstate, error, assignee)
             ON CONFLICT (ticket_table, ticket_id) DO UPDATE
                SET release_ownership = p.release_ownership OR excluded.release_ownership,
                    -- The assignee when the release first failed.
                    assignee = CASE WHEN p.release_ownership THEN p.assignee
                                    ELSE excluded.assignee END,
                    attempts = p.attempts + 1,
                    retry_at = excluded.retry_at,
                    sqlstate = excluded.sqlstate,
                    error = excluded.error",
            &args,
            "record failed ticket updates",
        )
    })
}

/// Forgets the pending updates of these tickets, done (or moot: the ticket
/// is gone). With `released` (the tickets whose assignee the caller just
/// released), a ticket still owing a release is kept unless in it.
pub fn forget(table: &TicketTable, ticket_ids: &[String], released: Option<&[String]>) {
    if !exists() {
        return;
    }
    let (query, args): (&str, Vec<DatumWithOid>) = match released {
        None => (
            "DELETE FROM sla.pending_ticket_updates
              WHERE ticket_table = $1::oid::regclass AND ticket_id = ANY ($2::text[])",
            vec![table.relid.into(), ticket_ids.to_vec().into()],
        ),
        Some(released) => (
            "DELETE FROM sla.pending_ticket_updates
              WHERE ticket_table = $1::oid::regclass AND ticket_id = ANY ($2::text[])
                AND (NOT release_ownership OR ticket_id = ANY ($3::text[]))",
            vec![
                table.relid.into(),
                ticket_ids.to_vec().into(),
                released.to_vec().into(),
            ],
        ),
    };
    as_sla_owner(|| execute(query, &args, "forget pending ticket updates"))
}

/// Marks these tickets' releases as no longer owed (the clock that released
/// the assignee stopped since): only their SLA columns are left to write.
pub fn release_no_longer_owed(table: &TicketTable, ticket_ids: &[String]) {
    if ticket_ids.is_empty() || !exists() {
        return;
    }
    as_sla_owner(|| {
        execute(
            "UPDATE sla.pending_ticket_updates SET release_ownership = false
              WHERE ticket_table = $1::oid::regclass AND ticket_id = ANY ($2::text[])",
            &[table.relid.into(), ticket_ids.to_vec().into()],
            "update pending ticket updates",
        )
    })
}

/// Pending updates whose retry time has come, oldest retry first, leaving
/// out `skipped_tables` and, with `owned_by`, the tables that role does not
/// own: (table, ticket id, release still owed, the assignee then).
pub fn due(
    limit: i32,
    skipped_tables: &[pg_sys::Oid],
    owned_by: Option<pg_sys::Oid>,
) -> Vec<(pg_sys::Oid, String, bool, Option<String>)> {
    if !exists() {
        return Vec::new();
    }
    // A kept plan: every call of due processing asks, and there is
    // usually nothing to find.
    as_sla_owner(|| {
        Spi::connect_mut(|client| {
            let rows = run_kept(
                client,
                concat!(
                    r#"SELECT ticket_table::oid, ticket_id, release_ownership, assignee
                   FROM sla.pending_ticket_updates
                  WHERE retry_at <= pg_catalog.clock_timestamp()
                    AND ticket_table::oid <> ALL ($2::oid[])
                    AND "#,
                    owned_by!(3),
                    r#"
                  ORDER BY retry_at LIMIT $1"#
                ),
                &[
                    limit.into(),
                    skipped_tables.to_vec().into(),
                    owned_by.into(),
                ],
            )?;
            let mut due = Vec::new();
            for row in rows {
                due.push((
                    row.get::<pg_sys::Oid>(1)?.unwrap_or(pg_sys::InvalidOid),
                    row.get::<String>(2)?.unwrap_or_default(),
                    row.get::<bool>(3)?.unwrap_or(false),
                    row.get::<String>(4)?,
                ));
            }
            Ok(due)
        })
        .or_raise("find pending ticket updates")
    })
}
