//! Where a ticket table's mapped columns are, and which types pg_sla
//! accepts for them.
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

use crate::sql_text::{quote_identifier, quote_literal};
use crate::store::tracked_tables::TicketTable;

/// The SLA columns `sla.track` adds to a ticket table.
pub const SLA_POLICY: &str = "sla_policy";
pub const SLA_STATUS: &str = "sla_status";
pub const SLA_DUE_AT: &str = "sla_due_at";
pub const SLA_BREACHED_AT: &str = "sla_breached_at";

/// The types a mapped column may have: `sla.track` checks them, and the
/// triggers check them again on every use.
pub struct Accepted {
    pub types: &'static [pg_sys::BuiltinOid],
    pub enums: bool,
    /// What to say in an error.
    pub expected: &'static str,
}

impl Accepted {
    pub fn accepts(&self, type_oid: pg_sys::Oid, is_enum: bool) -> bool {
        self.types.iter().any(|t| t.value() == type_oid) || (self.enums && is_enum)
    }
}

use pg_sys::BuiltinOid::{
    BOOLOID, INT2OID, INT4OID, INT8OID, TEXTOID, TIMESTAMPOID, TIMESTAMPTZOID, UUIDOID, VARCHAROID,
};

pub const ID_TYPES: Accepted = Accepted {
    types: &[INT2OID, INT4OID, INT8OID, TEXTOID, VARCHAROID, UUIDOID],
    enums: false,
    expected: "integer, bigint, uuid or text",
};
/// Statuses are compared as the column's values print, so any scalar type
/// whose values print as they are written will do; `char(n)` pads them, and
/// is refused.
pub const STATUS_TYPES: Accepted = Accepted {
    types: &[TEXTOID, VARCHAROID, INT2OID, INT4OID, INT8OID, BOOLOID],
    enums: true,
    expected: "text, varchar, an enum, smallint, integer, bigint or boolean",
};
/// Mapped time columns: `timestamp without time zone` is read in the
/// table's `timestamp_zone`.
pub const TIME_TYPES: Accepted = Accepted {
    types: &[TIMESTAMPTZOID, TIMESTAMPOID],
    enums: false,
    expected: "timestamp with time zone or timestamp without time zone",
};
/// The time columns pg_sla adds.
pub const SLA_TIME_TYPES: Accepted = Accepted {
    types: &[TIMESTAMPTZOID],
    enums: false,
    expected: "timestamp with time zone",
};
/// The SLA columns `sla.track` adds: `sla_policy` and `sla_status` are
/// text, `sla_due_at` and `sla_breached_at` timestamps.
pub const SLA_TEXT_TYPES: Accepted = Accepted {
    types: &[TEXTOID],
    enums: false,
    expected: "text",
};

/// The SLA columns `sla.track` adds, the types they may have, and the type
/// it adds them with.
pub const SLA_COLUMNS: [(&str, &Accepted, &str); 4] = [
    (SLA_POLICY, &SLA_TEXT_TYPES, "text"),
    (SLA_STATUS, &SLA_TEXT_TYPES, "text"),
    (SLA_DUE_AT, &SLA_TIME_TYPES, "timestamptz"),
    (SLA_BREACHED_AT, &SLA_TIME_TYPES, "timestamptz"),
];

#[derive(Clone)]
pub struct Column {
    pub name: String,
    pub attnum: i32,
    pub(crate) type_oid: pg_sys::Oid,
    /// A generated column, computed after the BEFORE triggers read it.
    generated: bool,
    type_modifier: i32,
    pub(crate) output_function: pg_sys::Oid,
    /// For a `timestamp without time zone` column, the zone its values are
    /// read in.
    pub(crate) local_zone: Option<String>,
}

/// The SLA columns `sla.track` adds to a ticket table.
pub struct SlaColumns {
    pub policy: Column,
    pub status: Column,
    pub due_at: Column,
    pub breached_at: Column,
}

/// Attribute numbers of a ticket table's mapped and condition columns.
pub struct Columns {
    natts: i32,
    pub id: Column,
    pub created_at: Column,
    pub status: Column,
    pub customer_message_at: Option<Column>,
    pub agent_reply_at: Option<Column>,
    pub waiting_since: Option<Column>,
    /// The SLA columns `sla.track` added; `None` for a table tracked with
    /// `add_columns => false`.
    pub sla: Option<SlaColumns>,
    /// Condition columns the table has; absent ones are not in the map.
    pub(crate) conditions: HashMap<String, Column>,
}

fn attribute<'a>(tupdesc: pg_sys::TupleDesc, index: i32) -> &'a pg_sys::FormData_pg_attribute {
    unsafe { &(*tupdesc).attrs.as_slice((*tupdesc).natts as usize)[index as usize] }
}

pub fn find_column(tupdesc: pg_sys::TupleDesc, name: &str) -> Option<Column> {
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
            generated: attr.attgenerated != 0,
            attnum: i + 1,
            type_oid: attr.atttypid,
            type_modifier: attr.atttypmod,
            output_function,
            local_zone: None,
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
        && (attr.attgenerated != 0) == column.generated
}

impl Columns {
    fn resolve(
        tupdesc: pg_sys::TupleDesc,
        table: &TicketTable,
        condition_columns: &[String],
    ) -> Columns {
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
        let typed = |name: &str, role: &str, accepted: &Accepted| {
            let column = required(name, role);
            if column.generated {
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_FEATURE_NOT_SUPPORTED,
                    format!(
                        "column \"{name}\" ({role}) of tracked table {} is a generated column; pg_sla reads it before PostgreSQL computes it",
                        table.name
                    ),
                    "Drop the generation expression, or call sla.untrack() and sla.track() with another mapping."
                );
            }
            let is_enum =
                unsafe { pg_sys::get_typtype(column.type_oid) } == b'e' as std::ffi::c_char;
            if !accepted.accepts(column.type_oid, is_enum) {
                let type_name = unsafe {
                    CStr::from_ptr(pg_sys::format_type_be(column.type_oid))
                        .to_string_lossy()
                        .into_owned()
                };
                ereport!(
                    ERROR,
                    PgSqlErrorCode::ERRCODE_DATATYPE_MISMATCH,
                    format!(
                        "column \"{name}\" ({role}) of tracked table {} has type {type_name}; pg_sla needs {}",
                        table.name, accepted.expected
                    ),
                    "Change the column back, or call sla.untrack() and sla.track() with another mapping."
                );
            }
            let mut column = column;
            if column.type_oid == TIMESTAMPOID.value() {
                column.local_zone = Some(
                    table
                        .timestamp_zone
                        .clone()
                        .unwrap_or_else(|| "UTC".to_owned()),
                );
            }
            column
        };
        Columns {
            natts: unsafe { (*tupdesc).natts },
            id: typed(&table.id_column, "id_column", &ID_TYPES),
            created_at: typed(&table.created_at_column, "created_at_column", &TIME_TYPES),
            status: typed(&table.status_column, "status_column", &STATUS_TYPES),
            customer_message_at: table
                .customer_message_at_column
                .as_deref()
                .map(|name| typed(name, "customer_message_at_column", &TIME_TYPES)),
            agent_reply_at: table
                .agent_reply_at_column
                .as_deref()
                .map(|name| typed(name, "agent_reply_at_column", &TIME_TYPES)),
            waiting_since: table
                .waiting_since_column
                .as_deref()
                .map(|name| typed(name, "waiting_since_column", &TIME_TYPES)),
            sla: table.sla_columns.then(|| SlaColumns {
                policy: typed(SLA_POLICY, "added by sla.track", &SLA_TEXT_TYPES),
                status: typed(SLA_STATUS, "added by sla.track", &SLA_TEXT_TYPES),
                due_at: typed(SLA_DUE_AT, "added by sla.track", &SLA_TIME_TYPES),
                breached_at: typed(SLA_BREACHED_AT, "added by sla.track", &SLA_TIME_TYPES),
            }),
            conditions: condition_columns
                .iter()
                .filter_map(|name| find_column(tupdesc, name).map(|c| (name.clone(), c)))
                .collect(),
        }
    }

    fn still_valid(&self, tupdesc: pg_sys::TupleDesc, condition_columns: &[String]) -> bool {
        (unsafe { (*tupdesc).natts }) == self.natts
            && [&self.id, &self.created_at, &self.status]
                .into_iter()
                .chain(self.sla_columns())
                .chain(self.time_columns())
                .chain(self.conditions.values())
                .all(|c| column_still_there(tupdesc, c))
            && condition_columns.iter().all(|name| {
                self.conditions.contains_key(name) || find_column(tupdesc, name).is_none()
            })
    }
}

impl Columns {
    /// The SLA columns the table has.
    fn sla_columns(&self) -> impl Iterator<Item = &Column> {
        self.sla
            .iter()
            .flat_map(|sla| [&sla.policy, &sla.status, &sla.due_at, &sla.breached_at])
    }

    /// The mapped time columns of messages and replies the table has.
    fn time_columns(&self) -> impl Iterator<Item = &Column> {
        [
            &self.customer_message_at,
            &self.agent_reply_at,
            &self.waiting_since,
        ]
        .into_iter()
        .flatten()
    }

    /// A select list over ticket alias `t` that reads every column a ticket
    /// needs, printed as the triggers print them (`format('%s')` calls the
    /// output function), with the attnum and kind of each item.
    pub fn select_list(&self) -> (String, Vec<(i32, bool)>) {
        let mut items = Vec::new();
        let mut layout = Vec::new();
        let sla_texts = self.sla.as_ref().map(|sla| [&sla.policy, &sla.status]);
        let text_columns = [&self.id, &self.status]
            .into_iter()
            .chain(sla_texts.into_iter().flatten())
            .chain(self.conditions.values());
        for column in text_columns {
            let c = quote_identifier(&column.name);
            items.push(format!(
                "CASE WHEN t.{c} IS NULL THEN NULL ELSE pg_catalog.format('%s', t.{c}) END"
            ));
            layout.push((column.attnum, true));
        }
        let sla_times = self.sla.as_ref().map(|sla| [&sla.due_at, &sla.breached_at]);
        for column in [&self.created_at]
            .into_iter()
            .chain(sla_times.into_iter().flatten())
            .chain(self.time_columns())
        {
            let c = quote_identifier(&column.name);
            items.push(match &column.local_zone {
                Some(zone) => format!("(t.{c} AT TIME ZONE {})", quote_literal(zone)),
                None => format!("t.{c}"),
            });
            layout.push((column.attnum, false));
        }
        (items.join(", "), layout)
    }
}

/// Row types a table's column cache keeps: a partitioned table's
/// partitions may each lay their columns out differently (a partition
/// created before a column was dropped from the others, or attached).
const LAYOUTS_KEPT: usize = 8;

/// A table's columns for rows of `tupdesc`, from `cache` unless the table
/// or the policies' condition columns changed since it was filled.
pub fn columns_for(
    table: &TicketTable,
    cache: &std::cell::RefCell<Vec<Rc<Columns>>>,
    tupdesc: pg_sys::TupleDesc,
    condition_columns: &[String],
) -> Rc<Columns> {
    if let Some(columns) = cache
        .borrow()
        .iter()
        .find(|columns| columns.still_valid(tupdesc, condition_columns))
    {
        return Rc::clone(columns);
    }
    let columns = Rc::new(Columns::resolve(tupdesc, table, condition_columns));
    let mut cache = cache.borrow_mut();
    if cache.len() >= LAYOUTS_KEPT {
        cache.remove(0);
    }
    cache.push(Rc::clone(&columns));
    columns
}
