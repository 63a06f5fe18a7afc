//! Every read of pg_sla's own tables goes through here.
use pgrx::prelude::*;

/// A calendar row: its definition as JSON text and the OID of the table it
/// came from (for cache invalidation).
pub struct CalendarRow {
    pub definition: String,
    pub table_oid: pg_sys::Oid,
}

/// Reads a calendar by name using the snapshot that is active now.
pub fn read_calendar(name: &str) -> Option<CalendarRow> {
    Spi::connect(|client| {
        let rows = client.select(
            "SELECT definition::text, tableoid FROM sla.calendars WHERE name = $1",
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
    .unwrap_or_else(|e| pgrx::error!("pg_sla could not read sla.calendars: {e}"))
}
