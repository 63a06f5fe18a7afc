//! pg_sla's settings (GUCs), all registered here.
use std::ffi::{CStr, CString};

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting, PostgresGucEnum};

use crate::convert::required_instant;
use sla_core::Micros;

/// The time ticket triggers record events at (a reply, a pause, a close):
/// empty means the transaction's time, `now()`. Setting it replays history,
/// e.g. when importing tickets, and lets tests control time.
static EVENT_TIME: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub fn register() {
    // Checked when set, so that a value the triggers cannot use is refused
    // there, naming the setting, rather than failing the next ticket write.
    // Not while registering: a value set before the library was loaded
    // would be dropped with a mere warning; the triggers refuse it instead.
    REGISTERING.with(|r| r.set(true));
    unsafe {
        GucRegistry::define_string_guc_with_hooks(
            c"pg_sla.event_time",
            c"Time at which ticket changes take effect in SLA clocks (empty: now()).",
            c"Set it to replay or import ticket history; ticket triggers then record replies, pauses and closes at this time.",
            &EVENT_TIME,
            GucContext::Userset,
            GucFlags::default(),
            Some(check_event_time),
            None,
            None,
        )
    };
    REGISTERING.with(|r| r.set(false));
    register_worker_settings();
    GucRegistry::define_enum_guc(
        c"pg_sla.notify_payload",
        c"What the NOTIFY sent for each pg_sla notification carries: full or id.",
        c"Any role that can connect may LISTEN; 'id' sends only the notification's id and kind.",
        &NOTIFY_PAYLOAD,
        // Server-wide (postgresql.conf, ALTER SYSTEM): a per-database or
        // per-role value would not reach the running worker.
        GucContext::Sighup,
        GucFlags::default(),
    );
    // A misspelt pg_sla.* setting is an error, not a silent placeholder.
    #[cfg(any(feature = "pg15", feature = "pg16", feature = "pg17"))]
    unsafe {
        pg_sys::MarkGUCPrefixReserved(c"pg_sla".as_ptr())
    };
    #[cfg(any(feature = "pg13", feature = "pg14"))]
    unsafe {
        pg_sys::EmitWarningsOnPlaceholders(c"pg_sla".as_ptr())
    };
}

/// Accepts an empty value or a finite timestamp with time zone, read as
/// `timestamptz` reads it, without raising (a check hook must not).
#[pg_guard]
unsafe extern "C-unwind" fn check_event_time(
    newval: *mut *mut std::ffi::c_char,
    _extra: *mut *mut std::ffi::c_void,
    _source: pg_sys::GucSource::Type,
) -> bool {
    let value = unsafe { *newval };
    // A parallel worker restores its leader's settings: checking this one
    // there crashed the worker. The leader checked it (or held it before
    // pg_sla was loaded, unchecked as then), and `event_time()` parses it
    // again where it is used.
    if value.is_null()
        || REGISTERING.with(std::cell::Cell::get)
        || unsafe { pg_sys::InitializingParallelWorker }
    {
        return true;
    }
    let text = unsafe { CStr::from_ptr(value) };
    if text.to_bytes().iter().all(u8::is_ascii_whitespace) || parses_as_finite_timestamptz(text) {
        return true;
    }
    unsafe {
        pg_sys::GUC_check_errdetail_string = pg_sys::pstrdup(
            c"pg_sla.event_time must be empty (the transaction's time) or a finite timestamp with time zone, such as '2026-11-23 09:00+01'.".as_ptr(),
        );
    }
    false
}

thread_local! {
    static REGISTERING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether `timestamptz_in` would read `text` as an instant pg_sla accepts
/// (finite, years 1 to 9999). Its parsing steps report most errors as codes;
/// before PostgreSQL 16 an unknown time zone name raises, which pgrx turns
/// into a Rust panic after flushing the error: caught here, it is a no.
fn parses_as_finite_timestamptz(text: &CStr) -> bool {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| parse_timestamptz(text)))
        .ok()
        .flatten()
        .is_some_and(|t| {
            (sla_core::MIN_INSTANT..=sla_core::MAX_INSTANT)
                .contains(&(t + crate::convert::PG_EPOCH_OFFSET))
        })
}

/// The instant `text` reads as, or `None`.
fn parse_timestamptz(text: &CStr) -> Option<pg_sys::Timestamp> {
    const FIELDS: usize = pg_sys::MAXDATEFIELDS as usize;
    let mut workbuf = [0 as std::ffi::c_char; pg_sys::MAXDATELEN as usize + FIELDS];
    let mut field = [std::ptr::null_mut::<std::ffi::c_char>(); FIELDS];
    let mut ftype = [0 as std::ffi::c_int; FIELDS];
    let mut fields = 0;
    let mut dtype = 0;
    let mut tm: pg_sys::pg_tm = unsafe { std::mem::zeroed() };
    let mut fsec: pg_sys::fsec_t = 0;
    let mut tz = 0;
    unsafe {
        if pg_sys::ParseDateTime(
            text.as_ptr(),
            workbuf.as_mut_ptr(),
            workbuf.len(),
            field.as_mut_ptr(),
            ftype.as_mut_ptr(),
            FIELDS as std::ffi::c_int,
            &mut fields,
        ) != 0
        {
            return None;
        }
        #[cfg(any(feature = "pg13", feature = "pg14", feature = "pg15"))]
        let decoded = pg_sys::DecodeDateTime(
            field.as_mut_ptr(),
            ftype.as_mut_ptr(),
            fields,
            &mut dtype,
            &mut tm,
            &mut fsec,
            &mut tz,
        );
        #[cfg(any(feature = "pg16", feature = "pg17"))]
        let decoded = {
            let mut extra: pg_sys::DateTimeErrorExtra = std::mem::zeroed();
            pg_sys::DecodeDateTime(
                field.as_mut_ptr(),
                ftype.as_mut_ptr(),
                fields,
                &mut dtype,
                &mut tm,
                &mut fsec,
                &mut tz,
                &mut extra,
            )
        };
        if decoded != 0 {
            return None;
        }
        // 'infinity' and '-infinity' are other kinds, not instants; 'epoch'
        // is 1970-01-01.
        if dtype == pg_sys::DTK_EPOCH as std::ffi::c_int {
            return Some(-crate::convert::PG_EPOCH_OFFSET);
        }
        if dtype != pg_sys::DTK_DATE as std::ffi::c_int {
            return None;
        }
        let mut result: pg_sys::Timestamp = 0;
        (pg_sys::tm2timestamp(&mut tm, fsec, &mut tz, &mut result) == 0).then_some(result)
    }
}

/// The instant ticket changes take effect: `pg_sla.event_time` if set, else
/// the transaction's start time.
pub fn event_time() -> Micros {
    // Read the raw setting: this runs for every ticket row, and the usual
    // accessor copies the string.
    let raw = unsafe { *EVENT_TIME.as_ptr() };
    let text = if raw.is_null() {
        ""
    } else {
        unsafe { CStr::from_ptr(raw) }.to_str().unwrap_or("")
    };
    if text.trim().is_empty() {
        let now = unsafe { pg_sys::GetCurrentTransactionStartTimestamp() };
        return required_instant(
            TimestampWithTimeZone::try_from(now).unwrap_or_else(|_| unreachable!()),
            "now()",
        );
    }
    // Rejected input raises timestamptz's own error (22007), naming the text.
    let text = CString::new(text).unwrap_or_default();
    let parsed = unsafe {
        pgrx::direct_function_call::<TimestampWithTimeZone>(
            pg_sys::timestamptz_in,
            &[
                Some(pg_sys::Datum::from(text.as_ptr())),
                Some(pg_sys::Datum::from(pg_sys::InvalidOid)),
                Some(pg_sys::Datum::from(-1i32)),
            ],
        )
    }
    .unwrap_or_else(|| unreachable!("timestamptz_in returns a value or raises"));
    required_instant(parsed, "pg_sla.event_time")
}

/// The database the background worker connects to.
static WORKER_DATABASE: GucSetting<Option<CString>> =
    GucSetting::<Option<CString>>::new(Some(c"postgres"));
/// Milliseconds between the worker's ticks.
static WORKER_NAPTIME_MS: GucSetting<i32> = GucSetting::<i32>::new(1000);
/// Due clocks per transaction of the worker.
static WORKER_BATCH_SIZE: GucSetting<i32> = GucSetting::<i32>::new(1000);
static WORKER_ENABLED: GucSetting<bool> = GucSetting::<bool>::new(true);

/// What NOTIFY payloads carry. LISTEN needs no privilege: any role that can
/// connect to the database hears channel `pg_sla`.
#[derive(PostgresGucEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum NotifyPayload {
    /// Id, kind, ticket table and id, metric, due time, policy; recipient
    /// and count for breach alerts.
    #[name = c"full"]
    Full,
    /// Only the notification's id and kind: listeners read the row with
    /// their own privileges.
    #[name = c"id"]
    Id,
}

static NOTIFY_PAYLOAD: GucSetting<NotifyPayload> =
    GucSetting::<NotifyPayload>::new(NotifyPayload::Full);

/// The worker's settings. They are read from postgresql.conf (or ALTER
/// SYSTEM) and take effect on reload; sessions can only look at them.
fn register_worker_settings() {
    GucRegistry::define_string_guc(
        c"pg_sla.database",
        c"Database in which the pg_sla background worker processes SLA clocks.",
        c"The worker restarts to connect to a new value on reload.",
        &WORKER_DATABASE,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_int_guc(
        c"pg_sla.naptime",
        c"Longest time the pg_sla worker sleeps between ticks.",
        c"It wakes earlier when a deadline or warning is known to fall due sooner.",
        &WORKER_NAPTIME_MS,
        10,
        3_600_000,
        GucContext::Sighup,
        GucFlags::UNIT_MS,
    );
    GucRegistry::define_int_guc(
        c"pg_sla.batch_size",
        c"Due SLA clocks the pg_sla worker handles per transaction.",
        c"Smaller batches hold ticket row locks for a shorter time.",
        &WORKER_BATCH_SIZE,
        1,
        1_000_000,
        GucContext::Sighup,
        GucFlags::default(),
    );
    GucRegistry::define_bool_guc(
        c"pg_sla.enabled",
        c"Whether the pg_sla background worker processes SLA clocks.",
        c"When off, the worker stays connected and idle.",
        &WORKER_ENABLED,
        GucContext::Sighup,
        GucFlags::default(),
    );
}

pub fn worker_database() -> String {
    WORKER_DATABASE
        .get()
        .and_then(|name| name.into_string().ok())
        .unwrap_or_default()
}

pub fn worker_naptime() -> std::time::Duration {
    std::time::Duration::from_millis(WORKER_NAPTIME_MS.get().max(1) as u64)
}

pub fn worker_batch_size() -> i32 {
    WORKER_BATCH_SIZE.get()
}

pub fn worker_enabled() -> bool {
    WORKER_ENABLED.get()
}
