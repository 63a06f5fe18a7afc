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
use sla_core::policy::Policy;

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
                    .as_ref()
                    .map(|t| (t.type_oid, t.type_modifier, t.type_name.clone()))
            };
            let mut values: Vec<(String, String, &str)> = Vec::new();
            // A refused value the column cannot hold is refused by every
            // row: such a negated condition always holds, harmlessly.
            for condition in policy.conditions.iter().filter(|c| !c.negated) {
                let field = format!("conditions.{}", condition.column);
                for value in condition.accepted.iter().flatten() {
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
                let Some((type_oid, type_modifier, type_name)) = type_of(&column) else {
                    continue;
                };
                let why = match printed_as_type(value, type_oid, type_modifier) {
                    Some(printed) if printed == value => continue,
                    Some(printed) => format!("the column prints it as \"{printed}\""),
                    None => format!("it is not a value of type {type_name}"),
                };
                let message = format!(
                    "policy \"{}\": {field} value \"{value}\" never matches column \"{column}\" ({type_name}) of table {}: {why}",
                    policy.name, table.name
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
