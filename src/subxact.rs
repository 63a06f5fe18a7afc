//! Running a step in its own subtransaction, so that one tenant's ticket
//! table (a trigger that raises, a dropped column) cannot fail work done for
//! everyone else.
use std::panic::AssertUnwindSafe;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::PgTryBuilder;

/// An error caught by `attempt`.
pub struct Failure {
    pub code: PgSqlErrorCode,
    /// The message, with its SQLSTATE.
    pub message: String,
}

/// Runs `f` in a subtransaction. On an error, rolls the subtransaction back
/// and returns the error's message; see `must_propagate` for what is not
/// caught.
pub fn attempt<R>(f: impl FnOnce() -> R) -> Result<R, Failure> {
    let memory = unsafe { pg_sys::CurrentMemoryContext };
    let owner = unsafe { pg_sys::CurrentResourceOwner };
    unsafe {
        pg_sys::BeginInternalSubTransaction(std::ptr::null());
        pg_sys::MemoryContextSwitchTo(memory);
    }
    let restore = move || unsafe {
        pg_sys::MemoryContextSwitchTo(memory);
        pg_sys::CurrentResourceOwner = owner;
    };
    let mut f = Some(f);
    PgTryBuilder::new(AssertUnwindSafe(|| {
        let value = (f.take().expect("runs once"))();
        unsafe { pg_sys::ReleaseCurrentSubTransaction() };
        restore();
        Ok(value)
    }))
    .catch_others(move |error| {
        restore();
        unsafe { pg_sys::RollbackAndReleaseCurrentSubTransaction() };
        restore();
        let report = match &error {
            CaughtError::PostgresError(report)
            | CaughtError::ErrorReport(report)
            | CaughtError::RustPanic {
                ereport: report, ..
            } => report,
        };
        if must_propagate(report) {
            error.rethrow();
        }
        Err(Failure {
            code: report.sql_error_code(),
            message: format!(
                "{} (SQLSTATE {})",
                report.message(),
                sqlstate(report.sql_error_code())
            ),
        })
    })
    .execute()
}

/// Errors that are about the session, not the ticket: a real cancel or
/// shutdown (raised by `ProcessInterrupts`, so that user code raising the
/// same SQLSTATE cannot make itself uncatchable), and lack of resources or
/// system errors, which retrying ticket by ticket would only repeat.
fn must_propagate(report: &pgrx::pg_sys::panic::ErrorReportWithLevel) -> bool {
    let code = sqlstate(report.sql_error_code());
    let interrupt = matches!(code.as_str(), "57014" | "57P01" | "57P02" | "57P03")
        && report.function_name() == Some("ProcessInterrupts");
    interrupt || code.starts_with("53") || code.starts_with("54") || code.starts_with("58")
}

/// The five-character SQLSTATE of an error code.
fn sqlstate(code: PgSqlErrorCode) -> String {
    let mut value = code as i32;
    (0..5)
        .map(|_| {
            let c = ((value & 0x3F) as u8 + b'0') as char;
            value >>= 6;
            c
        })
        .collect()
}
