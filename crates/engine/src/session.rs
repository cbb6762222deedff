//! A session: one authenticated principal running queries.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::execution::TaskContext;
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use futures::TryStreamExt;
use meshgate_policy::{Principal, ResolvedTablePolicy};
use meshgate_storage::{IoCounters, IoReport};

use crate::error::GatewayError;
use crate::gateway::GatewayInner;
use crate::protected::ProtectedScanExec;
use crate::secure_catalog::{CATALOG, QueryScope};

/// One principal's connection to the gateway.
#[derive(Debug, Clone)]
pub struct Session {
    gateway: Arc<GatewayInner>,
    principal: Principal,
}

/// A planned query, ready to run. Planning resolved the caller's policy for every table the
/// query names; running it re-reads nothing from the policy.
#[derive(Debug)]
pub struct Query {
    plan: Arc<dyn ExecutionPlan>,
    task: Arc<TaskContext>,
    io: Arc<IoCounters>,
}

/// A table as one caller sees it (for catalog metadata).
#[derive(Debug, Clone)]
pub struct VisibleTable {
    pub catalog: String,
    pub schema: String,
    pub name: String,
    /// `TABLE` or `VIEW`.
    pub table_type: String,
    /// Columns as the caller sees them: hidden columns absent, protected ones with their
    /// protected type.
    pub arrow_schema: SchemaRef,
    pub description: String,
    pub product: String,
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

impl Session {
    pub(crate) fn new(gateway: Arc<GatewayInner>, principal: Principal) -> Self {
        Self { gateway, principal }
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    fn scope(&self) -> Arc<QueryScope> {
        Arc::new(QueryScope::new(
            Arc::clone(&self.gateway),
            self.principal.clone(),
            self.gateway.policies.load_full(),
        ))
    }

    /// Plan a query as this principal. Refuses anything but read-only statements; resolves
    /// the caller's policy for every table named.
    pub async fn query(&self, sql: &str) -> Result<Query, GatewayError> {
        let scope = self.scope();
        let (state, logical) = scope.plan(sql).await?;
        let plan = state
            .create_physical_plan(&logical)
            .await
            .map_err(GatewayError::from_planning)?;
        Ok(Query {
            plan,
            task: Arc::new(TaskContext::from(&state)),
            io: Arc::clone(&scope.io),
        })
    }

    /// Plan and run a query, returning its result stream.
    pub async fn sql(&self, sql: &str) -> Result<SendableRecordBatchStream, GatewayError> {
        self.query(sql).await?.execute()
    }

    /// Plan and run a query, collecting every batch.
    pub async fn collect(&self, sql: &str) -> Result<Vec<RecordBatch>, GatewayError> {
        self.query(sql).await?.collect().await
    }

    /// Every table and view this principal may read, with the columns it sees.
    pub async fn tables(&self) -> Vec<VisibleTable> {
        let scope = self.scope();
        scope.prepare_listing().await;
        let mut out = Vec::new();
        let domains: Vec<String> = self
            .gateway
            .catalog
            .domains()
            .into_iter()
            .map(str::to_string)
            .collect();
        for domain in domains {
            for resolved in scope.visible(&domain) {
                let description = self
                    .gateway
                    .catalog
                    .table(resolved.domain(), resolved.name())
                    .map(|(_, t)| t.description.clone())
                    .unwrap_or_default();
                out.push(VisibleTable {
                    catalog: CATALOG.to_string(),
                    schema: resolved.domain().to_string(),
                    name: resolved.name().to_string(),
                    table_type: resolved.kind().to_string(),
                    arrow_schema: resolved.provider().schema(),
                    description,
                    product: resolved.product().to_string(),
                });
            }
        }
        out
    }
}

impl Query {
    /// The result schema (identical to the schema of every batch `execute` yields).
    pub fn schema(&self) -> SchemaRef {
        self.plan.schema()
    }

    /// Start running the query.
    pub fn execute(&self) -> Result<SendableRecordBatchStream, GatewayError> {
        execute_stream(Arc::clone(&self.plan), Arc::clone(&self.task))
            .map_err(GatewayError::from_execution)
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

    /// The resolved policy of every protected scan in the plan.
    pub fn policies(&self) -> Vec<ResolvedTablePolicy> {
        let mut out = Vec::new();
        visit_scans(&self.plan, &mut |scan| out.push(scan.policy().clone()));
        out
    }

    /// What the protected scans read so far (complete once the stream is drained).
    pub fn scan_report(&self) -> ScanReport {
        let mut report = ScanReport::default();
        visit_scans(&self.plan, &mut |scan| {
            let policy = scan.policy();
            report
                .tables
                .push(format!("{}.{}", policy.domain, policy.table));
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

fn visit_scans(plan: &Arc<dyn ExecutionPlan>, f: &mut dyn FnMut(&ProtectedScanExec)) {
    let any: &dyn std::any::Any = plan.as_ref();
    if let Some(scan) = any.downcast_ref::<ProtectedScanExec>() {
        f(scan);
    }
    for child in plan.children() {
        visit_scans(child, f);
    }
}
