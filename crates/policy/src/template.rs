//! Row-filter templates: a SQL boolean expression over the table's columns with
//! `${principal.<attribute>}` placeholders, e.g. `lob = ${principal.lob}`.
//!
//! Placeholders become string literals in the syntax tree when a caller's policy is resolved;
//! the caller's attribute values are never spliced into SQL text, so an attribute cannot
//! inject SQL. A caller who lacks an attribute a template needs is denied.

use std::collections::BTreeSet;
use std::ops::ControlFlow;

use sqlparser::ast::{Expr, Value, visit_expressions, visit_expressions_mut};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;
use sqlparser::tokenizer::Token;

use crate::principal::Principal;

const PLACEHOLDER_PREFIX: &str = "$mgattr_";

/// A parsed row-filter template.
#[derive(Debug, Clone, PartialEq)]
pub struct RowFilterTemplate {
    source: String,
    expr: Expr,
    attributes: BTreeSet<String>,
}

impl RowFilterTemplate {
    pub fn parse(text: &str) -> Result<Self, String> {
        let (sql, attributes) = rewrite_placeholders(text)?;
        let dialect = GenericDialect {};
        let mut parser = Parser::new(&dialect)
            .try_with_sql(&sql)
            .map_err(|e| format!("not valid SQL: {e}"))?;
        let expr = parser
            .parse_expr()
            .map_err(|e| format!("not a valid SQL expression: {e}"))?;
        if parser.peek_token().token != Token::EOF {
            return Err(format!(
                "unexpected text after the expression: `{}`",
                parser.peek_token().token
            ));
        }
        let mut problem = None;
        let _ = visit_expressions(&expr, |e| {
            problem = match e {
                Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => {
                    Some("row filters cannot contain subqueries".to_string())
                }
                Expr::Value(v) => match &v.value {
                    Value::Placeholder(p) if !p.starts_with(PLACEHOLDER_PREFIX) => Some(format!(
                        "unknown placeholder `{p}` (write `${{principal.<attribute>}}`)"
                    )),
                    _ => None,
                },
                _ => None,
            };
            if problem.is_some() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        });
        if let Some(problem) = problem {
            return Err(problem);
        }
        Ok(Self {
            source: text.to_string(),
            expr,
            attributes,
        })
    }

    /// The template as written.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The caller attributes the template needs.
    pub fn attributes(&self) -> &BTreeSet<String> {
        &self.attributes
    }

    /// The filter with every placeholder replaced by a string literal from `lookup`; the name
    /// of the first attribute `lookup` cannot provide is the error.
    pub fn bind_with(&self, lookup: impl Fn(&str) -> Option<String>) -> Result<Expr, String> {
        let mut expr = self.expr.clone();
        let mut missing = None;
        let _ = visit_expressions_mut(&mut expr, |e| {
            if let Expr::Value(v) = e
                && let Value::Placeholder(p) = &v.value
                && let Some(attribute) = p.strip_prefix(PLACEHOLDER_PREFIX)
            {
                match lookup(attribute) {
                    Some(value) => v.value = Value::SingleQuotedString(value),
                    None => {
                        missing = Some(attribute.to_string());
                        return ControlFlow::Break(());
                    }
                }
            }
            ControlFlow::Continue(())
        });
        match missing {
            Some(attribute) => Err(attribute),
            None => Ok(expr),
        }
    }

    /// The filter for one caller.
    pub fn bind(&self, principal: &Principal) -> Result<Expr, String> {
        self.bind_with(|name| principal.attribute(name).map(str::to_string))
    }
}

/// Replace `${principal.x}` outside quotes with the placeholder `$mgattr_x`. A placeholder
/// inside quotes is an error: it would compare against the literal text, never the value.
fn rewrite_placeholders(text: &str) -> Result<(String, BTreeSet<String>), String> {
    let mut out = String::with_capacity(text.len());
    let mut attributes = BTreeSet::new();
    let mut quote: Option<char> = None;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            }
            if rest.starts_with("${") {
                return Err("placeholders must not be quoted: write `lob = ${principal.lob}`, the value is quoted for you".into());
            }
        } else if c == '\'' || c == '"' {
            quote = Some(c);
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after.find('}').ok_or("unterminated `${` placeholder")?;
            let name = after[..end].strip_prefix("principal.").ok_or_else(|| {
                format!(
                    "unknown placeholder `${{{}}}` (write `${{principal.<attribute>}}`)",
                    &after[..end]
                )
            })?;
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(format!(
                    "attribute name `{name}` must be lowercase letters, digits or `_`"
                ));
            }
            out.push_str(PLACEHOLDER_PREFIX);
            out.push_str(name);
            attributes.insert(name.to_string());
            rest = &after[end + 1..];
            continue;
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    if quote.is_some() {
        return Err("unterminated quoted string".into());
    }
    Ok((out, attributes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_attributes_as_literals_not_as_sql() {
        let template =
            RowFilterTemplate::parse("lob = ${principal.lob} AND region <> 'x'").unwrap();
        assert_eq!(
            template.attributes().iter().collect::<Vec<_>>(),
            vec!["lob"]
        );
        let principal = Principal::new("p").with_attribute("lob", "CIB' OR '1'='1");
        let bound = template.bind(&principal).unwrap();
        // The whole hostile value is one string literal.
        assert_eq!(
            bound.to_string(),
            "lob = 'CIB'' OR ''1''=''1' AND region <> 'x'"
        );
    }

    #[test]
    fn missing_attributes_fail() {
        let template = RowFilterTemplate::parse("lob = ${principal.lob}").unwrap();
        assert_eq!(template.bind(&Principal::new("p")), Err("lob".to_string()));
    }

    #[test]
    fn the_id_is_an_attribute() {
        let template = RowFilterTemplate::parse("owner = ${principal.id}").unwrap();
        assert_eq!(
            template.bind(&Principal::new("ann")).unwrap().to_string(),
            "owner = 'ann'"
        );
    }

    #[test]
    fn refuses_bad_templates() {
        for (text, why) in [
            ("lob = '${principal.lob}'", "must not be quoted"),
            ("lob = ${user.lob}", "unknown placeholder"),
            ("lob = $1", "unknown placeholder"),
            ("lob IN (SELECT lob FROM t)", "subqueries"),
            ("lob = 'a' garbage garbage", "unexpected text"),
            ("lob = ${principal.lob", "unterminated"),
            ("lob = 'abc", "unterminated"),
        ] {
            let err = RowFilterTemplate::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn constant_true_is_a_template_too() {
        assert!(
            RowFilterTemplate::parse("true")
                .unwrap()
                .attributes()
                .is_empty()
        );
    }
}
