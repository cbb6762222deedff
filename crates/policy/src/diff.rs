//! Does this change widen access? Two versions of a mesh's policies (and manifests and users)
//! compared decision by decision: for every caller the files can tell apart and every table,
//! what each version lets them see, and whether the change widens it, narrows it, or changes
//! it in a way that cannot be proven either (which counts as widening: fail closed).
//!
//! Callers: every user of either users file, and for every role either version mentions
//! (`role:<name>` in the access rules or a product policy) a caller with that role and each
//! attribute set a user carries (and none), so that a rule for a role nobody holds yet is
//! still seen. With the grants in force layered on both versions (see
//! [`PolicySet::with_grants`]), every grant holder is a caller too, and each change of what
//! a holder sees names the grants that admit them: a change of a product's policy reaches
//! its grantees, who see what it shows any reader, narrowed per grant.
//!
//! Rows are compared symbolically on the bound predicates: each side is read as
//! a conjunction of disjunctions of atoms; one side is at least as narrow as the other when
//! each of the other's conjuncts is implied by one of its own. Treatments are ordered
//! hidden > masked > tokenized > clear.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use meshgate_catalog::Catalog;
use serde::Serialize;
use sqlparser::ast::{BinaryOperator, Expr};
use sqlparser::dialect::GenericDialect;
use sqlparser::parser::Parser;

use crate::golden::{Caller, Outcome, outcome};
use crate::principal::Principal;
use crate::resolve::PolicySet;
use crate::treatment::Treatment;
use crate::users::UserDirectory;

/// One version of a mesh: what a diff side is made of.
#[derive(Clone, Copy)]
pub struct Mesh<'a> {
    pub catalog: &'a Catalog,
    pub policies: &'a PolicySet,
    pub users: Option<&'a UserDirectory>,
}

/// Which way a change goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Direction {
    /// The caller sees more: rows, columns, or clearer values.
    Widened,
    /// Neither provably wider nor narrower (counted as widening).
    Undecided,
    /// The caller sees less.
    Narrowed,
}

/// One change of what one caller sees of one table.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    pub caller: String,
    pub table: String,
    /// `access`, `rows` or `column <name>`.
    pub aspect: String,
    pub before: String,
    pub after: String,
    pub direction: Direction,
    /// For a change of rows: how many rows of the product's data it adds and removes now,
    /// when the diff was given the data to count over (see [`Report::count_rows`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub counted: Option<Counted>,
    /// The grants in force that admit the caller to the table's product, before or after.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub grants: Vec<String>,
}

/// Rows a change of row predicate adds to and removes from what a caller sees, counted over
/// the product's data as it is now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Counted {
    pub gained: u64,
    pub lost: u64,
}

impl Change {
    /// The row predicates before and after, for a change of rows or of access (`None`
    /// otherwise): `false` where the caller was or is denied.
    pub fn predicates(&self) -> Option<(&str, &str)> {
        fn side(text: &str) -> &str {
            text.strip_prefix("sees rows ").unwrap_or("false")
        }
        match self.aspect.as_str() {
            "rows" => Some((self.before.as_str(), self.after.as_str())),
            "access" => Some((side(&self.before), side(&self.after))),
            _ => None,
        }
    }
}

/// Every change between two versions.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Callers and tables compared.
    pub callers: usize,
    pub tables: usize,
    pub changes: Vec<Change>,
    /// Every grant whose holder sees something change, with how many changes.
    pub grants_affected: BTreeMap<String, usize>,
}

impl Report {
    /// Widened first, then undecided, then narrowed; by table, caller and aspect within.
    fn sort(&mut self) {
        self.changes.sort_by(|a, b| {
            (a.direction, &a.table, &a.caller, &a.aspect).cmp(&(
                b.direction,
                &b.table,
                &b.caller,
                &b.aspect,
            ))
        });
    }

    /// Count, over the products' data, the rows each change of rows or access adds and
    /// removes (`count(table, before, after)` gives them, or `None` where it cannot count).
    /// A change the predicates alone cannot decide becomes a widening when it adds rows of
    /// today's data; one that adds none stays undecided, since tomorrow's data may differ.
    pub fn count_rows(&mut self, mut count: impl FnMut(&str, &str, &str) -> Option<Counted>) {
        for change in &mut self.changes {
            let Some((before, after)) = change.predicates() else {
                continue;
            };
            change.counted = count(&change.table, before, after);
            if change.direction == Direction::Undecided
                && change.counted.is_some_and(|c| c.gained > 0)
            {
                change.direction = Direction::Widened;
            }
        }
        self.sort();
    }

    /// Whether any caller may see more (or possibly more) after the change.
    pub fn widens(&self) -> bool {
        self.changes
            .iter()
            .any(|c| c.direction != Direction::Narrowed)
    }

    /// The report as a pull-request comment.
    pub fn markdown(&self) -> String {
        let mut out = String::new();
        let widened = self
            .changes
            .iter()
            .filter(|c| c.direction == Direction::Widened)
            .count();
        let undecided = self
            .changes
            .iter()
            .filter(|c| c.direction == Direction::Undecided)
            .count();
        let narrowed = self.changes.len() - widened - undecided;
        let grants = if self.grants_affected.is_empty() {
            String::new()
        } else {
            format!(
                " Grants affected: {}.",
                self.grants_affected
                    .iter()
                    .map(|(id, n)| format!("`{id}` ({n} change{})", if *n == 1 { "" } else { "s" }))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        let verdict = if self.changes.is_empty() {
            "**No change** of what anyone sees."
        } else if widened > 0 {
            "**Access widens.**"
        } else if undecided > 0 {
            "**Access may widen** (changes that cannot be proven narrower)."
        } else {
            "Access only narrows."
        };
        let _ = writeln!(
            out,
            "## Policy diff\n\n{verdict} {} callers × {} tables compared: {widened} widened, \
             {undecided} undecided, {narrowed} narrowed.{grants}\n",
            self.callers, self.tables
        );
        if self.changes.is_empty() {
            return out;
        }
        let _ = writeln!(
            out,
            "| | caller | table | what | before | after |\n|---|---|---|---|---|---|"
        );
        let cell = |s: &str| s.replace('|', "\\|").replace('\n', " ");
        for change in &self.changes {
            let mark = match change.direction {
                Direction::Widened => "widened",
                Direction::Undecided => "undecided",
                Direction::Narrowed => "narrowed",
            };
            let counted = change
                .counted
                .map(|c| {
                    format!(
                        " ({} rows gained, {} lost in today's data)",
                        c.gained, c.lost
                    )
                })
                .unwrap_or_default();
            let through = if change.grants.is_empty() {
                String::new()
            } else {
                format!(" (grant {})", change.grants.join(", "))
            };
            let _ = writeln!(
                out,
                "| {mark} | {}{through} | {} | {}{counted} | `{}` | `{}` |",
                cell(&change.caller),
                cell(&change.table),
                cell(&change.aspect),
                cell(&change.before),
                cell(&change.after)
            );
        }
        out
    }
}

/// Compare what every caller sees of every table under `before` and `after`.
pub fn diff(before: Mesh<'_>, after: Mesh<'_>) -> Report {
    let callers = callers(&[before, after]);
    let mut tables = BTreeSet::new();
    for mesh in [before, after] {
        for product in mesh.catalog.products() {
            for table in product.tables.iter().filter(|t| !t.is_view()) {
                tables.insert(format!("{}.{}", product.domain, table.name));
            }
        }
    }
    let mut changes = Vec::new();
    let mut grants_affected: BTreeMap<String, usize> = BTreeMap::new();
    for caller in &callers {
        for table in &tables {
            let decide = |mesh: Mesh<'_>| {
                outcome(mesh.policies, mesh.catalog, mesh.users, caller, table)
                    .unwrap_or_else(|_| Outcome::Denied("absent".into()))
            };
            let from = changes.len();
            compare(
                &caller.to_string(),
                table,
                &decide(before),
                &decide(after),
                &mut changes,
            );
            if changes.len() == from {
                continue;
            }
            let grants = grants_admitting(caller, table, &[before, after]);
            for id in &grants {
                *grants_affected.entry(id.clone()).or_default() += changes.len() - from;
            }
            for change in &mut changes[from..] {
                change.grants = grants.clone();
            }
        }
    }
    let mut report = Report {
        callers: callers.len(),
        tables: tables.len(),
        changes,
        grants_affected,
    };
    report.sort();
    report
}

/// The ids of the grants in force, on either side, that admit `caller` to the product of
/// `table` (`<domain>.<table>`).
fn grants_admitting(caller: &Caller, table: &str, meshes: &[Mesh<'_>]) -> Vec<String> {
    let principal = match caller {
        Caller::User(name) => name.as_str(),
        Caller::Described(p) => p.id(),
    };
    let mut ids = BTreeSet::new();
    for mesh in meshes {
        let (Some(layer), Some((domain, name))) =
            (mesh.policies.grant_layer(), table.split_once('.'))
        else {
            continue;
        };
        let Some((product, _)) = mesh.catalog.table(domain, name) else {
            continue;
        };
        if let Some(terms) = layer
            .terms
            .get(&(principal.to_string(), product.id.clone()))
        {
            ids.extend(terms.iter().map(|(grant, _)| grant.id.clone()));
        }
    }
    ids.into_iter().collect()
}

/// The callers the versions can tell apart (see the module doc).
pub fn callers(meshes: &[Mesh<'_>]) -> Vec<Caller> {
    let mut users = BTreeSet::new();
    let mut roles = BTreeSet::new();
    let mut attribute_sets: BTreeSet<BTreeMap<String, String>> = BTreeSet::new();
    attribute_sets.insert(BTreeMap::new());
    for mesh in meshes {
        if let Some(directory) = mesh.users {
            for name in directory.names() {
                users.insert(name.to_string());
                if let Some(principal) = directory.principal(name) {
                    attribute_sets.insert(principal.attributes().clone());
                    roles.extend(principal.roles().iter().cloned());
                }
            }
        }
        let sources = mesh.policies.sources();
        for text in std::iter::once(&sources.access_rules.text)
            .chain(sources.products.iter().map(|s| &s.text))
        {
            roles.extend(mentioned_roles(text));
        }
    }
    // A grant holder the users file does not know (a token's subject) is a caller of its
    // own: what the policy shows them comes from their grants alone.
    let holders: BTreeSet<String> = meshes
        .iter()
        .filter_map(|m| m.policies.grant_layer())
        .flat_map(|layer| layer.terms.keys().map(|(principal, _)| principal.clone()))
        .filter(|p| !users.contains(p))
        .collect();
    let mut out: Vec<Caller> = users.into_iter().map(Caller::User).collect();
    out.extend(
        holders
            .into_iter()
            .map(|id| Caller::Described(Principal::new(id))),
    );
    for role in &roles {
        for attributes in &attribute_sets {
            let mut principal =
                Principal::new(crate::golden::SYNTHETIC_CALLER).with_role(role.clone());
            for (name, value) in attributes {
                principal = principal.with_attribute(name.clone(), value.clone());
            }
            out.push(Caller::Described(principal));
        }
    }
    out
}

/// Every `role:<name>` in a policy text.
fn mentioned_roles(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (at, _) in text.match_indices("role:") {
        let name: String = text[at + 5..]
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || "-_.@".contains(*c))
            .collect();
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

fn compare(caller: &str, table: &str, before: &Outcome, after: &Outcome, out: &mut Vec<Change>) {
    let mut push = |aspect: String, before: String, after: String, direction: Direction| {
        out.push(Change {
            caller: caller.to_string(),
            table: table.to_string(),
            aspect,
            before,
            after,
            direction,
            counted: None,
            grants: Vec::new(),
        })
    };
    match (before, after) {
        (Outcome::Denied(_), Outcome::Denied(_)) => {}
        (Outcome::Denied(kind), Outcome::Sees { rows, .. }) => push(
            "access".into(),
            format!("denied ({kind})"),
            format!("sees rows {rows}"),
            Direction::Widened,
        ),
        (Outcome::Sees { rows, .. }, Outcome::Denied(kind)) => push(
            "access".into(),
            format!("sees rows {rows}"),
            format!("denied ({kind})"),
            Direction::Narrowed,
        ),
        (
            Outcome::Sees {
                rows: rows_before,
                columns: columns_before,
            },
            Outcome::Sees {
                rows: rows_after,
                columns: columns_after,
            },
        ) => {
            if rows_before != rows_after
                && let Some(direction) = rows_direction(rows_before, rows_after)
            {
                push(
                    "rows".into(),
                    rows_before.clone(),
                    rows_after.clone(),
                    direction,
                );
            }
            let names: BTreeSet<&String> =
                columns_before.keys().chain(columns_after.keys()).collect();
            for name in names {
                let was = columns_before.get(name).map_or("absent", String::as_str);
                let is = columns_after.get(name).map_or("absent", String::as_str);
                if was == is {
                    continue;
                }
                let direction = match strength(is).cmp(&strength(was)) {
                    std::cmp::Ordering::Less => Direction::Widened,
                    std::cmp::Ordering::Greater => Direction::Narrowed,
                    // Another mask or token domain: not provably narrower.
                    std::cmp::Ordering::Equal => Direction::Undecided,
                };
                push(
                    format!("column {name}"),
                    was.to_string(),
                    is.to_string(),
                    direction,
                );
            }
        }
    }
}

/// How much a treatment, as a decision describes it, withholds (see
/// [`crate::global::strength`]); a column absent on one side withholds like a hidden one.
/// Text that is no treatment counts as clear, so a change to it reads as widening.
fn strength(treatment: &str) -> u8 {
    if treatment == "absent" {
        return crate::global::strength(&Treatment::Hidden);
    }
    let written = treatment.split(" on rows of ").next().unwrap_or(treatment);
    Treatment::parse(written).map_or(0, |t| crate::global::strength(&t))
}

/// A predicate as a conjunction of disjunctions of atoms (each atom its SQL text).
type Cnf = Vec<BTreeSet<String>>;

fn cnf(text: &str) -> Option<Cnf> {
    let dialect = GenericDialect {};
    let expr = Parser::new(&dialect)
        .try_with_sql(text)
        .ok()?
        .parse_expr()
        .ok()?;
    let mut conjuncts = Vec::new();
    split_and(&expr, &mut conjuncts);
    Some(
        conjuncts
            .into_iter()
            .filter_map(|c| {
                let mut atoms = BTreeSet::new();
                split_or(c, &mut atoms);
                // `true` as a conjunct restricts nothing.
                (!atoms.contains("true")).then_some(atoms)
            })
            .collect(),
    )
}

fn split_and<'e>(expr: &'e Expr, out: &mut Vec<&'e Expr>) {
    match expr {
        Expr::Nested(inner) => split_and(inner, out),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_and(left, out);
            split_and(right, out);
        }
        other => out.push(other),
    }
}

fn split_or(expr: &Expr, out: &mut BTreeSet<String>) {
    match expr {
        Expr::Nested(inner) => split_or(inner, out),
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Or,
            right,
        } => {
            split_or(left, out);
            split_or(right, out);
        }
        other => {
            out.insert(other.to_string().to_ascii_lowercase());
        }
    }
}

/// `a` selects at most what `b` selects: each conjunct of `b` is implied by one of `a`'s
/// (a disjunction implies another when its atoms are among the other's).
fn at_most(a: &Cnf, b: &Cnf) -> bool {
    b.iter()
        .all(|needed| a.iter().any(|have| have.is_subset(needed)))
}

/// Which way the rows went; `None` when the predicates are the same set of rows written
/// differently (a no-op reformat).
fn rows_direction(before: &str, after: &str) -> Option<Direction> {
    let (Some(b), Some(a)) = (cnf(before), cnf(after)) else {
        return Some(Direction::Undecided);
    };
    match (at_most(&a, &b), at_most(&b, &a)) {
        (true, true) => None,
        (true, false) => Some(Direction::Narrowed),
        (false, true) => Some(Direction::Widened),
        (false, false) => Some(Direction::Undecided),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_compare_symbolically() {
        let d = |b: &str, a: &str| rows_direction(b, a);
        assert_eq!(d("lob = 'CIB'", "true"), Some(Direction::Widened));
        assert_eq!(d("true", "lob = 'CIB'"), Some(Direction::Narrowed));
        assert_eq!(
            d("lob = 'CIB'", "lob = 'CIB' OR lob = 'AWM'"),
            Some(Direction::Widened)
        );
        assert_eq!(
            d("lob = 'CIB'", "(lob = 'CIB') AND (amount < 100)"),
            Some(Direction::Narrowed)
        );
        assert_eq!(d("lob = 'CIB'", "lob = 'AWM'"), Some(Direction::Undecided));
        assert_eq!(d("(a = 1) AND (b = 2)", "b = 2 AND a = 1"), None);
        assert_eq!(
            d("lob = 'CIB'", "not valid sql ((("),
            Some(Direction::Undecided)
        );
    }

    #[test]
    fn treatments_are_ordered() {
        assert!(strength("hidden") > strength("mask(email)"));
        assert!(strength("mask(email)") > strength("tokenize(reference)"));
        assert!(strength("tokenize(reference)") > strength("clear"));
        assert_eq!(strength("absent"), strength("hidden"));
        assert_eq!(
            strength("mask(email) on rows of grant g-1 only"),
            strength("mask(email)")
        );
    }

    #[test]
    fn roles_are_found_in_any_policy_text() {
        let roles = mentioned_roles(
            "p, role:lob-system, reference, x, read, allow\nto = [\"role:firmwide-risk\"]",
        );
        assert_eq!(
            roles.into_iter().collect::<Vec<_>>(),
            vec!["firmwide-risk".to_string(), "lob-system".to_string()]
        );
    }
}
