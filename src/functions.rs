//! The SQL functions. Each comes in two forms: by calendar name (STABLE,
//! cached per backend) and by inline jsonb definition (IMMUTABLE).
use std::rc::Rc;

use pgrx::datum::{Interval, Range, TimestampWithTimeZone};
use pgrx::prelude::*;
use sla_core::{Calendar, Periods};

use crate::calendar_cache;
use crate::convert::{duration, finite_instant, interval, or_raise, required_instant, timestamptz};
use crate::jsonb_arg::JsonbArg;

fn add(
    calendar: &Calendar,
    name: Option<&str>,
    ts: TimestampWithTimeZone,
    by: Interval,
) -> TimestampWithTimeZone {
    let by = duration(by, "duration");
    match finite_instant(ts) {
        Some(t) => timestamptz(or_raise(calendar.add(t, by), name)),
        None => ts,
    }
}

fn between(
    calendar: &Calendar,
    name: Option<&str>,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
) -> Interval {
    let from = required_instant(from, "from_ts");
    let to = required_instant(to, "to_ts");
    interval(or_raise(calendar.between(from, to), name))
}

fn is_open(calendar: &Calendar, name: Option<&str>, ts: TimestampWithTimeZone) -> bool {
    match finite_instant(ts) {
        Some(t) => or_raise(calendar.is_open(t), name),
        None => false,
    }
}

fn next_open(
    calendar: &Calendar,
    name: Option<&str>,
    ts: TimestampWithTimeZone,
) -> TimestampWithTimeZone {
    match finite_instant(ts) {
        Some(t) => timestamptz(or_raise(calendar.next_open(t), name)),
        None => ts,
    }
}

fn periods(
    calendar: Rc<Calendar>,
    name: Option<&str>,
    from: TimestampWithTimeZone,
    to: TimestampWithTimeZone,
) -> SetOfIterator<'static, Range<TimestampWithTimeZone>> {
    let from = required_instant(from, "from_ts");
    let to = required_instant(to, "to_ts");
    let periods = or_raise(Periods::new(calendar, from, to), name);
    SetOfIterator::new(periods.map(|(s, e)| Range::from(timestamptz(s)..timestamptz(e))))
}

/// The earliest instant at which `duration` of business time has elapsed
/// since `ts` (going back for a negative duration).
#[pg_extern(stable, parallel_safe, name = "add_business_time")]
fn add_business_time(
    calendar: &str,
    ts: TimestampWithTimeZone,
    duration: Interval,
    fcinfo: pg_sys::FunctionCallInfo,
) -> TimestampWithTimeZone {
    add(
        &calendar_cache::by_name_for_call(calendar, fcinfo),
        Some(calendar),
        ts,
        duration,
    )
}

#[pg_extern(immutable, parallel_safe, name = "add_business_time")]
fn add_business_time_inline(
    definition: JsonbArg,
    ts: TimestampWithTimeZone,
    duration: Interval,
) -> TimestampWithTimeZone {
    add(
        &calendar_cache::by_definition(&definition),
        None,
        ts,
        duration,
    )
}

/// Business time in `[from_ts, to_ts)`, negative when `to_ts < from_ts`.
#[pg_extern(stable, parallel_safe, name = "business_time_between")]
fn business_time_between(
    calendar: &str,
    from_ts: TimestampWithTimeZone,
    to_ts: TimestampWithTimeZone,
    fcinfo: pg_sys::FunctionCallInfo,
) -> Interval {
    between(
        &calendar_cache::by_name_for_call(calendar, fcinfo),
        Some(calendar),
        from_ts,
        to_ts,
    )
}

#[pg_extern(immutable, parallel_safe, name = "business_time_between")]
fn business_time_between_inline(
    definition: JsonbArg,
    from_ts: TimestampWithTimeZone,
    to_ts: TimestampWithTimeZone,
) -> Interval {
    between(
        &calendar_cache::by_definition(&definition),
        None,
        from_ts,
        to_ts,
    )
}

#[pg_extern(stable, parallel_safe, name = "is_business_time")]
fn is_business_time(
    calendar: &str,
    ts: TimestampWithTimeZone,
    fcinfo: pg_sys::FunctionCallInfo,
) -> bool {
    is_open(
        &calendar_cache::by_name_for_call(calendar, fcinfo),
        Some(calendar),
        ts,
    )
}

#[pg_extern(immutable, parallel_safe, name = "is_business_time")]
fn is_business_time_inline(definition: JsonbArg, ts: TimestampWithTimeZone) -> bool {
    is_open(&calendar_cache::by_definition(&definition), None, ts)
}

/// `ts` itself when it is business time, else the next opening.
#[pg_extern(stable, parallel_safe, name = "next_business_time")]
fn next_business_time(
    calendar: &str,
    ts: TimestampWithTimeZone,
    fcinfo: pg_sys::FunctionCallInfo,
) -> TimestampWithTimeZone {
    next_open(
        &calendar_cache::by_name_for_call(calendar, fcinfo),
        Some(calendar),
        ts,
    )
}

#[pg_extern(immutable, parallel_safe, name = "next_business_time")]
fn next_business_time_inline(
    definition: JsonbArg,
    ts: TimestampWithTimeZone,
) -> TimestampWithTimeZone {
    next_open(&calendar_cache::by_definition(&definition), None, ts)
}

/// The open periods within `[from_ts, to_ts)`, clipped to it.
#[pg_extern(stable, parallel_safe, name = "business_periods")]
fn business_periods(
    calendar: &str,
    from_ts: TimestampWithTimeZone,
    to_ts: TimestampWithTimeZone,
) -> SetOfIterator<'static, Range<TimestampWithTimeZone>> {
    periods(
        calendar_cache::by_name(calendar),
        Some(calendar),
        from_ts,
        to_ts,
    )
}

#[pg_extern(immutable, parallel_safe, name = "business_periods")]
fn business_periods_inline(
    definition: JsonbArg,
    from_ts: TimestampWithTimeZone,
    to_ts: TimestampWithTimeZone,
) -> SetOfIterator<'static, Range<TimestampWithTimeZone>> {
    periods(
        calendar_cache::by_definition(&definition),
        None,
        from_ts,
        to_ts,
    )
}

/// CHECK constraint of `sla.calendars.definition`: true for a valid
/// definition, else an error (22023) naming the field and value.
#[pg_extern(immutable, parallel_safe)]
fn validate_calendar(definition: JsonbArg) -> bool {
    or_raise(sla_core::CalendarSpec::parse(&definition.to_text()), None);
    true
}
