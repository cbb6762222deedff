//! How big one statement may be, so that no statement can exhaust the planner.
//!
//! DataFusion plans, names and evaluates expressions recursively. A flat chain of a few
//! hundred `+` or `||` is a tree that deep (the parser builds it without recursion, so its
//! own recursion limit does not stop it), and so is a long `UNION ALL` or join chain; planning
//! one overflowed a worker thread's stack and aborted the whole process, every running query
//! with it. Two things prevent that:
//!
//! - every statement is measured right after it is parsed ([`check`]): expression depth and
//!   count, set operations and relations, each against a limit, and refused with
//!   INVALID_ARGUMENT naming the limit it is over (the refused syntax tree, however deep, is
//!   dropped on a stack large enough for it: [`discard`]);
//! - a statement within the limits but large ([`Measured::large`]) is planned on a stack of
//!   its own ([`OnPlanningStack`]), large enough for anything within those limits whatever
//!   thread the caller's runtime polls it on (an embedding application's runtime
//!   included), and off the runtime's worker threads, so that its planning time never
//!   stalls other requests. Ordinary statements plan in place: a fresh stack costs a few
//!   hundred microseconds per poll, a large share of a small query. Execution evaluates the
//!   same bounded trees.

use std::future::Future;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::task::{Context, Poll};

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{CopyToSource, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{Expr, Query, SetExpr, TableFactor, Visit, Visitor};

use crate::error::GatewayError;

/// The deepest expression tree a statement may hold (a chain of `n` binary operators is `n`
/// deep; parentheses, function calls and subqueries add to it).
pub const MAX_EXPRESSION_DEPTH: usize = 256;
/// The most expression nodes a statement may hold (an `IN` list of 10,000 values is 10,001).
pub const MAX_EXPRESSIONS: usize = 100_000;
/// The most set operations (`UNION`, `INTERSECT`, `EXCEPT`) a statement may hold.
pub const MAX_SET_OPERATIONS: usize = 256;
/// The most relations (tables, views, subqueries in `FROM`, table functions) one statement
/// may read, joins included. Planning a join chain grows with its cube (a chain of 128
/// joins took half a minute to plan in a debug build, 64 about three seconds).
pub const MAX_RELATIONS: usize = 64;

/// The stack planning runs on: enough for statements within the limits above in an
/// unoptimized build, with room to spare. It is reserved, not touched: only the pages a plan
/// uses are ever backed by memory.
pub const PLANNING_STACK_BYTES: usize = 256 << 20;

/// Statements this small plan in place; anything larger on the planning stack. (Every
/// statement of the test suites but the exhaustion tests is well below, and they all plan
/// on 2 MiB threads in an unoptimized build.)
const IN_PLACE_DEPTH: usize = 24;
const IN_PLACE_EXPRESSIONS: usize = 2_000;
const IN_PLACE_SET_OPERATIONS: usize = 12;
const IN_PLACE_RELATIONS: usize = 12;

/// A statement within the limits, and whether it is large enough to plan on its own stack.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Measured {
    pub(crate) large: bool,
}

/// Refuse a statement over any of the limits, before anything else walks it (the audit's
/// list of the tables it names included).
pub(crate) fn check(statement: &DFStatement) -> Result<Measured, GatewayError> {
    let mut shape = Shape::default();
    let visited = match statement {
        DFStatement::Statement(inner) => inner.visit(&mut shape),
        DFStatement::Explain(explain) => return check(&explain.statement),
        DFStatement::CopyTo(copy) => match &copy.source {
            CopyToSource::Query(query) => query.visit(&mut shape),
            CopyToSource::Relation(_) => ControlFlow::Continue(()),
        },
        DFStatement::CreateExternalTable(_) | DFStatement::Reset(_) => ControlFlow::Continue(()),
    };
    match visited {
        ControlFlow::Continue(()) => Ok(Measured {
            large: shape.deepest > IN_PLACE_DEPTH
                || shape.expressions > IN_PLACE_EXPRESSIONS
                || shape.set_operations > IN_PLACE_SET_OPERATIONS
                || shape.relations > IN_PLACE_RELATIONS,
        }),
        ControlFlow::Break(over) => Err(GatewayError::InvalidQuery(over.to_string())),
    }
}

/// The same limits on a logical plan that arrived without SQL text (a Substrait plan),
/// checked before it is optimized and physically planned (where the cost of size lies; its
/// nesting is already bounded by the decoder): tables read, set operations, expressions.
pub(crate) fn check_plan(plan: &LogicalPlan) -> Result<(), GatewayError> {
    let (mut relations, mut set_operations, mut expressions) = (0usize, 0usize, 0usize);
    let mut over = None;
    let _ = plan.apply_with_subqueries(|node| {
        match node {
            LogicalPlan::TableScan(_) => relations += 1,
            LogicalPlan::Union(union) => set_operations += union.inputs.len().saturating_sub(1),
            _ => {}
        }
        node.apply_expressions(|expr| {
            expr.apply(|_| {
                expressions += 1;
                Ok(TreeNodeRecursion::Continue)
            })
        })?;
        over = if relations > MAX_RELATIONS {
            Some(Over::Relations)
        } else if set_operations > MAX_SET_OPERATIONS {
            Some(Over::SetOperations)
        } else if expressions > MAX_EXPRESSIONS {
            Some(Over::Expressions)
        } else {
            None
        };
        Ok(if over.is_some() {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    match over {
        Some(over) => Err(GatewayError::InvalidQuery(over.to_string())),
        None => Ok(()),
    }
}

/// Drop a syntax tree on the planning stack: one refused for its size can be as deep as the
/// statement is long (a chain of half a million `+` in 1 MiB), and dropping it recurses.
pub(crate) fn discard(statement: DFStatement) {
    stacker::grow(PLANNING_STACK_BYTES, move || drop(statement));
}

/// `planning` on the planning stack when `large`, in place otherwise.
pub(crate) async fn plan_on<F: Future>(large: bool, planning: F) -> F::Output {
    if large {
        OnPlanningStack(Box::pin(planning)).await
    } else {
        planning.await
    }
}

/// Which limit a statement is over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    Depth,
    Expressions,
    SetOperations,
    Relations,
}

impl std::fmt::Display for Over {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (what, limit, advice) = match self {
            Self::Depth => (
                "nests expressions deeper than",
                MAX_EXPRESSION_DEPTH,
                "write long chains of AND/OR as IN lists, split long chains of `+` or `||` \
                 with a CTE, or use CONCAT(...) with arguments",
            ),
            Self::Expressions => (
                "has more expressions than",
                MAX_EXPRESSIONS,
                "send fewer or shorter IN lists and CASE branches, or split the statement",
            ),
            Self::SetOperations => (
                "has more UNION/INTERSECT/EXCEPT operations than",
                MAX_SET_OPERATIONS,
                "split the statement into several queries",
            ),
            Self::Relations => (
                "reads more tables and subqueries than",
                MAX_RELATIONS,
                "split the statement into several queries",
            ),
        };
        write!(
            f,
            "the statement {what} the limit of {limit} that meshgate sets so that no statement \
             can exhaust the planner; {advice}"
        )
    }
}

#[derive(Debug, Default)]
struct Shape {
    depth: usize,
    deepest: usize,
    expressions: usize,
    set_operations: usize,
    relations: usize,
}

impl Visitor for Shape {
    type Break = Over;

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Over> {
        self.depth += 1;
        self.deepest = self.deepest.max(self.depth);
        self.expressions += 1;
        if self.depth > MAX_EXPRESSION_DEPTH {
            return ControlFlow::Break(Over::Depth);
        }
        if self.expressions > MAX_EXPRESSIONS {
            return ControlFlow::Break(Over::Expressions);
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<Over> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    /// Counted before the visitor descends into the query's body: a long set-operation
    /// chain is refused before it is walked.
    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<Over> {
        // A subquery is as deep as the expressions around it, plus one.
        self.depth += 1;
        self.deepest = self.deepest.max(self.depth);
        if self.depth > MAX_EXPRESSION_DEPTH {
            return ControlFlow::Break(Over::Depth);
        }
        let mut pending: Vec<&SetExpr> = vec![&query.body];
        while let Some(set) = pending.pop() {
            if let SetExpr::SetOperation { left, right, .. } = set {
                self.set_operations += 1;
                if self.set_operations > MAX_SET_OPERATIONS {
                    return ControlFlow::Break(Over::SetOperations);
                }
                pending.push(left);
                pending.push(right);
            }
        }
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<Over> {
        self.depth -= 1;
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, _factor: &TableFactor) -> ControlFlow<Over> {
        self.relations += 1;
        if self.relations > MAX_RELATIONS {
            return ControlFlow::Break(Over::Relations);
        }
        ControlFlow::Continue(())
    }
}

/// A future polled on a stack of [`PLANNING_STACK_BYTES`] of its own (each poll switches to
/// a fresh one and back), so that planning never depends on the stack size of the thread
/// that happens to poll it. On a multi-threaded runtime each poll also tells the runtime
/// that it blocks (planning is CPU work between its awaits, and a large statement takes
/// seconds): the worker's other tasks move to another thread meanwhile, so that one
/// caller's planning never stalls everyone else's requests.
pub(crate) struct OnPlanningStack<F>(pub(crate) Pin<Box<F>>);

impl<F: Future> Future for OnPlanningStack<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let inner = self.0.as_mut();
        let poll = move || stacker::grow(PLANNING_STACK_BYTES, move || inner.poll(cx));
        let multi_thread = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        if multi_thread {
            tokio::task::block_in_place(poll)
        } else {
            poll()
        }
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::parser::DFParserBuilder;

    use super::*;

    fn shape(sql: &str) -> Result<(), String> {
        let mut parser = DFParserBuilder::new(sql)
            .build()
            .map_err(|e| e.to_string())?;
        let statement = parser.parse_statement().map_err(|e| e.to_string())?;
        check(&statement).map(|_| ()).map_err(|e| e.to_string())
    }

    fn chain(op: &str, n: usize) -> String {
        format!("SELECT 1{}", format!(" {op} 1").repeat(n))
    }

    #[test]
    fn each_limit_refuses_what_is_over_it_and_names_itself() {
        assert!(shape(&chain("+", MAX_EXPRESSION_DEPTH - 2)).is_ok());
        let deep = shape(&chain("+", MAX_EXPRESSION_DEPTH + 1)).unwrap_err();
        assert!(deep.contains("limit of 256"), "{deep}");
        assert!(deep.contains("deeper"), "{deep}");
        let union = |n: usize| vec!["SELECT 1"; n + 1].join(" UNION ALL ");
        assert!(shape(&union(MAX_SET_OPERATIONS)).is_ok());
        assert!(
            shape(&union(MAX_SET_OPERATIONS + 1))
                .unwrap_err()
                .contains("UNION")
        );
        let relations = |n: usize| {
            format!(
                "SELECT 1 FROM {}",
                (0..n)
                    .map(|i| format!("t{i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        assert!(shape(&relations(MAX_RELATIONS)).is_ok());
        assert!(
            shape(&relations(MAX_RELATIONS + 1))
                .unwrap_err()
                .contains("tables")
        );
        let list = |n: usize| format!("SELECT 1 WHERE 1 IN ({})", vec!["1"; n].join(", "));
        assert!(shape(&list(10_000)).is_ok());
        assert!(
            shape(&list(MAX_EXPRESSIONS))
                .unwrap_err()
                .contains("more expressions")
        );
        // Inside EXPLAIN too.
        let explained = format!("EXPLAIN {}", chain("||", MAX_EXPRESSION_DEPTH + 1));
        assert!(shape(&explained).is_err());
    }

    #[test]
    fn only_large_statements_leave_the_callers_stack() {
        let large = |sql: &str| {
            let mut parser = DFParserBuilder::new(sql).build().unwrap();
            check(&parser.parse_statement().unwrap()).unwrap().large
        };
        assert!(!large(
            "SELECT a, b + 1 FROM t WHERE c = 1 AND d IN (1, 2, 3) ORDER BY a"
        ));
        assert!(large(&chain("+", IN_PLACE_DEPTH + 1)));
        let union = vec!["SELECT 1"; IN_PLACE_SET_OPERATIONS + 2].join(" UNION ALL ");
        assert!(large(&union));
    }
}
