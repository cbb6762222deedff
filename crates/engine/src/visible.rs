//! Statistics of the rows a row filter admits, for the planner of a caller behind one.
//!
//! The files' footers describe every row, hidden ones too, so a scan behind a row filter
//! may not report them (invariant 4). Without any statistics, though, its joins cannot pick
//! their build side nor its filters estimate their selectivity, and such a caller's plans
//! are worse than an unfiltered caller's. What such a caller may know is what it could
//! compute with queries of its own: `count(*)`, and `min`, `max` and null counts of the
//! columns it sees in the clear, over the rows it sees. So each file is read once under the
//! row filter, in the background, and those statistics kept per (table, file version,
//! filter). Two callers share an entry only when their filters are the same expression,
//! that is when they see the same rows; what of an entry reaches the planner is decided by
//! the sealed scan (only its clear columns, all inexact).
//!
//! Bounded: one computation at a time in the whole gateway, each followed by a rest of
//! [`REST_FACTOR`] times its duration (background statistics take at most a quarter of one
//! core), and a bounded number of entries. A filter that depends on the query's time
//! (`now()`, `current_date`) is never computed: every query would make a new one. Until a
//! file's entry is known, scans of it plan as before, with no statistics.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use datafusion::arrow::array::{Array, ArrayRef, AsArray};
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNode;
use datafusion::common::{ColumnStatistics, Result, Statistics};
use datafusion::execution::TaskContext;
use datafusion::functions_aggregate::min_max::{MaxAccumulator, MinAccumulator};
use datafusion::logical_expr::{Accumulator, Expr};
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use futures::StreamExt;
use meshgate_storage::IoCounters;

use crate::metrics::Metrics;

/// A file as it is now: its path, entity tag, size and modification time.
pub(crate) type FileVersion = (object_store::path::Path, Option<String>, u64, i64);

/// (the table's qualified name, a file of it, the row filter at query time).
type Key = (Arc<str>, FileVersion, Expr);

/// Entries kept at most; the cache starts over beyond.
const MAX_ENTRIES: usize = 4096;

/// After each computation the next waits this many times as long.
pub(crate) const REST_FACTOR: u32 = 3;

/// The gateway's statistics of visible rows (shared by its tables, kept across publishes).
#[derive(Debug)]
pub(crate) struct VisibleStatistics {
    /// `false`: never computed (the operator's choice, `statistics_behind_row_filters`).
    enabled: bool,
    /// The gateway's: files computed or failed, and their reads.
    metrics: Arc<Metrics>,
    known: Mutex<HashMap<Key, Arc<Statistics>>>,
    /// Keys scheduled and not yet computed (so that each is computed once).
    pending: Mutex<HashSet<Key>>,
    /// One computation at a time, and its rest after it.
    turn: Arc<tokio::sync::Semaphore>,
}

impl VisibleStatistics {
    pub(crate) fn new(enabled: bool, metrics: Arc<Metrics>) -> Self {
        Self {
            enabled,
            metrics,
            known: Mutex::default(),
            pending: Mutex::default(),
            turn: Arc::new(tokio::sync::Semaphore::new(1)),
        }
    }
}

/// What a lookup found.
pub(crate) enum Lookup {
    /// Every file's statistics, in the order asked.
    Known(Vec<Arc<Statistics>>),
    /// The files (by position) whose statistics are neither known nor being computed.
    Missing(Vec<usize>),
    /// Some are being computed; none to schedule.
    Pending,
    /// Never computed here.
    Off,
}

impl VisibleStatistics {
    pub(crate) fn lookup(&self, table: &Arc<str>, files: &[FileVersion], filter: &Expr) -> Lookup {
        if !self.enabled {
            return Lookup::Off;
        }
        let Ok(known) = self.known.lock() else {
            return Lookup::Pending;
        };
        let Ok(pending) = self.pending.lock() else {
            return Lookup::Pending;
        };
        let mut found = Vec::with_capacity(files.len());
        let mut missing = Vec::new();
        let mut waiting = false;
        for (at, file) in files.iter().enumerate() {
            let key = (Arc::clone(table), file.clone(), filter.clone());
            match known.get(&key) {
                Some(statistics) => found.push(Arc::clone(statistics)),
                None if pending.contains(&key) => waiting = true,
                None => missing.push(at),
            }
        }
        if !missing.is_empty() {
            Lookup::Missing(missing)
        } else if waiting {
            Lookup::Pending
        } else {
            Lookup::Known(found)
        }
    }

    /// Mark `files` as being computed; `false` if that cannot be recorded.
    fn claim(&self, table: &Arc<str>, files: &[FileVersion], filter: &Expr) -> bool {
        let Ok(mut pending) = self.pending.lock() else {
            return false;
        };
        if pending.len() >= MAX_ENTRIES {
            return false;
        }
        for file in files {
            pending.insert((Arc::clone(table), file.clone(), filter.clone()));
        }
        true
    }

    fn settle(&self, key: Key, statistics: Option<Statistics>) {
        if let (Some(statistics), Ok(mut known)) = (statistics, self.known.lock()) {
            if known.len() >= MAX_ENTRIES {
                known.clear();
            }
            known.insert(key.clone(), Arc::new(statistics));
        }
        if let Ok(mut pending) = self.pending.lock() {
            pending.remove(&key);
        }
    }

    /// Compute the statistics of `files` under `filter` in the background, one file after
    /// another, each with `plan_of` (the file's scan under the filter, reading through a
    /// store that counts its requests in `io`). Does nothing outside a Tokio runtime or when
    /// the files are already claimed.
    pub(crate) fn schedule<F>(
        self: &Arc<Self>,
        table: Arc<str>,
        files: Vec<FileVersion>,
        filter: Expr,
        schema: SchemaRef,
        context: Arc<TaskContext>,
        plan_of: F,
    ) where
        F: Fn(usize, Arc<IoCounters>) -> Result<Arc<dyn ExecutionPlan>> + Send + 'static,
    {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if !self.claim(&table, &files, &filter) {
            return;
        }
        let this = Arc::clone(self);
        runtime.spawn(async move {
            for (at, file) in files.into_iter().enumerate() {
                let key = (Arc::clone(&table), file, filter.clone());
                let Ok(_turn) = Arc::clone(&this.turn).acquire_owned().await else {
                    this.settle(key, None);
                    continue;
                };
                let started = Instant::now();
                let io = Arc::new(IoCounters::default());
                let statistics = match plan_of(at, Arc::clone(&io))
                    .and_then(|plan| plan.execute(0, Arc::clone(&context)))
                {
                    Ok(stream) => summarize(stream, &schema).await.ok(),
                    Err(_) => None,
                };
                if statistics.is_none() {
                    // The error may quote a value of a hidden row: the table only.
                    tracing::debug!(table = %table, "statistics under a row filter not computed");
                }
                this.metrics.row_filter_statistics(match statistics {
                    Some(_) => "computed",
                    None => "failed",
                });
                this.metrics.storage(&io.report());
                this.settle(key, statistics);
                tokio::time::sleep(started.elapsed().saturating_mul(REST_FACTOR)).await;
            }
        });
    }
}

/// A file's statistics from its rows (those the filter admitted): exact row and null
/// counts, minimum and maximum of every column whose type has them, byte sizes as the
/// footers' would be (fixed width times rows; for strings and binaries their bytes plus
/// four per value, as Parquet's plain encoding stores them).
async fn summarize(
    mut stream: SendableRecordBatchStream,
    schema: &SchemaRef,
) -> Result<Statistics> {
    let fields = schema.fields();
    let mut mins: Vec<Option<MinAccumulator>> = fields
        .iter()
        .map(|f| MinAccumulator::try_new(f.data_type()).ok())
        .collect();
    let mut maxs: Vec<Option<MaxAccumulator>> = fields
        .iter()
        .map(|f| MaxAccumulator::try_new(f.data_type()).ok())
        .collect();
    let mut nulls = vec![0usize; fields.len()];
    let mut bytes: Vec<Option<usize>> = vec![Some(0); fields.len()];
    let mut rows = 0usize;
    while let Some(batch) = stream.next().await {
        let batch = batch?;
        rows += batch.num_rows();
        for (i, column) in batch.columns().iter().enumerate() {
            if let Some(min) = mins.get_mut(i).and_then(Option::as_mut) {
                min.update_batch(std::slice::from_ref(column))?;
            }
            if let Some(max) = maxs.get_mut(i).and_then(Option::as_mut) {
                max.update_batch(std::slice::from_ref(column))?;
            }
            if let Some(count) = nulls.get_mut(i) {
                *count += column.null_count();
            }
            if let Some(size) = bytes.get_mut(i) {
                *size = size.zip(variable_bytes(column)).map(|(a, b)| a + b);
            }
        }
    }
    let column_statistics = fields
        .iter()
        .enumerate()
        .map(|(i, field)| {
            let bound = |value: Option<Result<datafusion::common::ScalarValue>>| match value {
                Some(Ok(value)) if !value.is_null() => Precision::Exact(value),
                _ => Precision::Absent,
            };
            let byte_size = match field.data_type().primitive_width() {
                Some(width) => Precision::Exact(width * rows),
                None => bytes
                    .get(i)
                    .copied()
                    .flatten()
                    .map_or(Precision::Absent, Precision::Inexact),
            };
            ColumnStatistics {
                null_count: Precision::Exact(nulls.get(i).copied().unwrap_or_default()),
                max_value: bound(
                    maxs.get_mut(i)
                        .and_then(Option::as_mut)
                        .map(|m| m.evaluate()),
                ),
                min_value: bound(
                    mins.get_mut(i)
                        .and_then(Option::as_mut)
                        .map(|m| m.evaluate()),
                ),
                sum_value: Precision::Absent,
                distinct_count: Precision::Absent,
                byte_size,
            }
        })
        .collect();
    Ok(Statistics {
        num_rows: Precision::Exact(rows),
        total_byte_size: Precision::Absent,
        column_statistics,
    })
}

/// The bytes of a string or binary column's values plus four per value; `None` for other
/// types (whose width is fixed, or unknown).
fn variable_bytes(column: &ArrayRef) -> Option<usize> {
    let values = column.len() - column.null_count();
    let data = match column.data_type() {
        DataType::Utf8View | DataType::BinaryView => column
            .as_byte_view_opt::<datafusion::arrow::datatypes::StringViewType>()
            .map(|a| {
                a.views()
                    .iter()
                    .map(|v| (*v as u32) as usize)
                    .sum::<usize>()
            })
            .or_else(|| {
                column
                    .as_byte_view_opt::<datafusion::arrow::datatypes::BinaryViewType>()
                    .map(|a| {
                        a.views()
                            .iter()
                            .map(|v| (*v as u32) as usize)
                            .sum::<usize>()
                    })
            })?,
        DataType::Utf8 => offsets_span(column.as_string_opt::<i32>()?.value_offsets()),
        DataType::LargeUtf8 => offsets_span(column.as_string_opt::<i64>()?.value_offsets()),
        DataType::Binary => offsets_span(column.as_binary_opt::<i32>()?.value_offsets()),
        DataType::LargeBinary => offsets_span(column.as_binary_opt::<i64>()?.value_offsets()),
        _ => return None,
    };
    Some(data + 4 * values)
}

fn offsets_span<O: datafusion::arrow::array::OffsetSizeTrait>(offsets: &[O]) -> usize {
    match (offsets.first(), offsets.last()) {
        (Some(first), Some(last)) => (*last - *first).as_usize(),
        _ => 0,
    }
}

/// Whether `expr` calls a function whose value depends on the query's time.
pub(crate) fn depends_on_time(expr: &Expr) -> bool {
    expr.exists(|e| {
        Ok(matches!(e, Expr::ScalarFunction(f)
            if f.func.signature().volatility == datafusion::logical_expr::Volatility::Stable))
    })
    .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::array::{Int64Array, RecordBatch, StringArray, StringViewArray};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::common::ScalarValue;
    use datafusion::logical_expr::{col, lit};
    use datafusion::physical_plan::stream::RecordBatchStreamAdapter;

    use super::*;

    #[tokio::test]
    async fn a_files_rows_are_summarized_as_their_footer_would_be() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8View, true),
            Field::new("code", DataType::Utf8, true),
        ]));
        let batch = |ids: Vec<Option<i64>>, names: Vec<Option<&str>>, codes: Vec<Option<&str>>| {
            RecordBatch::try_new(
                Arc::clone(&schema),
                vec![
                    Arc::new(Int64Array::from(ids)),
                    Arc::new(StringViewArray::from(names)),
                    Arc::new(StringArray::from(codes)),
                ],
            )
            .unwrap()
        };
        let batches = vec![
            Ok(batch(
                vec![Some(7), None],
                vec![Some("a long name, not inline"), None],
                vec![Some("x"), Some("yy")],
            )),
            Ok(batch(vec![Some(3)], vec![Some("b")], vec![None])),
        ];
        let stream = Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            futures::stream::iter(batches),
        ));
        let s = summarize(stream, &schema).await.unwrap();
        assert_eq!(s.num_rows, Precision::Exact(3));
        let [id, name, code] = &s.column_statistics[..] else {
            panic!("{s:?}")
        };
        assert_eq!(id.min_value, Precision::Exact(ScalarValue::Int64(Some(3))));
        assert_eq!(id.max_value, Precision::Exact(ScalarValue::Int64(Some(7))));
        assert_eq!(id.null_count, Precision::Exact(1));
        assert_eq!(id.byte_size, Precision::Exact(24));
        assert_eq!(
            name.max_value,
            Precision::Exact(ScalarValue::Utf8View(Some("b".into())))
        );
        assert_eq!(name.null_count, Precision::Exact(1));
        // Values' bytes plus four per value, as plain Parquet stores them.
        assert_eq!(name.byte_size, Precision::Inexact(23 + 1 + 8));
        assert_eq!(code.byte_size, Precision::Inexact(3 + 8));
        assert_eq!(code.null_count, Precision::Exact(1));
    }

    #[tokio::test]
    async fn no_rows_give_no_bounds() {
        let schema = Arc::new(Schema::new(vec![Field::new("id", DataType::Int64, true)]));
        let stream = Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            futures::stream::empty(),
        ));
        let s = summarize(stream, &schema).await.unwrap();
        assert_eq!(s.num_rows, Precision::Exact(0));
        assert_eq!(s.column_statistics[0].min_value, Precision::Absent);
        assert_eq!(s.column_statistics[0].max_value, Precision::Absent);
    }

    #[test]
    fn lookups_say_what_is_known_pending_or_missing() {
        assert!(matches!(
            VisibleStatistics::new(false, Arc::default()).lookup(&"p/t".into(), &[], &lit(true)),
            Lookup::Off
        ));
        let statistics = VisibleStatistics::new(true, Arc::default());
        let table: Arc<str> = "p/t".into();
        let file = |n: &str| (object_store::path::Path::from(n), None, 1, 0);
        let filter = col("lob").eq(lit("CIB"));
        let files = [file("a"), file("b")];
        assert!(matches!(
            statistics.lookup(&table, &files, &filter),
            Lookup::Missing(m) if m == [0, 1]
        ));
        assert!(statistics.claim(&table, &files, &filter));
        assert!(matches!(
            statistics.lookup(&table, &files, &filter),
            Lookup::Pending
        ));
        statistics.settle(
            (Arc::clone(&table), file("a"), filter.clone()),
            Some(Statistics::default()),
        );
        statistics.settle((Arc::clone(&table), file("b"), filter.clone()), None);
        // A failed file is missing again (to be tried again), a computed one known.
        assert!(matches!(
            statistics.lookup(&table, &files, &filter),
            Lookup::Missing(m) if m == [1]
        ));
        assert!(matches!(
            statistics.lookup(&table, &files[..1], &filter),
            Lookup::Known(k) if k.len() == 1
        ));
        // Another filter (other rows) shares nothing.
        assert!(matches!(
            statistics.lookup(&table, &files[..1], &col("lob").eq(lit("CCB"))),
            Lookup::Missing(_)
        ));
        assert!(depends_on_time(
            &col("d").lt(datafusion::functions::datetime::expr_fn::now())
        ));
        assert!(!depends_on_time(&filter));
    }
}
