//! A time budget for part of a statement. The worker gives each attempt at
//! a ticket table's due tickets one, so that a table whose triggers hang
//! (or take seconds) cannot hold up the others.
//!
//! `statement_timeout` is not armed for statements a background worker runs
//! through SPI; this arms PostgreSQL's statement timeout itself. When it
//! expires, PostgreSQL cancels with "canceling statement due to statement
//! timeout", which `subxact` tells apart from an administrator's cancel
//! ("due to user request"): the first is the table's failure, the second
//! still stops the worker's statement.
use std::cell::Cell;
use std::ffi::c_int;
use std::time::Duration;

use pgrx::pg_sys;
use pgrx::pg_sys::errcodes::PgSqlErrorCode;

/// PostgreSQL's `STATEMENT_TIMEOUT` (`TimeoutId`): 3 in versions 13 to 17.
const STATEMENT_TIMEOUT: c_int = 3;

extern "C-unwind" {
    fn enable_timeout_after(id: c_int, delay_ms: c_int);
    fn disable_timeout(id: c_int, keep_indicator: bool);
    fn get_timeout_indicator(id: c_int, reset_indicator: bool) -> bool;
}

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
}

/// A budget that runs while alive: dropping it disarms the timeout.
pub struct Budget(());

/// Starts a budget of `after` (at least a millisecond).
pub fn arm(after: Duration) -> Budget {
    let ms = c_int::try_from(after.as_millis())
        .unwrap_or(c_int::MAX)
        .max(1);
    ARMED.with(|armed| armed.set(true));
    unsafe { pg_sys::ffi::pg_guard_ffi_boundary(|| enable_timeout_after(STATEMENT_TIMEOUT, ms)) };
    Budget(())
}

impl Drop for Budget {
    fn drop(&mut self) {
        unsafe {
            pg_sys::ffi::pg_guard_ffi_boundary(|| {
                disable_timeout(STATEMENT_TIMEOUT, false);
                // Expired after the work was done, before its cancel was
                // raised: that cancel is ours, and must not fall on the
                // next statement.
                if get_timeout_indicator(STATEMENT_TIMEOUT, true) {
                    pg_sys::QueryCancelPending = 0;
                }
            })
        };
        ARMED.with(|armed| armed.set(false));
    }
}

/// How PostgreSQL's message for an expired statement timeout begins; an
/// error pg_sla raises again after catching one begins the same way.
pub const TIMEOUT_MESSAGE: &str = "canceling statement due to statement timeout";

/// Whether an error raised with `code` and `message` is a budget running
/// out, rather than an administrator's cancel or a user's error.
pub fn ran_out(code: PgSqlErrorCode, message: &str) -> bool {
    ARMED.with(Cell::get)
        && code == PgSqlErrorCode::ERRCODE_QUERY_CANCELED
        && message.starts_with(TIMEOUT_MESSAGE)
}
