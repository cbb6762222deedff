//! Golden decision files: what each caller must see of each table, checked against the
//! policy files the way `opa test` checks Rego, so that an owner knows what a change does
//! before it is live and a reviewer reads decisions instead of rules.
//!
//! One TOML file holds any number of decisions (`policies/tests/*.toml`):
//!
//! ```toml
//! [[decision]]
//! principal = "cib-reporting"              # a user of users.toml, or a caller by attributes:
//! # caller = { roles = ["lob-system"], attributes = { lob = "AWM" } }
//! table = "reference.counterparties"       # <domain>.<table>, as in SQL
//! rows = "lob = 'CIB'"                     # the row predicate, caller attributes bound
//! columns = { counterparty_id = "clear", tax_id = "tokenize(reference)", internal_rating = "hidden" }
//!
//! [[decision]]
//! principal = "intern"
//! table = "payments.transactions"
//! denied = "not-permitted"                 # or no-policy, no-row-grant, unresolvable, ...
//! ```
//!
//! `columns` must list every column of the table: a column added to a manifest is a change
//! of what callers see, so it fails the file until its decision is written down. The
//! decisions come from [`PolicySet::resolve`], the same resolution every query gets; access
//! grants from the governance store are not consulted (the files are what is tested).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use meshgate_catalog::Catalog;
use serde::Deserialize;

use crate::error::{Denial, LoadError};
use crate::principal::Principal;
use crate::resolve::{Admission, PolicySet, ResolvedTablePolicy};
use crate::users::{UserDirectory, line_of, toml_error};

/// The id a caller described by attributes gets (casbin lines naming users do not match it).
pub const SYNTHETIC_CALLER: &str = "golden-test-caller";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default, rename = "decision")]
    decisions: Vec<toml::Spanned<RawDecision>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDecision {
    #[serde(default)]
    principal: Option<String>,
    #[serde(default)]
    caller: Option<RawCaller>,
    table: String,
    #[serde(default)]
    rows: Option<String>,
    #[serde(default)]
    columns: Option<BTreeMap<String, String>>,
    #[serde(default)]
    denied: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCaller {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

/// Who a decision is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A user of the users file, with its roles and attributes.
    User(String),
    /// A caller described in the file itself.
    Described(Principal),
}

impl std::fmt::Display for Caller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Caller::User(name) => write!(f, "{name}"),
            Caller::Described(p) => {
                write!(
                    f,
                    "{} (roles {:?}, attributes {:?})",
                    p.id(),
                    p.roles(),
                    p.attributes()
                )
            }
        }
    }
}

/// What a caller sees of a table, as a golden file writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Denied, with the denial's kind ([`Denial::kind`]).
    Denied(String),
    /// The row predicate and every column's treatment.
    Sees {
        rows: String,
        columns: BTreeMap<String, String>,
    },
}

/// One decision of a golden file.
#[derive(Debug, Clone)]
pub struct Decision {
    pub line: usize,
    pub caller: Caller,
    pub table: String,
    pub expected: Outcome,
}

/// A parsed golden file.
#[derive(Debug, Clone)]
pub struct GoldenFile {
    pub name: String,
    pub decisions: Vec<Decision>,
}

/// A decision the policies do not make as written.
#[derive(Debug, Clone)]
pub struct Mismatch {
    pub file: String,
    pub line: usize,
    pub caller: String,
    pub table: String,
    /// What differs, one item per column or aspect.
    pub differences: Vec<String>,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {} on {}: {}",
            self.file,
            self.line,
            self.caller,
            self.table,
            self.differences.join("; ")
        )
    }
}

impl GoldenFile {
    /// Parse a golden file; every error names the file and line.
    pub fn parse(name: &str, text: &str) -> Result<Self, LoadError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(name, text, &e))?;
        let mut decisions = Vec::with_capacity(raw.decisions.len());
        for spanned in raw.decisions {
            let line = line_of(text, spanned.span().start);
            let raw = spanned.into_inner();
            let error = |message: &str| LoadError::new(name, Some(line), None, message);
            let caller = match (raw.principal, raw.caller) {
                (Some(user), None) => Caller::User(user),
                (None, Some(caller)) => {
                    let mut principal =
                        Principal::new(caller.id.unwrap_or_else(|| SYNTHETIC_CALLER.into()));
                    for role in caller.roles {
                        principal = principal.with_role(role);
                    }
                    for (attribute, value) in caller.attributes {
                        principal = principal.with_attribute(attribute, value);
                    }
                    Caller::Described(principal)
                }
                _ => return Err(error("a decision names either `principal` or `caller`")),
            };
            let expected = match (raw.denied, raw.rows, raw.columns) {
                (Some(kind), None, None) => {
                    if !Denial::KINDS.contains(&kind.as_str()) {
                        return Err(error(&format!(
                            "`denied = \"{kind}\"` is not a kind of denial (one of {})",
                            Denial::KINDS.join(", ")
                        )));
                    }
                    Outcome::Denied(kind)
                }
                (None, Some(rows), Some(columns)) => Outcome::Sees { rows, columns },
                _ => {
                    return Err(error(
                        "a decision has either `denied`, or both `rows` and `columns`",
                    ));
                }
            };
            decisions.push(Decision {
                line,
                caller,
                table: raw.table,
                expected,
            });
        }
        Ok(Self {
            name: name.to_string(),
            decisions,
        })
    }

    /// Every decision the policies make otherwise than written.
    pub fn check(
        &self,
        policies: &PolicySet,
        catalog: &Catalog,
        users: Option<&UserDirectory>,
    ) -> Vec<Mismatch> {
        let mut out = Vec::new();
        for decision in &self.decisions {
            let mismatch = |differences: Vec<String>| Mismatch {
                file: self.name.clone(),
                line: decision.line,
                caller: decision.caller.to_string(),
                table: decision.table.clone(),
                differences,
            };
            let actual = match outcome(policies, catalog, users, &decision.caller, &decision.table)
            {
                Ok(actual) => actual,
                Err(problem) => {
                    out.push(mismatch(vec![problem]));
                    continue;
                }
            };
            let differences = differences(&decision.expected, &actual);
            if !differences.is_empty() {
                out.push(mismatch(differences));
            }
        }
        out
    }

    /// The file rewritten with what the policies decide now, for the same callers and
    /// tables (`meshgate policy test --write`).
    pub fn rewrite(
        &self,
        header: &str,
        policies: &PolicySet,
        catalog: &Catalog,
        users: Option<&UserDirectory>,
    ) -> Result<String, String> {
        let mut cases = Vec::with_capacity(self.decisions.len());
        for decision in &self.decisions {
            let actual = outcome(policies, catalog, users, &decision.caller, &decision.table)?;
            cases.push((decision.caller.clone(), decision.table.clone(), actual));
        }
        Ok(render(header, &cases))
    }
}

/// What `caller` sees of `table` (`<domain>.<table>`) under `policies`, or why the
/// question cannot be asked (unknown user or table).
pub fn outcome(
    policies: &PolicySet,
    catalog: &Catalog,
    users: Option<&UserDirectory>,
    caller: &Caller,
    table: &str,
) -> Result<Outcome, String> {
    let principal = match caller {
        Caller::User(name) => users
            .and_then(|u| u.principal(name))
            .cloned()
            .ok_or_else(|| format!("no user `{name}` in the users file"))?,
        Caller::Described(principal) => principal.clone(),
    };
    let (domain, name) = table
        .split_once('.')
        .ok_or_else(|| format!("`{table}` is not `<domain>.<table>`"))?;
    let (product, table_def) = catalog
        .table(domain, name)
        .ok_or_else(|| format!("no table `{table}` in the catalog"))?;
    if table_def.is_view() {
        return Err(format!(
            "`{table}` is a view: what it shows follows from its tables' decisions"
        ));
    }
    Ok(match policies.resolve(&principal, product, table_def) {
        Ok(resolved) => Outcome::Sees {
            rows: rows(&resolved),
            columns: resolved
                .columns
                .iter()
                .map(|c| (c.name.clone(), c.describe()))
                .collect(),
        },
        Err(denial) => Outcome::Denied(denial.kind().to_string()),
    })
}

/// The rows a caller sees as one predicate: the admitting row filters OR-ed (left out when
/// one of them is `true`), each restriction AND-ed on top; `true` for every row.
fn rows(resolved: &ResolvedTablePolicy) -> String {
    let mut parts = Vec::new();
    if let Admission::Files(grants) = &resolved.admission {
        let grants: Vec<String> = grants.iter().map(|g| g.expr.to_string()).collect();
        if !grants.iter().any(|g| g.eq_ignore_ascii_case("true")) && !grants.is_empty() {
            parts.push(grants.join(" OR "));
        }
    }
    parts.extend(resolved.restrictions.iter().map(|r| r.expr.to_string()));
    match parts.len() {
        0 => "true".into(),
        1 => parts.remove(0),
        _ => parts
            .iter()
            .map(|p| format!("({p})"))
            .collect::<Vec<_>>()
            .join(" AND "),
    }
}

fn differences(expected: &Outcome, actual: &Outcome) -> Vec<String> {
    match (expected, actual) {
        (Outcome::Denied(a), Outcome::Denied(b)) if a == b => Vec::new(),
        (Outcome::Denied(a), Outcome::Denied(b)) => {
            vec![format!("expected denied ({a}), denied ({b})")]
        }
        (Outcome::Denied(a), Outcome::Sees { rows, .. }) => {
            vec![format!("expected denied ({a}), but sees rows `{rows}`")]
        }
        (Outcome::Sees { .. }, Outcome::Denied(b)) => {
            vec![format!("expected to see the table, denied ({b})")]
        }
        (
            Outcome::Sees {
                rows: rows_a,
                columns: columns_a,
            },
            Outcome::Sees {
                rows: rows_b,
                columns: columns_b,
            },
        ) => {
            let mut out = Vec::new();
            if rows_a != rows_b {
                out.push(format!("rows: expected `{rows_a}`, got `{rows_b}`"));
            }
            for (column, want) in columns_a {
                match columns_b.get(column) {
                    Some(got) if got == want => {}
                    Some(got) => out.push(format!("column {column}: expected {want}, got {got}")),
                    None => out.push(format!("column {column}: not in the table")),
                }
            }
            for (column, got) in columns_b {
                if !columns_a.contains_key(column) {
                    out.push(format!(
                        "column {column}: {got}, but the file has no decision for it"
                    ));
                }
            }
            out
        }
    }
}

/// A golden file of `cases`, after `header` (comment lines).
pub fn render(header: &str, cases: &[(Caller, String, Outcome)]) -> String {
    let quote = |s: &str| toml::Value::String(s.to_string()).to_string();
    let key = |s: &str| {
        if !s.is_empty()
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            s.to_string()
        } else {
            quote(s)
        }
    };
    let mut out = String::new();
    for line in header.lines() {
        let _ = writeln!(out, "{line}");
    }
    for (caller, table, outcome) in cases {
        let _ = writeln!(out, "\n[[decision]]");
        match caller {
            Caller::User(name) => {
                let _ = writeln!(out, "principal = {}", quote(name));
            }
            Caller::Described(p) => {
                let mut fields = Vec::new();
                if p.id() != SYNTHETIC_CALLER {
                    fields.push(format!("id = {}", quote(p.id())));
                }
                let roles: Vec<String> = p.roles().iter().map(|r| quote(r)).collect();
                fields.push(format!("roles = [{}]", roles.join(", ")));
                let attributes: Vec<String> = p
                    .attributes()
                    .iter()
                    .map(|(k, v)| format!("{} = {}", key(k), quote(v)))
                    .collect();
                fields.push(format!("attributes = {{ {} }}", attributes.join(", ")));
                let _ = writeln!(out, "caller = {{ {} }}", fields.join(", "));
            }
        }
        let _ = writeln!(out, "table = {}", quote(table));
        match outcome {
            Outcome::Denied(kind) => {
                let _ = writeln!(out, "denied = {}", quote(kind));
            }
            Outcome::Sees { rows, columns } => {
                let _ = writeln!(out, "rows = {}", quote(rows));
                let _ = writeln!(out, "[decision.columns]");
                for (column, treatment) in columns {
                    let _ = writeln!(out, "{} = {}", key(column), quote(treatment));
                }
            }
        }
    }
    out
}
