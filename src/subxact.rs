//! Running a step in its own subtransaction, so that one tenant's ticket
//! table (a trigger that raises, a dropped column) cannot fail work done for
//! everyone else.
use std::panic::AssertUnwindSafe;

use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::pg_sys::panic::CaughtError;
use pgrx::prelude::*;
use pgrx::PgTryBuilder;

use crate::time_budget;

/// An error caught by `attempt`.
pub struct Failure {
    pub code: PgSqlErrorCode,
    /// The message, with its SQLSTATE.
    pub message: String,
    /// A `time_budget` ran out (the cancel was pg_sla's own).
    pub budget_ran_out: bool,
}

impl Failure {
    /// The five-character SQLSTATE.
    pub fn sqlstate(&self) -> String {
        sqlstate(self.code)
    }

    /// The message without its SQLSTATE.
    pub fn error(&self) -> &str {
        self.message
            .strip_suffix(&format!(" (SQLSTATE {})", self.sqlstate()))
            .unwrap_or(&self.message)
    }
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
        if must_propagate(report_of(&error)) {
            error.rethrow();
        }
        Err(describe(&error))
    })
    .execute()
}

fn report_of(error: &CaughtError) -> &pgrx::pg_sys::panic::ErrorReportWithLevel {
    match error {
        CaughtError::PostgresError(report)
        | CaughtError::ErrorReport(report)
        | CaughtError::RustPanic {
            ereport: report, ..
        } => report,
    }
}

/// The SQLSTATE and message of a caught error.
pub fn describe(error: &CaughtError) -> Failure {
    let report = report_of(error);
    Failure {
        budget_ran_out: time_budget::ran_out(report.sql_error_code(), report.message()),
        code: report.sql_error_code(),
        message: format!(
            "{} (SQLSTATE {})",
            report.message(),
            sqlstate(report.sql_error_code())
        ),
    }
}

/// Errors that are about the session, not the ticket: a real cancel or
/// shutdown, raised by `ProcessInterrupts` (not a `time_budget` running
/// out), and the server running out of memory. User code raising the same SQLSTATEs (a trigger's `RAISE`)
/// cannot make itself uncatchable. Other resource errors (a full disk under
/// one table's tablespace, an index row too large, a recursion too deep)
/// belong to a ticket: it is reported and retried later while the others
/// go on.
fn must_propagate(report: &pgrx::pg_sys::panic::ErrorReportWithLevel) -> bool {
    let code = sqlstate(report.sql_error_code());
    let function = report.function_name();
    let interrupt = matches!(code.as_str(), "57014" | "57P01" | "57P02" | "57P03")
        && function == Some("ProcessInterrupts")
        // A time budget of pg_sla's own running out is the work's failure.
        && !time_budget::ran_out(report.sql_error_code(), report.message());
    let out_of_memory = code == "53200" && function != Some("exec_stmt_raise");
    interrupt || out_of_memory
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
