//! The quality rules a contract states, typed: ODCS `quality` library metrics on tables and
//! columns, and the freshness its `slaProperties` promise.
//!
//! meshgate checks what it can measure from the product's own bucket: `rowCount`,
//! `nullValues`, `missingValues`, `duplicateValues` and freshness (the newest file's age
//! against `latency` plus `frequency`). Rules it cannot run (`text`, `sql`, `custom`, other
//! metrics) are kept and reported as not checked, so an owner sees that nobody checks them.
//! A library rule that is malformed (no threshold, a threshold that is not a number) does not
//! load: a rule that silently never fails would be worse than none.

use serde_yaml::Value;

/// One quality rule of a product.
#[derive(Debug, Clone, PartialEq)]
pub struct QualityRule {
    /// The rule's `id` or `name` if the contract gives one, else `<table>[.<column>].<metric>`
    /// (`freshness` for the SLO).
    pub id: String,
    /// The table it measures; `None` for the product's freshness.
    pub table: Option<String>,
    /// The column it measures, for a column rule.
    pub column: Option<String>,
    pub check: Check,
    /// ODCS `dimension` (completeness, uniqueness, timeliness...).
    pub dimension: Option<String>,
    pub description: String,
}

/// What a rule measures and what it expects.
#[derive(Debug, Clone, PartialEq)]
pub enum Check {
    /// A library metric compared with a threshold, in rows (or seconds) or in percent of
    /// the table's rows.
    Metric {
        metric: Metric,
        threshold: Threshold,
        percent: bool,
    },
    /// The newest file of the product is at most this old.
    Freshness { max_age_seconds: u64 },
    /// A rule meshgate does not run, and why.
    NotChecked { reason: String },
}

#[derive(Debug, Clone, PartialEq)]
pub enum Metric {
    /// Rows in the table.
    RowCount,
    /// Null values of the column.
    NullValues,
    /// Nulls plus the listed placeholder values (`arguments.missingValues`) of the column.
    MissingValues(Vec<String>),
    /// Rows whose value (of the column, or of `arguments.properties` together) repeats an
    /// earlier row's: rows minus distinct values; nulls are not counted.
    DuplicateValues(Vec<String>),
}

impl Metric {
    pub fn name(&self) -> &'static str {
        match self {
            Metric::RowCount => "rowCount",
            Metric::NullValues => "nullValues",
            Metric::MissingValues(_) => "missingValues",
            Metric::DuplicateValues(_) => "duplicateValues",
        }
    }
}

/// ODCS's comparison operators.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Threshold {
    Eq(f64),
    Ne(f64),
    Gt(f64),
    Ge(f64),
    Lt(f64),
    Le(f64),
    Between(f64, f64),
    NotBetween(f64, f64),
}

impl Threshold {
    pub fn holds(self, value: f64) -> bool {
        match self {
            Threshold::Eq(x) => value == x,
            Threshold::Ne(x) => value != x,
            Threshold::Gt(x) => value > x,
            Threshold::Ge(x) => value >= x,
            Threshold::Lt(x) => value < x,
            Threshold::Le(x) => value <= x,
            Threshold::Between(a, b) => (a..=b).contains(&value),
            Threshold::NotBetween(a, b) => !(a..=b).contains(&value),
        }
    }
}

impl std::fmt::Display for Threshold {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Threshold::Eq(x) => write!(f, "= {x}"),
            Threshold::Ne(x) => write!(f, "<> {x}"),
            Threshold::Gt(x) => write!(f, "> {x}"),
            Threshold::Ge(x) => write!(f, ">= {x}"),
            Threshold::Lt(x) => write!(f, "< {x}"),
            Threshold::Le(x) => write!(f, "<= {x}"),
            Threshold::Between(a, b) => write!(f, "between {a} and {b}"),
            Threshold::NotBetween(a, b) => write!(f, "not between {a} and {b}"),
        }
    }
}

impl QualityRule {
    /// What the rule expects, in words: `nullValues = 0 rows`, `freshness <= 3600 s`.
    pub fn expectation(&self) -> String {
        match &self.check {
            Check::Metric {
                metric,
                threshold,
                percent,
            } => {
                let unit = if *percent { "%" } else { "rows" };
                format!("{} {threshold} {unit}", metric.name())
            }
            Check::Freshness { max_age_seconds } => {
                format!("newest file at most {max_age_seconds} s old")
            }
            Check::NotChecked { .. } => String::new(),
        }
    }
}

/// The rules of one `quality` list (of a table, or of a column when `column` is given).
/// `Err` names the rule and what is wrong with it.
pub(crate) fn parse_list(
    table: &str,
    column: Option<&str>,
    list: &Value,
) -> Result<Vec<QualityRule>, String> {
    let Value::Sequence(items) = list else {
        return Err("`quality` must be a list of rules".into());
    };
    items
        .iter()
        .enumerate()
        .map(|(i, item)| parse_rule(table, column, item).map_err(|m| format!("quality[{i}]: {m}")))
        .collect()
}

fn text(item: &Value, key: &str) -> Option<String> {
    item.get(key).and_then(|v| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    })
}

fn number(item: &Value, key: &str) -> Result<Option<f64>, String> {
    match item.get(key) {
        None => Ok(None),
        Some(Value::Number(n)) => n
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("`{key}` must be a number")),
        Some(_) => Err(format!("`{key}` must be a number")),
    }
}

fn pair(item: &Value, key: &str) -> Result<Option<(f64, f64)>, String> {
    match item.get(key) {
        None => Ok(None),
        Some(Value::Sequence(v)) if v.len() == 2 => {
            let at = |i: usize| {
                v[i].as_f64()
                    .ok_or_else(|| format!("`{key}` must be two numbers"))
            };
            let (a, b) = (at(0)?, at(1)?);
            if a > b {
                return Err(format!("`{key}` must list the lower bound first"));
            }
            Ok(Some((a, b)))
        }
        Some(_) => Err(format!("`{key}` must be two numbers, `[low, high]`")),
    }
}

fn threshold(item: &Value) -> Result<Threshold, String> {
    let mut found = Vec::new();
    for (key, make) in [
        ("mustBe", Threshold::Eq as fn(f64) -> Threshold),
        ("mustNotBe", Threshold::Ne),
        ("mustBeGreaterThan", Threshold::Gt),
        ("mustBeGreaterOrEqualTo", Threshold::Ge),
        ("mustBeLessThan", Threshold::Lt),
        ("mustBeLessOrEqualTo", Threshold::Le),
    ] {
        if let Some(x) = number(item, key)? {
            found.push(make(x));
        }
    }
    if let Some((a, b)) = pair(item, "mustBeBetween")? {
        found.push(Threshold::Between(a, b));
    }
    if let Some((a, b)) = pair(item, "mustNotBeBetween")? {
        found.push(Threshold::NotBetween(a, b));
    }
    match found.as_slice() {
        [one] => Ok(*one),
        [] => Err("needs a threshold (mustBe, mustBeLessThan, mustBeBetween...)".into()),
        _ => Err("has more than one threshold; give one per rule".into()),
    }
}

fn strings(value: Option<&Value>, what: &str) -> Result<Vec<String>, String> {
    match value {
        None => Ok(Vec::new()),
        Some(Value::Sequence(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                _ => Err(format!("`{what}` must list strings")),
            })
            .collect(),
        Some(_) => Err(format!("`{what}` must be a list")),
    }
}

fn parse_rule(table: &str, column: Option<&str>, item: &Value) -> Result<QualityRule, String> {
    if !item.is_mapping() {
        return Err("a rule must be a mapping".into());
    }
    let kind = text(item, "type").unwrap_or_else(|| "library".into());
    let metric_name = text(item, "metric").or_else(|| text(item, "rule"));
    let id = text(item, "id").or_else(|| text(item, "name"));
    let default_id = |metric: &str| match column {
        Some(c) => format!("{table}.{c}.{metric}"),
        None => format!("{table}.{metric}"),
    };
    let not_checked = |reason: String, id: Option<String>| QualityRule {
        id: id.unwrap_or_else(|| default_id(&kind)),
        table: Some(table.to_string()),
        column: column.map(str::to_string),
        check: Check::NotChecked { reason },
        dimension: text(item, "dimension"),
        description: text(item, "description").unwrap_or_default(),
    };
    if kind != "library" {
        return Ok(not_checked(
            format!("meshgate runs library metrics only, not `{kind}` rules"),
            id,
        ));
    }
    let Some(metric_name) = metric_name else {
        return Err("a library rule needs a `metric`".into());
    };
    let arguments = item.get("arguments");
    let column_metric = |metric: Metric| -> Result<Metric, String> {
        if column.is_none() {
            return Err(format!(
                "`{metric_name}` is a column metric: put it under a property"
            ));
        }
        Ok(metric)
    };
    let metric = match metric_name.as_str() {
        "rowCount" => {
            if column.is_some() {
                return Err("`rowCount` is a table metric: put it under the schema object".into());
            }
            Metric::RowCount
        }
        "nullValues" => column_metric(Metric::NullValues)?,
        "missingValues" => column_metric(Metric::MissingValues(strings(
            arguments.and_then(|a| a.get("missingValues")),
            "arguments.missingValues",
        )?))?,
        "duplicateValues" => {
            let listed = strings(
                arguments.and_then(|a| a.get("properties")),
                "arguments.properties",
            )?;
            match (column, listed.is_empty()) {
                (Some(c), true) => Metric::DuplicateValues(vec![c.to_string()]),
                (None, false) => Metric::DuplicateValues(listed),
                (Some(_), false) => {
                    return Err(
                        "a column's duplicateValues measures that column; list `arguments.properties` on the table's rule instead".into(),
                    );
                }
                (None, true) => {
                    return Err(
                        "a table's duplicateValues needs `arguments.properties`, the key's columns"
                            .into(),
                    );
                }
            }
        }
        other => {
            return Ok(not_checked(
                format!("meshgate does not measure the `{other}` metric"),
                id.or_else(|| Some(default_id(other))),
            ));
        }
    };
    let percent = match text(item, "unit").as_deref() {
        None | Some("rows") => false,
        Some("percent") => true,
        Some(other) => return Err(format!("unit `{other}` is not `rows` or `percent`")),
    };
    if percent && metric == Metric::RowCount {
        return Err("rowCount is counted in rows, not percent".into());
    }
    Ok(QualityRule {
        id: id.unwrap_or_else(|| default_id(metric.name())),
        table: Some(table.to_string()),
        column: column.map(str::to_string),
        check: Check::Metric {
            metric,
            threshold: threshold(item)?,
            percent,
        },
        dimension: text(item, "dimension"),
        description: text(item, "description").unwrap_or_default(),
    })
}

/// Seconds in one `value unit` of an ODCS SLA property (`d`, `h`, `m`, `s`, or the words).
pub(crate) fn seconds(value: &str, unit: Option<&str>) -> Option<u64> {
    let value: f64 = value.trim().parse().ok()?;
    let per = match unit.unwrap_or("s").to_ascii_lowercase().as_str() {
        "s" | "sec" | "second" | "seconds" => 1.0,
        "m" | "min" | "minute" | "minutes" => 60.0,
        "h" | "hr" | "hour" | "hours" => 3600.0,
        "d" | "day" | "days" => 86_400.0,
        "w" | "week" | "weeks" => 604_800.0,
        _ => return None,
    };
    let total = value * per;
    (total.is_finite() && total >= 0.0).then(|| total.round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(column: Option<&str>, yaml: &str) -> Result<Vec<QualityRule>, String> {
        let value: Value = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
        parse_list("trades", column, &value)
    }

    #[test]
    fn library_metrics_parse_with_their_threshold_and_unit() {
        let parsed = rules(
            Some("price"),
            "[{metric: nullValues, mustBe: 0}, {metric: nullValues, mustBeLessThan: 5, unit: percent, id: few_nulls}]",
        )
        .unwrap();
        assert_eq!(parsed[0].id, "trades.price.nullValues");
        assert_eq!(parsed[0].expectation(), "nullValues = 0 rows");
        assert_eq!(parsed[1].id, "few_nulls");
        assert_eq!(parsed[1].expectation(), "nullValues < 5 %");
        let table = rules(None, "[{metric: rowCount, mustBeBetween: [10, 20]}]").unwrap();
        let Check::Metric { threshold, .. } = &table[0].check else {
            panic!("{table:?}")
        };
        assert!(threshold.holds(10.0) && threshold.holds(20.0) && !threshold.holds(21.0));
    }

    #[test]
    fn malformed_library_rules_do_not_load_and_say_why() {
        for (column, yaml, says) in [
            (Some("a"), "[{metric: nullValues}]", "needs a threshold"),
            (
                Some("a"),
                "[{metric: nullValues, mustBe: zero}]",
                "must be a number",
            ),
            (
                Some("a"),
                "[{metric: nullValues, mustBe: 0, mustNotBe: 1}]",
                "more than one",
            ),
            (Some("a"), "[{metric: rowCount, mustBe: 1}]", "table metric"),
            (None, "[{metric: nullValues, mustBe: 1}]", "column metric"),
            (
                None,
                "[{metric: duplicateValues, mustBe: 0}]",
                "arguments.properties",
            ),
            (
                None,
                "[{metric: rowCount, mustBeBetween: [5, 1]}]",
                "lower bound first",
            ),
            (
                Some("a"),
                "[{metric: nullValues, mustBe: 0, unit: parts}]",
                "unit",
            ),
        ] {
            let error = rules(column, yaml).unwrap_err();
            assert!(error.contains(says), "{yaml}: {error}");
        }
    }

    #[test]
    fn rules_meshgate_cannot_run_are_kept_as_not_checked() {
        let parsed = rules(
            None,
            "[{type: sql, query: 'select 1', mustBe: 1}, {type: text, description: verified}, {metric: invalidValues, mustBe: 0}]",
        )
        .unwrap();
        assert!(
            parsed
                .iter()
                .all(|r| matches!(r.check, Check::NotChecked { .. })),
            "{parsed:?}"
        );
        assert_eq!(parsed[2].id, "trades.invalidValues");
    }

    #[test]
    fn sla_units_convert_to_seconds() {
        assert_eq!(seconds("1", Some("h")), Some(3600));
        assert_eq!(seconds("15", Some("m")), Some(900));
        assert_eq!(seconds("1", Some("d")), Some(86_400));
        assert_eq!(seconds("2", Some("y")), None);
        assert_eq!(seconds("x", Some("d")), None);
    }
}
