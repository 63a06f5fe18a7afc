//! pg_sla's settings (GUCs), all registered here.
use std::ffi::{CStr, CString};

use pgrx::datum::TimestampWithTimeZone;
use pgrx::prelude::*;
use pgrx::{GucContext, GucFlags, GucRegistry, GucSetting};

use crate::convert::required_instant;
use sla_core::Micros;

/// The time ticket triggers record events at (a reply, a pause, a close):
/// empty means the transaction's time, `now()`. Setting it replays history,
/// e.g. when importing tickets, and lets tests control time.
static EVENT_TIME: GucSetting<Option<CString>> = GucSetting::<Option<CString>>::new(None);

pub fn register() {
    GucRegistry::define_string_guc(
        c"pg_sla.event_time",
        c"Time at which ticket changes take effect in SLA clocks (empty: now()).",
        c"Set it to replay or import ticket history; ticket triggers then record replies, pauses and closes at this time.",
        &EVENT_TIME,
        GucContext::Userset,
        GucFlags::default(),
    );
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
