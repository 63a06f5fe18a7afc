//! Whether policies fit the tables they apply to. A condition compares a
//! column's value as PostgreSQL prints it, so a value that is not a value
//! of the column's type (`"urgent"` for an integer priority), or that the
//! column prints otherwise (`"03"`, `"true"`), never matches; the same holds
//! for a pause status and the status column. Such a policy is refused when
//! it names the table in `ticket_tables`, and warned about when it applies
//! to every tracked table (where another table's column may fit).
use std::collections::HashMap;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use sla_core::policy::{Condition, Policy};

use crate::configuration::TrackedTable;
use crate::convert::printed_as_type;
use crate::store::ticket_definitions::{column_type, ColumnType};

/// Checks each policy against each table it applies to: raises 22P02 for
/// a policy restricted to named tables, warns otherwise.
pub fn check(policies: &[&Policy], tables: &[&TrackedTable]) {
    let mut types: HashMap<(u32, String), Option<ColumnType>> = HashMap::new();
    for policy in policies {
        for table in tables
            .iter()
            .filter(|t| policy.applies_to(t.relid.to_u32()))
        {
            let mut type_of = |column: &str| {
                types
                    .entry((table.relid.to_u32(), column.to_owned()))
                    .or_insert_with(|| column_type(table.relid, column))
                    .clone()
            };
            let mut values: Vec<(String, String, &str)> = Vec::new();
            for condition in &policy.conditions {
                let field = format!("conditions.{}", condition.column);
                for value in checked_values(condition) {
                    values.push((field.clone(), condition.column.clone(), value));
                }
            }
            for status in &policy.pause_statuses {
                values.push((
                    "pause_statuses".to_owned(),
                    table.status_column.clone(),
                    status,
                ));
            }
            for (field, column, value) in values {
                // A column the table lacks meets no condition: tables differ,
                // and a policy for all of them may name columns some lack.
                let Some(found) = type_of(&column) else {
                    continue;
                };
                let Some(why) = why_never_matches(value, &found) else {
                    continue;
                };
                let message = format!(
                    "policy \"{}\": {field} value \"{value}\" never matches column \"{column}\" ({}) of table {}: {why}",
                    policy.name, found.type_name, table.name
                );
                if policy.tables.is_some() {
                    ereport!(
                        ERROR,
                        PgSqlErrorCode::ERRCODE_INVALID_TEXT_REPRESENTATION,
                        message,
                        "Write the value as the column's values print (integers as numbers, booleans as true or false)."
                    );
                }
                ereport!(
                    WARNING,
                    PgSqlErrorCode::ERRCODE_WARNING,
                    message,
                    "The policy applies to every tracked table; name the tables it is for in ticket_tables to have such values refused."
                );
            }
        }
    }
}

/// The values of a condition worth checking: a refused value the column
/// cannot hold is refused by every row, so such a negated condition always
/// holds, harmlessly.
pub fn checked_values(condition: &Condition) -> impl Iterator<Item = &String> {
    condition
        .accepted
        .iter()
        .flatten()
        .filter(|_| !condition.negated)
}

/// Why a condition value never matches a column of this type, compared as
/// the column prints: `None` when it may.
pub fn why_never_matches(value: &str, column: &ColumnType) -> Option<String> {
    match printed_as_type(value, column.type_oid, column.type_modifier) {
        Some(printed) if printed == value => None,
        Some(printed) => Some(format!("the column prints it as \"{printed}\"")),
        None => Some(format!("it is not a value of type {}", column.type_name)),
    }
}
