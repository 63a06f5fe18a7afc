//! pg_sla: business-hours calendars and SLA deadlines inside PostgreSQL.
//!
//! The arithmetic lives in the pure `sla_core` crate; this crate converts
//! PostgreSQL values, caches calendars per backend and maps errors.
use pgrx::prelude::*;

mod alerts;
mod bulk_insert;
mod calendar_cache;
mod catalog;
mod convert;
mod engine;
mod functions;
mod gucs;
mod jsonb_arg;
mod regclass;
mod security;
mod settings;
mod subxact;
mod tickets;
mod tracking;
mod triggers;
mod worker;

::pgrx::pg_module_magic!();

extension_sql_file!(
    "../sql/calendars.sql",
    name = "calendars",
    requires = [
        functions::validate_calendar,
        calendar_cache::catalog_changed
    ]
);
extension_sql_file!(
    "../sql/engine.sql",
    name = "engine",
    requires = [
        "calendars",
        engine::process_due,
        engine::policies_edited,
        engine::calendars_edited,
        triggers::ticket_row_changed,
        triggers::tickets_inserted,
        triggers::tickets_deleted,
        triggers::tickets_truncated,
        worker::worker_status
    ]
);
// Reporting reads everything else: it goes last.
extension_sql_file!("../sql/reporting.sql", name = "reporting", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // Building a stretch of a calendar's timeline is the one step of the
    // engine that takes time: let cancel and statement_timeout stop a query
    // that computes over centuries.
    sla_core::set_interrupt_check(check_interrupts);
    gucs::register();
    worker::register();
}

fn check_interrupts() {
    check_for_interrupts!();
}

#[cfg(any(test, feature = "pg_test"))]
mod pg_tests;

/// Required by `cargo pgrx test`.
#[cfg(test)]
pub mod pg_test {
    pub fn setup(_options: Vec<&str>) {}

    #[must_use]
    pub fn postgresql_conf_options() -> Vec<&'static str> {
        vec![]
    }
}
