//! The audit of each query: one durable record, written before the first batch leaves, and
//! one for every statement refused at any front door.
//!
//! [`Auditor::allowed`] starts writing the record once the query is planned (so it lists
//! exactly the tables, columns, row filters and treatments the sealed scans apply). The query
//! starts running meanwhile, so the commit is not paid before the work, but the result stream
//! ([`Audited`]) holds whatever the plan yields until the record is durable, and ends with
//! an error instead if it cannot be written: nothing of a query leaves before its record is
//! committed. The store commits concurrent queries' writes together (group commit).
//! [`Auditor::refused`] records a refusal with every product table the statement named and
//! the reason, without any value. [`Audited`] also records how the query ended (rows and
//! bytes returned, duration, error) when it ends or is dropped; that second write is best
//! effort, because by then the record that matters is already durable.

use std::collections::BTreeSet;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::physical_plan::stream::EmptyRecordBatchStream;
use datafusion::physical_plan::{ExecutionPlan, RecordBatchStream, SendableRecordBatchStream};
use futures::future::{self, BoxFuture};
use futures::{FutureExt, Stream};
use meshgate_governance::{
    AuditColumn, AuditOutcome, AuditRecord, AuditTable, Decision, GovernanceStore, QueryStatus,
    TableAccess, now_millis,
};
use meshgate_lineage::Lineage;
use meshgate_policy::{Principal, ResolvedTablePolicy};
use meshgate_storage::IoCounters;
use sha2::{Digest, Sha256};
use tracing::Instrument;

use crate::distribute::Workers;
use crate::error::{AuditUnavailable, GatewayError};
use crate::metrics::Metrics;
use crate::protected::{ProtectedScanExec, visit_scans};
use crate::scope::QueryScope;
use crate::shared::Shared;

fn statement_sha256(sql: &str) -> String {
    hex::encode(Sha256::digest(sql.as_bytes()))
}

/// A query id: a UUIDv7, so ids sort by time (and match the OpenLineage run id).
fn new_query_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Who is asking and how the statement arrived: what every record of a session says.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Auditor<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) principal: &'a Principal,
    /// The caller's network address.
    pub(crate) client: Option<&'a str>,
    /// How statements arrive (`library`, `flight`, ...).
    pub(crate) method: &'a str,
}

impl Auditor<'_> {
    fn record(
        &self,
        sql: &str,
        started_at: i64,
        scope: &QueryScope,
        decision: Decision,
        tables: Vec<AuditTable>,
        error: Option<String>,
    ) -> AuditRecord {
        AuditRecord {
            query_id: new_query_id(),
            started_at,
            principal: self.principal.id().to_string(),
            app: self.principal.attribute("app").map(str::to_string),
            client: self.client.map(str::to_string),
            method: self.method.to_string(),
            statement_sha256: statement_sha256(sql),
            statement: self
                .shared
                .audit_settings()
                .keep_statements
                .then(|| sql.to_string()),
            policy_version: scope.policy_version(),
            decision,
            tables,
            error,
            replica: self.shared.replica().map(str::to_string),
        }
    }

    /// Record a statement refused or failed before running, with every product table it
    /// named and the reason, without any value (see [`GatewayError::redacted`]). The
    /// statement fails either way; a record that cannot be written is logged.
    pub(crate) async fn refused(
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
        let metrics = self.shared.metrics();
        if let GatewayError::Denied(denial) = error {
            metrics.denial(denial.reason());
        }
        let took = u64::try_from(now_millis().saturating_sub(started_at)).unwrap_or(0);
        metrics.query(
            self.method,
            error.code(),
            std::time::Duration::from_millis(took),
            0,
            0,
        );
        let record = self.record(
            sql,
            started_at,
            scope,
            decision,
            tables_touched(None, scope),
            Some(error.redacted()),
        );
        let writing = Instant::now();
        let written = self.shared.governance().record_query(&record).await;
        metrics.audit_write("start", writing.elapsed(), written.is_ok());
        if let Err(e) = written {
            tracing::error!(error = %e, principal = self.principal.id(), "cannot record a refused query in the audit log");
        }
    }

    /// Start writing a planned query's record. Nothing of the query may be sent before the
    /// handle's [`Durable`] says the record is committed (see [`Audited`]): no record, no query.
    pub(crate) fn allowed(
        &self,
        sql: &str,
        scope: &QueryScope,
        started_at: i64,
        started: Instant,
        plan: &Arc<dyn ExecutionPlan>,
    ) -> AuditHandle {
        let record = Arc::new(self.record(
            sql,
            started_at,
            scope,
            Decision::Allow,
            tables_touched(Some(plan), scope),
            None,
        ));
        let lineage = self.shared.lineage().cloned();
        let (store, metrics) = (self.shared.governance(), self.shared.metrics());
        let (writing_store, writing_metrics) = (Arc::clone(store), Arc::clone(metrics));
        let (writing_record, writing_lineage) = (Arc::clone(&record), lineage.clone());
        // Its own task: the write goes on whether or not anyone runs the query, and is never
        // dropped halfway with the caller's future. Its span is the query's child.
        let write = async move {
            let writing = Instant::now();
            let written = writing_store.record_query(&writing_record).await;
            writing_metrics.audit_write("start", writing.elapsed(), written.is_ok());
            if let Err(e) = written {
                let query = &writing_record.query_id;
                tracing::error!(error = %e, %query, "audit log unavailable; query refused");
                return Err(AuditUnavailable);
            }
            if let Some(lineage) = &writing_lineage {
                lineage.started(&writing_record);
            }
            Ok(())
        };
        let span = tracing::info_span!("audit", otel.name = "audit");
        let write = tokio::spawn(write.instrument(span));
        let durable = write
            .map(|joined| joined.unwrap_or(Err(AuditUnavailable)))
            .boxed()
            .shared();
        AuditHandle {
            store: Arc::clone(store),
            metrics: Arc::clone(metrics),
            io: None,
            lineage,
            record,
            durable,
            started,
            workers: None,
        }
    }
}

/// Resolves once a query's record is committed (or cannot be).
pub(crate) type Durable = future::Shared<BoxFuture<'static, Result<(), AuditUnavailable>>>;

/// One [`AuditTable`] per product table the plan scans (several scans of one table merge):
/// the columns the scans read (their projections and the caller's pushed predicates), in
/// table order, with their treatments, and the row-filter rules and grants applied.
fn tables_read(plan: &Arc<dyn ExecutionPlan>) -> Vec<AuditTable> {
    let mut scans: Vec<(ResolvedTablePolicy, BTreeSet<String>)> = Vec::new();
    visit_scans(plan, &mut |scan: &ProtectedScanExec| {
        // Every scan the gateway plans carries its resolved policy.
        let Some(policy) = scan.policy() else {
            return;
        };
        let schema = scan.schema();
        let read = schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .chain(scan.pushed_columns());
        match scans
            .iter_mut()
            .find(|(p, _)| p.product == policy.product && p.table == policy.table)
        {
            Some((_, columns)) => columns.extend(read),
            None => scans.push((policy.clone(), read.collect())),
        }
    });
    scans
        .into_iter()
        .map(|(policy, read)| AuditTable {
            access: TableAccess::Read,
            row_filters: policy.row_filter_rules().map(str::to_string).collect(),
            columns: policy
                .columns
                .iter()
                .filter(|c| read.contains(&c.name))
                .map(|c| AuditColumn {
                    name: c.name.clone(),
                    treatment: c.describe(),
                    rule: c.rule.clone(),
                })
                .collect(),
            grant_ids: policy.grant_ids().to_vec(),
            policy_id: Some(policy.policy_id),
            product: policy.product,
            table: policy.table,
        })
        .collect()
}

/// Every product table a query touched: those its sealed scans read (see [`tables_read`]),
/// then those it named or listed without reading their data (EXPLAIN, DESCRIBE, a refused
/// query, information_schema), so that an owner sees every probe of their product.
fn tables_touched(plan: Option<&Arc<dyn ExecutionPlan>>, scope: &QueryScope) -> Vec<AuditTable> {
    let mut out = plan.map(tables_read).unwrap_or_default();
    for (product, table, outcome) in scope.touched() {
        if out.iter().any(|t| t.product == product && t.table == table) {
            continue;
        }
        let (access, policy_id) = match outcome {
            Ok(policy_id) => (TableAccess::Metadata, policy_id),
            Err(()) => (TableAccess::Denied, None),
        };
        out.push(AuditTable {
            product,
            table,
            access,
            policy_id,
            row_filters: Vec::new(),
            grant_ids: Vec::new(),
            columns: Vec::new(),
        });
    }
    out
}

/// Where a query's audit record went: the store (for the outcome) and the lineage emitter.
#[derive(Debug, Clone)]
pub(crate) struct AuditHandle {
    store: Arc<dyn GovernanceStore>,
    metrics: Arc<Metrics>,
    /// What the query asked of storage, counted into the metrics when it ends.
    io: Option<Arc<IoCounters>>,
    lineage: Option<Lineage>,
    record: Arc<AuditRecord>,
    /// Whether the record is committed: the stream sends nothing before.
    durable: Durable,
    started: Instant,
    /// For a distributed query, the workers its stages went to.
    workers: Option<Arc<Workers>>,
}

impl AuditHandle {
    /// The handle of a query whose stages go to `workers`.
    pub(crate) fn with_workers(mut self, workers: Arc<Workers>) -> Self {
        self.workers = Some(workers);
        self
    }

    /// The handle of a query reading through `io`.
    pub(crate) fn with_io(mut self, io: Arc<IoCounters>) -> Self {
        self.io = Some(io);
        self
    }
}

/// What the plan yielded first, kept until the record is committed (`None`: nothing yet;
/// `Some(None)`: the stream ended).
type Held = Option<Option<Result<RecordBatch, DataFusionError>>>;

/// A result stream that sends nothing before its query's record is committed, and records
/// its outcome in the audit log (and lineage) when it ends or is dropped.
pub(crate) struct Audited {
    inner: SendableRecordBatchStream,
    handle: AuditHandle,
    /// Until the record is committed: the gate, and the plan's first item, held.
    gate: Option<(Durable, Held)>,
    /// The query's execution, entered at every poll: it ends when the stream does.
    span: tracing::Span,
    rows: u64,
    bytes: u64,
    done: bool,
}

impl Audited {
    pub(crate) fn new(inner: SendableRecordBatchStream, handle: AuditHandle) -> Self {
        let gate = Some((handle.durable.clone(), None));
        Self {
            inner,
            handle,
            gate,
            span: tracing::info_span!("execute", otel.name = "execute"),
            rows: 0,
            bytes: 0,
            done: false,
        }
    }

    fn finish(&mut self, status: QueryStatus, error: Option<String>) {
        if std::mem::replace(&mut self.done, true) {
            return;
        }
        let took = self.handle.started.elapsed();
        let outcome = AuditOutcome {
            status,
            rows_returned: self.rows,
            bytes_returned: self.bytes,
            duration_ms: u64::try_from(took.as_millis()).unwrap_or(u64::MAX),
            error,
            workers: self
                .handle
                .workers
                .as_ref()
                .map(|w| w.list())
                .unwrap_or_default(),
        };
        let metrics = Arc::clone(&self.handle.metrics);
        metrics.query(
            &self.handle.record.method,
            status.as_str(),
            took,
            self.rows,
            self.bytes,
        );
        if let Some(io) = &self.handle.io {
            metrics.storage(&io.report());
        }
        if let Some(lineage) = &self.handle.lineage {
            lineage.finished(&self.handle.record, &outcome, now_millis());
        }
        let (store, id, durable) = (
            Arc::clone(&self.handle.store),
            self.handle.record.query_id.clone(),
            self.handle.durable.clone(),
        );
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            tracing::warn!(query = %id, "no runtime to record the query's outcome");
            return;
        };
        metrics.audit_queued(1);
        runtime.spawn(async move {
            // The outcome updates the record: after it, and only if it was written.
            if durable.await.is_err() {
                metrics.audit_queued(-1);
                return;
            }
            let writing = Instant::now();
            let written = store.finish_query(&id, &outcome).await;
            metrics.audit_write("end", writing.elapsed(), written.is_ok());
            metrics.audit_queued(-1);
            if let Err(e) = written {
                tracing::error!(query = %id, error = %e, "cannot record the query's outcome");
            }
        });
    }
}

impl Stream for Audited {
    type Item = Result<RecordBatch, DataFusionError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let span = self.span.clone();
        let _entered = span.enter();
        let this = &mut *self;
        let poll = match &mut this.gate {
            None => this.inner.as_mut().poll_next(cx),
            Some((durable, held)) => match durable.poll_unpin(cx) {
                Poll::Ready(Ok(())) => {
                    let held = held.take();
                    this.gate = None;
                    match held {
                        Some(item) => Poll::Ready(item),
                        None => this.inner.as_mut().poll_next(cx),
                    }
                }
                Poll::Ready(Err(unavailable)) => {
                    // Nothing of the query may leave: the held item is dropped, and the plan
                    // with it (the stream ends here).
                    this.gate = None;
                    this.inner = Box::pin(EmptyRecordBatchStream::new(this.inner.schema()));
                    this.finish(QueryStatus::Failed, Some(unavailable.to_string()));
                    return Poll::Ready(Some(Err(DataFusionError::External(Box::new(
                        unavailable,
                    )))));
                }
                Poll::Pending => {
                    // Meanwhile the plan runs: its first item is kept until the commit.
                    if held.is_none()
                        && let Poll::Ready(item) = this.inner.as_mut().poll_next(cx)
                    {
                        *held = Some(item);
                    }
                    return Poll::Pending;
                }
            },
        };
        match &poll {
            Poll::Ready(Some(Ok(batch))) => {
                self.rows += batch.num_rows() as u64;
                self.bytes += batch.get_array_memory_size() as u64;
            }
            Poll::Ready(Some(Err(e))) => {
                // The caller gets the error itself; the audit and lineage its class.
                let redacted = GatewayError::of_execution(e).redacted();
                self.finish(QueryStatus::Failed, Some(redacted));
            }
            Poll::Ready(None) => self.finish(QueryStatus::Ok, None),
            Poll::Pending => {}
        }
        poll
    }
}

impl RecordBatchStream for Audited {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

impl Drop for Audited {
    fn drop(&mut self) {
        // Dropped before its end: the client went away or cancelled.
        self.finish(QueryStatus::Cancelled, None);
    }
}
