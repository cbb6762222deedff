//! From a resolved policy (SQL syntax trees with literals bound) to DataFusion expressions,
//! and the load-time check that every row-filter template type-checks against its table.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::execution::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::logical_expr::{Expr, ExprSchemable};
use datafusion::optimizer::simplify_expressions::ExprSimplifier;
use datafusion::sql::sqlparser::ast::{Expr as SqlExpr, ExprWithAlias};
use meshgate_catalog::Catalog;
use meshgate_policy::{Admission, PolicySet, ResolvedTablePolicy};
use meshgate_protect::MasterKey;
use meshgate_storage::{IoCounters, Lakes};

use crate::error::GatewayError;
use crate::lake_table::RawTables;
use crate::leakproof;
use crate::protected::{ProtectedTable, combine_filters};

/// What compiling a policy needs of the gateway: the configured planner (its functions and
/// options), the raw tables, the lakes they read and the tokenization key.
pub(crate) struct Compiler<'a> {
    pub(crate) template: &'a SessionState,
    pub(crate) raw_tables: &'a RawTables,
    pub(crate) lakes: &'a Lakes,
    pub(crate) master_key: &'a MasterKey,
}

/// One row-filter syntax tree as a boolean expression over the raw table.
fn filter_expr(state: &SessionState, raw: &DFSchema, sql: &SqlExpr) -> Result<Expr, String> {
    let expr = state
        .create_logical_expr_from_sql_expr(
            ExprWithAlias {
                expr: sql.clone(),
                alias: None,
            },
            raw,
        )
        .map_err(|e| e.to_string())?;
    match expr.get_type(raw).map_err(|e| e.to_string())? {
        DataType::Boolean | DataType::Null => Ok(expr),
        other => Err(format!(
            "the filter must be a boolean condition, but `{sql}` is {other}"
        )),
    }
}

impl Compiler<'_> {
    /// Compile one caller's resolved policy for one table; its scans are counted in `io`.
    pub(crate) fn protected_table(
        &self,
        policy: ResolvedTablePolicy,
        io: Arc<IoCounters>,
        fingerprint: &str,
    ) -> Result<ProtectedTable, String> {
        let raw = self
            .raw_tables
            .get(&(policy.domain.clone(), policy.table.clone()))
            .ok_or_else(|| format!("no storage for {}.{}", policy.domain, policy.table))?;
        let raw_schema = DFSchema::try_from(raw.schema()).map_err(|e| e.to_string())?;
        let compile = |filters: &[meshgate_policy::BoundFilter]| -> Result<Vec<Expr>, String> {
            filters
                .iter()
                .map(|f| {
                    filter_expr(self.template, &raw_schema, &f.expr)
                        .map_err(|m| format!("row filter `{}`: {m}", f.rule))
                })
                .collect()
        };
        let admitted = match &policy.admission {
            Admission::Files(filters) => Some(compile(filters)?),
            Admission::Grants(_) => None,
        };
        let row_filter = combine_filters(admitted, compile(&policy.restrictions)?);
        let mut only_where = HashMap::new();
        for column in policy.visible_columns() {
            if let Some(filter) = &column.only_where {
                let mut compiled = compile(std::slice::from_ref(filter))?;
                if let Some(expr) = compiled.pop() {
                    only_where.insert(column.name.clone(), expr);
                }
            }
        }
        ProtectedTable::new(
            Arc::new(policy),
            Arc::clone(raw),
            self.lakes.clone(),
            io,
            row_filter,
            only_where,
            self.master_key,
        )
        .map(|table| table.resolved_under(fingerprint))
        .map_err(|e| e.to_string())
    }

    /// Every row filter of every product policy must compile against its table's schema and be
    /// boolean, with placeholder attributes bound to a sample string. Errors name file, line
    /// and rule.
    pub(crate) fn validate_row_filters(
        &self,
        policies: &PolicySet,
        catalog: &Catalog,
    ) -> Result<(), GatewayError> {
        for policy in policies.product_policies() {
            for rule in &policy.row_filters {
                let located = |message: String| {
                    GatewayError::Config(format!(
                        "{}:{}: rule `{}`: `where`: {message}",
                        rule.origin.file, rule.origin.line, rule.origin.id
                    ))
                };
                // Against every version that has the table: one policy serves them all.
                let tables: Vec<_> = catalog
                    .versions(&policy.product)
                    .iter()
                    .filter_map(|p| Some((p, p.table(&rule.table)?)))
                    .collect();
                if tables.is_empty() {
                    return Err(located(format!("no table `{}`", rule.table)));
                }
                for (product, table) in tables {
                    let raw = self
                        .raw_tables
                        .get(&(product.domain.clone(), table.sql_name.clone()))
                        .ok_or_else(|| located(format!("no table `{}`", table.sql_name)))?;
                    let schema =
                        DFSchema::try_from(raw.schema()).map_err(|e| located(e.to_string()))?;
                    let bound = rule
                        .template
                        .bind_with(|_| Some("sample".to_string()))
                        .map_err(|a| located(format!("attribute `{a}`")))?;
                    filter_expr(self.template, &schema, &bound)
                        .map_err(|m| located(format!("on `{}`: {m}", table.sql_name)))?;
                }
            }
        }
        Ok(())
    }

    /// A grant's row filter must parse as a row-filter template, type-check as a boolean over
    /// every table of its product, and be unable to fail on any row: a grant is typed in by an
    /// owner approving a request, and a filter that fails at query time (`1/0 = 1`, a cast of
    /// text) would refuse every query of its grantee. So, after the planner's own type coercion
    /// and constant folding, only comparisons, AND/OR/NOT, IN lists, BETWEEN, IS [NOT] NULL and
    /// casts that cannot fail are accepted (the closed list of `leakproof.rs`).
    pub(crate) fn check_grant_filter(
        &self,
        product: &meshgate_catalog::Product,
        text: &str,
    ) -> Result<(), String> {
        let template = meshgate_policy::RowFilterTemplate::parse(text)?;
        let bound = template
            .bind_with(|_| Some("sample".to_string()))
            .map_err(|a| format!("attribute `{a}`"))?;
        for table in product.tables.iter().filter(|t| !t.is_view()) {
            let raw = self
                .raw_tables
                .get(&(product.domain.clone(), table.sql_name.clone()))
                .ok_or_else(|| format!("no storage for {}.{}", product.domain, table.sql_name))?;
            let schema = DFSchema::try_from(raw.schema()).map_err(|e| e.to_string())?;
            let on = |m: String| format!("on {}.{}: {m}", product.domain, table.sql_name);
            let expr = filter_expr(self.template, &schema, &bound).map_err(on)?;
            let simplifier = ExprSimplifier::new(
                SimplifyContext::builder()
                    .with_schema(Arc::new(schema.clone()))
                    .build(),
            );
            let expr = simplifier
                .coerce(expr, &schema)
                .and_then(|e| simplifier.simplify(e))
                .map_err(|e| on(e.strip_backtrace()))?;
            if !leakproof::never_fails(&expr, &schema) {
                return Err(on(format!(
                    "`{text}` could fail on some rows (arithmetic, a function or a cast that can \
                 fail, or a constant that does not convert); a grant's row filter may only \
                 compare columns with values: =, <>, <, <=, >, >=, IN (...), BETWEEN, IS [NOT] \
                 NULL, AND, OR, NOT"
                )));
            }
        }
        Ok(())
    }
}

/// Whether a row-filter template type-checks as a boolean over `table` as its manifest
/// declares it, with every caller attribute bound to a sample string: what `meshgate lint`
/// checks before a gateway ever loads the policy (which checks it again, against its own
/// planner).
pub fn type_check_row_filter(
    table: &meshgate_catalog::Table,
    template: &meshgate_policy::RowFilterTemplate,
) -> Result<(), String> {
    let state = datafusion::execution::SessionStateBuilder::new()
        .with_default_features()
        .build();
    let schema = DFSchema::try_from(table.arrow_schema()).map_err(|e| e.to_string())?;
    let bound = template
        .bind_with(|_| Some("sample".to_string()))
        .map_err(|a| format!("attribute `{a}`"))?;
    filter_expr(&state, &schema, &bound).map(|_| ())
}
