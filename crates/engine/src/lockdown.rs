//! The consumer SQL surface: read-only queries, nothing else.
//!
//! Consumers may run `SELECT`/`WITH` queries, `EXPLAIN` of them, `DESCRIBE`, `SHOW TABLES`
//! and `SHOW COLUMNS`. Everything else (DDL, DML, `COPY`, `SET`, `PREPARE`, `EXPLAIN
//! ANALYZE`, ...) is refused here, by statement kind, before planning, and again by
//! DataFusion's `SQLOptions` check on the plan. URL tables are never enabled and no
//! file-reading table function or user-defined function is registered, so a query can reach
//! data only through the catalog, where every product table is policy-wrapped.

use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::config::Dialect;
use datafusion::execution::SessionState;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParserBuilder, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{DescribeAlias, Statement};
use datafusion::sql::sqlparser::dialect::dialect_from_str;

use crate::error::GatewayError;

/// The SQLOptions every consumer plan is verified against.
pub(crate) fn sql_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

const ALLOWED: &str =
    "SELECT/WITH queries, EXPLAIN of a query, DESCRIBE, SHOW TABLES and SHOW COLUMNS";

/// Parse exactly one statement; several are refused with a message saying so.
pub(crate) fn parse_one(
    sql: &str,
    dialect: &Dialect,
    state: &SessionState,
) -> Result<DFStatement, GatewayError> {
    let dialect = dialect_from_str(dialect).ok_or_else(|| {
        GatewayError::InvalidQuery(format!("unsupported SQL dialect `{dialect}`"))
    })?;
    let recursion_limit = state.config().options().sql_parser.recursion_limit.get();
    let mut statements = DFParserBuilder::new(sql)
        .with_dialect(dialect.as_ref())
        .with_recursion_limit(recursion_limit)
        .build()
        .and_then(|mut parser| parser.parse_statements())
        .map_err(GatewayError::from_planning)?;
    if statements.len() > 1 {
        return Err(GatewayError::NotAllowed(format!(
            "{} statements were sent; send one statement per query",
            statements.len()
        )));
    }
    statements
        .pop_front()
        .ok_or_else(|| GatewayError::InvalidQuery("the query is empty: send one statement".into()))
}

/// Refuse every statement a consumer may not run.
pub(crate) fn check_statement(statement: &DFStatement) -> Result<(), GatewayError> {
    let refuse = |what: &str| {
        Err(GatewayError::NotAllowed(format!(
            "{what} is not allowed: meshgate is read-only and accepts {ALLOWED}"
        )))
    };
    match statement {
        DFStatement::Statement(inner) => check_sql_statement(inner),
        DFStatement::Explain(explain) => {
            if explain.options.analyze {
                return Err(GatewayError::NotAllowed(
                    "EXPLAIN ANALYZE is not available to consumers: its metrics count rows the caller's policy hides".into(),
                ));
            }
            match explain.statement.as_ref() {
                DFStatement::Statement(inner) if matches!(inner.as_ref(), Statement::Query(_)) => {
                    Ok(())
                }
                _ => refuse("EXPLAIN of anything but a query"),
            }
        }
        DFStatement::CreateExternalTable(_) => refuse("CREATE EXTERNAL TABLE"),
        DFStatement::CopyTo(_) => refuse("COPY"),
        DFStatement::Reset(_) => refuse("RESET"),
    }
}

fn check_sql_statement(statement: &Statement) -> Result<(), GatewayError> {
    match statement {
        Statement::Query(_) | Statement::ShowTables { .. } | Statement::ShowColumns { .. } => Ok(()),
        Statement::ExplainTable { describe_alias: DescribeAlias::Describe | DescribeAlias::Desc, .. } => Ok(()),
        Statement::Explain { analyze: true, .. } => Err(GatewayError::NotAllowed(
            "EXPLAIN ANALYZE is not available to consumers: its metrics count rows the caller's policy hides".into(),
        )),
        Statement::Explain { statement, .. } if matches!(statement.as_ref(), Statement::Query(_)) => Ok(()),
        other => {
            // The statement's leading keywords name its kind; they never include a literal
            // or a name the caller wrote (this text reaches the audit log).
            let text = other.to_string();
            let kind: String = text
                .split_whitespace()
                .take_while(|w| !w.is_empty() && w.chars().all(|c| c.is_ascii_uppercase()))
                .take(2)
                .collect::<Vec<_>>()
                .join(" ");
            Err(GatewayError::NotAllowed(format!(
                "`{kind} ...` is not allowed: meshgate is read-only and accepts {ALLOWED}"
            )))
        }
    }
}

/// Tables of DataFusion's `information_schema` that describe the engine, not the mesh: its
/// settings (`df_settings`, which `SHOW ALL` reads) are no business of consumers.
const ENGINE_TABLES: &[&str] = &["df_settings"];

/// Refuse a plan that reads an engine table, as if the table did not exist.
pub(crate) fn check_tables(plan: &LogicalPlan) -> Result<(), GatewayError> {
    let mut found = None;
    let _ = plan.apply_with_subqueries(|node| {
        if let LogicalPlan::TableScan(scan) = node
            && scan.table_name.schema() == Some("information_schema")
            && ENGINE_TABLES.contains(&scan.table_name.table())
        {
            found = Some(scan.table_name.to_string());
            return Ok(TreeNodeRecursion::Stop);
        }
        Ok(TreeNodeRecursion::Continue)
    });
    match found {
        Some(table) => Err(GatewayError::NotFound(format!(
            "table '{table}' not found: the engine's settings are not part of the mesh"
        ))),
        None => Ok(()),
    }
}

/// Number JDBC/ODBC-style `?` placeholders `$1`, `$2`, ... in the order they appear, so that
/// both styles bind the same way. Mixing the two styles is refused: their numbering would
/// be ambiguous.
pub(crate) fn number_question_marks(statement: &mut DFStatement) -> Result<(), GatewayError> {
    use std::ops::ControlFlow;

    use datafusion::sql::sqlparser::ast::{Expr, Value, visit_expressions_mut};

    let inner: &mut Statement = match statement {
        DFStatement::Statement(inner) => inner,
        DFStatement::Explain(explain) => match explain.statement.as_mut() {
            DFStatement::Statement(inner) => inner,
            _ => return Ok(()),
        },
        _ => return Ok(()),
    };
    let (mut questions, mut numbered) = (0usize, 0usize);
    let _ = visit_expressions_mut(inner, |expr| {
        if let Expr::Value(value) = expr
            && let Value::Placeholder(text) = &mut value.value
        {
            if text == "?" {
                questions += 1;
                *text = format!("${questions}");
            } else {
                numbered += 1;
            }
        }
        ControlFlow::<()>::Continue(())
    });
    if questions > 0 && numbered > 0 {
        return Err(GatewayError::InvalidQuery(
            "use either `?` or `$1`-style placeholders in one statement, not both".into(),
        ));
    }
    Ok(())
}
