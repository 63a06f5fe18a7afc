//! Policy rows (`sla.policies`), read as the owner of pg_sla's tables, in
//! the order of their names (the database's collation decides it; see
//! `sla_core::policy::PolicyOrder`).
use pgrx::datum::Interval;
use pgrx::prelude::*;
use sla_core::policy::{parse_conditions_text, Policy};
use sla_core::{Micros, Targets};

use super::spi::sla_column_exists;
use crate::convert::duration;
use crate::errors::SpiResultExt;
use crate::identity::as_sla_owner;

/// Every policy, parsed, in name order, with the OID of `sla.policies` (for
/// cache invalidation) when there is a row.
pub fn read_all() -> (Vec<Policy>, Option<pg_sys::Oid>) {
    as_sla_owner(|| {
        Spi::connect(|client| {
            // A schema older than 0.3.0 (a new library before the update)
            // has no ticket_tables: every policy applies to every table.
            let restricted = sla_column_exists(c"policies", c"ticket_tables");
            let query = format!(
                "SELECT name, position, enabled, calendar, conditions::text, first_response,
                        next_response, resolution, warn_at, release_ownership_at,
                        feedback_message, pause_statuses, tableoid, {tables}
                   FROM sla.policies ORDER BY name",
                tables = if restricted {
                    "ticket_tables::pg_catalog.oid[]"
                } else {
                    "NULL::pg_catalog.oid[]"
                }
            );
            let rows = client.select(&query, None, &[])?;
            let mut policies = Vec::new();
            let mut table_oid = None;
            for row in rows {
                let name: String = row.get(1)?.unwrap_or_default();
                let conditions_text: String = row.get(5)?.unwrap_or_else(|| "{}".into());
                let conditions =
                    parse_conditions_text(&conditions_text).unwrap_or_else(|message| {
                        ereport!(
                            ERROR,
                            pgrx::PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
                            format!("policy \"{name}\": {message}")
                        );
                    });
                let target = |i: usize, field: &str| -> Result<Option<Micros>, pgrx::spi::Error> {
                    Ok(row.get::<Interval>(i)?.map(|v| duration(v, field)))
                };
                let targets = Targets {
                    first_response: target(6, "first_response")?,
                    next_response: target(7, "next_response")?,
                    resolution: target(8, "resolution")?,
                    warn_fraction: row.get::<f64>(9)?,
                    release_fraction: row.get::<f64>(10)?,
                };
                policies.push(Policy {
                    name,
                    position: row.get(2)?.unwrap_or(0),
                    enabled: row.get(3)?.unwrap_or(false),
                    calendar: row.get(4)?,
                    conditions,
                    targets,
                    feedback_message: row.get(11)?,
                    pause_statuses: row
                        .get::<Vec<Option<String>>>(12)?
                        .unwrap_or_default()
                        .into_iter()
                        .flatten()
                        .collect(),
                    tables: row
                        .get::<Vec<Option<pg_sys::Oid>>>(14)?
                        .map(|tables| tables.into_iter().flatten().map(|t| t.to_u32()).collect()),
                });
                table_oid = row.get::<pg_sys::Oid>(13)?;
            }
            Ok((policies, table_oid))
        })
        .or_raise("read sla.policies")
    })
}
