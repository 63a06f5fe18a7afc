//! Reading a ticket's mapped columns from a row, and writing its SLA columns.
//!
//! Triggers see tickets as heap tuples (row triggers) or in tuple slots
//! (transition tables); both are read by attribute number, resolved once per
//! table and checked against the row type on every use, so that columns
//! added or dropped since are noticed.
use std::collections::HashMap;
use std::ffi::CStr;
use std::rc::Rc;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use sla_core::policy::{matches, ColumnValue};
use sla_core::{Micros, TicketFacts};

use crate::catalog::quote_identifier;
use crate::convert::PG_EPOCH_OFFSET;
use crate::settings::{Policy, Settings, TrackedTable};

/// The SLA columns `sla.track` adds to a ticket table.
pub const SLA_POLICY: &str = "sla_policy";
pub const SLA_STATUS: &str = "sla_status";
pub const SLA_DUE_AT: &str = "sla_due_at";
pub const SLA_BREACHED_AT: &str = "sla_breached_at";

const TIMESTAMPTZ: &str = "timestamp with time zone";

#[derive(Clone)]
pub struct Column {
    pub name: String,
    pub attnum: i32,
    type_oid: pg_sys::Oid,
    type_modifier: i32,
    output_function: pg_sys::Oid,
}

/// Attribute numbers of a ticket table's mapped and condition columns.
pub struct Columns {
    natts: i32,
    pub id: Column,
    pub created_at: Column,
    pub status: Column,
    pub customer_message_at: Column,
    pub agent_reply_at: Column,
    pub sla_policy: Column,
    pub sla_status: Column,
    pub sla_due_at: Column,
    pub sla_breached_at: Column,
    /// Condition columns the table has; absent ones are not in the map.
    conditions: HashMap<String, Column>,
}

fn attribute<'a>(tupdesc: pg_sys::TupleDesc, index: i32) -> &'a pg_sys::FormData_pg_attribute {
    unsafe { &(*tupdesc).attrs.as_slice((*tupdesc).natts as usize)[index as usize] }
}

fn find_column(tupdesc: pg_sys::TupleDesc, name: &str) -> Option<Column> {
    let natts = unsafe { (*tupdesc).natts };
    (0..natts).find_map(|i| {
        let attr = attribute(tupdesc, i);
        let attname = unsafe { CStr::from_ptr(attr.attname.data.as_ptr()) };
        if attr.attisdropped || attname.to_bytes() != name.as_bytes() {
            return None;
        }
        let mut output_function = pg_sys::InvalidOid;
        let mut is_varlena = false;
        unsafe { pg_sys::getTypeOutputInfo(attr.atttypid, &mut output_function, &mut is_varlena) };
        Some(Column {
            name: name.to_owned(),
            attnum: i + 1,
            type_oid: attr.atttypid,
            type_modifier: attr.atttypmod,
            output_function,
        })
    })
}

fn column_still_there(tupdesc: pg_sys::TupleDesc, column: &Column) -> bool {
    let attr = attribute(tupdesc, column.attnum - 1);
    let attname = unsafe { CStr::from_ptr(attr.attname.data.as_ptr()) };
    !attr.attisdropped
        && attname.to_bytes() == column.name.as_bytes()
        && attr.atttypid == column.type_oid
        && attr.atttypmod == column.type_modifier
}

impl Columns {
    fn resolve(tupdesc: pg_sys::TupleDesc, table: &TrackedTable, settings: &Settings) -> Columns {
        let required = |name: &str, role: &str| {
            find_column(tupdesc, name).unwrap_or_else(|| {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_UNDEFINED_COLUMN,
                    format!(
                        "column \"{name}\" ({role}) of tracked table {} does not exist",
                        table.name
                    ),
                    "Restore the column, or call sla.untrack() and sla.track() with the new mapping."
                );
            })
        };
        use pg_sys::BuiltinOid::*;
        let typed = |name: &str, role: &str, accepted: &[pg_sys::BuiltinOid], expected: &str| {
            let column = required(name, role);
            let is_enum =
                unsafe { pg_sys::get_typtype(column.type_oid) } == b'e' as std::ffi::c_char;
            let ok = accepted.iter().any(|t| t.value() == column.type_oid)
                || (expected.contains("enum") && is_enum);
            if !ok {
                let type_name = unsafe {
                    CStr::from_ptr(pg_sys::format_type_be(column.type_oid))
                        .to_string_lossy()
                        .into_owned()
                };
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                    format!(
                        "column \"{name}\" ({role}) of tracked table {} has type {type_name}; pg_sla needs {expected}",
                        table.name
                    ),
                    "Change the column back, or call sla.untrack() and sla.track() with another mapping."
                );
            }
            column
        };
        let timestamp = [TIMESTAMPTZOID];
        let text = [TEXTOID];
        Columns {
            natts: unsafe { (*tupdesc).natts },
            id: typed(
                &table.id_column,
                "id_column",
                &[INT2OID, INT4OID, INT8OID, TEXTOID, VARCHAROID, UUIDOID],
                "integer, bigint, uuid or text",
            ),
            created_at: typed(
                &table.created_at_column,
                "created_at_column",
                &timestamp,
                TIMESTAMPTZ,
            ),
            status: typed(
                &table.status_column,
                "status_column",
                &[TEXTOID, VARCHAROID],
                "text, varchar or an enum",
            ),
            customer_message_at: typed(
                &table.customer_message_at_column,
                "customer_message_at_column",
                &timestamp,
                TIMESTAMPTZ,
            ),
            agent_reply_at: typed(
                &table.agent_reply_at_column,
                "agent_reply_at_column",
                &timestamp,
                TIMESTAMPTZ,
            ),
            sla_policy: typed(SLA_POLICY, "added by sla.track", &text, "text"),
            sla_status: typed(SLA_STATUS, "added by sla.track", &text, "text"),
            sla_due_at: typed(SLA_DUE_AT, "added by sla.track", &timestamp, TIMESTAMPTZ),
            sla_breached_at: typed(
                SLA_BREACHED_AT,
                "added by sla.track",
                &timestamp,
                TIMESTAMPTZ,
            ),
            conditions: settings
                .condition_columns
                .iter()
                .filter_map(|name| find_column(tupdesc, name).map(|c| (name.clone(), c)))
                .collect(),
        }
    }

    fn still_valid(&self, tupdesc: pg_sys::TupleDesc, settings: &Settings) -> bool {
        (unsafe { (*tupdesc).natts }) == self.natts
            && [
                &self.id,
                &self.created_at,
                &self.status,
                &self.customer_message_at,
                &self.agent_reply_at,
                &self.sla_policy,
                &self.sla_status,
                &self.sla_due_at,
                &self.sla_breached_at,
            ]
            .into_iter()
            .chain(self.conditions.values())
            .all(|c| column_still_there(tupdesc, c))
            && settings.condition_columns.iter().all(|name| {
                self.conditions.contains_key(name) || find_column(tupdesc, name).is_none()
            })
    }
}

impl Columns {
    /// A select list over ticket alias `t` that reads every column a ticket
    /// needs, printed as the triggers print them (`format('%s')` calls the
    /// output function), with the attnum and kind of each item.
    pub fn select_list(&self) -> (String, Vec<(i32, bool)>) {
        let mut items = Vec::new();
        let mut layout = Vec::new();
        let text_columns = [&self.id, &self.status, &self.sla_policy, &self.sla_status]
            .into_iter()
            .chain(self.conditions.values());
        for column in text_columns {
            let c = quote_identifier(&column.name);
            items.push(format!(
                "CASE WHEN t.{c} IS NULL THEN NULL ELSE pg_catalog.format('%s', t.{c}) END"
            ));
            layout.push((column.attnum, true));
        }
        for column in [
            &self.created_at,
            &self.customer_message_at,
            &self.agent_reply_at,
            &self.sla_due_at,
            &self.sla_breached_at,
        ] {
            items.push(format!("t.{}", quote_identifier(&column.name)));
            layout.push((column.attnum, false));
        }
        (items.join(", "), layout)
    }
}

/// The table's columns for rows of `tupdesc`, resolved again when the table
/// or the policies' condition columns changed.
pub fn columns_for(
    table: &TrackedTable,
    tupdesc: pg_sys::TupleDesc,
    settings: &Settings,
) -> Rc<Columns> {
    if let Some(columns) = table.columns.borrow().as_ref() {
        if columns.still_valid(tupdesc, settings) {
            return Rc::clone(columns);
        }
    }
    let columns = Rc::new(Columns::resolve(tupdesc, table, settings));
    *table.columns.borrow_mut() = Some(Rc::clone(&columns));
    columns
}

/// Where a ticket row's values come from.
pub enum Row {
    Heap(pg_sys::HeapTuple, pg_sys::TupleDesc),
    Slot(*mut pg_sys::TupleTableSlot),
    /// Values read by a query (see `Columns::select_list`), by attnum and
    /// whether read as text (a timestamp column used in a condition is read
    /// both ways).
    Values(HashMap<(i32, bool), Value>),
}

pub enum Value {
    Text(Option<String>),
    Instant(Option<Micros>),
}

impl Row {
    fn datum(&self, column: &Column) -> Option<pg_sys::Datum> {
        let mut is_null = false;
        let datum = unsafe {
            match self {
                Row::Heap(tuple, tupdesc) => {
                    pg_sys::heap_getattr(*tuple, column.attnum, *tupdesc, &mut is_null)
                }
                Row::Slot(slot) => pg_sys::slot_getattr(*slot, column.attnum, &mut is_null),
                Row::Values(_) => unreachable!("read through text() and instant()"),
            }
        };
        (!is_null).then_some(datum)
    }

    /// The column as PostgreSQL prints it.
    pub fn text(&self, column: &Column) -> Option<String> {
        if let Row::Values(values) = self {
            return match values.get(&(column.attnum, true)) {
                Some(Value::Text(text)) => text.clone(),
                _ => None,
            };
        }
        let datum = self.datum(column)?;
        let printed = unsafe { pg_sys::OidOutputFunctionCall(column.output_function, datum) };
        let text = unsafe { CStr::from_ptr(printed) }
            .to_string_lossy()
            .into_owned();
        unsafe { pg_sys::pfree(printed.cast()) };
        Some(text)
    }

    /// A timestamptz column as core microseconds; ±infinity reads as NULL.
    pub fn instant(&self, column: &Column) -> Option<Micros> {
        if let Row::Values(values) = self {
            return match values.get(&(column.attnum, false)) {
                Some(Value::Instant(t)) => *t,
                _ => None,
            };
        }
        let raw = self.datum(column)?.value() as i64;
        if raw == i64::MIN || raw == i64::MAX {
            return None;
        }
        Some(raw + PG_EPOCH_OFFSET)
    }
}

/// A ticket row with its table's columns.
pub struct Ticket<'a> {
    pub table: &'a TrackedTable,
    pub columns: &'a Columns,
    pub row: Row,
}

impl Ticket<'_> {
    pub fn id(&self) -> String {
        self.row.text(&self.columns.id).unwrap_or_else(|| {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_NOT_NULL_VIOLATION,
                format!(
                    "ticket id column \"{}\" of tracked table {} must not be NULL",
                    self.columns.id.name, self.table.name
                )
            );
        })
    }

    pub fn status(&self) -> Option<String> {
        self.row.text(&self.columns.status)
    }

    pub fn sla_policy(&self) -> Option<String> {
        self.row.text(&self.columns.sla_policy)
    }

    /// Whether the row's SLA columns already say `policy` and `summary`.
    pub fn shows(&self, policy: Option<&str>, summary: &sla_core::Summary) -> bool {
        self.sla_policy().as_deref() == policy
            && self.row.text(&self.columns.sla_status).as_deref()
                == summary.status.map(sla_core::ClockStatus::as_str)
            && self.row.instant(&self.columns.sla_due_at) == summary.due_at
            && self.row.instant(&self.columns.sla_breached_at) == summary.breached_at
    }

    /// The first enabled policy whose conditions this ticket meets.
    pub fn matching_policy<'s>(&self, settings: &'s Settings) -> Option<&'s Rc<Policy>> {
        let mut printed: HashMap<&str, Option<String>> = HashMap::new();
        settings.ordered.iter().find(|policy| {
            let mut values = Vec::with_capacity(policy.conditions.len());
            for condition in &policy.conditions {
                let Some(column) = self.columns.conditions.get(&condition.column) else {
                    values.push(None);
                    continue;
                };
                let value = printed
                    .entry(condition.column.as_str())
                    .or_insert_with(|| self.row.text(column));
                values.push(Some(value.clone()));
            }
            let mut next = values.iter();
            matches(&policy.conditions, |_| match next.next() {
                Some(Some(Some(text))) => ColumnValue::Text(text),
                Some(Some(None)) => ColumnValue::Null,
                _ => ColumnValue::Absent,
            })
        })
    }

    /// The ticket's facts under `policy` (which decides what pauses it).
    /// A missing creation time reads as `now`.
    pub fn facts(&self, policy: Option<&Policy>, now: Micros) -> TicketFacts {
        let status = self.status();
        let closed = self.table.is_closed(status.as_deref());
        let paused = !closed
            && policy.is_some_and(|p| {
                status
                    .as_deref()
                    .is_some_and(|s| p.pause_statuses.iter().any(|ps| ps == s))
            });
        TicketFacts {
            created_at: self.row.instant(&self.columns.created_at).unwrap_or(now),
            closed,
            paused,
            last_customer_message_at: self.row.instant(&self.columns.customer_message_at),
            last_agent_reply_at: self.row.instant(&self.columns.agent_reply_at),
        }
    }
}
