//! Switching the database identity pg_sla's own work runs with.
//!
//! The rule (applied by the store, `store/mod.rs`, never by its callers):
//! ticket triggers and due processing write `sla.clocks` and
//! `sla.notifications` whoever changed the ticket, so pg_sla's tables are
//! read and written as their owner; a ticket table is read and written as
//! that table's owner, never as a superuser. Both run with a fixed
//! `search_path`, so a caller's schemas cannot redirect pg_sla's queries.
use std::cell::Cell;

use pgrx::prelude::*;

use crate::invalidation::configuration_generation;

thread_local! {
    /// The settings generation, `sla.clocks`' OID and its owner (the owner
    /// of pg_sla's tables) as read in that generation.
    static SLA_TABLES: Cell<Option<(u64, pg_sys::Oid, pg_sys::Oid)>> = const { Cell::new(None) };
}

/// Runs `f` as `role`, in a restricted security context and with
/// `search_path = pg_catalog, pg_temp`. Settings changed inside `f` (by
/// pg_sla or by code of `role`'s, such as its triggers) are rolled back on
/// return, as PostgreSQL's own maintenance commands do, so nothing set as
/// `role` outlives the call. An error inside `f` aborts the
/// (sub)transaction, which restores the user and the settings too.
pub(crate) fn run_as<R>(role: pg_sys::Oid, f: impl FnOnce() -> R) -> R {
    let mut saved_user = pg_sys::InvalidOid;
    let mut saved_context = 0;
    unsafe {
        pg_sys::GetUserIdAndSecContext(&mut saved_user, &mut saved_context);
        pg_sys::SetUserIdAndSecContext(
            role,
            saved_context
                | pg_sys::SECURITY_LOCAL_USERID_CHANGE as i32
                | pg_sys::SECURITY_RESTRICTED_OPERATION as i32,
        );
    }
    let nest_level = unsafe { pg_sys::NewGUCNestLevel() };
    unsafe {
        pg_sys::set_config_option(
            c"search_path".as_ptr(),
            c"pg_catalog, pg_temp".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
        // Row security must not silently hide tickets from their owner (a
        // FORCE ROW LEVEL SECURITY table): with it off, such a read fails
        // instead of returning fewer rows.
        pg_sys::set_config_option(
            c"row_security".as_ptr(),
            c"off".as_ptr(),
            pg_sys::GucContext::PGC_USERSET,
            pg_sys::GucSource::PGC_S_SESSION,
            pg_sys::GucAction::GUC_ACTION_SAVE,
            true,
            0,
            false,
        );
    }
    let result = f();
    unsafe {
        pg_sys::AtEOXact_GUC(false, nest_level);
        pg_sys::SetUserIdAndSecContext(saved_user, saved_context);
    }
    result
}

/// Runs `f` as the owner of pg_sla's tables.
pub(crate) fn as_sla_owner<R>(f: impl FnOnce() -> R) -> R {
    run_as(sla_owner(), f)
}

fn sla_owner() -> pg_sys::Oid {
    sla_tables().1
}

/// The OID of `sla.clocks`.
pub fn clocks_relid() -> pg_sys::Oid {
    sla_tables().0
}

fn sla_tables() -> (pg_sys::Oid, pg_sys::Oid) {
    let generation = configuration_generation();
    if let Some((seen, relid, owner)) = SLA_TABLES.with(Cell::get) {
        if seen == generation {
            return (relid, owner);
        }
    }
    let (relid, owner) = Spi::get_two::<pg_sys::Oid, pg_sys::Oid>(
        "SELECT oid, relowner FROM pg_catalog.pg_class
          WHERE oid OPERATOR(pg_catalog.=) 'sla.clocks'::pg_catalog.regclass",
    )
    .ok()
    .and_then(|(relid, owner)| relid.zip(owner))
    .unwrap_or_else(|| {
        ereport!(
            ERROR,
            pgrx::PgSqlErrorCode::ERRCODE_UNDEFINED_TABLE,
            "pg_sla's table sla.clocks is missing",
            "Drop and create the extension again."
        );
    });
    SLA_TABLES.with(|cell| cell.set(Some((generation, relid, owner))));
    (relid, owner)
}

/// The role the current statement runs as.
pub fn current_user() -> pg_sys::Oid {
    unsafe { pg_sys::GetUserId() }
}

/// Whether `role` may act on every tracked table: a superuser, or a role
/// with the privileges of the owner of pg_sla's tables.
pub fn acts_for_everyone(role: pg_sys::Oid) -> bool {
    unsafe { pg_sys::superuser_arg(role) || pg_sys::has_privs_of_role(role, sla_owner()) }
}

/// Whether `role` has the privileges of `owner` (is it, or a member).
pub fn has_privileges_of(role: pg_sys::Oid, owner: pg_sys::Oid) -> bool {
    unsafe { pg_sys::has_privs_of_role(role, owner) }
}
