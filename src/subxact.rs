//! Running a step in its own subtransaction, so that one tenant's ticket
//! table (a trigger that raises, a dropped column) cannot fail work done for
//! everyone else.
use std::panic::AssertUnwindSafe;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::PgTryBuilder;

/// Runs `f` in a subtransaction. On an error, rolls the subtransaction back
/// and returns the error's message; cancellation and termination are not
/// caught.
pub fn attempt<R>(f: impl FnOnce() -> R) -> Result<R, String> {
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
        if matches!(
            report.sql_error_code(),
            PgSqlErrorCode::ERRCODE_QUERY_CANCELED
                | PgSqlErrorCode::ERRCODE_ADMIN_SHUTDOWN
                | PgSqlErrorCode::ERRCODE_CRASH_SHUTDOWN
        ) {
            error.rethrow();
        }
        Err(report.message().to_owned())
    })
    .execute()
}
