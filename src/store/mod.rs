//! The store: every read and write of pg_sla's tables and of users' ticket
//! tables goes through this module, one submodule per kind of data.
//!
//! The identity rule lives here and nowhere else. Callers never choose whose
//! privileges a query runs with:
//! - pg_sla's tables (`sla.clocks`, `sla.notifications`, `sla.alert_rules`,
//!   `sla.policies`, `sla.tracked_tables`,
//!   `sla.pending_ticket_updates`) are read and written as their
//!   owner, whoever changed a ticket (`identity::as_sla_owner`);
//! - a ticket table is read and written as that table's owner, never as a
//!   superuser (`identity::run_as(table.owner)`);
//! - `sla.calendars` is read as the caller: calendar functions are parallel
//!   safe, and a parallel worker cannot switch identities; every role may
//!   read calendars;
//! - `sla.track` reads the system catalogs and adds the SLA columns as the
//!   caller, who owns the table, and `sla.untrack` drops pg_sla's triggers
//!   as the caller; the triggers are created as the owner of pg_sla's tables
//!   (`ticket_definitions`).
//!
//! Statements under a switched identity run with `search_path = pg_catalog,
//! pg_temp`; those run as the caller qualify their functions and operators
//! (`pg_catalog.`, `OPERATOR(pg_catalog.=)`). Casts do not depend on the
//! search path.
pub mod alert_rules;
pub mod bulk_insert;
pub mod calendars;
pub mod clock_layout;
mod clock_scan;
pub mod clocks;
mod kept_plans;
pub mod notifications;
pub mod pending_ticket_updates;
pub mod policies;
mod spi;
pub mod ticket_definitions;
pub mod tickets;
pub mod tracked_messages;
pub mod tracked_tables;
