//! Conversions between PostgreSQL values and the core's microseconds, and the
//! mapping of core errors to SQLSTATEs.
use pgrx::datum::{Interval, TimestampWithTimeZone};
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use sla_core::{Error, Micros, MICROS_PER_DAY};

/// Microseconds from the Unix epoch to PostgreSQL's epoch (2000-01-01 UTC).
pub const PG_EPOCH_OFFSET: Micros = 946_684_800 * 1_000_000;

/// A required argument, or 22004 naming it.
pub fn required<T>(value: Option<T>, argument: &str) -> T {
    value.unwrap_or_else(|| {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_NULL_VALUE_NOT_ALLOWED,
            format!("{argument} must not be NULL")
        );
    })
}

/// A finite timestamptz as core microseconds; `None` for ±infinity.
pub fn finite_instant(ts: TimestampWithTimeZone) -> Option<Micros> {
    if ts.is_finite() {
        Some(ts.into_inner() + PG_EPOCH_OFFSET)
    } else {
        None
    }
}

/// A `timestamp without time zone` (PostgreSQL's raw microseconds) read
/// as a wall-clock time in `zone`, as `AT TIME ZONE` reads it: an
/// ambiguous time (clocks set back) and a skipped one (clocks set forward)
/// resolve as PostgreSQL resolves them. `None` for the last day at either
/// end of the timestamp range, which the shift could leave (an
/// application's write must not fail over it).
pub fn local_time_in_zone(raw: i64, zone: &str) -> Option<Micros> {
    // PostgreSQL's MIN_TIMESTAMP and END_TIMESTAMP (4714-11-24 BC and
    // 294277-01-01), a day inside.
    const SAFE_MIN: i64 = -211_813_488_000_000_000 + MICROS_PER_DAY;
    const SAFE_END: i64 = 9_223_371_331_200_000_000 - MICROS_PER_DAY;
    if !(SAFE_MIN..SAFE_END).contains(&raw) {
        return None;
    }
    let instant = unsafe {
        pgrx::direct_function_call::<TimestampWithTimeZone>(
            pg_sys::timestamp_zone,
            &[zone.into_datum(), Some(pg_sys::Datum::from(raw))],
        )
    }?;
    finite_instant(instant)
}

/// `value` read as a value of a column's type and printed back as
/// PostgreSQL prints it (`'true'` as `t`, `'007'` as `7`), or `None` when it
/// is not a value of that type.
pub fn printed_as_type(value: &str, type_oid: pg_sys::Oid, type_modifier: i32) -> Option<String> {
    let text = std::ffi::CString::new(value).ok()?;
    let (mut input, mut io_param) = (pg_sys::InvalidOid, pg_sys::InvalidOid);
    let (mut output, mut is_varlena) = (pg_sys::InvalidOid, false);
    unsafe {
        pg_sys::getTypeInputInfo(type_oid, &mut input, &mut io_param);
        pg_sys::getTypeOutputInfo(type_oid, &mut output, &mut is_varlena);
    }
    crate::subxact::attempt(|| unsafe {
        let datum =
            pg_sys::OidInputFunctionCall(input, text.as_ptr().cast_mut(), io_param, type_modifier);
        let printed = pg_sys::OidOutputFunctionCall(output, datum);
        std::ffi::CStr::from_ptr(printed)
            .to_string_lossy()
            .into_owned()
    })
    .ok()
}

/// A finite timestamptz, or an error naming the argument.
pub fn required_instant(ts: TimestampWithTimeZone, argument: &str) -> Micros {
    finite_instant(ts).unwrap_or_else(|| {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{argument} must be a finite timestamp, got {ts}")
        );
    })
}

pub fn timestamptz(t: Micros) -> TimestampWithTimeZone {
    TimestampWithTimeZone::try_from(t - PG_EPOCH_OFFSET).unwrap_or_else(|_| {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW,
            "timestamp out of range"
        );
    })
}

/// An interval as microseconds of real time. Days count as 24 hours; months
/// have no fixed length, so a month part is refused.
pub fn duration(value: Interval, argument: &str) -> Micros {
    if value.months() != 0 {
        ereport!(
            ERROR,
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE,
            format!("{argument} must not have a month or year part, got {value}"),
            "Months and years have no fixed length in business time; use days or hours, e.g. '30 days'."
        );
    }
    i64::from(value.days())
        .checked_mul(MICROS_PER_DAY)
        .and_then(|days| days.checked_add(value.micros()))
        .unwrap_or_else(|| {
            ereport!(
                ERROR,
                PgSqlErrorCode::ERRCODE_INTERVAL_FIELD_OVERFLOW,
                format!("{argument} is out of range: {value}")
            );
        })
}

pub fn interval(micros: Micros) -> Interval {
    Interval::new(0, 0, micros).expect("an interval of microseconds alone has no sign mismatch")
}

/// Raises a core error as a PostgreSQL error with its SQLSTATE, naming the
/// calendar when it was looked up by name.
pub fn raise(error: Error, calendar: Option<&str>) -> ! {
    let code = match error {
        Error::InvalidDefinition { .. } | Error::NoBusinessTime { .. } => {
            PgSqlErrorCode::ERRCODE_INVALID_PARAMETER_VALUE
        }
        Error::OutOfRange { .. } => PgSqlErrorCode::ERRCODE_DATETIME_FIELD_OVERFLOW,
    };
    let message = match calendar {
        Some(name) => format!("calendar \"{name}\": {error}"),
        None => error.to_string(),
    };
    ereport!(ERROR, code, message);
}

/// Unwraps a core result or raises it.
pub fn or_raise<T>(result: Result<T, Error>, calendar: Option<&str>) -> T {
    match result {
        Ok(value) => value,
        Err(error) => raise(error, calendar),
    }
}
