//! Planning one statement as one caller: the per-query DataFusion state and runtime, then
//! parse, measure, lock down, plan and bind. The single path every consumer statement (SQL
//! or Substrait) and every view definition takes.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::ScalarValue;
use datafusion::error::Result;
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SessionState, TaskContext};
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use meshgate_policy::{PolicySet, Principal};

use crate::error::GatewayError;
use crate::lake_table::MeshStores;
use crate::limits::QueryPool;
use crate::names::CATALOG;
use crate::params;
use crate::providers::SecureCatalogList;
use crate::scope::{QueryScope, ViewPlanner};
use crate::shared::{MeshState, Shared};
use crate::{lockdown, shape, substrait};

/// The longest statement accepted (a guard against oversized requests, not a feature).
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;

/// What a consumer sends to be planned.
#[derive(Debug, Clone, Copy)]
pub enum Statement<'a> {
    /// SQL text: one statement.
    Sql(&'a str),
    /// A serialized Substrait `Plan` (Flight SQL's `CommandStatementSubstraitPlan`).
    Substrait(&'a [u8]),
}

impl Statement<'_> {
    /// How the audit, lineage and refusals name the statement: SQL as written; a Substrait
    /// plan by its size (the record's products name what it read).
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Self::Sql(sql) => Cow::Borrowed(sql),
            Self::Substrait(plan) => {
                Cow::Owned(format!("-- a Substrait plan of {} bytes", plan.len()))
            }
        }
    }

    /// The statement's size in bytes (SQL text or serialized plan).
    pub fn size(&self) -> usize {
        match self {
            Self::Sql(sql) => sql.len(),
            Self::Substrait(plan) => plan.len(),
        }
    }
}

/// Serialized Substrait plans at least this large are planned on the planning stack (their
/// nesting is bounded by the decoder, not measured like SQL's).
const LARGE_SUBSTRAIT_PLAN: usize = 64 << 10;

/// A parsed statement within meshgate's limits (see [`parse`]).
pub(crate) struct Parsed {
    source: Source,
    /// Large enough to plan on the planning stack (see [`crate::shape`]).
    pub(crate) large: bool,
}

enum Source {
    Sql(datafusion::sql::parser::Statement),
    Substrait(Box<datafusion_substrait::substrait::proto::Plan>),
}

/// Plans views for the scopes it creates, through this module's one planning path.
#[derive(Debug)]
struct Planner;

#[async_trait]
impl ViewPlanner for Planner {
    async fn plan_view(
        &self,
        scope: &Arc<QueryScope>,
        sql: &str,
    ) -> Result<LogicalPlan, GatewayError> {
        plan(scope, Statement::Sql(sql), None)
            .await
            .map(|(_, plan, _)| plan)
    }
}

/// A scope for one query of `principal` under `policies`.
pub(crate) fn scope(
    shared: Arc<Shared>,
    (mesh, policies): (Arc<MeshState>, Arc<PolicySet>),
    principal: Principal,
    default_schema: Option<String>,
) -> Arc<QueryScope> {
    Arc::new(QueryScope::new(
        shared,
        mesh,
        Arc::new(Planner),
        principal,
        policies,
        default_schema,
    ))
}

/// The state one query is planned in: a copy of the template (its functions registered
/// once, at start-up: rebuilding a state re-registers every one, a measurable share of a
/// point query) whose only catalog is the scope's. The template's runtime has no object
/// store, so nothing planned here reads a lake except through the scope's own counting
/// store (the sealed scans take it from their table); the query runs in [`task_context`].
fn state(scope: &Arc<QueryScope>) -> SessionState {
    let mut state = scope.shared().template().clone();
    state.register_catalog_list(Arc::new(SecureCatalogList::new(Arc::clone(scope))));
    if let Some(schema) = scope.default_schema() {
        let catalog = &mut state.config_mut().options_mut().catalog;
        catalog.default_catalog = CATALOG.to_string();
        catalog.default_schema = schema.to_string();
    }
    state
}

/// What a query planned in `state` runs with: its functions and settings, this query's
/// counting view of the product lakes as the only object store, and memory reserved from
/// its own capped share of the shared pool when there is a per-query limit.
pub(crate) fn task_context(scope: &QueryScope, state: &SessionState) -> TaskContext {
    let shared = scope.shared();
    let runtime = shared.runtime();
    let memory_pool: Arc<dyn MemoryPool> = match shared.admission().limits().memory {
        Some(cap) => Arc::new(QueryPool::new(Arc::clone(&runtime.memory_pool), cap)),
        None => Arc::clone(&runtime.memory_pool),
    };
    let query_runtime = RuntimeEnv {
        memory_pool,
        disk_manager: Arc::clone(&runtime.disk_manager),
        cache_manager: Arc::clone(&runtime.cache_manager),
        object_store_registry: Arc::new(MeshStores::new(
            scope.mesh().lakes.store(Some(Arc::clone(&scope.io))),
        )),
    };
    TaskContext::new(
        None,
        state.session_id().to_string(),
        state.config().clone(),
        state.scalar_functions().clone(),
        state.higher_order_functions().clone(),
        state.aggregate_functions().clone(),
        state.window_functions().clone(),
        Arc::new(query_runtime),
    )
}

/// Parse and measure one statement (see [`crate::shape`]): the first step of [`plan`],
/// apart so that a caller can plan the rest on the planning stack when it is large.
pub(crate) fn parse(scope: &QueryScope, statement: Statement<'_>) -> Result<Parsed, GatewayError> {
    if statement.size() > MAX_STATEMENT_BYTES {
        return Err(GatewayError::InvalidQuery(format!(
            "the statement is {} bytes long; the limit is {MAX_STATEMENT_BYTES}",
            statement.size()
        )));
    }
    let sql = match statement {
        Statement::Sql(sql) => sql,
        Statement::Substrait(bytes) => {
            return Ok(Parsed {
                source: Source::Substrait(Box::new(substrait::decode(bytes)?)),
                large: bytes.len() >= LARGE_SUBSTRAIT_PLAN,
            });
        }
    };
    let template = scope.shared().template();
    let dialect = template.config().options().sql_parser.dialect;
    let statement = lockdown::parse_one(sql, &dialect, template)?;
    match shape::check(&statement) {
        Ok(measured) => Ok(Parsed {
            source: Source::Sql(statement),
            large: measured.large,
        }),
        Err(over) => {
            shape::discard(statement);
            Err(over)
        }
    }
}

/// Parse, check and plan one statement as the caller. Returns the state it was planned in,
/// the plan, and whether the statement is large (what is left of planning it, too, belongs
/// on the planning stack: see [`crate::shape`]).
pub(crate) async fn plan(
    scope: &Arc<QueryScope>,
    statement: Statement<'_>,
    params: Option<&[ScalarValue]>,
) -> Result<(SessionState, LogicalPlan, bool), GatewayError> {
    let parsed = parse(scope, statement)?;
    let large = parsed.large;
    let (state, logical) = shape::plan_on(large, plan_parsed(scope, parsed, params)).await?;
    Ok((state, logical, large))
}

/// [`plan`] after [`parse`].
pub(crate) async fn plan_parsed(
    scope: &Arc<QueryScope>,
    parsed: Parsed,
    params: Option<&[ScalarValue]>,
) -> Result<(SessionState, LogicalPlan), GatewayError> {
    let state = state(scope);
    let mut plan = match parsed.source {
        Source::Sql(statement) => plan_sql(scope, &state, statement).await?,
        Source::Substrait(plan) => {
            let plan = substrait::to_logical(scope, &state, &plan).await?;
            // SQL was measured as text; a plan is measured once it is one.
            shape::check_plan(&plan)?;
            plan
        }
    };
    lockdown::sql_options()
        .verify_plan(&plan)
        .map_err(|e| GatewayError::NotAllowed(e.strip_backtrace().to_string()))?;
    lockdown::check_tables(&plan)?;
    if let Some(params) = params {
        plan = params::bind(plan, params)?;
    }
    Ok((state, plan))
}

/// The logical plan of a SQL statement, its references noted for the audit first.
async fn plan_sql(
    scope: &Arc<QueryScope>,
    state: &SessionState,
    mut statement: datafusion::sql::parser::Statement,
) -> Result<LogicalPlan, GatewayError> {
    let references = state
        .resolve_table_references(&statement)
        .map_err(GatewayError::from_planning)?;
    // Whatever happens next, the audit names the products the statement mentions.
    scope.mention(&references);
    lockdown::check_statement(&statement)?;
    lockdown::number_question_marks(&mut statement)?;
    // Listings (information_schema, SHOW ...) must include views, which plan
    // asynchronously; DataFusion lists synchronously, so resolve everything first.
    if references
        .iter()
        .any(|r| r.schema() == Some("information_schema"))
    {
        scope.prepare_listing().await;
    }
    state
        .statement_to_plan(statement)
        .await
        .map_err(GatewayError::from_planning)
}

/// [`plan_parsed`], then the physical plan, for a statement about to run: every parameter
/// must have its value by now.
pub(crate) async fn plan_to_run(
    scope: &Arc<QueryScope>,
    parsed: Parsed,
    params: Option<&[ScalarValue]>,
) -> Result<(SessionState, LogicalPlan, Arc<dyn ExecutionPlan>), GatewayError> {
    let (state, logical) = plan_parsed(scope, parsed, params).await?;
    to_run(state, logical, params.is_some()).await
}

/// The physical plan of a logical plan planned (and bound, when `bound`) by
/// [`plan_parsed`], for a statement about to run.
pub(crate) async fn to_run(
    mut state: SessionState,
    logical: LogicalPlan,
    bound: bool,
) -> Result<(SessionState, LogicalPlan, Arc<dyn ExecutionPlan>), GatewayError> {
    // `now()`, `current_date` and the like are this instant, fixed for the whole query (the
    // optimizer folds them; unfolded they cannot run).
    state.mark_start_execution();
    if !bound {
        let unbound = logical
            .get_parameter_types()
            .map_err(GatewayError::from_planning)?;
        params::check_parameters(unbound.len(), None)?;
    }
    let physical = state
        .create_physical_plan(&logical)
        .await
        .map_err(GatewayError::from_planning)?;
    Ok((state, logical, physical))
}
