//! pg_sla: business-hours calendars and SLA deadlines inside PostgreSQL.
//!
//! The arithmetic lives in the pure `sla_core` crate; this crate converts
//! PostgreSQL values, caches calendars per backend and maps errors.
use pgrx::prelude::*;

// Layers, lowest first (docs/development.md; a test keeps imports to it).
// Primitives:
mod convert;
mod errors;
mod gucs;
mod identity;
mod invalidation;
mod jsonb_arg;
mod regclass;
mod sql_text;
mod subxact;
mod time_budget;
// Every read and write of pg_sla's tables and of ticket tables:
mod store;
// Caches:
mod calendar_cache;
mod configuration;
mod ticket_columns;
// Operations:
mod alerts;
mod policy_fit;
mod ticket;
mod trigger_support;
// SQL entry points:
mod due;
mod functions;
mod messages;
mod partitions;
mod policies;
mod recompute;
mod reporting;
mod ticket_triggers;
mod tracking;
mod worker;

::pgrx::pg_module_magic!();

extension_sql_file!(
    "../sql/calendars.sql",
    name = "calendars",
    requires = [functions::validate_calendar, invalidation::catalog_changed]
);
extension_sql_file!(
    "../sql/engine.sql",
    name = "engine",
    requires = [
        "calendars",
        policies::validate_policy,
        due::process_due,
        recompute::policies_edited,
        recompute::calendars_edited,
        ticket_triggers::ticket_row_changed,
        ticket_triggers::tickets_inserted,
        ticket_triggers::tickets_deleted,
        ticket_triggers::tickets_updated,
        ticket_triggers::tickets_truncated,
        messages::messages_written,
        tracking::backfill_batch,
        worker::worker_status
    ]
);
// Reporting reads everything else: it goes last.
extension_sql_file!("../sql/reporting.sql", name = "reporting", finalize);

#[pg_guard]
pub extern "C-unwind" fn _PG_init() {
    // First: no Rust backtrace or panic report ever reaches a client or the
    // log (see `errors`).
    errors::silence_panic_reports();
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
