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
use datafusion::common::Result;
use datafusion::execution::context::QueryPlanner;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::logical_expr::{PlanType, StringifiedPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::explain::ExplainExec;
use datafusion::physical_plan::recursive_query::RecursiveQueryExec;
use datafusion_distributed::{
    ChannelResolver, DistributedExec, DistributedExt, SessionStateBuilderExt, WorkerChannel,
    WorkerResolver, display_plan_ascii,
};
use url::Url;

use crate::config::{OnWorkerDown, WorkerNetwork};
use crate::error::GatewayError;
use crate::protected::visit_scans;
use crate::shared::Shared;
use crate::wire;

/// A query as distributed: the state it runs in (which carries the workers, the channels and
/// the seal codec), its plan, and the workers its stages went to (filled as it runs).
pub(crate) struct Distributed {
    pub(crate) state: SessionState,
    pub(crate) plan: Arc<dyn ExecutionPlan>,
    pub(crate) workers: Arc<Workers>,
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
        .with_distributed_worker_resolver(LiveWorkers(live))
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
    }))
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
