//! Product policy files: the row filters and column treatments a product's owner publishes.
//!
//! One TOML file per product (`policies/products/<product id>.toml`):
//!
//! ```toml
//! [policy]
//! product = "reference.counterparties"
//! version = 3
//! pushdown_user_predicates = true      # false: callers' predicates never prune (timing)
//!
//! [[row_filter]]
//! id = "lob-systems-see-own-lob"
//! table = "counterparties"
//! kind = "restriction"                 # grant: OR-ed together; restriction: AND-ed on top
//! to = ["role:lob-system"]
//! where = "lob = ${principal.lob}"
//!
//! [[column]]
//! id = "tax-id-tokenized"
//! table = "counterparties"
//! column = "tax_id"
//! treatment = "tokenize(reference)"    # clear | hidden | mask(<kind>) | tokenize(<domain>)
//! to = ["*"]
//! except = ["role:reference-owner"]
//! ```
//!
//! Every rule is checked on load against the product's manifest, and every error names the
//! file, the line and the rule id.

use serde::Deserialize;
use std::sync::Arc;

use meshgate_catalog::{Catalog, Product};

use crate::error::LoadError;
use crate::subjects::{Subject, provably_disjoint};
use crate::template::RowFilterTemplate;
use crate::treatment::Treatment;
use crate::users::{line_of, toml_error};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    policy: toml::Spanned<RawHeader>,
    #[serde(default, rename = "row_filter")]
    row_filters: Vec<toml::Spanned<RawRowFilter>>,
    #[serde(default, rename = "column")]
    columns: Vec<toml::Spanned<RawColumn>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    product: String,
    version: u64,
    #[serde(default)]
    description: Option<String>,
    #[serde(default = "yes")]
    pushdown_user_predicates: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRowFilter {
    id: String,
    table: String,
    kind: String,
    to: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
    #[serde(rename = "where")]
    filter: String,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    id: String,
    table: String,
    column: String,
    treatment: String,
    to: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

/// How a row filter combines with the others of its table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterKind {
    /// Grants rows; a caller sees the union (OR) of the grants that apply to it.
    Grant,
    /// Restricts rows; every restriction that applies is AND-ed on top of the grants.
    Restriction,
}

/// Where a rule was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleOrigin {
    pub file: String,
    pub line: usize,
    pub id: String,
}

#[derive(Debug, Clone)]
pub struct RowFilterRule {
    pub origin: RuleOrigin,
    pub table: String,
    pub kind: FilterKind,
    pub to: Vec<Subject>,
    pub except: Vec<Subject>,
    pub template: RowFilterTemplate,
    pub description: Option<String>,
}

#[derive(Debug, Clone)]
pub struct ColumnRule {
    pub origin: RuleOrigin,
    pub table: String,
    pub column: String,
    pub treatment: Treatment,
    pub to: Vec<Subject>,
    pub except: Vec<Subject>,
    pub description: Option<String>,
}

/// One product's validated policy.
#[derive(Debug, Clone)]
pub struct ProductPolicy {
    pub product: String,
    pub version: u64,
    pub file: String,
    pub description: Option<String>,
    pub row_filters: Vec<RowFilterRule>,
    pub columns: Vec<ColumnRule>,
    /// Whether callers' own leakproof predicates may enter the sealed scan and prune row
    /// groups there (the default). Pruning makes a query's time depend on the raw values
    /// of the row groups it skips, rows the caller may not see included; an owner for whom
    /// that timing matters more than speed sets `pushdown_user_predicates = false`, and then
    /// only the policy's own filter prunes.
    pub pushdown_user_predicates: bool,
}

impl ProductPolicy {
    /// `<product>@v<version>`: how audit records and plans name this policy.
    pub fn policy_id(&self) -> String {
        format!("{}@v{}", self.product, self.version)
    }

    /// Parse and validate one policy file against the catalog.
    pub fn parse(file: &str, text: &str, catalog: &Catalog) -> Result<Self, LoadError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        let header_line = line_of(text, raw.policy.span().start);
        let header = raw.policy.into_inner();
        let product = catalog.product(&header.product).ok_or_else(|| {
            LoadError::new(
                file,
                Some(header_line),
                None,
                format!("unknown product `{}`", header.product),
            )
        })?;

        let mut ids = std::collections::HashSet::new();
        let mut origin_of =
            |span: std::ops::Range<usize>, id: &str| -> Result<RuleOrigin, LoadError> {
                let line = line_of(text, span.start);
                if id.is_empty() {
                    return Err(LoadError::new(
                        file,
                        Some(line),
                        None,
                        "every rule needs a non-empty `id`",
                    ));
                }
                if !ids.insert(id.to_string()) {
                    return Err(LoadError::new(
                        file,
                        Some(line),
                        Some(id),
                        "rule id is used twice in this file",
                    ));
                }
                Ok(RuleOrigin {
                    file: file.to_string(),
                    line,
                    id: id.to_string(),
                })
            };

        let mut row_filters = Vec::new();
        for spanned in raw.row_filters {
            let span = spanned.span();
            let rule = spanned.into_inner();
            let origin = origin_of(span, &rule.id)?;
            let err = |message: String| {
                LoadError::new(file, Some(origin.line), Some(&origin.id), message)
            };
            check_table(catalog.versions(&product.id), &rule.table).map_err(err)?;
            let kind = match rule.kind.as_str() {
                "grant" => FilterKind::Grant,
                "restriction" => FilterKind::Restriction,
                other => {
                    return Err(err(format!(
                        "unknown kind `{other}` (expected `grant` or `restriction`)"
                    )));
                }
            };
            let (to, except) = subjects(&rule.to, &rule.except).map_err(err)?;
            let template =
                RowFilterTemplate::parse(&rule.filter).map_err(|m| err(format!("`where`: {m}")))?;
            row_filters.push(RowFilterRule {
                origin,
                table: rule.table,
                kind,
                to,
                except,
                template,
                description: rule.description,
            });
        }

        let mut columns: Vec<ColumnRule> = Vec::new();
        for spanned in raw.columns {
            let span = spanned.span();
            let rule = spanned.into_inner();
            let origin = origin_of(span, &rule.id)?;
            let err = |message: String| {
                LoadError::new(file, Some(origin.line), Some(&origin.id), message)
            };
            // One policy serves every version of the product: a rule may name a column
            // any of them has, and must apply to its type in each.
            let tables = check_table(catalog.versions(&product.id), &rule.table).map_err(err)?;
            let typed: Vec<_> = tables
                .iter()
                .filter_map(|t| t.column(&rule.column))
                .collect();
            if typed.is_empty() {
                let newest = tables.last().map_or(String::new(), |t| t.column_names());
                return Err(err(format!(
                    "table `{}` has no column `{}` (columns: {newest})",
                    rule.table, rule.column
                )));
            }
            let treatment = Treatment::parse(&rule.treatment).map_err(err)?;
            for column in typed {
                treatment.output_type(&column.data_type).map_err(|m| {
                    err(format!(
                        "column `{}` ({}): {m}",
                        column.name, column.physical_type
                    ))
                })?;
            }
            let (to, except) = subjects(&rule.to, &rule.except).map_err(err)?;
            // Two protections meeting on one caller would make the result depend on rule
            // order; refuse unless the subjects provably never overlap.
            if treatment.is_protection() {
                for other in columns.iter().filter(|o| {
                    o.table == rule.table && o.column == rule.column && o.treatment.is_protection()
                }) {
                    if !provably_disjoint(&to, &except, &other.to, &other.except) {
                        return Err(err(format!(
                            "column `{}` already has `{}` from rule `{}` (line {}); two masks on one column \
                             must have subjects that cannot overlap (use `except`)",
                            rule.column, other.treatment, other.origin.id, other.origin.line
                        )));
                    }
                }
            }
            columns.push(ColumnRule {
                origin,
                table: rule.table,
                column: rule.column,
                treatment,
                to,
                except,
                description: rule.description,
            });
        }

        Ok(Self {
            product: product.id.clone(),
            version: header.version,
            file: file.to_string(),
            description: header.description,
            row_filters,
            columns,
            pushdown_user_predicates: header.pushdown_user_predicates,
        })
    }
}

/// The table `table` in each version of a product that has it, oldest first.
fn check_table<'a>(
    versions: &'a [Arc<Product>],
    table: &str,
) -> Result<Vec<&'a meshgate_catalog::Table>, String> {
    let found: Vec<_> = versions.iter().filter_map(|p| p.table(table)).collect();
    let Some(newest) = versions.last() else {
        return Err("no such product".into());
    };
    if found.is_empty() {
        return Err(format!(
            "product `{}` has no table `{table}` (tables: {})",
            newest.id,
            newest
                .tables
                .iter()
                .map(|t| t.name.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if found.iter().any(|t| t.is_view()) {
        return Err(format!(
            "`{table}` is a view: views have no rules of their own, the policies of the tables they read apply"
        ));
    }
    Ok(found)
}

fn subjects(to: &[String], except: &[String]) -> Result<(Vec<Subject>, Vec<Subject>), String> {
    if to.is_empty() {
        return Err(
            "`to` must name at least one subject (`*` for everyone who may read the product)"
                .into(),
        );
    }
    let parse = |list: &[String]| {
        list.iter()
            .map(|s| Subject::parse(s))
            .collect::<Result<Vec<_>, _>>()
    };
    Ok((parse(to)?, parse(except)?))
}
