//! Small SPI helpers shared by the store's modules.
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;
use pgrx::spi::SpiTupleTable;

use crate::errors::SpiResultExt;

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
