//! Distributed execution, the gateway's side: whether a planned query goes to workers, to
//! which, and the distributed plan it becomes (DataFusion Distributed cuts it into stages).
//!
//! The decision is taken on the query as planned here, sealed scans and all: a query whose
//! sealed scans read at least [`crate::Distribution::min_scan_bytes`] is distributed, any other runs
//! in process as before. The sealed scans travel as the gateway compiled them
//! ([`crate::wire`]); how a stage reaches a worker (signed, over TLS) is the business of the
//! [`WorkerNetwork`] the embedder provides (`meshgate-distributed`).

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::{PlanType, StringifiedPlan};
use datafusion::physical_plan::explain::ExplainExec;
use datafusion::physical_plan::recursive_query::RecursiveQueryExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{ExecutionPlan, SendableRecordBatchStream};
use datafusion_distributed::{
    ChannelResolver, DistributedExec, DistributedExt, SessionStateBuilderExt, WorkerChannel,
    WorkerResolver, display_plan_ascii,
};
use futures::StreamExt;
use url::Url;

use crate::config::{OnWorkerDown, WorkerNetwork};
use crate::error::{GatewayError, WorkerFailure};
use crate::protected::visit_scans;
use crate::shared::Shared;
use crate::wire;

/// A query as distributed: the state it runs in (which carries the workers, the channels and
/// the seal codec), its plan, and the workers its stages went to (filled as it runs).
pub(crate) struct Distributed {
    pub(crate) state: SessionState,
    pub(crate) plan: Arc<dyn ExecutionPlan>,
    pub(crate) workers: Arc<Workers>,
    pub(crate) recheck: Arc<Recheck>,
}

/// The workers a query's stages were sent to.
#[derive(Debug, Default)]
pub(crate) struct Workers(Mutex<BTreeSet<String>>);

impl Workers {
    pub(crate) fn list(&self) -> Vec<String> {
        self.0
            .lock()
            .map(|w| w.iter().cloned().collect())
            .unwrap_or_default()
    }
}

/// Bytes of Parquet the plan's sealed scans would read.
pub(crate) fn scan_bytes(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    let mut bytes = 0;
    visit_scans(plan, &mut |scan| bytes += wire::files_bytes(&scan.inner));
    bytes
}

/// The distributed form of `physical` when this gateway distributes and the query is large
/// enough, with workers to run it; `None` to run it in process.
pub(crate) async fn distribute(
    shared: &Shared,
    scope: &crate::scope::QueryScope,
    state: &SessionState,
    logical: &LogicalPlan,
    physical: &Arc<dyn ExecutionPlan>,
) -> Result<Option<Distributed>, GatewayError> {
    let Some(distribution) = shared.distribution() else {
        return Ok(None);
    };
    let mut scans = 0;
    visit_scans(physical, &mut |_| scans += 1);
    if scans == 0 || scan_bytes(physical) < distribution.min_scan_bytes {
        return Ok(None);
    }
    // A recursive query re-runs its recursive term until it is empty: a term cut into
    // stages on workers cannot be re-run, so recursive queries run in process.
    if recursive(physical) {
        tracing::debug!("a recursive query runs in process");
        return Ok(None);
    }
    let live = distribution.network.live();
    let configured = distribution.network.configured().len();
    if live.is_empty() {
        tracing::warn!(
            configured,
            "no worker answers: running the query in process"
        );
        return Ok(None);
    }
    if live.len() < configured && distribution.on_worker_down == OnWorkerDown::Local {
        tracing::warn!(
            configured,
            live = live.len(),
            "a worker does not answer: running the query in process"
        );
        return Ok(None);
    }
    let workers = Arc::new(Workers::default());
    let distributed = SessionStateBuilder::new_from_existing(state.clone())
        .with_query_planner(Arc::new(Planned(Arc::clone(physical))))
        .with_distributed_planner()
        .with_distributed_worker_resolver(LiveWorkers(live.clone()))
        .with_distributed_channel_resolver(Recording {
            network: Arc::clone(&distribution.network),
            workers: Arc::clone(&workers),
        })
        .with_distributed_user_codec(scope.mesh().seal_codec.clone())
        .with_distributed_desired_task_count_handler(wire::desired_task_count)
        .with_distributed_scale_up_leaf_node_handler(wire::scale_up)
        .with_distributed_file_scan_config_bytes_per_partition(
            distribution.bytes_per_partition.max(1),
        )
        .map_err(GatewayError::from_planning)?
        .build();
    let plan = distributed
        .create_physical_plan(logical)
        .await
        .map_err(GatewayError::from_planning)?;
    if !plan.is::<DistributedExec>() {
        // Nothing worth a network boundary: it runs in process.
        return Ok(None);
    }
    Ok(Some(Distributed {
        state: distributed,
        plan,
        workers,
        recheck: Arc::new(Recheck {
            network: Arc::clone(&distribution.network),
            workers: live,
        }),
    }))
}

/// The workers a distributed query was planned on, asked again when it fails.
///
/// DataFusion Distributed passes an error between workers as text: when a worker is the first
/// to see its peer go away, the failure reaches the gateway as an untyped error that names no
/// worker, and the peer stays in the live set until the next periodic probe. So an untyped
/// failure of a distributed query makes the gateway ask the query's workers at once: one that
/// does not answer is left out of the next plans and the failure becomes a [`WorkerFailure`]
/// naming it (UNAVAILABLE: run it again). When every worker answers, the error was the
/// query's own and passes unchanged.
#[derive(Debug)]
pub(crate) struct Recheck {
    network: Arc<dyn WorkerNetwork>,
    workers: Vec<Url>,
}

impl Recheck {
    /// `inner`, with its untyped errors checked against the workers as above.
    pub(crate) fn stream(
        self: Arc<Self>,
        inner: SendableRecordBatchStream,
    ) -> SendableRecordBatchStream {
        let schema = inner.schema();
        let checked = inner.then(move |item| {
            // Batches pass untouched; only an error holds the workers to ask.
            let recheck = item.is_err().then(|| Arc::clone(&self));
            async move {
                match (item, recheck) {
                    (Err(error), Some(recheck)) if untyped(&error) => {
                        Err(recheck.explain(error).await)
                    }
                    (item, _) => item,
                }
            }
        });
        Box::pin(RecordBatchStreamAdapter::new(schema, checked))
    }

    async fn explain(&self, error: DataFusionError) -> DataFusionError {
        let down = self.network.recheck(&self.workers).await;
        if down.is_empty() {
            return error;
        }
        let worker = down.iter().map(Url::as_str).collect::<Vec<_>>().join(", ");
        tracing::warn!(%worker, "a distributed query failed and its worker does not answer");
        DataFusionError::External(Box::new(WorkerFailure {
            worker,
            problem: "went away or cannot be reached".into(),
        }))
    }
}

/// Whether the error is none the gateway recognizes (a denial, a storage error, an abort, a
/// worker failure...): the query's own, or a worker's passed on as text.
fn untyped(error: &DataFusionError) -> bool {
    matches!(
        GatewayError::of_execution(error),
        GatewayError::Execution { .. }
    )
}

fn recursive(plan: &Arc<dyn ExecutionPlan>) -> bool {
    plan.is::<RecursiveQueryExec>() || plan.children().into_iter().any(recursive)
}

/// `EXPLAIN` of a query that would be distributed: the stages and tasks it would run as,
/// each sealed scan shown as in one process (table, policy id, columns, the caller's own
/// pushed predicates; never the row filter, a mask or a key). `None` for anything else.
pub(crate) async fn explain(
    shared: &Shared,
    scope: &crate::scope::QueryScope,
    state: &SessionState,
    logical: &LogicalPlan,
) -> Result<Option<Arc<dyn ExecutionPlan>>, GatewayError> {
    let LogicalPlan::Explain(explain) = logical else {
        return Ok(None);
    };
    if shared.distribution().is_none() {
        return Ok(None);
    }
    let query = state
        .optimize(explain.plan.as_ref())
        .map_err(GatewayError::from_planning)?;
    let physical = state
        .create_physical_plan(&query)
        .await
        .map_err(GatewayError::from_planning)?;
    let Some(distributed) = distribute(shared, scope, state, &query, &physical).await? else {
        return Ok(None);
    };
    let mut plans: Vec<StringifiedPlan> = explain
        .stringified_plans
        .iter()
        .filter(|p| {
            matches!(
                p.plan_type,
                PlanType::InitialLogicalPlan
                    | PlanType::AnalyzedLogicalPlan { .. }
                    | PlanType::FinalAnalyzedLogicalPlan
                    | PlanType::OptimizedLogicalPlan { .. }
            )
        })
        .cloned()
        .collect();
    plans.push(StringifiedPlan::new(
        PlanType::FinalLogicalPlan,
        query.display_indent().to_string(),
    ));
    plans.push(StringifiedPlan::new(
        PlanType::FinalPhysicalPlan,
        display_plan_ascii(distributed.plan.as_ref(), false),
    ));
    Ok(Some(Arc::new(ExplainExec::new(
        Arc::clone(explain.schema.inner()),
        plans,
        explain.verbose,
    ))))
}

/// Hands DataFusion Distributed the plan this gateway already made (sealed scans included),
/// so that distribution starts from exactly what was checked and audited.
#[derive(Debug)]
struct Planned(Arc<dyn ExecutionPlan>);

#[async_trait]
impl QueryPlanner for Planned {
    async fn create_physical_plan(
        &self,
        _logical_plan: &LogicalPlan,
        _session: &dyn datafusion::catalog::Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::clone(&self.0))
    }
}

/// The workers that answered when the query was planned.
struct LiveWorkers(Vec<Url>);

impl WorkerResolver for LiveWorkers {
    fn get_urls(&self) -> Result<Vec<Url>> {
        Ok(self.0.clone())
    }
}

/// The network, noting each worker the query's stages go to (for the audit record).
struct Recording {
    network: Arc<dyn WorkerNetwork>,
    workers: Arc<Workers>,
}

#[async_trait]
impl ChannelResolver for Recording {
    async fn get_worker_client_for_url(&self, url: &Url) -> Result<Box<dyn WorkerChannel>> {
        if let Ok(mut workers) = self.workers.0.lock() {
            workers.insert(url.to_string());
        }
        self.network.get_worker_client_for_url(url).await
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use arrow::array::{Int64Array, RecordBatch};
    use arrow::datatypes::{DataType, Field, Schema};
    use futures::TryStreamExt;

    use super::*;

    /// A network whose workers in `down` do not answer, counting how often it is asked.
    #[derive(Debug)]
    struct Fake {
        workers: Vec<Url>,
        down: Vec<Url>,
        live: Mutex<Vec<Url>>,
        rechecks: AtomicUsize,
    }

    impl Fake {
        fn new(down: &[&str]) -> Arc<Self> {
            let workers: Vec<Url> = ["http://w1:1/", "http://w2:2/", "http://w3:3/"]
                .iter()
                .map(|u| Url::parse(u).unwrap())
                .collect();
            Arc::new(Self {
                live: Mutex::new(workers.clone()),
                workers,
                down: down.iter().map(|u| Url::parse(u).unwrap()).collect(),
                rechecks: AtomicUsize::new(0),
            })
        }
    }

    #[async_trait]
    impl ChannelResolver for Fake {
        async fn get_worker_client_for_url(&self, url: &Url) -> Result<Box<dyn WorkerChannel>> {
            Err(DataFusionError::Plan(format!(
                "no channel to {url} in this test"
            )))
        }
    }

    #[async_trait]
    impl WorkerNetwork for Fake {
        fn configured(&self) -> Vec<Url> {
            self.workers.clone()
        }
        fn live(&self) -> Vec<Url> {
            self.live.lock().unwrap().clone()
        }
        async fn recheck(&self, workers: &[Url]) -> Vec<Url> {
            self.rechecks.fetch_add(1, Ordering::SeqCst);
            let down: Vec<Url> = workers
                .iter()
                .filter(|w| self.down.contains(w))
                .cloned()
                .collect();
            self.live.lock().unwrap().retain(|w| !down.contains(w));
            down
        }
    }

    /// One batch, then `error`, through a recheck of `network`'s workers.
    async fn run(network: &Arc<Fake>, error: DataFusionError) -> (usize, DataFusionError) {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int64, false)]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![Arc::new(Int64Array::from(vec![1]))],
        )
        .unwrap();
        let inner: SendableRecordBatchStream = Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&schema),
            futures::stream::iter(vec![Ok(batch), Err(error)]),
        ));
        let recheck = Arc::new(Recheck {
            network: Arc::clone(network) as Arc<dyn WorkerNetwork>,
            workers: network.workers.clone(),
        });
        let mut stream = recheck.stream(inner);
        let mut rows = 0;
        loop {
            match stream.try_next().await {
                Ok(Some(batch)) => rows += batch.num_rows(),
                Ok(None) => panic!("the stream ended without its error"),
                Err(error) => return (rows, error),
            }
        }
    }

    /// How DataFusion Distributed hands the gateway a worker's error about its peer: text.
    fn as_text() -> DataFusionError {
        DataFusionError::External(
            "worker http://w2:2/ went away or cannot be reached; the query did not complete: run it again"
                .into(),
        )
    }

    #[tokio::test]
    async fn an_untyped_failure_with_a_worker_down_is_unavailable_naming_it() {
        let network = Fake::new(&["http://w2:2/"]);
        let (rows, error) = run(&network, as_text()).await;
        assert_eq!(rows, 1, "batches before the failure pass");
        let error = GatewayError::of_execution(&error);
        assert_eq!(error.code(), "unavailable", "{error}");
        assert!(error.to_string().contains("http://w2:2/"), "{error}");
        assert!(!error.to_string().contains("w1"), "{error}");
        // Left out of the next plans at once, without waiting for the next probe.
        assert_eq!(network.live().len(), 2);
        assert!(
            !network
                .live()
                .contains(&Url::parse("http://w2:2/").unwrap())
        );
    }

    #[tokio::test]
    async fn an_untyped_failure_with_every_worker_answering_is_the_querys_own() {
        let network = Fake::new(&[]);
        let original = DataFusionError::Execution("Cast error: cannot cast".into());
        let (_, error) = run(&network, original).await;
        assert_eq!(network.rechecks.load(Ordering::SeqCst), 1);
        let error = GatewayError::of_execution(&error);
        assert_eq!(error.code(), "execution", "{error}");
        assert!(error.to_string().contains("cannot cast"), "{error}");
        assert_eq!(network.live().len(), 3);
    }

    #[tokio::test]
    async fn a_typed_failure_passes_without_asking_the_workers() {
        let network = Fake::new(&["http://w2:2/"]);
        let typed = DataFusionError::External(Box::new(WorkerFailure {
            worker: "http://w1:1/".into(),
            problem: "refused the stage (policy version)".into(),
        }));
        let (_, error) = run(&network, typed).await;
        assert_eq!(network.rechecks.load(Ordering::SeqCst), 0);
        let error = GatewayError::of_execution(&error);
        assert!(error.to_string().contains("refused the stage"), "{error}");
        assert_eq!(network.live().len(), 3);
    }
}
