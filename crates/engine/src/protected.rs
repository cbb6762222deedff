//! The rewrite: every product table a query names becomes a [`ProtectedTable`], whose scan
//! is `raw Parquet scan -> row filter -> masks/tokens -> projection without hidden columns`,
//! sealed inside one [`ProtectedScanExec`].
//!
//! Why a sealed leaf rather than ordinary plan nodes: DataFusion's optimizers move filters,
//! projections, limits and dynamic filters across ordinary nodes. A user predicate moved below
//! the policy filter could be evaluated on hidden rows (and leak through its errors), and one
//! pushed into the Parquet reader could prune by raw statistics of a masked column.
//! `ProtectedScanExec` has no children as far as any optimizer can see, reports no metrics
//! and only the statistics described below, and displays only the table and policy id, so
//! nothing above it can reach inside and nothing inside it leaks out through EXPLAIN. Its
//! statistics are only what the caller could compute anyway: the row count, and
//! min/max/null counts/byte sizes of the columns shown in the clear (never of a masked,
//! tokenized or hidden one), of the rows the caller sees: the files' footers' when no row
//! filter applies, else those of the rows the filter admits, computed in the background
//! after a first scan (see [`crate::visible`]; the footers count hidden rows too). Without
//! them hash joins cannot pick their build side, nor filters estimate their selectivity.
//!
//! Inside, the policy's row filter, together with the caller's leakproof predicates (those
//! that cannot fail and read clear columns only, see [`crate::leakproof`]), is pushed into
//! the Parquet source (DataFusion's own `FilterPushdown` rule, applied to the sealed subtree
//! only), so row groups whose statistics cannot match are never read. A join's or top-k's
//! dynamic filter joins them on the same terms (see [`ProtectedScanExec::accepts_dynamic`]).
//! Errors raised inside show the caller no value (see `sealed_error`).

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{
    ColumnStatistics, DFSchema, DataFusionError, Result, Statistics, internal_datafusion_err,
    internal_err,
};
use datafusion::datasource::TableType;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::logical_expr::expr::{Case, ScalarFunction};
use datafusion::logical_expr::expr_rewriter::unnormalize_col;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown, Volatility, col, lit};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::physical_expr::expressions::{Column as PhysicalColumn, DynamicFilterPhysicalExpr};
use datafusion::physical_expr::utils::reassign_expr_columns;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::filter_pushdown::FilterPushdown;
use datafusion::physical_plan::execution_plan::reset_plan_states;
use datafusion::physical_plan::filter::FilterExec;
use datafusion::physical_plan::filter_pushdown::{
    ChildFilterPushdownResult, ChildPushdownResult, FilterPushdownPhase, FilterPushdownPropagation,
    PushedDown,
};
use datafusion::physical_plan::limit::LocalLimitExec;
use datafusion::physical_plan::metrics::MetricsSet;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, ExecutionPlanProperties, Partitioning,
    PlanProperties, SendableRecordBatchStream,
};
use futures::TryStreamExt;
use meshgate_policy::{ResolvedTablePolicy, Treatment};
use meshgate_protect::{MaskUdf, MasterKey, TokenizeUdf};
use meshgate_storage::{IoCounters, Lakes};

use crate::error::{SealFailure, failure_class};
use crate::lake_table::{Known, LakeTable, with_stores};
use crate::{leakproof, visible};

/// A product table as one caller sees it in one query.
#[derive(Debug)]
pub struct ProtectedTable {
    policy: Arc<ResolvedTablePolicy>,
    raw: Arc<LakeTable>,
    lakes: Lakes,
    /// The query's storage request counters.
    io: Arc<IoCounters>,
    /// The combined row filter over raw columns (`None`: every row).
    row_filter: Option<Expr>,
    /// One entry per visible column, in output order: the expression over raw columns.
    columns: Vec<(Field, Expr)>,
    /// Visible columns the caller sees unprotected (the same name and values as raw).
    clear: HashSet<String>,
    schema: SchemaRef,
    /// `schema` as the planner's `DFSchema`, to type user predicates offered for pushdown.
    df_schema: DFSchema,
    /// The policy files' version this was resolved under, which a worker must hold too.
    fingerprint: String,
}

impl ProtectedTable {
    /// Compile a resolved policy for one table.
    ///
    /// `row_filter` is the policy's row filter already converted to a DataFusion expression
    /// over the raw schema (see [`crate::compile`]); `only_where` the same for the columns a
    /// caller sees on some rows only (several access grants that name different columns).
    pub(crate) fn new(
        policy: Arc<ResolvedTablePolicy>,
        raw: Arc<LakeTable>,
        lakes: Lakes,
        io: Arc<IoCounters>,
        row_filter: Option<Expr>,
        mut only_where: HashMap<String, Expr>,
        master_key: &MasterKey,
    ) -> Result<Self> {
        let raw_schema = raw.schema();
        let mut columns = Vec::new();
        let mut clear = HashSet::new();
        for column in policy.visible_columns() {
            let raw_field = raw_schema.field_with_name(&column.name)?;
            let source = col(datafusion::common::Column::from_name(&column.name));
            let (expr, data_type, nullable) = match &column.treatment {
                Treatment::Clear => (
                    {
                        clear.insert(column.name.clone());
                        source
                    },
                    raw_field.data_type().clone(),
                    raw_field.is_nullable(),
                ),
                Treatment::Mask(kind) => {
                    let data_type = kind
                        .output_type(raw_field.data_type())
                        .map_err(|m| internal_datafusion_err!("mask on `{}`: {m}", column.name))?;
                    let nullable =
                        raw_field.is_nullable() || *kind == meshgate_protect::MaskKind::Null;
                    (
                        call(MaskUdf::udf(kind.clone()), source),
                        data_type,
                        nullable,
                    )
                }
                Treatment::Tokenize(domain) => (
                    call(TokenizeUdf::udf(master_key.token_key(domain)), source),
                    meshgate_protect::tokenized_type(raw_field.data_type()),
                    raw_field.is_nullable(),
                ),
                Treatment::Hidden => {
                    return internal_err!("hidden column `{}` listed as visible", column.name);
                }
            };
            // Shown only on the rows of the grants that name the column, NULL elsewhere; such
            // a column is no longer clear (a predicate on it would read the other rows' raw
            // values), so nothing about it crosses the barrier.
            let (expr, nullable) = match only_where.remove(&column.name) {
                None => (expr, nullable),
                Some(condition) => {
                    clear.remove(&column.name);
                    (
                        Expr::Case(Case::new(
                            None,
                            vec![(Box::new(condition), Box::new(expr))],
                            None,
                        )),
                        true,
                    )
                }
            };
            columns.push((
                Field::new(&column.name, data_type, nullable),
                expr.alias(&column.name),
            ));
        }
        let schema = Arc::new(Schema::new(
            columns.iter().map(|(f, _)| f.clone()).collect::<Vec<_>>(),
        ));
        let df_schema = DFSchema::try_from(Arc::clone(&schema))?;
        Ok(Self {
            policy,
            raw,
            lakes,
            io,
            row_filter,
            columns,
            clear,
            schema,
            df_schema,
            fingerprint: String::new(),
        })
    }

    /// The policy files' version the policy was resolved under (what a worker checks).
    pub(crate) fn resolved_under(mut self, fingerprint: &str) -> Self {
        self.fingerprint = fingerprint.to_string();
        self
    }

    /// Whether a user predicate may be evaluated inside the seal (see [`crate::leakproof`]):
    /// never when the product keeps callers' predicates out for timing's sake.
    fn may_cross(&self, filter: &Expr) -> bool {
        self.policy.pushdown_user_predicates
            && leakproof::may_cross(filter, &self.clear, &self.df_schema)
    }

    /// Whether the caller gets only some of the table's rows (a row filter, a restriction,
    /// or grants that admit some rows), or some columns only on some rows.
    pub fn filters_rows(&self) -> bool {
        self.row_filter.is_some() || self.policy.columns.iter().any(|c| c.only_where.is_some())
    }

    pub fn policy(&self) -> &ResolvedTablePolicy {
        &self.policy
    }
}

fn call(udf: Arc<datafusion::logical_expr::ScalarUDF>, arg: Expr) -> Expr {
    Expr::ScalarFunction(ScalarFunction::new_udf(udf, vec![arg]))
}

#[async_trait]
impl TableProvider for ProtectedTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// Only user predicates that cannot fail and read clear columns only are handed to the
    /// protected scan (see [`crate::leakproof`]); every other one stays above the barrier and
    /// sees only filtered, masked rows.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        filters
            .iter()
            .map(|filter| {
                Ok(if self.may_cross(filter) {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                })
            })
            .collect()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // Pushed user predicates, checked again: nothing else ever enters the seal. They name
        // clear columns, which have the same names and values in the raw schema.
        let mut pushed = Vec::with_capacity(filters.len());
        for filter in filters {
            if !self.may_cross(filter) {
                return internal_err!("a user predicate that may not cross the barrier: {filter}");
            }
            // Without table qualifiers, to plan it over the raw scan.
            pushed.push(unnormalize_col(filter.clone()));
        }
        let filter = self
            .row_filter
            .iter()
            .cloned()
            .chain(pushed.iter().cloned())
            .reduce(Expr::and);
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.columns.len()).collect(),
        };
        // Raw columns needed: those the wanted outputs read, plus those the row filter reads.
        let raw_schema = self.raw.schema();
        let mut needed = std::collections::BTreeSet::new();
        for expr in wanted
            .iter()
            .filter_map(|i| self.columns.get(*i).map(|(_, e)| e))
            .chain(filter.as_ref())
        {
            for column in expr.column_refs() {
                needed.insert(raw_schema.index_of(&column.name)?);
            }
        }
        let raw_projection: Vec<usize> = needed.into_iter().collect();
        // Statistics only of what the caller could compute (see the module documentation):
        // the footers' when it sees every row (the raw count would otherwise tell how many
        // are hidden), else those of the rows its row filter admits, once computed.
        let every_row = self.row_filter.is_none();
        let known = match &self.row_filter {
            None => Known::Footers,
            Some(filter) if visible::depends_on_time(filter) => Known::Nothing,
            Some(filter) => Known::Visible(filter),
        };
        let raw = self
            .raw
            .scan(state, &self.lakes, &self.io, &raw_projection, known)
            .await?;
        let mut plan = raw.plan;
        let rows = match (every_row, raw.rows) {
            (true, Some(rows)) => {
                let rows = usize::try_from(rows).unwrap_or(usize::MAX);
                Some(limit.map_or(rows, |l| rows.min(l)))
            }
            _ => None,
        };
        let mut estimate = raw.statistics;

        if let Some(filter) = filter {
            let input_schema = DFSchema::try_from(plan.schema())?;
            let filter = at_query_time(filter, state, &input_schema)?;
            let predicate = state.create_physical_expr(filter, &input_schema)?;
            let filtered = FilterExec::try_new(predicate, Arc::clone(&plan))?;
            if estimate.is_some() && !pushed.is_empty() {
                // The caller's own leakproof predicates on clear columns, whose selectivity
                // DataFusion estimates as it would for a table of the rows the statistics
                // describe (so that joins pick their build side as they would there).
                // Without a row filter they are the whole filter, already planned; with one,
                // the statistics already describe its rows, so it is not counted again.
                let own = self
                    .row_filter
                    .as_ref()
                    .and_then(|_| pushed.iter().cloned().reduce(Expr::and));
                let narrowed = match own {
                    Some(own) => {
                        let own = at_query_time(own, state, &input_schema)?;
                        let own = state.create_physical_expr(own, &input_schema)?;
                        Some(FilterExec::try_new(own, Arc::clone(&plan))?)
                    }
                    None => None,
                };
                let narrowed = narrowed.as_ref().unwrap_or(&filtered);
                estimate = Some(Arc::unwrap_or_clone(
                    StatisticsContext::new().compute(narrowed, &StatisticsArgs::new())?,
                ));
            }
            plan = Arc::new(filtered);
            // Push the policy filter and the leakproof user predicates (and nothing else)
            // into the Parquet source for row-group, page-index and bloom-filter pruning.
            plan = FilterPushdown::new().optimize(plan, state.config_options())?;
        }
        let statistics = match estimate {
            Some(estimate) => Some(Arc::new(self.sealed_statistics(
                estimate,
                &raw_projection,
                &wanted,
                limit,
            )?)),
            None => None,
        };

        let input_schema = DFSchema::try_from(plan.schema())?;
        let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::with_capacity(wanted.len());
        for index in &wanted {
            let (field, expr) = self
                .columns
                .get(*index)
                .ok_or_else(|| internal_datafusion_err!("projection index {index} out of range"))?;
            exprs.push((
                state.create_physical_expr(
                    at_query_time(expr.clone(), state, &input_schema)?,
                    &input_schema,
                )?,
                field.name().clone(),
            ));
        }
        plan = Arc::new(ProjectionExec::try_new(exprs, plan)?);
        if let Some(limit) = limit {
            plan = Arc::new(LocalLimitExec::new(plan, limit));
        }

        // The sealed plan must produce exactly the schema the planner was promised.
        let promised = self.schema.project(&wanted)?;
        let produced = plan.schema();
        let same = promised.fields().len() == produced.fields().len()
            && promised
                .fields()
                .iter()
                .zip(produced.fields())
                .all(|(a, b)| {
                    a.name() == b.name()
                        && a.data_type() == b.data_type()
                        && a.is_nullable() == b.is_nullable()
                });
        if !same {
            return internal_err!(
                "protected scan of {}.{} would produce {produced:?} instead of {promised:?}",
                self.policy.domain,
                self.policy.table
            );
        }
        // A dynamic filter reads what a leakproof predicate may (see `accepts_dynamic`); none
        // below a limit, where filtering first would change which rows the limit keeps.
        let dynamic_columns = if self.policy.pushdown_user_predicates && limit.is_none() {
            self.clear.clone()
        } else {
            HashSet::new()
        };
        Ok(Arc::new(
            ProtectedScanExec::new(
                SealIdent::of(&self.policy, &self.fingerprint),
                Some(Arc::clone(&self.policy)),
                Arc::new(promised),
                plan,
                pushed,
                rows,
            )
            .with_statistics(statistics)
            .with_dynamic_columns(dynamic_columns),
        ))
    }
}

impl ProtectedTable {
    /// What the planner may know of a scan, from `raw`, the statistics of the rows the
    /// caller sees (every row's, or those its row filter admits): the row count, and of each
    /// output column shown in the clear, its statistics (min, max, nulls, byte size: values
    /// the caller could compute with a query). Nothing of a masked, tokenized or partly shown
    /// column, whose raw values the caller does not see. All inexact: files may change
    /// before they are read, and pushed predicates (whose selectivity `raw` already
    /// estimates) and limits shrink the answer.
    fn sealed_statistics(
        &self,
        raw: Statistics,
        raw_projection: &[usize],
        wanted: &[usize],
        limit: Option<usize>,
    ) -> Result<Statistics> {
        let rows = raw
            .num_rows
            .get_value()
            .map(|rows| limit.map_or(*rows, |l| (*rows).min(l)));
        let raw_schema = self.raw.schema();
        let mut columns = Vec::with_capacity(wanted.len());
        for index in wanted {
            let (field, _) = self
                .columns
                .get(*index)
                .ok_or_else(|| internal_datafusion_err!("projection index {index} out of range"))?;
            let clear = self
                .clear
                .contains(field.name())
                .then(|| raw_schema.index_of(field.name()).ok())
                .flatten()
                .and_then(|raw_index| raw_projection.iter().position(|i| *i == raw_index))
                .and_then(|at| raw.column_statistics.get(at));
            columns.push(match clear {
                Some(statistics) => statistics.clone().to_inexact(),
                None => ColumnStatistics::new_unknown(),
            });
        }
        // Bytes only when every output column is clear: a protected column's raw size says
        // something of its raw values.
        let bytes = columns
            .iter()
            .map(|c| c.byte_size.get_value().copied())
            .sum::<Option<usize>>();
        Ok(Statistics {
            num_rows: rows.map_or(Precision::Absent, Precision::Inexact),
            total_byte_size: bytes.map_or(Precision::Absent, Precision::Inexact),
            column_statistics: columns,
        })
    }
}

/// Which sealed scan this is, for EXPLAIN, errors and the worker's checks: the table and the
/// policy version it enforces. Nothing in it is secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SealIdent {
    pub(crate) product: String,
    pub(crate) domain: String,
    pub(crate) table: String,
    /// `<product>@v<version>`.
    pub(crate) policy_id: String,
    /// The policy files' version (see `PolicySet::fingerprint`).
    pub(crate) fingerprint: String,
}

impl SealIdent {
    fn of(policy: &ResolvedTablePolicy, fingerprint: &str) -> Arc<Self> {
        Arc::new(Self {
            product: policy.product.clone(),
            domain: policy.domain.clone(),
            table: policy.table.clone(),
            policy_id: policy.policy_id.clone(),
            fingerprint: fingerprint.to_string(),
        })
    }

    fn qualified(&self) -> String {
        format!("{}.{}", self.domain, self.table)
    }
}

/// A protected scan, sealed: a leaf to every optimizer, opaque to EXPLAIN, without metrics,
/// and with statistics only of what the caller could compute (see the module documentation).
pub struct ProtectedScanExec {
    pub(crate) ident: Arc<SealIdent>,
    /// The resolved policy, on the gateway that planned the scan (for the audit); a worker
    /// receives the compiled plan only (see [`crate::wire`]).
    policy: Option<Arc<ResolvedTablePolicy>>,
    pub(crate) inner: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
    /// The caller's own predicates evaluated inside (shown in EXPLAIN; the policy's never).
    pushed: Vec<Expr>,
    /// The files' row count, only when no row filter applies (an upper bound when the
    /// caller's predicates were pushed inside).
    pub(crate) rows: Option<usize>,
    /// What the planner may know of the whole scan (see `ProtectedTable::sealed_statistics`),
    /// on the gateway that planned it; `None`: the row count alone.
    statistics: Option<Arc<Statistics>>,
    /// On a worker, the stores the sealed subtree reads through (the worker's own mesh
    /// store): the worker's session knows no product store, so only a sealed scan reads one.
    pub(crate) stores: Option<Arc<dyn ObjectStoreRegistry>>,
    /// Columns a join's (or a top-k's) dynamic filter may read inside the seal: those a
    /// leakproof user predicate may read (clear, and the product lets predicates cross),
    /// none below a limit, none on a worker. See [`ProtectedScanExec::accepts_dynamic`].
    dynamic_columns: Arc<HashSet<String>>,
    /// The dynamic filters accepted (over this scan's output), which the seal reports as
    /// its only expressions: their producer fills them only if a consumer holds them.
    dynamic: Vec<Arc<dyn PhysicalExpr>>,
    /// The sealed plan before they were accepted, to return to when the plan is reset (a
    /// recursive query's next round has no filter from the last round's join).
    before_dynamic: Option<Arc<dyn ExecutionPlan>>,
}

impl ProtectedScanExec {
    pub(crate) fn new(
        ident: Arc<SealIdent>,
        policy: Option<Arc<ResolvedTablePolicy>>,
        schema: SchemaRef,
        inner: Arc<dyn ExecutionPlan>,
        pushed: Vec<Expr>,
        rows: Option<usize>,
    ) -> Self {
        // Fresh properties: nothing the inner plan knows (orderings, constants implied by the
        // row filter, partitioning expressions) is advertised above the barrier.
        let properties = PlanProperties::new(
            EquivalenceProperties::new(schema),
            Partitioning::UnknownPartitioning(inner.output_partitioning().partition_count()),
            inner.pipeline_behavior(),
            inner.boundedness(),
        );
        Self {
            ident,
            policy,
            inner,
            properties: Arc::new(properties),
            pushed,
            rows,
            statistics: None,
            stores: None,
            dynamic_columns: Arc::default(),
            dynamic: Vec::new(),
            before_dynamic: None,
        }
    }

    fn with_statistics(mut self, statistics: Option<Arc<Statistics>>) -> Self {
        self.statistics = statistics;
        self
    }

    fn with_dynamic_columns(mut self, columns: HashSet<String>) -> Self {
        self.dynamic_columns = Arc::new(columns);
        self
    }

    /// Whether a filter offered from above may be evaluated inside the seal: only a dynamic
    /// filter (a hash join's build-side bounds and membership, a top-k's threshold) whose
    /// keys are plain columns the caller sees in clear. Its runtime form is built by
    /// DataFusion from those keys with comparisons, IN lists and hash lookups against the
    /// caller's own build-side values, none of which can fail on a hidden row; so, like a
    /// leakproof predicate of the caller's own, it may prune and filter beside the row
    /// filter. Any other offered expression (a key under a cast, arithmetic, a masked,
    /// tokenized or hidden column) stays above the barrier.
    fn accepts_dynamic(&self, filter: &Arc<dyn PhysicalExpr>) -> bool {
        let Some(dynamic) = filter.downcast_ref::<DynamicFilterPhysicalExpr>() else {
            return false;
        };
        let keys = dynamic.children();
        !keys.is_empty()
            && keys.iter().all(|key| {
                key.downcast_ref::<PhysicalColumn>()
                    .is_some_and(|column| self.dynamic_columns.contains(column.name()))
            })
    }

    /// The sealed plan with `filters` (accepted dynamic filters, over this scan's output
    /// columns, which are clear and so named and valued as the raw ones) handed to its
    /// Parquet source for pruning, and, with `parquet_pushdown`, for evaluation in the
    /// decoder. `None` if no source took any.
    fn inner_with_dynamic(
        &self,
        filters: &[Arc<dyn PhysicalExpr>],
        config: &ConfigOptions,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        let mut taken = false;
        let inner = Arc::clone(&self.inner).transform_up(|node| {
            let any: &dyn std::any::Any = node.as_ref();
            if !any.is::<DataSourceExec>() {
                return Ok(Transformed::no(node));
            }
            let schema = node.schema();
            let offered = filters
                .iter()
                .filter_map(|f| reassign_expr_columns(Arc::clone(f), &schema).ok())
                .map(|filter| ChildFilterPushdownResult {
                    filter,
                    child_results: vec![],
                })
                .collect::<Vec<_>>();
            if offered.is_empty() {
                return Ok(Transformed::no(node));
            }
            let answer = node.handle_child_pushdown_result(
                FilterPushdownPhase::Post,
                ChildPushdownResult {
                    parent_filters: offered,
                    self_filters: vec![],
                },
                config,
            )?;
            match answer.updated_node {
                Some(updated) => {
                    taken = true;
                    Ok(Transformed::yes(updated))
                }
                None => Ok(Transformed::no(node)),
            }
        })?;
        Ok(taken.then_some(inner.data))
    }

    /// The same scan over another inner plan (one task's share of the files), keeping
    /// everything else but accepted dynamic filters (a task runs apart from their producer).
    pub(crate) fn with_inner(&self, inner: Arc<dyn ExecutionPlan>) -> Self {
        let mut scan = Self::new(
            Arc::clone(&self.ident),
            self.policy.clone(),
            self.schema(),
            inner,
            self.pushed.clone(),
            self.rows,
        )
        .with_statistics(self.statistics.clone());
        scan.stores = self.stores.clone();
        scan.dynamic_columns = Arc::clone(&self.dynamic_columns);
        scan
    }

    /// The resolved policy this scan enforces (`None` on a worker, which holds the compiled
    /// plan only).
    pub fn policy(&self) -> Option<&ResolvedTablePolicy> {
        self.policy.as_deref()
    }

    /// Columns the caller's own predicates pushed into this scan refer to (they are read
    /// even when the scan does not output them).
    pub fn pushed_columns(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .pushed
            .iter()
            .flat_map(|e| e.column_refs().into_iter().map(|c| c.name.clone()))
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The keys of the dynamic filters inside this scan (a join's or top-k's, see
    /// [`ProtectedScanExec::accepts_dynamic`]), for tests and operators: a column key by its
    /// name, any other key as its text; empty when none was accepted.
    pub fn dynamic_filter_keys(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut plans = vec![Arc::clone(&self.inner)];
        while let Some(plan) = plans.pop() {
            // Infallible: the visitors below never fail.
            let _ = plan.apply_expressions(&mut |expr| {
                expr.apply(|e| {
                    if let Some(dynamic) = e.downcast_ref::<DynamicFilterPhysicalExpr>() {
                        out.extend(dynamic.children().into_iter().map(|key| {
                            match key.downcast_ref::<PhysicalColumn>() {
                                Some(column) => column.name().to_string(),
                                None => key.to_string(),
                            }
                        }));
                    }
                    Ok(TreeNodeRecursion::Continue)
                })
            });
            plans.extend(plan.children().into_iter().cloned());
        }
        out.sort();
        out.dedup();
        out
    }

    /// The caller's pushed predicates as text (what EXPLAIN shows of them).
    pub(crate) fn pushed_text(&self) -> Vec<String> {
        self.pushed.iter().map(ToString::to_string).collect()
    }

    /// Metrics of the sealed plan, for operators and audit (never shown to consumers).
    pub fn inner_metrics(&self) -> Vec<MetricsSet> {
        let mut out = Vec::new();
        collect_metrics(&self.inner, &mut out);
        out
    }
}

fn collect_metrics(plan: &Arc<dyn ExecutionPlan>, out: &mut Vec<MetricsSet>) {
    if let Some(metrics) = plan.metrics() {
        out.push(metrics);
    }
    for child in plan.children() {
        collect_metrics(child, out);
    }
}

impl fmt::Debug for ProtectedScanExec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProtectedScanExec")
            .field("table", &format_args!("{}", self.ident.qualified()))
            .field("policy", &self.ident.policy_id)
            .finish_non_exhaustive()
    }
}

impl DisplayAs for ProtectedScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let columns: Vec<&str> = self
            .properties
            .eq_properties
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        write!(
            f,
            "ProtectedScanExec: table={}, policy={}, columns=[{}]",
            self.ident.qualified(),
            self.ident.policy_id,
            columns.join(", ")
        )?;
        if !self.pushed.is_empty() {
            write!(f, ", pushed=[{}]", self.pushed_text().join(", "))?;
        }
        Ok(())
    }
}

impl ExecutionPlan for ProtectedScanExec {
    fn name(&self) -> &str {
        "ProtectedScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn apply_expressions(
        &self,
        f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        // The policy's expressions are sealed inside; only the dynamic filters that came
        // from above are shown (so that their producer sees them consumed).
        for filter in &self.dynamic {
            if f(filter)? == TreeNodeRecursion::Stop {
                return Ok(TreeNodeRecursion::Stop);
            }
        }
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            internal_err!("ProtectedScanExec has no children")
        }
    }

    /// A recursive query re-runs its recursive term after resetting every node's state; the
    /// sealed subtree is invisible to that walk, so the seal resets it itself.
    fn reset_state(self: Arc<Self>) -> Result<Arc<dyn ExecutionPlan>> {
        let inner = self.before_dynamic.as_ref().unwrap_or(&self.inner);
        Ok(Arc::new(Self {
            ident: Arc::clone(&self.ident),
            policy: self.policy.clone(),
            inner: reset_plan_states(Arc::clone(inner))?,
            properties: Arc::clone(&self.properties),
            pushed: self.pushed.clone(),
            rows: self.rows,
            statistics: self.statistics.clone(),
            stores: self.stores.clone(),
            dynamic_columns: Arc::clone(&self.dynamic_columns),
            dynamic: Vec::new(),
            before_dynamic: None,
        }))
    }

    /// Filters offered from above: dynamic filters the seal accepts (see
    /// [`ProtectedScanExec::accepts_dynamic`]) go to its Parquet source; every offered
    /// filter is answered "not pushed", so whoever offered it still applies it (a dynamic
    /// filter only ever removes rows its join or top-k would drop anyway).
    fn handle_child_pushdown_result(
        &self,
        phase: FilterPushdownPhase,
        offered: ChildPushdownResult,
        config: &ConfigOptions,
    ) -> Result<FilterPushdownPropagation<Arc<dyn ExecutionPlan>>> {
        let answer = FilterPushdownPropagation::with_parent_pushdown_result(vec![
            PushedDown::No;
            offered
                .parent_filters
                .len()
        ]);
        let accepted: Vec<Arc<dyn PhysicalExpr>> = offered
            .parent_filters
            .into_iter()
            .map(|f| f.filter)
            .filter(|f| self.accepts_dynamic(f))
            .collect();
        if phase != FilterPushdownPhase::Post || accepted.is_empty() {
            return Ok(answer);
        }
        Ok(match self.inner_with_dynamic(&accepted, config)? {
            Some(inner) => {
                let mut scan = self.with_inner(inner);
                scan.before_dynamic = Some(Arc::clone(
                    self.before_dynamic.as_ref().unwrap_or(&self.inner),
                ));
                scan.dynamic = self.dynamic.iter().cloned().chain(accepted).collect();
                answer.with_updated_node(Arc::new(scan))
            }
            None => answer,
        })
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        // On a worker the sealed subtree, and only it, reads through the worker's mesh store.
        let context = match &self.stores {
            None => context,
            Some(stores) => Arc::new(with_stores(&context, Arc::clone(stores))),
        };
        // Failures inside the seal (a corrupt file, a vanished object) name the product.
        let ident = Arc::clone(&self.ident);
        let inner = self
            .inner
            .execute(partition, context)
            .map_err(|e| sealed_error(e, &ident))?;
        let schema = inner.schema();
        let stream = inner.map_err(move |e| sealed_error(e, &ident));
        Ok(Box::pin(RecordBatchStreamAdapter::new(schema, stream)))
    }

    fn metrics(&self) -> Option<MetricsSet> {
        None
    }

    /// For the whole scan, of the rows the caller sees (when known): an inexact row count,
    /// and the statistics of the columns shown in the clear, so that joins pick their build
    /// side and filters estimate their selectivity; nothing per partition and never a
    /// statistic of a masked, tokenized or partly shown column (min, max, distinct or null
    /// counts of raw values would describe data the caller does not see).
    fn statistics_from_inputs(
        &self,
        _input_stats: &[Arc<Statistics>],
        args: &StatisticsArgs,
    ) -> Result<Arc<Statistics>> {
        if args.partition().is_none()
            && let Some(statistics) = &self.statistics
        {
            return Ok(Arc::clone(statistics));
        }
        let mut statistics = Statistics::new_unknown(&self.schema());
        if let (None, Some(rows)) = (args.partition(), self.rows) {
            statistics.num_rows = Precision::Inexact(rows);
        }
        Ok(Arc::new(statistics))
    }
}

fn sealed_error(error: DataFusionError, policy: &SealIdent) -> DataFusionError {
    let storage = matches!(
        error.find_root(),
        DataFusionError::ObjectStore(_)
            | DataFusionError::IoError(_)
            | DataFusionError::ParquetError(_)
            | DataFusionError::ResourcesExhausted(_)
    );
    let table = format!("{}.{}", policy.domain, policy.table);
    let failure = if storage {
        SealFailure {
            product: policy.product.clone(),
            table,
            policy_id: policy.policy_id.clone(),
            policy_failure: None,
            source: Some(error),
        }
    } else {
        let class = format!(
            "policy {} failed on the data of product `{}` (table {table}): {}",
            policy.policy_id,
            policy.product,
            failure_class(&error)
        );
        tracing::error!(policy = %policy.policy_id, "{class}");
        SealFailure {
            product: policy.product.clone(),
            table,
            policy_id: policy.policy_id.clone(),
            policy_failure: Some(class),
            source: None,
        }
    };
    DataFusionError::External(Box::new(failure))
}

/// The combined row filter: (filter1 OR filter2 ...) of the files' admitting row filters
/// (`None`: the caller was admitted to every row, by grants), AND restriction1 AND ...
/// `None` means every row.
pub(crate) fn combine_filters(
    admitting: Option<Vec<Expr>>,
    restrictions: Vec<Expr>,
) -> Option<Expr> {
    let admitting = match admitting {
        None => None,
        // A file filter that is literally `true` admits every row.
        Some(filters) if filters.iter().any(|f| *f == lit(true)) => None,
        // Fail closed: admitted by files, yet no filter selects a row.
        Some(filters) => Some(filters.into_iter().reduce(Expr::or).unwrap_or(lit(false))),
    };
    admitting.into_iter().chain(restrictions).reduce(Expr::and)
}

/// Call `f` on every sealed scan of a physical plan, in plan order.
pub(crate) fn visit_scans(plan: &Arc<dyn ExecutionPlan>, f: &mut dyn FnMut(&ProtectedScanExec)) {
    let any: &dyn std::any::Any = plan.as_ref();
    if let Some(scan) = any.downcast_ref::<ProtectedScanExec>() {
        f(scan);
    }
    for child in plan.children() {
        visit_scans(child, f);
    }
}

/// `expr` with its stable functions (`now()`, `current_date`: one value for the whole query)
/// folded to the query's start time. DataFusion folds them in its optimizer, which a
/// policy's own expressions (row filters, column treatments) never pass through, and
/// unfolded they cannot run.
fn at_query_time(expr: Expr, state: &dyn Session, schema: &DFSchema) -> Result<Expr> {
    let stable = expr.exists(|e| {
        Ok(matches!(e, Expr::ScalarFunction(f)
            if f.func.signature().volatility == Volatility::Stable))
    })?;
    if !stable {
        return Ok(expr);
    }
    let context = SimplifyContext::builder()
        .with_schema(Arc::new(schema.clone()))
        .with_query_execution_start_time(state.execution_props().query_execution_start_time)
        .with_config_options(Arc::new(state.config_options().clone()))
        .build();
    ExprSimplifier::new(context).simplify(expr)
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;

    #[test]
    fn the_row_filter_follows_how_the_caller_was_admitted() {
        let lob = col("lob").eq(lit("CIB"));
        let country = col("country").eq(lit("FR"));
        let granted = col("lob").eq(lit("AWM"));
        // By the files: any admitting filter, and every restriction.
        assert_eq!(
            combine_filters(
                Some(vec![lob.clone(), country.clone()]),
                vec![granted.clone()]
            ),
            Some(lob.clone().or(country.clone()).and(granted.clone()))
        );
        // A file filter that is literally true admits every row; restrictions still apply.
        assert_eq!(
            combine_filters(Some(vec![lob.clone(), lit(true)]), vec![granted.clone()]),
            Some(granted.clone())
        );
        // By grants: no admitting filter; the grants' rows arrive as a restriction.
        assert_eq!(combine_filters(None, vec![granted.clone()]), Some(granted));
        assert_eq!(combine_filters(None, vec![]), None);
        // Admitted by files with no filter at all cannot happen; if it did, no row shows.
        assert_eq!(combine_filters(Some(vec![]), vec![]), Some(lit(false)));
    }
}
