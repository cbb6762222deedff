//! `meshgate lint <mesh dir>`: every contract and policy of a mesh directory against the
//! global rules and each other, every finding at once (a gateway stops at the first), each
//! with its file, line, check id and the fix.
//!
//! Errors are what a gateway would refuse to load, or a rule that does not do what it says
//! (a product rule a global floor overrides, a row filter that does not type-check, a
//! breaking change without a new major version). Warnings are what loads and is safe but is
//! probably not what the owner meant (a column a global rule decides because the product
//! forgot it, an unclassified column, a tag no rule treats).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use meshgate_catalog::{Catalog, CatalogError, Product};
use meshgate_policy::diff::{Mesh, callers};
use meshgate_policy::golden::Caller;
use meshgate_policy::rules::ProductPolicy;
use meshgate_policy::{
    AccessControl, GlobalRules, LoadError, PolicySet, PolicySources, UserDirectory,
};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

/// One thing to fix, where to fix it and how.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub severity: Severity,
    pub file: String,
    pub line: Option<usize>,
    /// The check that found it (`global-floor`, `required-slo`, ...).
    pub check: String,
    pub message: String,
    pub fix: String,
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let severity = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(
            f,
            ": {severity}[{}]: {}\n  fix: {}",
            self.check, self.message, self.fix
        )
    }
}

/// Every finding of one lint run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub contracts: usize,
    pub policies: usize,
    pub findings: Vec<Finding>,
}

impl Report {
    pub fn errors(&self) -> usize {
        self.count(Severity::Error)
    }

    pub fn warnings(&self) -> usize {
        self.count(Severity::Warning)
    }

    fn count(&self, severity: Severity) -> usize {
        self.findings
            .iter()
            .filter(|f| f.severity == severity)
            .count()
    }
}

/// Lint the mesh directory `mesh` (`products/`, `policies/`); with `base`, the same
/// directory before the change, for the breaking-change check.
pub async fn lint(mesh: &Path, base: Option<&Path>) -> Report {
    let base_products = base.map(|b| b.join("products"));
    lint_dirs(
        &mesh.join("products"),
        &mesh.join("policies"),
        base_products.as_deref(),
    )
    .await
}

/// [`lint`] with the contracts and the policies in directories of their own (as a
/// gateway's configuration names them); `base_products`: the contracts before the change.
pub async fn lint_dirs(
    products_dir: &Path,
    policies_dir: &Path,
    base_products: Option<&Path>,
) -> Report {
    let mut findings = Vec::new();
    let (catalog, texts) = contracts(products_dir, &mut findings);
    let users = users(policies_dir, &mut findings);
    let global = match PolicySources::from_dir(policies_dir) {
        Err(e) => {
            findings.push(load_error("policy-files", &e, "make the file readable"));
            None
        }
        Ok(sources) => Some(sources),
    };
    let mut policy_count = 0;
    if let Some(sources) = global {
        policy_count = sources.products.len();
        if let Some(policies) = policies(&catalog, sources, &mut findings).await {
            manifest_checks(&catalog, &texts, policies.global(), &mut findings);
            policy_checks(&catalog, &texts, &policies, users.as_ref(), &mut findings);
        } else {
            manifest_checks(&catalog, &texts, None, &mut findings);
        }
    }
    if let Some(base) = base_products {
        let mut ignored = Vec::new();
        let (before, _) = contracts(base, &mut ignored);
        breaking_changes(&before, &catalog, &texts, &mut findings);
    }
    findings.sort_by(|a, b| {
        (a.severity, &a.file, a.line, &a.check).cmp(&(b.severity, &b.file, b.line, &b.check))
    });
    findings.dedup();
    Report {
        contracts: texts.len(),
        policies: policy_count,
        findings,
    }
}

/// Every contract that loads, one by one (so each broken one is a finding), then together
/// (so a clash of ids, buckets or tables is one too).
fn contracts(dir: &Path, findings: &mut Vec<Finding>) -> (Catalog, BTreeMap<String, String>) {
    let mut texts = BTreeMap::new();
    let files: Vec<PathBuf> = match std::fs::read_dir(dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
            .collect(),
        Err(e) => {
            findings.push(finding(
                Severity::Error,
                &dir.display().to_string(),
                None,
                "contract-files",
                format!("cannot read the contracts directory: {e}"),
                "create `products/` with one ODCS contract per product (`meshgate product init`)",
            ));
            return (Catalog::default(), texts);
        }
    };
    let mut alone: Vec<(String, String)> = Vec::new();
    let mut sorted = files;
    sorted.sort();
    for path in sorted {
        let name = path.display().to_string();
        let text = match std::fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) => {
                findings.push(finding(
                    Severity::Error,
                    &name,
                    None,
                    "contract",
                    format!("cannot read: {e}"),
                    "make the file readable",
                ));
                continue;
            }
        };
        match Catalog::from_sources([(name.as_str(), text.as_str())]) {
            Ok(_) => alone.push((name, text)),
            Err(e) => findings.push(contract_error(&name, &text, &e)),
        }
    }
    // Together once; only a clash between contracts (ids, buckets, tables) makes it add them
    // one at a time, to say which file clashes.
    let catalog = match Catalog::from_sources(alone.clone()) {
        Ok(catalog) => {
            texts.extend(alone);
            catalog
        }
        Err(_) => {
            let mut good: Vec<(String, String)> = Vec::new();
            for (name, text) in alone {
                let mut candidate = good.clone();
                candidate.push((name.clone(), text.clone()));
                match Catalog::from_sources(candidate) {
                    Ok(_) => {
                        texts.insert(name.clone(), text.clone());
                        good.push((name, text));
                    }
                    Err(e) => findings.push(contract_error(&name, &text, &e)),
                }
            }
            Catalog::from_sources(good).unwrap_or_default()
        }
    };
    (catalog, texts)
}

fn contract_error(file: &str, text: &str, error: &CatalogError) -> Finding {
    let (line, check) = match error {
        CatalogError::Invalid { at, .. } => (line_of_path(text, at), "contract"),
        CatalogError::Conflict { .. } => (None, "contract-clash"),
        _ => (None, "contract"),
    };
    finding(
        Severity::Error,
        file,
        line,
        check,
        error.to_string(),
        "correct the contract; no gateway loads a mesh with it as it is",
    )
}

fn users(dir: &Path, findings: &mut Vec<Finding>) -> Option<UserDirectory> {
    let file = dir.join("users.toml");
    let text = std::fs::read_to_string(&file).ok()?;
    match UserDirectory::parse(&file.display().to_string(), &text) {
        Ok(users) => Some(users),
        Err(e) => {
            findings.push(load_error("users", &e, "correct the users file"));
            None
        }
    }
}

/// Each policy file on its own, then the set without the broken ones (to check the rest).
async fn policies(
    catalog: &Catalog,
    mut sources: PolicySources,
    findings: &mut Vec<Finding>,
) -> Option<PolicySet> {
    if let Err(e) = AccessControl::load(
        &sources.access_model.name,
        &sources.access_model.text,
        &sources.access_rules.name,
        &sources.access_rules.text,
        catalog,
    )
    .await
    {
        findings.push(load_error(
            "access-rules",
            &e,
            "correct the line; no gateway loads access rules with it",
        ));
        return None;
    }
    if let Some(global) = &sources.global
        && let Err(e) = GlobalRules::parse(&global.name, &global.text, catalog)
    {
        findings.push(load_error(
            "global-rules",
            &e,
            "correct the rule; no gateway loads the mesh with it (the governance team owns this file)",
        ));
        sources.global = None;
    }
    sources.products.retain(|source| {
        match ProductPolicy::parse(&source.name, &source.text, catalog) {
            Ok(_) => true,
            Err(e) => {
                findings.push(load_error(
                    "product-policy",
                    &e,
                    "correct the rule; no gateway loads the mesh with it",
                ));
                false
            }
        }
    });
    match PolicySet::load(catalog, &sources).await {
        Ok(set) => Some(set),
        Err(e) => {
            findings.push(load_error(
                "policy-files",
                &e,
                "correct the file; no gateway loads the mesh with it",
            ));
            None
        }
    }
}

fn manifest_checks(
    catalog: &Catalog,
    texts: &BTreeMap<String, String>,
    global: Option<&GlobalRules>,
    findings: &mut Vec<Finding>,
) {
    for product in catalog.all_versions() {
        let text = texts.get(&product.source).map_or("", String::as_str);
        let file = product.source.as_str();
        let mut push = |severity, line, check: &str, message: String, fix: String| {
            findings.push(finding(severity, file, line, check, message, &fix));
        };
        if !is_snake_case(&product.name) {
            push(
                Severity::Error,
                line_starting(text, "id:"),
                "product-name",
                format!(
                    "product id `{}`: the name after the domain must be snake_case",
                    product.id
                ),
                format!(
                    "rename it `{}.{}` (its SQL tables keep their own names)",
                    product.domain,
                    product.name.replace('-', "_")
                ),
            );
        }
        if !is_semver(&product.version) {
            push(
                Severity::Error,
                line_starting(text, "version:"),
                "semver",
                format!(
                    "version `{}` is not semantic (MAJOR.MINOR.PATCH)",
                    product.version
                ),
                "write it as MAJOR.MINOR.PATCH, e.g. `1.0.0`; a breaking change raises MAJOR"
                    .into(),
            );
        }
        match product.lifecycle(meshgate_api::now_millis()) {
            meshgate_catalog::Lifecycle::Retired(Some(sunset)) => push(
                Severity::Warning,
                line_starting(text, "status:"),
                "sunset-passed",
                format!(
                    "product `{}` was served until {}: every query of it is refused now",
                    product.id, sunset.date
                ),
                "remove its contract, or set `status: retired` to keep it in discovery".into(),
            ),
            meshgate_catalog::Lifecycle::Retired(None)
            | meshgate_catalog::Lifecycle::Deprecated(_)
            | meshgate_catalog::Lifecycle::Served => {}
        }
        if product.support.is_empty() {
            push(
                Severity::Error,
                line_starting(text, "team:"),
                "support-channel",
                "no support channel: consumers who are denied or find a problem have nowhere to go"
                    .into(),
                "add `support: [{channel: \"#your-channel\", tool: slack, url: ...}]`".into(),
            );
        }
        for slo in global.map_or(&[][..], |g| g.manifest.required_slos.as_slice()) {
            if !product.slos.iter().any(|s| &s.property == slo) {
                push(
                    Severity::Error,
                    line_starting(text, "slaProperties:").or(line_starting(text, "team:")),
                    "required-slo",
                    format!(
                        "the global rules require the service level `{slo}`, which the contract does not state"
                    ),
                    format!(
                        "add `- property: {slo}` with its `value` and `unit` under `slaProperties`"
                    ),
                );
            }
        }
        for table in &product.tables {
            for column in &table.columns {
                let line = line_of_column(text, &column.name);
                if !is_snake_case(&column.name) {
                    push(
                        Severity::Error,
                        line,
                        "column-name",
                        format!("column `{}.{}` is not snake_case", table.name, column.name),
                        format!(
                            "rename it `{}` (a breaking change: raise the major version)",
                            to_snake_case(&column.name)
                        ),
                    );
                }
                if table.is_view() {
                    continue;
                }
                // A tag (pii, pci, ...) classifies a column as sensitive on its own.
                if column.classification.is_none() && column.tags.is_empty() {
                    push(
                        Severity::Warning,
                        line,
                        "classified",
                        format!(
                            "column `{}.{}` has no classification: it counts as sensitive and is hidden unless a rule shows it",
                            table.name, column.name
                        ),
                        "give it `classification: public | internal | confidential | restricted`"
                            .into(),
                    );
                }
                for tag in &column.tags {
                    let treated_globally =
                        global.is_some_and(|g| g.columns.iter().any(|r| r.tags.contains(tag)));
                    if !treated_globally {
                        push(
                            Severity::Warning,
                            line,
                            "untreated-tag",
                            format!(
                                "tag `{tag}` on column `{}.{}`: no global rule treats it",
                                table.name, column.name
                            ),
                            "if the tag means sensitive data, ask the governance team for a global rule; \
                             otherwise drop it or use a known tag"
                                .into(),
                        );
                    }
                }
            }
        }
    }
}

fn policy_checks(
    catalog: &Catalog,
    texts: &BTreeMap<String, String>,
    policies: &PolicySet,
    users: Option<&UserDirectory>,
    findings: &mut Vec<Finding>,
) {
    let everyone = callers(&[Mesh {
        catalog,
        policies,
        users,
    }]);
    for product in catalog.products() {
        let Some(policy) = policies.product_policy(&product.id) else {
            // A policy file that does not load is already an error of its own.
            let own_file = format!("{}.toml", product.id);
            if findings
                .iter()
                .any(|f| f.check == "product-policy" && f.file.ends_with(&own_file))
            {
                continue;
            }
            findings.push(finding(
                Severity::Warning,
                &product.source,
                line_starting(texts.get(&product.source).map_or("", String::as_str), "id:"),
                "no-policy",
                format!(
                    "product `{}` has no policy file: every query of it is denied",
                    product.id
                ),
                &format!(
                    "add policies/products/{}.toml (`meshgate product init` writes one)",
                    product.id
                ),
            ));
            continue;
        };
        // One policy serves every version: its filters must type-check on each.
        let versions = catalog.versions(&product.id);
        for (rule, table) in policy.row_filters.iter().flat_map(|rule| {
            versions
                .iter()
                .filter_map(move |v| Some((rule, v.table(&rule.table)?)))
        }) {
            if let Err(message) = meshgate_engine::type_check_row_filter(table, &rule.template) {
                findings.push(finding(
                    Severity::Error,
                    &rule.origin.file,
                    Some(rule.origin.line),
                    "row-filter-type",
                    format!(
                        "rule `{}`: `where` does not type-check on `{}`: {message}",
                        rule.origin.id, table.sql_name
                    ),
                    &format!(
                        "write a boolean condition over the columns of `{}` ({})",
                        table.name,
                        table.column_names()
                    ),
                ));
            }
        }
        global_checks(
            product,
            policy,
            policies,
            (users, &everyone),
            texts,
            findings,
        );
    }
}

/// Product rules a global floor overrides, and covered columns the product left to the
/// global rules, found by asking resolution for every caller the files tell apart.
fn global_checks(
    product: &Product,
    policy: &ProductPolicy,
    policies: &PolicySet,
    (users, everyone): (Option<&UserDirectory>, &[Caller]),
    texts: &BTreeMap<String, String>,
    findings: &mut Vec<Finding>,
) {
    let Some(global) = policies.global() else {
        return;
    };
    // rule id -> (the rule, the floor rule's id and treatment, callers it is overridden for)
    let mut overridden: BTreeMap<String, (String, usize, String, BTreeSet<String>)> =
        BTreeMap::new();
    for table in product.tables.iter().filter(|t| !t.is_view()) {
        for column in &table.columns {
            let covering: Vec<_> = global.columns.iter().filter(|r| r.covers(column)).collect();
            if covering.is_empty() {
                continue;
            }
            let named = policy
                .columns
                .iter()
                .any(|r| r.table == table.name && r.column == column.name);
            if !named {
                let text = texts.get(&product.source).map_or("", String::as_str);
                let rules: Vec<String> = covering
                    .iter()
                    .map(|r| {
                        format!(
                            "`{}` ({})",
                            r.origin.id,
                            r.treatment.replace("${product.domain}", &product.domain)
                        )
                    })
                    .collect();
                findings.push(finding(
                    Severity::Warning,
                    &product.source,
                    line_of_column(text, &column.name),
                    "left-to-global",
                    format!(
                        "column `{}.{}` ({}) has no rule in {}: the global rule {} decides it for the callers it selects, \
                         and it is hidden from the rest",
                        table.name,
                        column.name,
                        describe_column(column),
                        policy.file,
                        rules.join(", ")
                    ),
                    &format!(
                        "add a `[[column]]` rule for `{}` saying who sees it how (the global rule stays the floor)",
                        column.name
                    ),
                ));
            }
            for caller in everyone {
                let principal = match caller {
                    Caller::User(name) => match users.and_then(|u| u.principal(name)) {
                        Some(p) => p.clone(),
                        None => continue,
                    },
                    Caller::Described(p) => p.clone(),
                };
                if policies.check_access(&principal, product).is_err() {
                    continue;
                }
                let Ok(Some(decision)) =
                    policies.column_decision(&principal, product, table, column)
                else {
                    continue;
                };
                if let (Some(rule), Some((floor, by))) = (decision.overridden(), &decision.floor) {
                    let entry = overridden.entry(rule.origin.id.clone()).or_insert_with(|| {
                        (
                            rule.origin.file.clone(),
                            rule.origin.line,
                            format!(
                                "`{}` gives `{}` of `{}.{}`, but the global rule `{}` ({}:{}) holds `{floor}` for",
                                rule.origin.id,
                                rule.treatment,
                                table.name,
                                column.name,
                                by.origin.id,
                                by.origin.file,
                                by.origin.line
                            ),
                            BTreeSet::new(),
                        )
                    });
                    entry.3.insert(caller.to_string());
                }
            }
        }
    }
    for (rule, (file, line, message, callers)) in overridden {
        let shown: Vec<&String> = callers.iter().take(3).collect();
        let more = callers.len().saturating_sub(shown.len());
        let who = shown
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join("; ");
        findings.push(finding(
            Severity::Error,
            &file,
            Some(line),
            "global-floor",
            format!(
                "{message} {who}{}: the rule does not do what it says for them",
                if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                }
            ),
            &format!(
                "narrow `to`/`except` of `{rule}` to callers the global rule exempts, or ask the governance team \
                 for an exemption in the global rules"
            ),
        ));
    }
}

fn describe_column(column: &meshgate_catalog::Column) -> String {
    let mut parts = Vec::new();
    if !column.tags.is_empty() {
        parts.push(format!("tags {}", column.tags.join(", ")));
    }
    if let Some(c) = &column.classification {
        parts.push(format!("classification {c}"));
    }
    parts.join("; ")
}

/// A product whose tables or columns were removed or retyped since `before` must raise its
/// major version, and a major version that was served must stay until its sunset: its
/// consumers were promised a deprecation window.
fn breaking_changes(
    before: &Catalog,
    after: &Catalog,
    texts: &BTreeMap<String, String>,
    findings: &mut Vec<Finding>,
) {
    let now = meshgate_api::now_millis();
    for product in after.products() {
        let text = |p: &Product| texts.get(&p.source).map_or("", String::as_str);
        for old in before.versions(&product.id) {
            let kept = after
                .versions(&product.id)
                .iter()
                .find(|v| v.major().is_some() && v.major() == old.major());
            let Some(now_version) = kept else {
                let served = !matches!(old.lifecycle(now), meshgate_catalog::Lifecycle::Retired(_));
                if served && old.major() < product.major() {
                    findings.push(finding(
                        Severity::Error,
                        &product.source,
                        line_starting(text(product), "version:"),
                        "major-dropped",
                        format!(
                            "version {} of `{}` is no longer published, but it was served and its \
                             consumers get no deprecation window (version {} replaces it)",
                            old.version, product.id, product.version
                        ),
                        &format!(
                            "keep the version {} contract beside the new one, with `status: \
                             deprecated` and customProperties `sunset: YYYY-MM-DD`; remove it \
                             after that day",
                            old.version
                        ),
                    ));
                }
                continue;
            };
            findings.extend(same_major_breaks(old, now_version, text(now_version)));
        }
        // A version that was not semantic can only be compared with the one before.
        if let Some(old) = before.product(&product.id)
            && (old.major().is_none() || product.major().is_none())
            && old.version.split('.').next() == product.version.split('.').next()
        {
            findings.extend(same_major_breaks(old, product, text(product)));
        }
    }
}

/// A finding if `new`, of the same major version as `old`, removed or retyped its tables or
/// columns (`text` is `new`'s contract).
fn same_major_breaks(old: &Product, new: &Product, text: &str) -> Option<Finding> {
    let mut breaks = Vec::new();
    for table in &old.tables {
        let Some(now) = new.table(&table.name) else {
            breaks.push(format!("table `{}` removed", table.name));
            continue;
        };
        for column in &table.columns {
            match now.column(&column.name) {
                None => breaks.push(format!("column `{}.{}` removed", table.name, column.name)),
                Some(c) if c.data_type != column.data_type => breaks.push(format!(
                    "column `{}.{}` changed from {} to {}",
                    table.name, column.name, column.physical_type, c.physical_type
                )),
                Some(_) => {}
            }
        }
    }
    (!breaks.is_empty()).then(|| {
        finding(
            Severity::Error,
            &new.source,
            line_starting(text, "version:"),
            "breaking-change",
            format!(
                "{} since version {}, but the major version did not change ({})",
                breaks.join("; "),
                old.version,
                new.version
            ),
            "raise the major version (consumers of the old one keep it for the deprecation window), \
             or keep the old tables and columns",
        )
    })
}

fn finding(
    severity: Severity,
    file: &str,
    line: Option<usize>,
    check: &str,
    message: String,
    fix: &str,
) -> Finding {
    Finding {
        severity,
        file: file.to_string(),
        line,
        check: check.to_string(),
        // One finding, one line (planner messages span several).
        message: message.split_whitespace().collect::<Vec<_>>().join(" "),
        fix: fix.to_string(),
    }
}

fn load_error(check: &str, error: &LoadError, fix: &str) -> Finding {
    let message = match &error.rule {
        Some(rule) => format!("rule `{rule}`: {}", error.message),
        None => error.message.clone(),
    };
    finding(
        Severity::Error,
        &error.file,
        error.line,
        check,
        message,
        fix,
    )
}

fn is_snake_case(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

fn to_snake_case(name: &str) -> String {
    let mut out = String::new();
    for (i, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 && !out.ends_with('_') {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            out.push(c);
        } else if !out.ends_with('_') {
            out.push('_');
        }
    }
    out.trim_matches('_').to_string()
}

fn is_semver(version: &str) -> bool {
    let core = version.split(['-', '+']).next().unwrap_or("");
    let parts: Vec<&str> = core.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars().all(|c| c.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
        })
}

/// The first line that starts (after indentation) with `key`.
fn line_starting(text: &str, key: &str) -> Option<usize> {
    text.lines()
        .position(|l| l.trim_start().trim_start_matches("- ").starts_with(key))
        .map(|i| i + 1)
}

/// The line of a column's `name:` in a contract.
fn line_of_column(text: &str, column: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches("- ").trim();
            l.strip_prefix("name:")
                .is_some_and(|v| v.trim().trim_matches(['"', '\'']) == column)
        })
        .map(|i| i + 1)
}

/// The line a catalog error's path (`schema[0].properties[3] (email)`, `team`) points at.
fn line_of_path(text: &str, at: &str) -> Option<usize> {
    if let Some(name) = at
        .rsplit_once(" (")
        .and_then(|(_, rest)| rest.strip_suffix(')'))
    {
        return line_of_column(text, name);
    }
    let key = at.split(['.', '[']).next().unwrap_or(at);
    line_starting(text, &format!("{key}:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_versions() {
        assert!(is_snake_case("trade_id"));
        assert!(!is_snake_case("TradeId"));
        assert!(!is_snake_case("trade-id"));
        assert_eq!(to_snake_case("TradeId"), "trade_id");
        assert_eq!(to_snake_case("trade-id"), "trade_id");
        assert!(is_semver("1.0.0"));
        assert!(is_semver("2.10.3-rc.1"));
        assert!(!is_semver("1.0"));
        assert!(!is_semver("v1.0.0"));
        assert!(!is_semver("01.0.0"));
    }

    #[test]
    fn finds_lines_in_contracts() {
        let text =
            "id: a.b\nversion: 1\nschema:\n  - name: t\n    properties:\n      - name: email\n";
        assert_eq!(line_starting(text, "version:"), Some(2));
        assert_eq!(line_of_column(text, "email"), Some(6));
        assert_eq!(
            line_of_path(text, "schema[0].properties[0] (email)"),
            Some(6)
        );
        assert_eq!(line_of_path(text, "schema[0]"), Some(3));
    }
}
