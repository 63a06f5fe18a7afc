//! Pure calendar and SLA arithmetic behind the `pg_sla` PostgreSQL extension.
//!
//! Instants are microseconds since the Unix epoch in UTC ([`Micros`]) and
//! durations are microseconds of real elapsed time. Nothing here knows about
//! PostgreSQL; the extension converts its datums at the boundary.
#![forbid(unsafe_code)]

pub mod alert;
pub mod calendar;
pub mod clock;
pub mod error;
mod offsets;
pub mod policy;
mod timeline;

pub use alert::{alert_step, AlertStep};
pub use calendar::{Calendar, CalendarSpec, Window};
pub use clock::{
    apply_due, reconcile, summarize, Clock, ClockStatus, Hours, Metric, NotificationKind, Summary,
    Targets, TicketFacts, Transition,
};
pub use error::Error;
pub use timeline::{set_interrupt_check, Periods, MAX_INSTANT, MIN_INSTANT};

/// An instant: microseconds since 1970-01-01 00:00:00 UTC.
pub type Micros = i64;

pub const MICROS_PER_SECOND: i64 = 1_000_000;
pub const MICROS_PER_MINUTE: i64 = 60 * MICROS_PER_SECOND;
pub const MICROS_PER_HOUR: i64 = 60 * MICROS_PER_MINUTE;
pub const MICROS_PER_DAY: i64 = 24 * MICROS_PER_HOUR;

/// How far the engine looks for business time before it gives up: a calendar
/// whose next opening lies further away than this is treated as an error
/// rather than searched forever.
pub const SEARCH_HORIZON_YEARS: i64 = 10;
pub const SEARCH_HORIZON: Micros = SEARCH_HORIZON_YEARS * 366 * MICROS_PER_DAY;
