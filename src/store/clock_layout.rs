//! The row of `sla.clocks`, described once, in column order. The SELECT
//! list, the row reader, the direct read's column lookup and the slots of
//! the table-access-method writes are all derived from `CLOCK_ROW`; a
//! `#[pg_test]` compares it with `pg_attribute`.
use std::sync::OnceLock;

use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::spi::SpiHeapTupleData;
use sla_core::{Clock, ClockStatus, Micros};

use crate::convert::{duration, finite_instant};

/// A column of `sla.clocks`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClockColumn {
    TicketTable,
    TicketId,
    Metric,
    Cycle,
    Policy,
    Status,
    StartedAt,
    Target,
    DueAt,
    WarnAt,
    ReleaseAt,
    NextTransitionAt,
    PausedSince,
    PausedTime,
    StoppedAt,
    WarnedAt,
    BreachedAt,
    ReleasedAt,
    RetryAt,
}

/// What a column holds, and so how it is read and written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Which ticket the clock belongs to: set by the table's key.
    Ticket,
    /// Set when the clock starts and never updated: its identity within
    /// its ticket (metric, cycle) and its start.
    Fixed,
    /// The clock's state, as the core's `Clock` holds it: updated in place.
    State,
    /// pg_sla's bookkeeping beside the clock (`retry_at`): neither read into
    /// a `Clock` nor written with one.
    Bookkeeping,
}

use ClockColumn::*;

/// The columns in table order.
pub const CLOCK_ROW: [ClockColumn; 19] = [
    TicketTable,
    TicketId,
    Metric,
    Cycle,
    Policy,
    Status,
    StartedAt,
    Target,
    DueAt,
    WarnAt,
    ReleaseAt,
    NextTransitionAt,
    PausedSince,
    PausedTime,
    StoppedAt,
    WarnedAt,
    BreachedAt,
    ReleasedAt,
    RetryAt,
];

impl ClockColumn {
    pub fn name(self) -> &'static str {
        match self {
            TicketTable => "ticket_table",
            TicketId => "ticket_id",
            Metric => "metric",
            Cycle => "cycle",
            Policy => "policy",
            Status => "status",
            StartedAt => "started_at",
            Target => "target",
            DueAt => "due_at",
            WarnAt => "warn_at",
            ReleaseAt => "release_at",
            NextTransitionAt => "next_transition_at",
            PausedSince => "paused_since",
            PausedTime => "paused_time",
            StoppedAt => "stopped_at",
            WarnedAt => "warned_at",
            BreachedAt => "breached_at",
            ReleasedAt => "released_at",
            RetryAt => "retry_at",
        }
    }

    /// The column's type as `format_type` prints it (a `#[pg_test]`
    /// compares the layout with the table's).
    #[cfg(any(test, feature = "pg_test"))]
    pub fn sql_type(self) -> &'static str {
        match self {
            TicketTable => "regclass",
            TicketId | Metric | Policy | Status => "text",
            Cycle => "integer",
            Target | PausedTime => "interval",
            _ => "timestamp with time zone",
        }
    }

    pub fn role(self) -> Role {
        match self {
            TicketTable | TicketId => Role::Ticket,
            Metric | Cycle | StartedAt => Role::Fixed,
            RetryAt => Role::Bookkeeping,
            _ => Role::State,
        }
    }

    /// An instant of the clock, for the timestamp columns.
    fn instant(self, clock: &Clock) -> Option<Micros> {
        match self {
            StartedAt => Some(clock.started_at),
            DueAt => clock.due_at,
            WarnAt => clock.warn_at,
            ReleaseAt => clock.release_at,
            NextTransitionAt => clock.next_transition_at,
            PausedSince => clock.paused_since,
            StoppedAt => clock.stopped_at,
            WarnedAt => clock.warned_at,
            BreachedAt => clock.breached_at,
            ReleasedAt => clock.released_at,
            _ => None,
        }
    }

    /// A clock's value of this column, for writing; `None` for the ticket
    /// and bookkeeping columns, which a `Clock` does not hold.
    pub fn value(self, clock: &Clock) -> Option<ClockValue<'_>> {
        Some(match self {
            Metric => ClockValue::Text(clock.metric.as_str()),
            Cycle => ClockValue::Int(clock.cycle),
            Policy => ClockValue::Text(&clock.policy),
            Status => ClockValue::Text(clock.status.as_str()),
            Target => ClockValue::Duration(clock.target),
            PausedTime => ClockValue::Duration(clock.paused_time),
            TicketTable | TicketId | RetryAt => return None,
            instant => ClockValue::Instant(instant.instant(clock)),
        })
    }
}

/// A value of a clock column, as the core holds it.
pub enum ClockValue<'a> {
    Text(&'a str),
    Int(i32),
    Instant(Option<Micros>),
    Duration(Micros),
}

/// The columns read into a `Clock`, in order.
pub fn clock_columns() -> impl Iterator<Item = ClockColumn> {
    CLOCK_ROW
        .into_iter()
        .filter(|c| matches!(c.role(), Role::Fixed | Role::State))
}

/// The select list over alias `c` that `read_clock` reads, for
/// `SELECT c.ctid, c.ticket_id, <this>`.
pub fn clock_select_list() -> &'static str {
    static LIST: OnceLock<String> = OnceLock::new();
    LIST.get_or_init(|| {
        clock_columns()
            .map(|c| format!("c.{}", c.name()))
            .collect::<Vec<_>>()
            .join(", ")
    })
}

/// Where `read_clock_from` reads a clock's columns: an SPI row or a
/// locked heap tuple.
pub trait ClockSource {
    /// The value of `column`, the `i`-th of `clock_columns()`.
    fn value<T: pgrx::FromDatum + pgrx::IntoDatum>(
        &self,
        column: ClockColumn,
        i: usize,
    ) -> Result<Option<T>, pgrx::spi::Error>;
}

/// An SPI row whose columns from `.1` on are `clock_select_list()`.
impl ClockSource for (&SpiHeapTupleData<'_>, usize) {
    fn value<T: pgrx::FromDatum + pgrx::IntoDatum>(
        &self,
        _column: ClockColumn,
        i: usize,
    ) -> Result<Option<T>, pgrx::spi::Error> {
        self.0.get(self.1 + i)
    }
}

/// Reads a `Clock` from a row whose columns from `first` on are
/// `clock_select_list()`.
pub fn read_clock(row: &SpiHeapTupleData, first: usize) -> Result<Clock, pgrx::spi::Error> {
    read_clock_from(&(row, first))
}

/// Reads a `Clock` from the columns `clock_columns()` of a source.
pub fn read_clock_from(source: &impl ClockSource) -> Result<Clock, pgrx::spi::Error> {
    // Every field is overwritten below.
    let mut clock = Clock::start(sla_core::Metric::FirstResponse, 1, "", 0, 0);
    for (i, column) in clock_columns().enumerate() {
        let text = || -> Result<String, pgrx::spi::Error> {
            Ok(source.value(column, i)?.unwrap_or_default())
        };
        let instant = || -> Result<Option<Micros>, pgrx::spi::Error> {
            Ok(source
                .value::<TimestampWithTimeZone>(column, i)?
                .and_then(finite_instant))
        };
        let micros = || -> Result<Micros, pgrx::spi::Error> {
            Ok(source
                .value::<Interval>(column, i)?
                .map_or(0, |v| duration(v, column.name())))
        };
        match column {
            Metric => {
                let metric = text()?;
                clock.metric = sla_core::Metric::parse(&metric).unwrap_or_else(|| {
                    corrupt(&format!("sla.clocks holds an unknown metric \"{metric}\""))
                });
            }
            Cycle => clock.cycle = source.value(column, i)?.unwrap_or(1),
            Policy => clock.policy = text()?,
            Status => {
                let status = text()?;
                clock.status = ClockStatus::parse(&status).unwrap_or_else(|| {
                    corrupt(&format!("sla.clocks holds an unknown status \"{status}\""))
                });
            }
            StartedAt => clock.started_at = instant()?.unwrap_or_default(),
            Target => clock.target = micros()?,
            DueAt => clock.due_at = instant()?,
            WarnAt => clock.warn_at = instant()?,
            ReleaseAt => clock.release_at = instant()?,
            NextTransitionAt => clock.next_transition_at = instant()?,
            PausedSince => clock.paused_since = instant()?,
            PausedTime => clock.paused_time = micros()?,
            StoppedAt => clock.stopped_at = instant()?,
            WarnedAt => clock.warned_at = instant()?,
            BreachedAt => clock.breached_at = instant()?,
            ReleasedAt => clock.released_at = instant()?,
            TicketTable | TicketId | RetryAt => {}
        }
    }
    Ok(clock)
}

fn corrupt(message: &str) -> ! {
    pgrx::ereport!(
        ERROR,
        pgrx::PgSqlErrorCode::ERRCODE_DATA_CORRUPTED,
        message.to_owned(),
        "A value outside pg_sla's vocabulary was written to sla.clocks by hand."
    );
}
