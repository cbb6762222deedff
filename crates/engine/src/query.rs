//! A planned query and what it tells: its result columns, the policies it runs under, what
//! its sealed scans read. Planning resolved the caller's policy for every table the query
//! names; running it re-reads nothing from the policy.

use std::sync::Arc;
use std::time::{Duration, Instant};

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{FieldRef, SchemaRef};
use datafusion::common::TableReference;
use datafusion::execution::TaskContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use futures::TryStreamExt;
use meshgate_policy::ResolvedTablePolicy;
use meshgate_storage::{IoCounters, IoReport};
use tokio_util::sync::CancellationToken;

use crate::audit::{AuditHandle, Audited};
use crate::distribute::Recheck;
use crate::error::GatewayError;
use crate::limits::{Guarded, Slot};
use crate::names::CATALOG;
use crate::protected::visit_scans;

/// A statement planned but not run: what it returns and which parameters it takes.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The result's columns, with where each comes from (see [`Query::columns`]).
    pub columns: Vec<Column>,
    /// `$1`, `$2`, ... with their types where the plan determines them (`Null` otherwise).
    pub parameters: SchemaRef,
    /// See [`Query::warnings`].
    pub warnings: Vec<String>,
}

/// A result column and the table it comes from, when it is a plain column of one.
#[derive(Debug, Clone)]
pub struct Column {
    pub field: FieldRef,
    /// `(schema, table)` in the `mesh` catalog.
    pub table: Option<(String, String)>,
}

/// A planned query, ready to run. Planning resolved the caller's policy for every table the
/// query names; running it re-reads nothing from the policy.
#[derive(Debug)]
pub struct Query {
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    io: Arc<IoCounters>,
    columns: Vec<Column>,
    slot: Arc<Slot>,
    deadline: Option<(Instant, Duration)>,
    cancel: CancellationToken,
    /// Where this query's audit record went, to record its outcome.
    audit: AuditHandle,
    /// What the consumer should know about what the query reads (a deprecated product).
    warnings: Vec<String>,
    /// A distributed query's workers, asked again when it fails.
    recheck: Option<Arc<Recheck>>,
}

/// What the sealed scans of a query read, for operators and audit (never shown to the
/// consumer: it counts rows the consumer's policy hides).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScanReport {
    /// `domain.table` of each protected scan, in plan order.
    pub tables: Vec<String>,
    /// Files (or file ranges) skipped whole because their statistics cannot match the
    /// policy filter.
    pub files_pruned: usize,
    /// Row groups of the files read, skipped because their statistics cannot match.
    pub row_groups_pruned: usize,
    /// Row groups whose statistics matched and were read.
    pub row_groups_matched: usize,
    /// Rows decoded from Parquet (before the row filter).
    pub rows_scanned: usize,
    pub bytes_scanned: usize,
}

impl Query {
    /// A query planned into `plan` under the context `task`, holding `slot`, whose record
    /// went to `audit`.
    pub(crate) fn new(
        plan: Arc<dyn ExecutionPlan>,
        task: Arc<TaskContext>,
        io: Arc<IoCounters>,
        logical: &LogicalPlan,
        slot: Arc<Slot>,
        deadline: Option<(Instant, Duration)>,
        audit: AuditHandle,
    ) -> Self {
        Self {
            plan,
            task,
            io,
            columns: columns_of(logical),
            slot,
            deadline,
            cancel: CancellationToken::new(),
            audit,
            warnings: Vec::new(),
            recheck: None,
        }
    }

    pub(crate) fn with_recheck(mut self, recheck: Option<Arc<Recheck>>) -> Self {
        self.recheck = recheck;
        self
    }

    pub(crate) fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings = warnings;
        self
    }

    /// What the consumer should know about what this query reads: each deprecated product
    /// it names, with its last day served. Flight SQL puts them in the result schema's
    /// metadata ([`WARNINGS_METADATA_KEY`](crate::WARNINGS_METADATA_KEY)).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The result schema (identical to the schema of every batch `execute` yields).
    pub fn schema(&self) -> SchemaRef {
        self.plan.schema()
    }

    /// The result's columns and the tables they come from.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Start running the query. The stream ends with an error if the query is cancelled or
    /// runs out of time, and holds the query's running slot until it ends or is dropped.
    pub fn execute(&self) -> Result<SendableRecordBatchStream, GatewayError> {
        let mut inner = execute_stream(Arc::clone(&self.plan), Arc::clone(&self.task))
            .map_err(GatewayError::from_execution)?;
        if let Some(recheck) = &self.recheck {
            inner = Arc::clone(recheck).stream(inner);
        }
        let guarded = Box::pin(Guarded::new(
            inner,
            &self.cancel,
            self.deadline,
            Arc::clone(&self.slot),
        ));
        let audit = self.audit.clone().with_io(Arc::clone(&self.io));
        Ok(Box::pin(Audited::new(guarded, audit)))
    }

    /// Cancels the query's streams, now or whenever they are polled next.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Cancel the query's streams with `token` instead, e.g. one shared by several queries
    /// that answer one request.
    pub fn with_cancel_token(mut self, token: CancellationToken) -> Self {
        self.cancel = token;
        self
    }

    /// Run the query to completion.
    pub async fn collect(&self) -> Result<Vec<RecordBatch>, GatewayError> {
        self.execute()?
            .try_collect()
            .await
            .map_err(GatewayError::from_execution)
    }

    /// The storage requests this query made so far (planning included), per product, and
    /// the files it left out. Complete once the stream is drained.
    pub fn io_report(&self) -> IoReport {
        self.io.report()
    }

    /// How many times the query's operators spilled to disk (their spill files are deleted
    /// as soon as they are read back).
    pub fn spill_count(&self) -> usize {
        fn walk(plan: &Arc<dyn ExecutionPlan>) -> usize {
            let own = plan.metrics().and_then(|m| m.spill_count()).unwrap_or(0);
            own + plan.children().into_iter().map(walk).sum::<usize>()
        }
        walk(&self.plan)
    }

    /// The physical plan, for embedders that inspect or display it (operators' tools). Its
    /// protected scans are sealed leaves: nothing of their inside is reachable through it.
    pub fn physical_plan(&self) -> Arc<dyn ExecutionPlan> {
        Arc::clone(&self.plan)
    }

    /// The resolved policy of every protected scan in the plan.
    pub fn policies(&self) -> Vec<ResolvedTablePolicy> {
        let mut out = Vec::new();
        visit_scans(&self.plan, &mut |scan| out.extend(scan.policy().cloned()));
        out
    }

    /// What the protected scans read so far (complete once the stream is drained).
    pub fn scan_report(&self) -> ScanReport {
        let mut report = ScanReport::default();
        visit_scans(&self.plan, &mut |scan| {
            report
                .tables
                .push(format!("{}.{}", scan.ident.domain, scan.ident.table));
            for metrics in scan.inner_metrics() {
                for metric in metrics.iter() {
                    match (metric.value(), metric.value().name()) {
                        (
                            MetricValue::PruningMetrics {
                                pruning_metrics, ..
                            },
                            "row_groups_pruned_statistics",
                        ) => {
                            report.row_groups_pruned += pruning_metrics.pruned();
                            report.row_groups_matched += pruning_metrics.matched();
                        }
                        (
                            MetricValue::PruningMetrics {
                                pruning_metrics, ..
                            },
                            "files_ranges_pruned_statistics",
                        ) => {
                            report.files_pruned += pruning_metrics.pruned();
                        }
                        (MetricValue::Count { count, .. }, "bytes_scanned") => {
                            report.bytes_scanned += count.value()
                        }
                        _ => {}
                    }
                }
            }
            // Rows decoded from Parquet: the output of the sealed plan's source, its deepest
            // node and the one with the most output rows.
            if let Some(rows) = scan
                .inner_metrics()
                .iter()
                .filter_map(|m| m.output_rows())
                .max()
            {
                report.rows_scanned += rows;
            }
        });
        report
    }
}

/// Each output column, and its table when the column is a table's column passed through
/// (DataFusion keeps the table as the column's qualifier).
pub(crate) fn columns_of(plan: &LogicalPlan) -> Vec<Column> {
    plan.schema()
        .iter()
        .map(|(qualifier, field)| Column {
            field: Arc::clone(field),
            table: qualifier.and_then(|q| match q {
                TableReference::Full {
                    catalog,
                    schema,
                    table,
                } if catalog.as_ref() == CATALOG => Some((schema.to_string(), table.to_string())),
                TableReference::Partial { schema, table } => {
                    Some((schema.to_string(), table.to_string()))
                }
                _ => None,
            }),
        })
        .collect()
}
