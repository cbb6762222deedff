//! Quality checks: the rules a product's contract states, measured over the product's own
//! files, so consumers can see whether a product keeps its promises before they rely on it.
//!
//! The gateway measures as itself, over the raw table, because a rule is about the whole
//! product (a null rate of the rows one caller may see would be a different number for
//! each). That is why what leaves here is guarded: every caller sees each rule's status
//! (the owner chose to publish the rule), but the measured number only reaches the product's
//! owners and delegates (see [`QualityResult::measured_for`]), except a file's age, which
//! `mesh_catalog.products.last_modified` already shows everyone.
//!
//! `policy diff --data` counts row changes over the same raw reads
//! ([`count_row_changes`]), for operators only.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{Array, Int64Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::datasource::TableType;
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionState;
use datafusion::functions_aggregate::expr_fn::{count, count_distinct, sum};
use datafusion::logical_expr::{Expr, case, lit};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::{DataFrame, ident};
use meshgate_catalog::quality::{Check, Metric};
use meshgate_catalog::{Product, QualityRule};
use meshgate_storage::{IoCounters, LakeStatus, Lakes};

use crate::lake_table::{Known, LakeTable};

/// How a rule fared in its latest check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QualityStatus {
    Passed,
    Breached,
    /// meshgate does not run this kind of rule.
    NotChecked,
    /// Not measured yet in this product version.
    Pending,
    /// The check could not run (the lake was unreachable, the scan failed).
    Failed,
}

impl QualityStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            QualityStatus::Passed => "passed",
            QualityStatus::Breached => "breached",
            QualityStatus::NotChecked => "not_checked",
            QualityStatus::Pending => "pending",
            QualityStatus::Failed => "failed",
        }
    }
}

/// One rule's latest result.
#[derive(Debug, Clone)]
pub struct QualityResult {
    pub product: String,
    /// The product version the rule and the measurement belong to.
    pub version: String,
    pub rule: QualityRule,
    pub status: QualityStatus,
    /// What was measured (rows, percent, or for freshness the newest file's age in seconds).
    measured: Option<f64>,
    /// Why a rule failed or was not checked; what was found when it breached.
    pub detail: String,
    /// When it was measured (milliseconds since the epoch); `None` if never.
    pub checked_at: Option<i64>,
}

impl QualityResult {
    fn new(product: &Product, rule: &QualityRule, status: QualityStatus) -> Self {
        let detail = match &rule.check {
            Check::NotChecked { reason } => reason.clone(),
            _ => String::new(),
        };
        Self {
            product: product.id.clone(),
            version: product.version.clone(),
            rule: rule.clone(),
            status,
            measured: None,
            detail,
            checked_at: None,
        }
    }

    /// A rule that has no result yet in this product version.
    pub(crate) fn pending(product: &Product, rule: &QualityRule) -> Self {
        let status = if matches!(rule.check, Check::NotChecked { .. }) {
            QualityStatus::NotChecked
        } else {
            QualityStatus::Pending
        };
        Self::new(product, rule, status)
    }

    /// The measured value as a caller may see it: a file's age for everyone (the products
    /// listing shows the time already); anything measured over the rows only when
    /// `decides` (the caller owns or is a delegate of the product), because a count over the
    /// whole table is a statistic of rows and columns the caller may not see.
    pub fn measured_for(&self, decides: bool) -> Option<f64> {
        match self.rule.check {
            Check::Freshness { .. } => self.measured,
            _ if decides => self.measured,
            _ => None,
        }
    }

    fn judged(mut self, value: f64, holds: bool, at: i64) -> Self {
        self.measured = Some(value);
        self.status = if holds {
            QualityStatus::Passed
        } else {
            QualityStatus::Breached
        };
        self.checked_at = Some(at);
        self
    }

    fn failed(mut self, detail: String, at: i64) -> Self {
        self.status = QualityStatus::Failed;
        self.detail = detail;
        self.checked_at = Some(at);
        self
    }
}

/// The latest results of every product, by product id. Replaced product by product as
/// checks finish; read by `mesh_catalog.quality`, `products` and `/metrics`.
#[derive(Debug, Default)]
pub(crate) struct QualityBoard {
    results: RwLock<BTreeMap<String, Vec<QualityResult>>>,
    /// One run at a time: checks scan whole tables, and a second request while one runs
    /// would only scan them again.
    pub(crate) running: tokio::sync::Mutex<()>,
}

impl QualityBoard {
    pub(crate) fn record(&self, product: &str, results: Vec<QualityResult>) {
        let mut board = match self.results.write() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        board.insert(product.to_string(), results);
    }

    /// Every rule of `product` with its latest result at the product's current version
    /// (pending where there is none: a rule changed by a publish is measured again).
    pub(crate) fn of(&self, product: &Product) -> Vec<QualityResult> {
        let board = match self.results.read() {
            Ok(b) => b,
            Err(poisoned) => poisoned.into_inner(),
        };
        let recorded = board.get(&product.id);
        product
            .quality
            .iter()
            .map(|rule| {
                recorded
                    .and_then(|results| {
                        results
                            .iter()
                            .find(|r| r.version == product.version && r.rule == *rule)
                    })
                    .cloned()
                    .unwrap_or_else(|| QualityResult::pending(product, rule))
            })
            .collect()
    }
}

/// A product's quality in one word for listings, with the rules that breached or failed:
/// `breached (freshness)`, `failed (...)`, `pending`, `passed`; `None` without rules meshgate
/// runs.
pub(crate) fn summary(results: &[QualityResult]) -> Option<String> {
    let named = |status: QualityStatus| -> Vec<&str> {
        results
            .iter()
            .filter(|r| r.status == status)
            .map(|r| r.rule.id.as_str())
            .collect()
    };
    for status in [QualityStatus::Breached, QualityStatus::Failed] {
        let ids = named(status);
        if !ids.is_empty() {
            return Some(format!("{} ({})", status.as_str(), ids.join(", ")));
        }
    }
    if !named(QualityStatus::Pending).is_empty() {
        return Some(QualityStatus::Pending.as_str().into());
    }
    (!named(QualityStatus::Passed).is_empty()).then(|| QualityStatus::Passed.as_str().into())
}

/// The freshness rule judged from the product's lake: the newest file's age.
pub(crate) fn freshness(
    product: &Product,
    rule: &QualityRule,
    lake: Option<&LakeStatus>,
    now: i64,
) -> QualityResult {
    let result = QualityResult::new(product, rule, QualityStatus::Pending);
    let Check::Freshness { max_age_seconds } = rule.check else {
        return QualityResult::pending(product, rule);
    };
    match lake {
        Some(lake) if lake.error.is_none() => match lake.last_modified {
            Some(at) => {
                let age = (now - at.timestamp_millis()).max(0) as f64 / 1000.0;
                let mut result = result.judged(age.floor(), age <= max_age_seconds as f64, now);
                if result.status == QualityStatus::Breached {
                    result.detail = format!(
                        "the newest file is {} s old; the SLOs allow {max_age_seconds} s",
                        age.floor()
                    );
                }
                result
            }
            None => {
                let mut result = result.judged(f64::INFINITY, false, now);
                result.measured = None;
                result.detail = "the product's bucket holds no files".into();
                result
            }
        },
        _ => result.failed("the product's lake could not be read".into(), now),
    }
}

/// A raw table as DataFusion reads it, for one check's private session only (never
/// registered in a catalog).
#[derive(Debug)]
struct Measured {
    raw: Arc<LakeTable>,
    lakes: Lakes,
}

#[async_trait::async_trait]
impl TableProvider for Measured {
    fn schema(&self) -> SchemaRef {
        self.raw.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> datafusion::error::Result<Arc<dyn ExecutionPlan>> {
        let all: Vec<usize> = (0..self.raw.schema().fields().len()).collect();
        let projection = projection.unwrap_or(&all);
        let io = Arc::new(IoCounters::default());
        Ok(self
            .raw
            .scan(state, &self.lakes, &io, projection, Known::Nothing)
            .await?
            .plan)
    }
}

/// What one table's metric rules need from one scan: the row count, and per rule an
/// aggregate (or a separate count, for a key of several columns).
pub(crate) async fn measure_table(
    state: SessionState,
    product: &Product,
    (raw, lakes): (Arc<LakeTable>, Lakes),
    rules: &[&QualityRule],
    now: i64,
) -> Vec<QualityResult> {
    let ctx = SessionContext::new_with_state(state);
    let results: Vec<QualityResult> = rules
        .iter()
        .map(|rule| QualityResult::new(product, rule, QualityStatus::Pending))
        .collect();
    let table = match ctx.read_table(Arc::new(Measured { raw, lakes })) {
        Ok(df) => df,
        Err(e) => return fail_all(results, &e, now),
    };
    // Aggregate 0 is the row count; each single-scan rule adds its own.
    let mut aggregates: Vec<Expr> = vec![count(lit(1)).alias("rows")];
    let mut slot: Vec<Option<usize>> = Vec::with_capacity(rules.len());
    for rule in rules {
        let Check::Metric { metric, .. } = &rule.check else {
            slot.push(None);
            continue;
        };
        let column = rule.column.as_deref().map(ident);
        let expr = match (metric, column) {
            (Metric::RowCount, _) => None,
            (Metric::NullValues, Some(c)) => Some(rows_where(c.is_null())),
            (Metric::MissingValues(values), Some(c)) => {
                let as_text = datafusion::logical_expr::cast(c.clone(), DataType::Utf8);
                let listed =
                    as_text.in_list(values.iter().map(|v| lit(v.clone())).collect(), false);
                Some(rows_where(c.is_null().or(listed)))
            }
            (Metric::DuplicateValues(key), _) if key.len() == 1 => {
                let c = ident(&key[0]);
                Some(count(c.clone()) - count_distinct(c))
            }
            _ => None,
        };
        slot.push(match (expr, metric) {
            (Some(e), _) => {
                let at = aggregates.len();
                aggregates.push(e.alias(format!("m{at}")));
                Some(at)
            }
            (None, Metric::RowCount) => Some(0),
            // Measured apart: a key of several columns.
            (None, _) => None,
        });
    }
    let values = match one_row(table.clone().aggregate(vec![], aggregates)).await {
        Ok(v) => v,
        Err(e) => return fail_all(results, &e, now),
    };
    let rows = values.first().copied().unwrap_or(0);
    let mut out = Vec::with_capacity(rules.len());
    for ((rule, result), slot) in rules.iter().zip(results).zip(slot) {
        let Check::Metric {
            metric,
            threshold,
            percent,
        } = &rule.check
        else {
            out.push(result);
            continue;
        };
        let count = match (slot, metric) {
            (Some(i), _) => Ok(values.get(i).copied().unwrap_or(0)),
            (None, Metric::DuplicateValues(key)) => duplicates(&table, key).await,
            (None, _) => Err(datafusion::error::DataFusionError::Internal(
                "a column rule without its column".into(),
            )),
        };
        let count = match count {
            Ok(c) => c,
            Err(e) => {
                out.push(result.failed(failure(&e), now));
                continue;
            }
        };
        let value = if *percent {
            if rows == 0 {
                0.0
            } else {
                count as f64 * 100.0 / rows as f64
            }
        } else {
            count as f64
        };
        let mut judged = result.judged(value, threshold.holds(value), now);
        if judged.status == QualityStatus::Breached {
            judged.detail = format!("expected {}", rule.expectation());
        }
        out.push(judged);
    }
    out
}

/// For `policy diff` (an operator's tool, never a front door): rows of a raw table that
/// `after` selects and `before` does not, and the reverse (a NULL predicate selects
/// nothing, as in a row filter).
pub(crate) async fn count_row_changes(
    state: SessionState,
    (raw, lakes): (Arc<LakeTable>, Lakes),
    before: &str,
    after: &str,
) -> datafusion::error::Result<(u64, u64)> {
    let ctx = SessionContext::new_with_state(state);
    let table = ctx.read_table(Arc::new(Measured { raw, lakes }))?;
    let schema = table.schema().clone();
    let selects = |sql: &str| -> datafusion::error::Result<Expr> {
        let expr = ctx.parse_sql_expr(sql, &schema)?;
        Ok(datafusion::functions::expr_fn::coalesce(vec![
            expr,
            lit(false),
        ]))
    };
    let (before, after) = (selects(before)?, selects(after)?);
    let values = one_row(table.aggregate(
        vec![],
        vec![
            rows_where(after.clone().and(!before.clone())).alias("gained"),
            rows_where(before.and(!after)).alias("lost"),
        ],
    ))
    .await?;
    let at = |i: usize| u64::try_from(values.get(i).copied().unwrap_or(0)).unwrap_or(0);
    Ok((at(0), at(1)))
}

/// The number of rows where `condition` is true (NULL counts as false).
fn rows_where(condition: Expr) -> Expr {
    sum(case(condition)
        .when(lit(true), lit(1i64))
        .otherwise(lit(0i64))
        .unwrap_or_else(|_| lit(0i64)))
}

/// Rows of a key of several columns that repeat an earlier row's key (rows with a null in
/// the key left out).
async fn duplicates(table: &DataFrame, key: &[String]) -> datafusion::error::Result<i64> {
    let complete = key
        .iter()
        .map(|c| ident(c).is_not_null())
        .reduce(Expr::and)
        .unwrap_or_else(|| lit(true));
    let keyed = table
        .clone()
        .filter(complete)?
        .select(key.iter().map(ident).collect::<Vec<_>>())?;
    let rows = keyed.clone().count().await?;
    let distinct = keyed.distinct()?.count().await?;
    Ok(i64::try_from(rows.saturating_sub(distinct)).unwrap_or(i64::MAX))
}

async fn one_row(df: datafusion::error::Result<DataFrame>) -> datafusion::error::Result<Vec<i64>> {
    let batches = df?.collect().await?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(Vec::new());
    };
    batch
        .columns()
        .iter()
        .map(|column| {
            let column = cast(column, &DataType::Int64)?;
            let ints = column
                .as_any()
                .downcast_ref::<Int64Array>()
                .ok_or_else(|| {
                    datafusion::error::DataFusionError::Internal("a count is not a number".into())
                })?;
            Ok(if ints.is_null(0) { 0 } else { ints.value(0) })
        })
        .collect()
}

/// A scan failure as owners read it: the kind of failure, never a value from the data.
fn failure(error: &datafusion::error::DataFusionError) -> String {
    let kind = match error.find_root() {
        datafusion::error::DataFusionError::ObjectStore(_)
        | datafusion::error::DataFusionError::IoError(_) => "the product's files could not be read",
        datafusion::error::DataFusionError::ResourcesExhausted(_) => {
            "the check needed more memory than the gateway may give it"
        }
        _ => "the check could not run over the product's files",
    };
    // The class only: a scan's error text can quote a value of the data.
    tracing::warn!(kind, "a quality check failed");
    kind.to_string()
}

fn fail_all(
    results: Vec<QualityResult>,
    error: &datafusion::error::DataFusionError,
    now: i64,
) -> Vec<QualityResult> {
    let detail = failure(error);
    results
        .into_iter()
        .map(|r| {
            if r.status == QualityStatus::NotChecked {
                r
            } else {
                r.failed(detail.clone(), now)
            }
        })
        .collect()
}
