//! Calendar rows (`sla.calendars`), read as the caller: calendar functions
//! are parallel safe and a parallel worker cannot switch identities.
use pgrx::prelude::*;

use crate::errors::SpiResultExt;

/// A calendar row: its definition as JSON text and the OID of the table it
/// came from (for cache invalidation).
pub struct CalendarRow {
    pub definition: String,
    pub table_oid: pg_sys::Oid,
}

/// Reads a calendar by name using the snapshot that is active now.
pub fn read(name: &str) -> Option<CalendarRow> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT definition::text, tableoid FROM sla.calendars WHERE name OPERATOR(pg_catalog.=) $1",
            Some(1),
            &[name.into()],
        )?;
        if rows.is_empty() {
            return Ok::<_, pgrx::spi::Error>(None);
        }
        let row = rows.first();
        Ok(Some(CalendarRow {
            definition: row.get::<String>(1)?.unwrap_or_default(),
            table_oid: row.get::<pg_sys::Oid>(2)?.unwrap_or(pg_sys::InvalidOid),
        }))
    })
    .or_raise("read sla.calendars")
}
