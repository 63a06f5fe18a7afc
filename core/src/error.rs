use std::fmt;

use crate::{Micros, SEARCH_HORIZON_YEARS};

/// Everything the core can refuse. Each variant maps to one SQLSTATE in the
/// extension, so keep them coarse and the messages specific.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The calendar definition is malformed; `field` is a JSON path such as
    /// `hours.mon[1]` and `message` says what is wrong with its value.
    InvalidDefinition { field: String, message: String },
    /// An instant or a result lies outside the range the engine supports.
    OutOfRange { what: &'static str, value: String },
    /// No business time exists within the search horizon.
    NoBusinessTime { from: Micros, forward: bool },
}

impl Error {
    pub(crate) fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::InvalidDefinition {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Formats an instant as ISO 8601 UTC for error messages.
pub fn format_instant(t: Micros) -> String {
    match chrono::DateTime::from_timestamp_micros(t) {
        // chrono writes years past 9999 with a sign: "+10000".
        Some(dt) => dt
            .format("%Y-%m-%d %H:%M:%S%.f+00")
            .to_string()
            .trim_start_matches('+')
            .to_string(),
        None => format!("{t} microseconds after 1970-01-01"),
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::InvalidDefinition { field, message } => {
                write!(f, "invalid calendar definition: {field}: {message}")
            }
            Error::OutOfRange { what, value } => {
                write!(f, "{what} {value} is out of the range pg_sla supports")
            }
            Error::NoBusinessTime { from, forward } => write!(
                f,
                "no business time within {SEARCH_HORIZON_YEARS} years {} {}",
                if *forward { "after" } else { "before" },
                format_instant(*from)
            ),
        }
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
