//! Which user predicates may cross the barrier into a protected scan.
//!
//! A predicate that crosses is evaluated next to the policy's row filter, possibly on rows
//! the filter rejects, and may drive Parquet pruning (row-group statistics, page indexes,
//! bloom filters) and, with `pushdown_filters`, be evaluated first inside the decoder. That
//! is safe only if evaluating it on a hidden row can reveal nothing: it must not be able to
//! fail (an error is a one-bit oracle on the row), and it must read only columns the caller
//! sees in clear (a raw value under a mask or token would be compared, or pruned on, in the
//! clear). In the spirit of PostgreSQL's LEAKPROOF functions, the allowed forms are a short
//! closed list; everything else stays above the barrier and sees only filtered, protected
//! rows:
//!
//! - a column the caller sees in clear (no mask, no token), and literals;
//! - comparisons `=`, `<>`, `<`, `<=`, `>`, `>=`, `IS [NOT] DISTINCT FROM`;
//! - `AND`, `OR`, `NOT`, `IS [NOT] NULL`, `IS [NOT] TRUE/FALSE/UNKNOWN`;
//! - `BETWEEN` and `IN (<list>)` over those;
//! - `TRY_CAST` (never fails), and `CAST` only where it cannot fail: between string types,
//!   to a wider integer of the same signedness, unsigned to a wider signed integer, and
//!   any integer to `DOUBLE`.
//!
//! Not on the list, so never pushed: arithmetic (overflow, division by zero), every
//! function (including `LIKE` and regular expressions, whose patterns can fail), subqueries,
//! placeholders, and any column under a mask or token.

use std::collections::HashSet;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::DFSchema;
use datafusion::logical_expr::expr::InList;
use datafusion::logical_expr::{Between, BinaryExpr, Cast, Expr, ExprSchemable, Operator};

/// Whether `expr` may be evaluated inside a protected scan whose caller sees `clear` columns
/// unprotected. `schema` is the caller's view of the table (for the types of casts).
pub(crate) fn may_cross(expr: &Expr, clear: &HashSet<String>, schema: &DFSchema) -> bool {
    let ok = |e: &Expr| may_cross(e, clear, schema);
    match expr {
        Expr::Column(column) => clear.contains(&column.name),
        Expr::Literal(..) => true,
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
            matches!(
                op,
                Operator::Eq
                    | Operator::NotEq
                    | Operator::Lt
                    | Operator::LtEq
                    | Operator::Gt
                    | Operator::GtEq
                    | Operator::IsDistinctFrom
                    | Operator::IsNotDistinctFrom
                    | Operator::And
                    | Operator::Or
            ) && ok(left)
                && ok(right)
        }
        Expr::Not(e)
        | Expr::IsNull(e)
        | Expr::IsNotNull(e)
        | Expr::IsTrue(e)
        | Expr::IsFalse(e)
        | Expr::IsUnknown(e)
        | Expr::IsNotTrue(e)
        | Expr::IsNotFalse(e)
        | Expr::IsNotUnknown(e) => ok(e),
        Expr::Between(Between {
            expr, low, high, ..
        }) => ok(expr) && ok(low) && ok(high),
        Expr::InList(InList { expr, list, .. }) => ok(expr) && list.iter().all(ok),
        Expr::TryCast(cast) => ok(&cast.expr),
        Expr::Cast(Cast { expr, field }) => {
            ok(expr)
                && expr
                    .get_type(schema)
                    .is_ok_and(|from| cannot_fail(&from, field.data_type()))
        }
        _ => false,
    }
}

/// Whether `expr` (over any column of `schema`) can be evaluated on every row without
/// failing: the same closed list, for filters that see raw columns by design (an access
/// grant's row filter, checked at approval).
pub(crate) fn never_fails(expr: &Expr, schema: &DFSchema) -> bool {
    let every: HashSet<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    may_cross(expr, &every, schema)
}

/// Casts that succeed for every input value.
fn cannot_fail(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let string = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    let signed_width = |t: &DataType| match t {
        Int8 => Some(8),
        Int16 => Some(16),
        Int32 => Some(32),
        Int64 => Some(64),
        _ => None,
    };
    let unsigned_width = |t: &DataType| match t {
        UInt8 => Some(8),
        UInt16 => Some(16),
        UInt32 => Some(32),
        UInt64 => Some(64),
        _ => None,
    };
    if from == to || (string(from) && string(to)) {
        return true;
    }
    match (
        signed_width(from),
        unsigned_width(from),
        signed_width(to),
        unsigned_width(to),
    ) {
        (Some(a), _, Some(b), _) => a <= b,
        (_, Some(a), _, Some(b)) => a <= b,
        (_, Some(a), Some(b), _) => a < b,
        (Some(_), _, _, _) | (_, Some(_), _, _) => *to == Float64,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::logical_expr::{cast, col, lit, try_cast};
    use datafusion::prelude::{regexp_like, starts_with};

    use super::*;

    fn check(expr: &Expr) -> bool {
        let schema = DFSchema::try_from(Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("name", DataType::Utf8View, false),
            Field::new("tax_id", DataType::Utf8, false),
        ]))
        .unwrap();
        let clear: HashSet<String> = ["id".to_string(), "name".to_string()].into();
        may_cross(expr, &clear, &Arc::new(schema))
    }

    #[test]
    fn comparisons_of_clear_columns_cross() {
        assert!(check(&col("id").eq(lit(3))));
        assert!(check(
            &col("id").gt(lit(3)).and(col("name").not_eq(lit("x")))
        ));
        assert!(check(
            &col("id").between(lit(1), lit(9)).or(col("id").is_null())
        ));
        assert!(check(&col("name").in_list(vec![lit("a"), lit("b")], true)));
        assert!(check(&cast(col("id"), DataType::Int64).eq(lit(3i64))));
        assert!(check(&cast(col("id"), DataType::Float64).lt(lit(3.5))));
        assert!(check(&try_cast(col("name"), DataType::Int64).eq(lit(3i64))));
        assert!(check(&cast(col("name"), DataType::Utf8).eq(lit("x"))));
    }

    #[test]
    fn what_can_fail_or_reads_protected_values_stays_above() {
        // A tokenized (not clear) column, even in a harmless comparison.
        assert!(!check(&col("tax_id").eq(lit("12-3456789"))));
        assert!(!check(&col("tax_id").is_null()));
        // Arithmetic: division by zero, overflow.
        assert!(!check(&(lit(1) / col("id")).eq(lit(1))));
        assert!(!check(&(col("id") + lit(1)).eq(lit(1))));
        // Casts that can fail on some values.
        assert!(!check(&cast(col("name"), DataType::Int64).eq(lit(3i64))));
        assert!(!check(&cast(col("id"), DataType::Int8).eq(lit(3i8))));
        assert!(!check(&cast(col("id"), DataType::UInt64).eq(lit(3u64))));
        // Functions, patterns and regular expressions.
        assert!(!check(&col("name").like(lit("a%"))));
        assert!(!check(&regexp_like(col("name"), lit("("), None)));
        assert!(!check(&starts_with(col("name"), lit("a"))));
    }

    #[test]
    fn only_casts_that_cannot_fail() {
        use DataType::*;
        for (from, to) in [
            (Int8, Int64),
            (UInt8, Int16),
            (UInt32, UInt64),
            (Int64, Float64),
            (Utf8, Utf8View),
        ] {
            assert!(cannot_fail(&from, &to), "{from} -> {to}");
        }
        for (from, to) in [
            (Int64, Int32),
            (Int8, UInt8),
            (UInt64, Int64),
            (Int64, Float32),
            (Utf8, Int32),
            (Float64, Int64),
            (Utf8, Date32),
        ] {
            assert!(!cannot_fail(&from, &to), "{from} -> {to}");
        }
    }
}
