//! Small SPI helpers shared by the store's modules.
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiTupleTable;

use crate::errors::SpiResultExt;

/// The OID of relation `sla.<name>`, if the schema has it: a new library
/// may run on a schema older than itself until `ALTER EXTENSION pg_sla
/// UPDATE`. Catalog cache lookups, no query.
pub fn sla_relation(name: &std::ffi::CStr) -> Option<pg_sys::Oid> {
    unsafe {
        let schema = pg_sys::get_namespace_oid(c"sla".as_ptr(), true);
        if schema == pg_sys::InvalidOid {
            return None;
        }
        let relid = pg_sys::get_relname_relid(name.as_ptr(), schema);
        (relid != pg_sys::InvalidOid).then_some(relid)
    }
}

/// Whether `sla.<table>` has column `column` (the same reason).
pub fn sla_column_exists(table: &std::ffi::CStr, column: &std::ffi::CStr) -> bool {
    sla_relation(table)
        .is_some_and(|relid| unsafe { pg_sys::get_attnum(relid, column.as_ptr()) } != 0)
}

/// The condition that limits rows of pg_sla's tables to the ticket tables
/// a role owns (the role in parameter `$N`, NULL for every table), as SQL
/// over their `ticket_table` column.
macro_rules! owned_by {
    ($param:literal) => {
        concat!(
            "($",
            $param,
            "::oid IS NULL OR EXISTS (
                 SELECT FROM pg_catalog.pg_class t
                  WHERE t.oid = ticket_table::oid
                    AND pg_catalog.pg_has_role($",
            $param,
            "::oid, t.relowner, 'USAGE')))"
        )
    };
}
pub(crate) use owned_by;

/// The first column of a query's rows, as text (NULLs left out).
pub fn text_column(query: &str, args: &[DatumWithOid], doing: &str) -> Vec<String> {
    Spi::connect(|client| texts(client.select(query, None, args)?)).or_raise(doing)
}

/// The same with a read-write SPI connection, whose fresh snapshot sees
/// what this very statement wrote earlier (a read-only one would not).
pub fn text_column_fresh(query: &str, args: &[DatumWithOid], doing: &str) -> Vec<String> {
    Spi::connect_mut(|client| texts(client.update(query, None, args)?)).or_raise(doing)
}

fn texts(rows: SpiTupleTable) -> Result<Vec<String>, pgrx::spi::Error> {
    let mut values = Vec::new();
    for row in rows {
        if let Some(value) = row.get::<String>(1)? {
            values.push(value);
        }
    }
    Ok(values)
}

/// Runs a statement that returns nothing of interest.
pub fn execute(query: &str, args: &[DatumWithOid], doing: &str) {
    Spi::connect_mut(|client| client.update(query, None, args).map(|_| ())).or_raise(doing)
}
