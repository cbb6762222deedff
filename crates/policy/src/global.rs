//! Global rules: what the governance team decides once for every product
//! (`policies/global.toml`), applied at query time to every product, present and future.
//!
//! ```toml
//! [global]
//! version = 1
//!
//! [[column]]
//! id = "pii-tokenized-outside-its-domain"
//! tags = ["pii"]                          # columns with any of these tags...
//! classifications = []                    # ...or any of these classifications
//! treatment = "tokenize(${product.domain})"
//! to = ["*"]
//! except = ["domain:${product.domain}", "role:firmwide-risk"]
//!
//! [manifest]
//! required_slos = ["latency", "retention"]
//! ```
//!
//! A column rule is a **floor**: for the callers it selects, a product's own rule may make
//! the column stricter (hidden > masked > tokenized > clear), never clearer. Where both
//! protect at the same strength in different ways (another mask, another token domain), the
//! global rule's way applies. A column that no product rule treats gets the global rule's
//! treatment, and the built-in default ([`crate::default_treatment`]) only where no global
//! rule applies either.
//!
//! `domain:${product.domain}` selects the callers of the product's own domain: those whose
//! `domain` attribute names it, the product's owners and delegates, and holders of a role
//! the access rules grant in that domain alone (a `g` line with that domain, not `*`).
//! Exemptions from a global rule are written here, in the governance team's file, so that
//! every one of them is reviewed as a change of this file (`meshgate policy diff`).

use std::collections::BTreeSet;

use serde::Deserialize;

use meshgate_catalog::{Catalog, Column, Product};

use crate::error::LoadError;
use crate::rules::RuleOrigin;
use crate::subjects::{Subject, SubjectSet};
use crate::treatment::Treatment;
use crate::users::{line_of, toml_error};

/// The placeholder a global treatment may use for the product's domain.
pub const PRODUCT_DOMAIN: &str = "${product.domain}";

/// The subject that selects the product's own domain.
pub const OWNING_DOMAIN: &str = "domain:${product.domain}";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    global: RawHeader,
    #[serde(default, rename = "column")]
    columns: Vec<toml::Spanned<RawColumn>>,
    #[serde(default)]
    manifest: ManifestRules,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHeader {
    version: u64,
    #[serde(default)]
    description: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawColumn {
    id: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    classifications: Vec<String>,
    treatment: String,
    to: Vec<String>,
    #[serde(default)]
    except: Vec<String>,
    #[serde(default)]
    description: Option<String>,
}

/// What every product's contract must state (checked by `meshgate lint` and at publish).
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ManifestRules {
    /// `slaProperties` every contract states (`latency`, `retention`, `frequency`, ...).
    #[serde(default)]
    pub required_slos: Vec<String>,
}

/// Who a global rule names: a subject as product policies write it, or the product's own
/// domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobalSubject {
    Subject(Subject),
    OwningDomain,
}

impl GlobalSubject {
    fn parse(text: &str) -> Result<Self, String> {
        if text == OWNING_DOMAIN {
            return Ok(Self::OwningDomain);
        }
        if text.starts_with("domain:") {
            return Err(format!(
                "`{text}`: the only domain subject is `{OWNING_DOMAIN}` (the product's own domain)"
            ));
        }
        Subject::parse(text).map(Self::Subject)
    }
}

impl std::fmt::Display for GlobalSubject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Subject(s) => s.fmt(f),
            Self::OwningDomain => f.write_str(OWNING_DOMAIN),
        }
    }
}

/// One caller as global rules see it, for one product.
pub(crate) struct Caller<'a> {
    pub(crate) subjects: &'a SubjectSet,
    /// Whether the caller belongs to the product's own domain (see the module doc).
    pub(crate) in_domain: bool,
}

impl Caller<'_> {
    fn matches(&self, subject: &GlobalSubject) -> bool {
        match subject {
            GlobalSubject::Subject(s) => self.subjects.matches(s),
            GlobalSubject::OwningDomain => self.in_domain,
        }
    }
}

/// One column floor of the global rules.
#[derive(Debug, Clone)]
pub struct GlobalColumnRule {
    pub origin: RuleOrigin,
    pub tags: Vec<String>,
    pub classifications: Vec<String>,
    /// As written; `${product.domain}` is replaced per product.
    pub treatment: String,
    pub to: Vec<GlobalSubject>,
    pub except: Vec<GlobalSubject>,
    pub description: Option<String>,
    /// The treatment on each product of the catalog the rules were checked against,
    /// parsed once at load (resolution looks it up on every query).
    by_product: std::collections::BTreeMap<String, Treatment>,
}

impl GlobalColumnRule {
    /// Does this rule cover `column` (by one of its tags or its classification)?
    pub fn covers(&self, column: &Column) -> bool {
        self.tags.iter().any(|t| column.has_tag(t))
            || column
                .classification
                .as_ref()
                .is_some_and(|c| self.classifications.contains(c))
    }

    /// The treatment on `product`'s columns.
    pub fn treatment_on(&self, product: &Product) -> Result<Treatment, String> {
        self.by_product.get(&product.id).cloned().ok_or_else(|| {
            format!(
                "rule `{}` was not checked against product `{}` (load the rules with its catalog)",
                self.origin.id, product.id
            )
        })
    }

    pub(crate) fn selects(&self, caller: &Caller<'_>) -> bool {
        self.to.iter().any(|s| caller.matches(s)) && !self.except.iter().any(|s| caller.matches(s))
    }

    /// `global:<id>`: how resolutions and audit records name the rule.
    pub fn rule_name(&self) -> String {
        format!("global:{}", self.origin.id)
    }
}

/// The governance team's rules, validated against the catalog.
#[derive(Debug, Clone)]
pub struct GlobalRules {
    pub file: String,
    pub version: u64,
    pub description: Option<String>,
    pub columns: Vec<GlobalColumnRule>,
    pub manifest: ManifestRules,
}

/// How much a treatment withholds: hidden > masked > tokenized > clear.
pub fn strength(treatment: &Treatment) -> u8 {
    match treatment {
        Treatment::Hidden => 3,
        Treatment::Mask(_) => 2,
        Treatment::Tokenize(_) => 1,
        Treatment::Clear => 0,
    }
}

impl GlobalRules {
    /// Parse and validate `policies/global.toml` against the catalog: every treatment must
    /// apply to every column of every product the rule covers.
    pub fn parse(file: &str, text: &str, catalog: &Catalog) -> Result<Self, LoadError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        let mut ids = BTreeSet::new();
        let mut columns = Vec::new();
        for spanned in raw.columns {
            let line = line_of(text, spanned.span().start);
            let rule = spanned.into_inner();
            let err = |message: String| LoadError::new(file, Some(line), Some(&rule.id), message);
            if rule.id.is_empty() {
                return Err(LoadError::new(
                    file,
                    Some(line),
                    None,
                    "every rule needs a non-empty `id`",
                ));
            }
            if !ids.insert(rule.id.clone()) {
                return Err(err("rule id is used twice in this file".into()));
            }
            if rule.tags.is_empty() && rule.classifications.is_empty() {
                return Err(err(
                    "a global rule covers columns by `tags` or `classifications`; give at least one"
                        .into(),
                ));
            }
            if rule.to.is_empty() {
                return Err(err(
                    "`to` must name at least one subject (`*` for every reader)".into(),
                ));
            }
            let parse = |list: &[String]| {
                list.iter()
                    .map(|s| GlobalSubject::parse(s))
                    .collect::<Result<Vec<_>, _>>()
            };
            let to = parse(&rule.to).map_err(err)?;
            let except = parse(&rule.except).map_err(err)?;
            let placeholder_free = rule.treatment.replace(PRODUCT_DOMAIN, "");
            if placeholder_free.contains("${") {
                return Err(err(format!(
                    "`{}`: the only placeholder a treatment may use is `{PRODUCT_DOMAIN}`",
                    rule.treatment
                )));
            }
            let mut checked = GlobalColumnRule {
                origin: RuleOrigin {
                    file: file.to_string(),
                    line,
                    id: rule.id.clone(),
                },
                tags: rule.tags,
                classifications: rule.classifications,
                treatment: rule.treatment,
                to,
                except,
                description: rule.description,
                by_product: Default::default(),
            };
            // Check the treatment on a domain of the right shape even when no product is
            // covered yet: a rule that could never apply must not wait for the first product.
            let sample = Treatment::parse(&checked.treatment.replace(PRODUCT_DOMAIN, "sample"))
                .map_err(err)?;
            if sample == Treatment::Clear {
                return Err(err(
                    "`clear` sets no floor; a global rule hides, masks or tokenizes (exempt callers with `except`)"
                        .into(),
                ));
            }
            for product in catalog.all_versions() {
                let treatment =
                    Treatment::parse(&checked.treatment.replace(PRODUCT_DOMAIN, &product.domain))
                        .map_err(|m| {
                        err(format!(
                            "on product `{}` (domain `{}`): {m}",
                            product.id, product.domain
                        ))
                    })?;
                for table in product.tables.iter().filter(|t| !t.is_view()) {
                    for column in table.columns.iter().filter(|c| checked.covers(c)) {
                        treatment.output_type(&column.data_type).map_err(|m| {
                            err(format!(
                                "cannot apply `{treatment}` to `{}.{}.{}` ({}): {m}",
                                product.domain, table.name, column.name, column.physical_type
                            ))
                        })?;
                    }
                }
                checked.by_product.insert(product.id.clone(), treatment);
            }
            columns.push(checked);
        }
        Ok(Self {
            file: file.to_string(),
            version: raw.global.version,
            description: raw.global.description,
            columns,
            manifest: raw.manifest,
        })
    }

    /// The strictest floor the rules set on `column` of `product` for `caller`, with the
    /// rule that sets it (the first such rule on a tie). `None`: no rule selects the caller.
    pub(crate) fn floor(
        &self,
        product: &Product,
        column: &Column,
        caller: &Caller<'_>,
    ) -> Result<Option<(Treatment, &GlobalColumnRule)>, String> {
        let mut floor: Option<(Treatment, &GlobalColumnRule)> = None;
        for rule in self.columns.iter().filter(|r| r.covers(column)) {
            if !rule.selects(caller) {
                continue;
            }
            let treatment = rule.treatment_on(product)?;
            if floor
                .as_ref()
                .is_none_or(|(held, _)| strength(&treatment) > strength(held))
            {
                floor = Some((treatment, rule));
            }
        }
        Ok(floor)
    }
}

/// The treatment a caller gets when a product rule says `product` and a global rule's
/// floor is `floor`: the stricter; at equal strength but a different way (another mask or
/// token domain), the global rule's.
pub fn under_floor(product: &Treatment, floor: &Treatment) -> bool {
    strength(floor) > strength(product)
        || (strength(floor) == strength(product) && floor != product)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        let manifest = r#"
apiVersion: v3.1.0
kind: DataContract
id: hr.people
name: People
version: 1.0.0
status: active
domain: hr
servers:
  - server: lake
    type: s3
    location: s3://hr-people/data/
    format: parquet
schema:
  - name: people
    physicalType: table
    properties:
      - name: id
        logicalType: integer
        physicalType: BIGINT
        classification: internal
      - name: email
        logicalType: string
        physicalType: VARCHAR
        classification: internal
        tags: [pii]
      - name: salary
        logicalType: number
        physicalType: DOUBLE
        classification: restricted
team:
  name: hr-data
  members:
    - username: hr-owner
      role: owner
"#;
        Catalog::from_sources([("people.yaml", manifest)]).unwrap()
    }

    #[test]
    fn parses_and_checks_treatments_on_covered_columns() {
        let catalog = catalog();
        let rules = GlobalRules::parse(
            "global.toml",
            r#"
[global]
version = 2

[[column]]
id = "pii-tokenized"
tags = ["pii"]
treatment = "tokenize(${product.domain})"
to = ["*"]
except = ["domain:${product.domain}"]

[manifest]
required_slos = ["latency"]
"#,
            &catalog,
        )
        .unwrap();
        assert_eq!(rules.version, 2);
        assert_eq!(rules.columns[0].origin.line, 5);
        assert_eq!(rules.columns[0].except, vec![GlobalSubject::OwningDomain]);
        let product = catalog.product("hr.people").unwrap();
        assert_eq!(
            rules.columns[0].treatment_on(product),
            Ok(Treatment::Tokenize("hr".into()))
        );
        assert_eq!(rules.manifest.required_slos, vec!["latency".to_string()]);

        let refused = |body: &str| {
            GlobalRules::parse(
                "global.toml",
                &format!("[global]\nversion = 1\n{body}"),
                &catalog,
            )
            .unwrap_err()
            .to_string()
        };
        // A mask that cannot apply to a covered column names the column.
        assert!(
            refused("[[column]]\nid = \"r\"\nclassifications = [\"restricted\"]\ntreatment = \"mask(email)\"\nto = [\"*\"]")
                .contains("hr.people.salary")
        );
        assert!(
            refused(
                "[[column]]\nid = \"r\"\ntags = [\"pii\"]\ntreatment = \"clear\"\nto = [\"*\"]"
            )
            .contains("sets no floor")
        );
        assert!(
            refused("[[column]]\nid = \"r\"\ntreatment = \"hidden\"\nto = [\"*\"]")
                .contains("`tags` or `classifications`")
        );
        assert!(refused("[[column]]\nid = \"r\"\ntags = [\"pii\"]\ntreatment = \"hidden\"\nto = [\"domain:hr\"]").contains("only domain subject"));
        assert!(refused("[[column]]\nid = \"r\"\ntags = [\"pii\"]\ntreatment = \"tokenize(${principal.lob})\"\nto = [\"*\"]").contains("only placeholder"));
    }

    #[test]
    fn the_strictest_selecting_rule_is_the_floor() {
        let catalog = catalog();
        let rules = GlobalRules::parse(
            "global.toml",
            r#"
[global]
version = 1

[[column]]
id = "pii-tokenized"
tags = ["pii"]
treatment = "tokenize(${product.domain})"
to = ["*"]
except = ["domain:${product.domain}"]

[[column]]
id = "interns-see-no-pii"
tags = ["pii"]
treatment = "hidden"
to = ["role:intern"]
"#,
            &catalog,
        )
        .unwrap();
        let product = catalog.product("hr.people").unwrap();
        let email = product.tables[0].column("email").unwrap();
        let set = |roles: &[&str]| SubjectSet {
            id: "x".into(),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        };
        let floor = |roles: &[&str], in_domain: bool| {
            let subjects = set(roles);
            rules
                .floor(
                    product,
                    email,
                    &Caller {
                        subjects: &subjects,
                        in_domain,
                    },
                )
                .unwrap()
                .map(|(t, r)| (t, r.origin.id.clone()))
        };
        assert_eq!(
            floor(&[], false),
            Some((Treatment::Tokenize("hr".into()), "pii-tokenized".into()))
        );
        assert_eq!(floor(&[], true), None);
        assert_eq!(
            floor(&["intern"], true),
            Some((Treatment::Hidden, "interns-see-no-pii".into()))
        );
        assert_eq!(
            floor(&["intern"], false),
            Some((Treatment::Hidden, "interns-see-no-pii".into()))
        );
        // No rule covers `id`.
        let id = product.tables[0].column("id").unwrap();
        let subjects = set(&[]);
        let caller = Caller {
            subjects: &subjects,
            in_domain: false,
        };
        assert!(rules.floor(product, id, &caller).unwrap().is_none());
    }

    #[test]
    fn a_floor_is_only_ever_raised() {
        let tok = Treatment::Tokenize("hr".into());
        let mask = Treatment::Mask(meshgate_protect::MaskKind::Email);
        assert!(under_floor(&Treatment::Clear, &tok));
        assert!(!under_floor(&mask, &tok));
        assert!(!under_floor(&Treatment::Hidden, &tok));
        assert!(!under_floor(&tok, &tok));
        assert!(under_floor(&Treatment::Tokenize("other".into()), &tok));
        assert!(under_floor(&tok, &Treatment::Hidden));
    }
}
