//! Pieces of SQL text that pg_sla builds: quoted names, and the core's
//! vocabulary as SQL lists.
use sla_core::ClockStatus;

/// A name quoted for SQL, whatever it holds.
pub fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// A string quoted as an SQL literal, whatever it holds and whatever
/// `standard_conforming_strings` says (as PostgreSQL's `quote_literal`).
pub fn quote_literal(value: &str) -> String {
    let quoted = value.replace('\'', "''");
    if value.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    }
}

/// A list of SQL string literals: `'running', 'due_soon'`. Only for the
/// core's fixed words, which hold no quote.
pub fn literal_list<'a>(words: impl IntoIterator<Item = &'a str>) -> String {
    words
        .into_iter()
        .map(|w| format!("'{w}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The open clock statuses as a list of SQL literals, for `status IN (…)`.
pub fn open_status_list() -> String {
    literal_list(ClockStatus::OPEN.iter().map(|s| s.as_str()))
}

/// The statuses of a breached clock that is still open, as SQL.
pub fn breached_open_status_list() -> String {
    literal_list(ClockStatus::BREACHED_OPEN.iter().map(|s| s.as_str()))
}
