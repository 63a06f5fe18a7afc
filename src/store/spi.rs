//! Small SPI helpers shared by the store's modules.
use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use crate::errors::SpiResultExt;

/// The first column of a query's rows, as text (NULLs left out).
pub fn text_column(query: &str, args: &[DatumWithOid], doing: &str) -> Vec<String> {
    Spi::connect(|client| {
        let rows = client.select(query, None, args)?;
        let mut values = Vec::new();
        for row in rows {
            if let Some(value) = row.get::<String>(1)? {
                values.push(value);
            }
        }
        Ok(values)
    })
    .or_raise(doing)
}

/// The same with a read-write SPI connection, whose fresh snapshot sees
/// what this very statement wrote earlier (a read-only one would not).
pub fn text_column_fresh(query: &str, args: &[DatumWithOid], doing: &str) -> Vec<String> {
    Spi::connect_mut(|client| {
        let rows = client.update(query, None, args)?;
        let mut values = Vec::new();
        for row in rows {
            if let Some(value) = row.get::<String>(1)? {
                values.push(value);
            }
        }
        Ok(values)
    })
    .or_raise(doing)
}

/// Runs a statement that returns nothing of interest.
pub fn execute(query: &str, args: &[DatumWithOid], doing: &str) {
    Spi::connect_mut(|client| client.update(query, None, args).map(|_| ())).or_raise(doing)
}
