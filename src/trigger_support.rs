//! Helpers every pg_sla trigger function uses: checking how it was fired,
//! and reading transition tables.
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use pgrx::trigger_support::PgTriggerError;
use pgrx::{AllocatedByPostgres, PgTrigger};

use crate::store::ticket_definitions;
use crate::ticket::Row;

pub type TriggerResult<'a> = Result<Option<PgHeapTuple<'a, AllocatedByPostgres>>, PgTriggerError>;

/// Refuses to run a trigger function fired in a way it was not written for
/// (someone attaching it to another table or event by hand).
pub fn require_firing(trigger: &PgTrigger, expected: bool, what: &str) {
    if !expected {
        let name = trigger.name().unwrap_or("?");
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
            format!("trigger \"{name}\": this pg_sla function must be fired {what}"),
            "pg_sla installs its triggers itself (sla.track); do not attach its functions by hand."
        );
    }
}

/// On a table pg_sla does not track: a trigger pg_sla installed (by its
/// name) is left over from a copy of the table without its tracking (a
/// restore of some tables, `pg_dump -t`), and does nothing, as before; one
/// attached by hand under another name (a superuser may) is refused.
pub fn untracked(trigger: &PgTrigger) {
    let name = trigger.name().unwrap_or("?");
    if ticket_definitions::TRIGGERS.contains(&name) {
        return;
    }
    let table = trigger.table_name().unwrap_or_default();
    ereport!(
        ERROR,
        PgSqlErrorCode::ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED,
        format!("trigger \"{name}\": table {table} is not tracked by pg_sla"),
        "pg_sla installs its triggers itself (sla.track); do not attach its functions by hand."
    );
}

/// Whether pg_sla's trigger `name` (calling `sla.<function>`) of
/// `relation` fires in this session: it exists and is enabled for this
/// session's replication role. A trigger of the same name calling another
/// function is not pg_sla's.
pub fn trigger_fires(relation: pg_sys::Relation, name: &str, function: &std::ffi::CStr) -> bool {
    unsafe {
        let triggers = (*relation).trigdesc;
        if triggers.is_null() {
            return false;
        }
        let replica = pg_sys::SessionReplicationRole
            == pg_sys::SESSION_REPLICATION_ROLE_REPLICA as std::ffi::c_int;
        (0..(*triggers).numtriggers as usize).any(|i| {
            let trigger = &*(*triggers).triggers.add(i);
            let enabled = match trigger.tgenabled as u8 {
                b'A' => true,
                b'O' => !replica,
                b'R' => replica,
                _ => false,
            };
            enabled
                && std::ffi::CStr::from_ptr(trigger.tgname).to_bytes() == name.as_bytes()
                && is_sla_function(trigger.tgfoid, function)
        })
    }
}

/// Whether function `oid` is `sla.<name>` (catalog cache lookups).
fn is_sla_function(oid: pg_sys::Oid, name: &std::ffi::CStr) -> bool {
    unsafe {
        let found = pg_sys::get_func_name(oid);
        !found.is_null()
            && std::ffi::CStr::from_ptr(found) == name
            && pg_sys::get_func_namespace(oid) == pg_sys::get_namespace_oid(c"sla".as_ptr(), true)
    }
}

/// Whether the trigger's table is `sla.<name>`.
pub fn fired_on_sla_table(data: &pg_sys::TriggerData, name: &str) -> bool {
    unsafe {
        let rel = (*data.tg_relation).rd_rel;
        let relname = std::ffi::CStr::from_ptr((*rel).relname.data.as_ptr());
        let namespace = pg_sys::get_namespace_name((*rel).relnamespace);
        !namespace.is_null()
            && std::ffi::CStr::from_ptr(namespace).to_bytes() == b"sla"
            && relname.to_bytes() == name.as_bytes()
    }
}

/// The text values of column `attnum` in a trigger's transition table.
pub fn transition_texts(
    store: *mut pg_sys::Tuplestorestate,
    tupdesc: pg_sys::TupleDesc,
    attnum: i32,
) -> Vec<String> {
    let mut texts = Vec::new();
    for_each_transition_row(store, tupdesc, |row| {
        let Row::Slot(slot) = row else { return };
        let mut is_null = false;
        let datum = unsafe { pg_sys::slot_getattr(slot, attnum, &mut is_null) };
        if let Some(text) = unsafe { String::from_datum(datum, is_null) } {
            texts.push(text);
        }
    });
    texts
}

/// Calls `each` for every row of a trigger's transition table.
pub fn for_each_transition_row(
    store: *mut pg_sys::Tuplestorestate,
    tupdesc: pg_sys::TupleDesc,
    mut each: impl FnMut(Row),
) {
    if store.is_null() {
        return;
    }
    unsafe {
        let slot = pg_sys::MakeSingleTupleTableSlot(tupdesc, &pg_sys::TTSOpsMinimalTuple);
        pg_sys::tuplestore_rescan(store);
        while pg_sys::tuplestore_gettupleslot(store, true, false, slot) {
            each(Row::Slot(slot));
        }
        pg_sys::ExecDropSingleTupleTableSlot(slot);
    }
}
