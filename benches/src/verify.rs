//! Are two configurations' answers the same? Before any time is reported.
//!
//! Configurations on DataFusion 55 (embedded, the Flight SQL peer, meshgate and the twins)
//! must agree exactly: same row count and the same order-insensitive fingerprint (the sum
//! of a hash of each row, numbers to 10 significant digits). Other engines type decimals
//! and averages differently (DuckDB returns doubles where DataFusion returns decimals of a
//! fixed scale), so their rows are compared value by value within a relative 1e-4 (and one
//! cent) instead.

use arrow::array::{Array, ArrayRef, Float64Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use sha2::{Digest, Sha256};

/// One value, as compared across engines.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum Cell {
    Null,
    Num(f64),
    Text(String),
}

impl Cell {
    /// The canonical text the fingerprint hashes.
    fn canonical(&self) -> String {
        match self {
            Cell::Null => "\u{2205}".to_string(),
            Cell::Num(x) => format!("{x:.9e}"),
            Cell::Text(s) => s.clone(),
        }
    }
}

pub type Rows = Vec<Vec<Cell>>;

fn is_numeric(data_type: &DataType) -> bool {
    data_type.is_numeric()
}

/// The rows of a result, cell by cell.
pub fn rows(batches: &[RecordBatch]) -> Result<Rows, String> {
    let mut out = Vec::new();
    for batch in batches {
        let mut columns: Vec<Box<dyn Fn(usize) -> Cell>> = Vec::new();
        for column in batch.columns() {
            columns.push(cells_of(column)?);
        }
        for row in 0..batch.num_rows() {
            out.push(columns.iter().map(|c| c(row)).collect());
        }
    }
    Ok(out)
}

fn cells_of(column: &ArrayRef) -> Result<Box<dyn Fn(usize) -> Cell>, String> {
    let column = match column.data_type() {
        DataType::Dictionary(_, value) => cast(column, value).map_err(|e| e.to_string())?,
        _ => column.clone(),
    };
    if is_numeric(column.data_type()) {
        let numbers = cast(&column, &DataType::Float64).map_err(|e| e.to_string())?;
        let numbers = numbers
            .as_any()
            .downcast_ref::<Float64Array>()
            .cloned()
            .ok_or("cast to Float64 did not give Float64")?;
        return Ok(Box::new(move |i| {
            if numbers.is_null(i) {
                Cell::Null
            } else {
                Cell::Num(numbers.value(i))
            }
        }));
    }
    // Dates, strings, string views: their display text (dates as YYYY-MM-DD).
    let texts: Vec<Option<String>> = {
        let formatter = ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())
            .map_err(|e| e.to_string())?;
        (0..column.len())
            .map(|i| (!column.is_null(i)).then(|| formatter.value(i).to_string()))
            .collect()
    };
    Ok(Box::new(move |i| match &texts[i] {
        Some(text) => Cell::Text(text.clone()),
        None => Cell::Null,
    }))
}

/// Row count and order-insensitive fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Fingerprint {
    pub rows: usize,
    pub hash: u64,
}

pub fn fingerprint(rows: &Rows) -> Fingerprint {
    let mut hash = 0u64;
    for row in rows {
        let text: Vec<String> = row.iter().map(Cell::canonical).collect();
        let digest = Sha256::digest(text.join("\u{1f}").as_bytes());
        let mut first = [0u8; 8];
        first.copy_from_slice(&digest[..8]);
        hash = hash.wrapping_add(u64::from_le_bytes(first));
    }
    Fingerprint {
        rows: rows.len(),
        hash,
    }
}

/// Do `a` and `b` hold the same rows (any order), numbers within a relative 1e-4 or one
/// cent? `Err` says where they first differ.
pub fn close_enough(a: &Rows, b: &Rows) -> Result<(), String> {
    if a.len() != b.len() {
        return Err(format!("{} rows against {}", a.len(), b.len()));
    }
    let mut a = a.clone();
    let mut b = b.clone();
    a.sort_by_cached_key(|row| coarse_key(row));
    b.sort_by_cached_key(|row| coarse_key(row));
    for (index, (x, y)) in a.iter().zip(&b).enumerate() {
        if x.len() != y.len() {
            return Err(format!(
                "row {index}: {} columns against {}",
                x.len(),
                y.len()
            ));
        }
        for (column, (u, v)) in x.iter().zip(y).enumerate() {
            let same = match (u, v) {
                (Cell::Num(p), Cell::Num(q)) => (p - q).abs() <= 1e-4 * p.abs().max(q.abs()) + 0.01,
                _ => u == v,
            };
            if !same {
                return Err(format!(
                    "row {index} column {column}: {} against {}",
                    u.canonical(),
                    v.canonical()
                ));
            }
        }
    }
    Ok(())
}

/// Sort key for [`close_enough`]: numbers to 3 significant digits, so engines whose last
/// digits differ still sort alike.
fn coarse_key(row: &[Cell]) -> Vec<String> {
    row.iter()
        .map(|cell| match cell {
            Cell::Num(x) => format!("{x:.2e}"),
            other => other.canonical(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{Date32Array, Decimal128Array, Int64Array, StringArray, StringViewArray};
    use arrow::datatypes::{Field, Schema};

    use super::*;

    fn batch(columns: Vec<ArrayRef>) -> RecordBatch {
        let fields: Vec<Field> = columns
            .iter()
            .enumerate()
            .map(|(i, c)| Field::new(format!("c{i}"), c.data_type().clone(), true))
            .collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns).unwrap_or_else(|e| {
            panic!("test batch: {e}");
        })
    }

    #[test]
    fn types_that_print_alike_hash_alike_in_any_order() {
        let decimals = Decimal128Array::from(vec![Some(1050), None])
            .with_precision_and_scale(15, 2)
            .unwrap_or_else(|e| panic!("{e}"));
        let a = batch(vec![
            Arc::new(decimals),
            Arc::new(StringArray::from(vec!["x", "y"])),
            Arc::new(Date32Array::from(vec![9204, 0])),
        ]);
        let b = batch(vec![
            Arc::new(arrow::array::Float64Array::from(vec![None, Some(10.5)])),
            Arc::new(StringViewArray::from(vec!["y", "x"])),
            Arc::new(Date32Array::from(vec![0, 9204])),
        ]);
        let (ra, rb) = (
            rows(&[a]).unwrap_or_default(),
            rows(&[b]).unwrap_or_default(),
        );
        assert_eq!(ra[0][2], Cell::Text("1995-03-15".into()));
        assert_eq!(fingerprint(&ra), fingerprint(&rb));
        assert_eq!(close_enough(&ra, &rb), Ok(()));
    }

    #[test]
    fn different_answers_differ() {
        let a = rows(&[batch(vec![Arc::new(Int64Array::from(vec![1, 2]))])]).unwrap_or_default();
        let b = rows(&[batch(vec![Arc::new(Int64Array::from(vec![1, 3]))])]).unwrap_or_default();
        let c = rows(&[batch(vec![Arc::new(Int64Array::from(vec![1]))])]).unwrap_or_default();
        assert_ne!(fingerprint(&a), fingerprint(&b));
        assert!(close_enough(&a, &b).is_err());
        assert!(close_enough(&a, &c).is_err());
        // Within tolerance: a double average against a decimal of scale 6.
        let d = vec![vec![Cell::Num(25.522005853)]];
        let e = vec![vec![Cell::Num(25.522006)]];
        assert_eq!(close_enough(&d, &e), Ok(()));
        assert_ne!(fingerprint(&d), fingerprint(&e));
    }
}
