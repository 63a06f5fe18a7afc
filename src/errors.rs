//! Errors that pg_sla raises itself, apart from the core's (see `convert`).
//!
//! A PostgreSQL error raised by a statement pg_sla runs through SPI (a
//! constraint, a user's trigger, a lock timeout) is not handled here: pgrx
//! carries it through the Rust frames and raises it again with its own
//! SQLSTATE, message, detail and hint. What is left are SPI's own result
//! codes and value conversions, which become errors with a fitting SQLSTATE
//! and the context they happened in.
//!
//! pgrx's panic hook records a Rust backtrace for every panic (which is how
//! pgrx carries PostgreSQL errors, too) whenever `RUST_BACKTRACE` or
//! `RUST_LIB_BACKTRACE` is set in the server's environment, and adds it to
//! the DETAIL the client sees. `silence_panic_reports` replaces that hook.
use pgrx::pg_sys::errcodes::PgSqlErrorCode;
use pgrx::prelude::*;
use pgrx::spi::{SpiError, SpiErrorCodes};

/// The SQLSTATE of an SPI failure.
pub fn spi_error_code(error: &SpiError) -> PgSqlErrorCode {
    use PgSqlErrorCode::*;
    match error {
        SpiError::SpiError(code) => match code {
            SpiErrorCodes::Transaction => ERRCODE_INVALID_TRANSACTION_TERMINATION,
            SpiErrorCodes::Copy => ERRCODE_FEATURE_NOT_SUPPORTED,
            SpiErrorCodes::NoAttribute => ERRCODE_UNDEFINED_COLUMN,
            SpiErrorCodes::NoOutFunc => ERRCODE_UNDEFINED_FUNCTION,
            SpiErrorCodes::TypUnknown => ERRCODE_UNDEFINED_OBJECT,
            SpiErrorCodes::RelNotFound => ERRCODE_UNDEFINED_TABLE,
            SpiErrorCodes::RelDuplicate => ERRCODE_DUPLICATE_TABLE,
            SpiErrorCodes::Argument | SpiErrorCodes::Param => ERRCODE_INVALID_PARAMETER_VALUE,
            SpiErrorCodes::Connect
            | SpiErrorCodes::Unconnected
            | SpiErrorCodes::OpUnknown
            | SpiErrorCodes::Cursor => ERRCODE_INTERNAL_ERROR,
        },
        SpiError::DatumError(_) => ERRCODE_DATATYPE_MISMATCH,
        SpiError::CursorNotFound(_) => ERRCODE_INVALID_CURSOR_NAME,
        SpiError::PreparedStatementArgumentMismatch { .. }
        | SpiError::InvalidPosition
        | SpiError::NoTupleTable => ERRCODE_INTERNAL_ERROR,
    }
}

/// Replaces pgrx's panic hook (installed when the library is loaded, just
/// before `_PG_init`) with one that records and prints nothing. pgrx then
/// raises PostgreSQL errors and pg_sla's own with their SQLSTATE, message,
/// detail and hint only; the one thing lost is the source location of a
/// plain Rust panic, which pg_sla's code does not rely on. With pgrx 0.18 a
/// PostgreSQL error re-raised from SPI also loses its CONTEXT lines and
/// constraint and column names (pgrx 0.19.2 re-throws it whole).
pub fn silence_panic_reports() {
    std::panic::set_hook(Box::new(|_| {}));
    // A pgrx extension loaded after pg_sla installs its own hook again,
    // into its own copy of the standard library: with backtraces turned off
    // for the process (PostgreSQL runs no threads), it records none either.
    std::env::set_var("RUST_LIB_BACKTRACE", "0");
}

/// Raises an SPI failure, saying what pg_sla was doing.
#[track_caller]
pub fn raise_spi(error: SpiError, doing: &str) -> ! {
    ereport!(
        ERROR,
        spi_error_code(&error),
        format!("pg_sla could not {doing}: {error}")
    );
}

/// `result.or_raise("read sla.clocks")`: the value, or the SPI failure
/// raised with its SQLSTATE.
pub trait SpiResultExt<T> {
    fn or_raise(self, doing: &str) -> T;
}

impl<T> SpiResultExt<T> for Result<T, SpiError> {
    #[track_caller]
    fn or_raise(self, doing: &str) -> T {
        match self {
            Ok(value) => value,
            Err(error) => raise_spi(error, doing),
        }
    }
}
