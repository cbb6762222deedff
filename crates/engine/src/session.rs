//! A session: one authenticated principal running queries.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use std::time::{Duration, Instant};

use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::common::{ScalarValue, TableReference};
use tokio_util::sync::CancellationToken;

use crate::limits::{Guarded, Slot};
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::metrics::MetricValue;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream, execute_stream};
use futures::TryStreamExt;
use meshgate_governance::{AuditRecord, AuditTable, Decision, now_millis};
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
    default_schema: Option<String>,
    /// The caller's network address, for the audit log.
    client: Option<String>,
    /// How queries arrive (`library`, `DoGet`, ...), for the audit log.
    method: String,
}

/// A statement planned but not run: what it returns and which parameters it takes.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The result's columns, with where each comes from (see [`Query::columns`]).
    pub columns: Vec<Column>,
    /// `$1`, `$2`, ... with their types where the plan determines them (`Null` otherwise).
    pub parameters: SchemaRef,
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
    audit: crate::audit::AuditHandle,
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
    /// Primary key columns the caller can see, in key order.
    pub primary_key: Vec<String>,
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
        Self {
            gateway,
            principal,
            default_schema: None,
            client: None,
            method: "library".into(),
        }
    }

    /// Record `client` (an address) and `method` (how queries arrive) in the audit log.
    pub fn with_origin(mut self, client: Option<String>, method: impl Into<String>) -> Self {
        self.client = client;
        self.method = method.into();
        self
    }

    /// Resolve unqualified table names in this schema (a domain), as the Flight SQL session
    /// option `schema` does. The catalog is always `mesh`.
    pub fn with_default_schema(mut self, schema: Option<String>) -> Self {
        self.default_schema = schema;
        self
    }

    pub fn default_schema(&self) -> Option<&str> {
        self.default_schema.as_deref()
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// A scope under the policy version and the grants in force now.
    async fn scope(&self) -> Result<Arc<QueryScope>, GatewayError> {
        Ok(Arc::new(QueryScope::new(
            Arc::clone(&self.gateway),
            self.principal.clone(),
            self.gateway.current_policies().await?,
            self.default_schema.clone(),
        )))
    }

    fn audit_record(
        &self,
        sql: &str,
        started_at: i64,
        policy_version: &str,
        decision: Decision,
        tables: Vec<AuditTable>,
        error: Option<String>,
    ) -> AuditRecord {
        AuditRecord {
            query_id: new_query_id(),
            started_at,
            principal: self.principal.id().to_string(),
            app: self.principal.attribute("app").map(str::to_string),
            client: self.client.clone(),
            method: self.method.clone(),
            statement_sha256: crate::audit::statement_sha256(sql),
            statement: self.gateway.audit.keep_statements.then(|| sql.to_string()),
            policy_version: policy_version.to_string(),
            decision,
            tables,
            error,
        }
    }

    /// Record a query that was refused or failed before running, with every product table
    /// it named and the reason, without any value (see [`GatewayError::redacted`]). The
    /// query fails either way; if the record cannot be written, that is logged.
    async fn audit_refusal(
        &self,
        sql: &str,
        scope: &QueryScope,
        started_at: i64,
        error: &GatewayError,
    ) {
        let decision = match error {
            GatewayError::Denied(_) | GatewayError::NotAllowed(_) => Decision::Deny,
            _ => Decision::Error,
        };
        let record = self.audit_record(
            sql,
            started_at,
            &scope.policy_version(),
            decision,
            crate::audit::tables_touched(None, scope),
            Some(error.redacted()),
        );
        if let Err(e) = self.gateway.governance.record_query(&record).await {
            tracing::error!(error = %e, principal = self.principal.id(), "cannot record a refused query in the audit log");
        }
    }

    /// Plan a query as this principal. Refuses anything but read-only statements; resolves
    /// the caller's policy for every table named. Waits for a running slot (see
    /// [`crate::QueryLimits`]) which the query holds until it is dropped or its stream ends.
    pub async fn query(&self, sql: &str) -> Result<Query, GatewayError> {
        self.query_with_params(sql, None).await
    }

    /// [`Session::query`] with values for its `$1`/`?` parameters.
    pub async fn query_with_params(
        &self,
        sql: &str,
        params: Option<&[ScalarValue]>,
    ) -> Result<Query, GatewayError> {
        let limits = self.gateway.admission.limits();
        let deadline = limits.timeout.map(|limit| (Instant::now() + limit, limit));
        let slot = Arc::new(
            self.gateway
                .admission
                .admit(self.principal.id(), deadline.map(|(at, _)| at))
                .await?,
        );
        let started = Instant::now();
        let started_at = now_millis();
        let scope = self.scope().await?;
        let planning = async {
            let parsed = scope.parse(sql)?;
            let large = parsed.large;
            crate::shape::plan_on(large, self.plan_parsed(&scope, parsed, params)).await
        };
        let planned = match deadline {
            Some((at, limit)) => tokio::time::timeout_at(at.into(), planning)
                .await
                .unwrap_or_else(|_| {
                    Err(GatewayError::DeadlineExceeded(format!(
                        "planning took longer than the query time limit of {limit:?}"
                    )))
                }),
            None => planning.await,
        };
        let (state, logical, plan) = match planned {
            Ok(planned) => planned,
            Err(error) => {
                self.audit_refusal(sql, &scope, started_at, &error).await;
                return Err(error);
            }
        };
        // The audit record, durable before anything can be sent; no record, no query.
        let record = self.audit_record(
            sql,
            started_at,
            &scope.policy_version(),
            Decision::Allow,
            crate::audit::tables_touched(Some(&plan), &scope),
            None,
        );
        self.gateway
            .governance
            .record_query(&record)
            .await
            .map_err(|e| {
                let query_id = &record.query_id;
                tracing::error!(error = %e, query = %query_id, "audit log unavailable; query refused");
                GatewayError::Unavailable(
                    "the audit log cannot be written, so the gateway refuses queries; try again later \
                     (operators: see the gateway's log)"
                        .into(),
                )
            })?;
        if let Some(lineage) = &self.gateway.lineage {
            lineage.started(&record);
        }
        Ok(Query {
            audit: crate::audit::AuditHandle {
                store: Arc::clone(&self.gateway.governance),
                lineage: self.gateway.lineage.clone(),
                record: Arc::new(record),
                started,
            },
            plan,
            task: Arc::new(TaskContext::from(&state)),
            io: Arc::clone(&scope.io),
            columns: columns_of(&logical),
            slot,
            deadline,
            cancel: CancellationToken::new(),
        })
    }

    /// Plan a parsed statement, logically and physically.
    async fn plan_parsed(
        &self,
        scope: &Arc<QueryScope>,
        parsed: crate::secure_catalog::Parsed,
        params: Option<&[ScalarValue]>,
    ) -> Result<(SessionState, LogicalPlan, Arc<dyn ExecutionPlan>), GatewayError> {
        let (state, logical) = scope.plan_parsed(parsed, params).await?;
        if params.is_none() {
            let unbound = logical
                .get_parameter_types()
                .map_err(GatewayError::from_planning)?;
            if !unbound.is_empty() {
                return Err(GatewayError::InvalidQuery(format!(
                    "the statement has {} parameter(s) but no values were bound: bind values \
                     (a prepared statement) or write them into the SQL",
                    unbound.len()
                )));
            }
        }
        let plan = state
            .create_physical_plan(&logical)
            .await
            .map_err(GatewayError::from_planning)?;
        Ok((state, logical, plan))
    }

    /// Plan a statement without running it: its result columns and, when no values are
    /// given, its parameters. With values, the columns are those of the statement with the
    /// values bound. Planning holds a running slot (planning is work too) and gives it back
    /// when done.
    pub async fn prepare(
        &self,
        sql: &str,
        params: Option<&[ScalarValue]>,
    ) -> Result<Prepared, GatewayError> {
        let limits = self.gateway.admission.limits();
        let deadline = limits.timeout.map(|limit| Instant::now() + limit);
        let _slot = self
            .gateway
            .admission
            .admit(self.principal.id(), deadline)
            .await?;
        let started_at = now_millis();
        let scope = self.scope().await?;
        let planned = match deadline {
            Some(at) => tokio::time::timeout_at(at.into(), scope.plan(sql, params))
                .await
                .unwrap_or_else(|_| {
                    Err(GatewayError::DeadlineExceeded(
                        "planning took longer than the query time limit".into(),
                    ))
                }),
            None => scope.plan(sql, params).await,
        };
        let (_, logical) = match planned {
            Ok(planned) => planned,
            // Refusals are audited where they happen, at every front door; plans that
            // succeed are audited when they run.
            Err(error) => {
                self.audit_refusal(sql, &scope, started_at, &error).await;
                return Err(error);
            }
        };
        let types = logical
            .get_parameter_types()
            .map_err(GatewayError::from_planning)?;
        let mut names: Vec<&String> = types.keys().collect();
        names.sort_by_key(|name| {
            name.trim_start_matches('$')
                .parse::<usize>()
                .unwrap_or(usize::MAX)
        });
        let parameters = Schema::new(
            names
                .into_iter()
                .map(|name| Field::new(name, types[name].clone().unwrap_or(DataType::Null), true))
                .collect::<Vec<_>>(),
        );
        Ok(Prepared {
            columns: columns_of(&logical),
            parameters: Arc::new(parameters),
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

    /// The mesh catalog's own tables (`mesh.mesh_catalog.*`), which every principal may
    /// query (their rows are governed per caller), for clients that list tables.
    pub async fn system_tables(&self) -> Vec<VisibleTable> {
        let Ok(scope) = self.scope().await else {
            return Vec::new();
        };
        crate::system::listing(scope).await
    }

    /// Every table and view this principal may read, with the columns it sees.
    pub async fn tables(&self) -> Vec<VisibleTable> {
        // No policy version (the governance store is down): nothing is visible.
        let Ok(scope) = self.scope().await else {
            return Vec::new();
        };
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
                let definition = self
                    .gateway
                    .catalog
                    .table(resolved.domain(), resolved.name())
                    .map(|(_, t)| t);
                let description = definition
                    .map(|t| t.description.clone())
                    .unwrap_or_default();
                let arrow_schema = resolved.provider().schema();
                let primary_key = definition
                    .map(|t| {
                        t.columns
                            .iter()
                            .filter(|c| {
                                c.primary_key && arrow_schema.field_with_name(&c.name).is_ok()
                            })
                            .map(|c| c.name.clone())
                            .collect()
                    })
                    .unwrap_or_default();
                out.push(VisibleTable {
                    catalog: CATALOG.to_string(),
                    schema: resolved.domain().to_string(),
                    name: resolved.name().to_string(),
                    table_type: resolved.kind().to_string(),
                    arrow_schema,
                    description,
                    product: resolved.product().to_string(),
                    primary_key,
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

    /// The result's columns and the tables they come from.
    pub fn columns(&self) -> &[Column] {
        &self.columns
    }

    /// Start running the query. The stream ends with an error if the query is cancelled or
    /// runs out of time, and holds the query's running slot until it ends or is dropped.
    pub fn execute(&self) -> Result<SendableRecordBatchStream, GatewayError> {
        let inner = execute_stream(Arc::clone(&self.plan), Arc::clone(&self.task))
            .map_err(GatewayError::from_execution)?;
        let guarded = Box::pin(Guarded::new(
            inner,
            &self.cancel,
            self.deadline,
            Arc::clone(&self.slot),
        ));
        Ok(Box::pin(crate::audit::Audited::new(
            guarded,
            self.audit.clone(),
        )))
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

/// Each output column, and its table when the column is a table's column passed through
/// (DataFusion keeps the table as the column's qualifier).
fn columns_of(plan: &datafusion::logical_expr::LogicalPlan) -> Vec<Column> {
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

pub(crate) fn visit_scans(plan: &Arc<dyn ExecutionPlan>, f: &mut dyn FnMut(&ProtectedScanExec)) {
    let any: &dyn std::any::Any = plan.as_ref();
    if let Some(scan) = any.downcast_ref::<ProtectedScanExec>() {
        f(scan);
    }
    for child in plan.children() {
        visit_scans(child, f);
    }
}

/// A query id: a UUIDv7, so ids sort by time (and match the OpenLineage run id).
pub(crate) fn new_query_id() -> String {
    uuid::Uuid::now_v7().to_string()
}
