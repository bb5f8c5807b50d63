//! Renders query results as a text table, values printed as PostgreSQL prints them.

use arrow::record_batch::RecordBatch;
use comfy_table::{presets::UTF8_FULL_CONDENSED, Cell, Table};
use sluice_query::format::format_value;

use crate::Result;

/// Formats batches as a table with a header row; NULL prints as an empty cell, as in psql.
///
/// # Errors
/// Only for a column type Sluice never produces.
pub fn format_batches(batches: &[RecordBatch]) -> Result<String> {
    let Some(first) = batches.first() else {
        return Ok(String::new());
    };
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED);
    table.set_header(first.schema().fields().iter().map(|f| Cell::new(f.name())));
    for batch in batches {
        for row in 0..batch.num_rows() {
            let cells = batch
                .columns()
                .iter()
                .map(|c| {
                    Ok(Cell::new(
                        format_value(c.as_ref(), row, sluice_storage::zone::Zone::UTC)?
                            .unwrap_or_default(),
                    ))
                })
                .collect::<Result<Vec<_>>>()?;
            table.add_row(cells);
        }
    }
    Ok(table.to_string())
}
