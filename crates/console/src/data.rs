//! The `mesh_catalog` rows a page shows, read by a query run as the viewer (audited like any
//! other, method `console`): the engine decides what is in them, the console only formats.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};

use crate::Console;
use crate::session::Viewer;

/// One row, each column as text (`None` for NULL).
#[derive(Debug, Clone, Default)]
pub(crate) struct Row(BTreeMap<String, Option<String>>);

impl Row {
    /// The text of `column`, empty for NULL or a column the row does not have.
    pub(crate) fn get(&self, column: &str) -> &str {
        self.0
            .get(column)
            .and_then(|v| v.as_deref())
            .unwrap_or_default()
    }

    /// Whether `column` is NULL or absent.
    pub(crate) fn is_null(&self, column: &str) -> bool {
        self.0.get(column).is_none_or(Option::is_none)
    }
}

/// A SQL string literal of `text`.
pub(crate) fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

impl Console {
    /// The rows of `sql` as the viewer sees them; the engine's error text otherwise.
    pub(crate) async fn rows(&self, viewer: &Viewer, sql: &str) -> Result<Vec<Row>, String> {
        let session = self
            .gateway
            .session(viewer.session.principal.clone())
            .with_origin(None, "console");
        let batches = session.collect(sql).await.map_err(|e| e.to_string())?;
        Ok(batches.iter().flat_map(rows_of).collect())
    }
}

fn rows_of(batch: &RecordBatch) -> Vec<Row> {
    let options = FormatOptions::default().with_null("");
    let schema = batch.schema();
    let formatters: Vec<Option<ArrayFormatter<'_>>> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok())
        .collect();
    (0..batch.num_rows())
        .map(|row| {
            Row(schema
                .fields()
                .iter()
                .zip(batch.columns())
                .zip(&formatters)
                .map(|((field, column), formatter)| {
                    let value = if column.is_null(row) {
                        None
                    } else if let DataType::Utf8 = column.data_type() {
                        Some(column.as_string::<i32>().value(row).to_string())
                    } else {
                        formatter.as_ref().map(|f| f.value(row).to_string())
                    };
                    (field.name().clone(), value)
                })
                .collect())
        })
        .collect()
}
