//! Resolution: one caller, one table, one query -> one [`ResolvedTablePolicy`].
//!
//! Order of decisions, every one of which can only deny:
//! 1. the principal must be well formed;
//! 2. casbin must allow `read` on the product (deny overrides allow);
//! 3. the product must have a policy file;
//! 4. at least one grant-type row filter must select the caller; the caller's attributes
//!    must fill every template that applies;
//! 5. each column gets exactly one treatment: `hidden` beats a mask or token, which beats
//!    `clear`; the global rules' floor then applies (see [`crate::global`]): a product rule
//!    clearer than it gives way to it; a column no rule of either kind covers gets the
//!    built-in default (see [`default_treatment`]).

use std::collections::BTreeMap;
use std::sync::Arc;

use meshgate_catalog::{Catalog, Column, Product, Table};
use sqlparser::ast::Expr;

use crate::access::AccessControl;
use crate::error::{Denial, NotAdmitted};
use crate::grants::GrantLayer;
use crate::principal::Principal;
use crate::rules::{FilterKind, ProductPolicy};
use crate::subjects::SubjectSet;
use crate::treatment::Treatment;

/// Classifications that may be shown in clear without a rule. Anything else, including no
/// classification at all, counts as sensitive.
pub const OPEN_CLASSIFICATIONS: &[&str] = &["public", "internal"];

/// Tags that make a column sensitive whatever its classification.
pub const SENSITIVE_TAGS: &[&str] = &["pii", "pci", "phi", "sensitive", "secret"];

/// The federated, global rule for columns that no product rule covers: sensitive columns
/// (classified other than public/internal, unclassified, or tagged pii/pci/phi/sensitive/
/// secret) are hidden; the rest are clear. Owners reveal a sensitive column only with an
/// explicit rule.
pub fn default_treatment(column: &Column) -> Treatment {
    let open_class = column
        .classification
        .as_deref()
        .is_some_and(|c| OPEN_CLASSIFICATIONS.contains(&c));
    let sensitive_tag = column
        .tags
        .iter()
        .any(|t| SENSITIVE_TAGS.contains(&t.as_str()));
    if open_class && !sensitive_tag {
        Treatment::Clear
    } else {
        Treatment::Hidden
    }
}

/// A row filter that applies to the caller, with the caller's attributes bound as literals.
#[derive(Debug, Clone, PartialEq)]
pub struct BoundFilter {
    pub rule: String,
    pub expr: Expr,
}

/// What one caller sees of one table in one query.
#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedTablePolicy {
    pub principal: String,
    pub product: String,
    pub domain: String,
    pub table: String,
    /// `<product>@v<version>`.
    pub policy_id: String,
    /// How the caller got in, and so which rows they may see...
    pub admission: Admission,
    /// ...that also match all of these.
    pub restrictions: Vec<BoundFilter>,
    /// Every column of the table in manifest order, with its treatment and the rule that
    /// decided it (`None` when the global default decided).
    pub columns: Vec<ResolvedColumn>,
    /// Whether the caller's own leakproof predicates may enter the sealed scan (see
    /// [`ProductPolicy::pushdown_user_predicates`](crate::ProductPolicy)).
    pub pushdown_user_predicates: bool,
}

/// How a caller was admitted to a table, which decides the rows they may see before
/// restrictions. Typed, so that "admitted by a grant" is never confused with a filter that
/// happens to select every row.
#[derive(Debug, Clone, PartialEq)]
pub enum Admission {
    /// By the policy files: the caller sees the rows any of these grant-type row filters of
    /// the product policy selects (never empty).
    Files(Vec<BoundFilter>),
    /// By access grants (their ids, sorted): the caller sees every row the product policy
    /// shows any reader; the rows the grants admit are among the restrictions.
    Grants(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedColumn {
    pub name: String,
    pub treatment: Treatment,
    pub rule: Option<String>,
    /// For a caller admitted by several access grants that do not all name this column:
    /// the rows of the grants that do. The column's value is shown on those rows only and
    /// is NULL on the others, so that a cell is visible only if one single grant admits
    /// both its row and its column.
    pub only_where: Option<BoundFilter>,
}

impl ResolvedColumn {
    /// The treatment as audit and catalog readers see it: with the rule that limits it to
    /// some rows, if any.
    pub fn describe(&self) -> String {
        match &self.only_where {
            None => self.treatment.to_string(),
            Some(only) => format!("{} on rows of {} only", self.treatment, only.rule),
        }
    }
}

impl ResolvedTablePolicy {
    /// Columns the caller can see (not hidden), in table order.
    pub fn visible_columns(&self) -> impl Iterator<Item = &ResolvedColumn> {
        self.columns
            .iter()
            .filter(|c| c.treatment != Treatment::Hidden)
    }

    /// The access grants that admitted the caller, by id (empty when the policy files did).
    pub fn grant_ids(&self) -> &[String] {
        match &self.admission {
            Admission::Files(_) => &[],
            Admission::Grants(ids) => ids,
        }
    }

    /// The row filters applied, admitting ones first, for audit.
    pub fn row_filter_rules(&self) -> impl Iterator<Item = &str> {
        let admitting = match &self.admission {
            Admission::Files(filters) => filters.as_slice(),
            Admission::Grants(_) => &[],
        };
        admitting
            .iter()
            .chain(&self.restrictions)
            .map(|f| f.rule.as_str())
    }

    /// The ids of every rule that shaped this resolution, for audit.
    pub fn applied_rules(&self) -> Vec<&str> {
        self.row_filter_rules()
            .chain(self.columns.iter().filter_map(|c| c.rule.as_deref()))
            .collect()
    }
}

/// What decides one column for one caller: the product rule that applies to them (hidden
/// before a protection before clear) and the global rules' floor.
#[derive(Debug, Clone)]
pub struct ColumnDecision<'a> {
    pub product_rule: Option<&'a crate::rules::ColumnRule>,
    pub floor: Option<(Treatment, &'a crate::global::GlobalColumnRule)>,
}

impl ColumnDecision<'_> {
    /// The treatment, and the rule that decided it (`None`: the built-in default): the
    /// product rule unless it is clearer than the floor (see [`crate::global`]).
    pub fn outcome(&self, column: &Column) -> (Treatment, Option<String>) {
        match (self.product_rule, &self.floor) {
            (Some(mine), Some((floor, global)))
                if crate::global::under_floor(&mine.treatment, floor) =>
            {
                (floor.clone(), Some(global.rule_name()))
            }
            (Some(mine), _) => (mine.treatment.clone(), Some(mine.origin.id.clone())),
            (None, Some((floor, global))) => (floor.clone(), Some(global.rule_name())),
            (None, None) => (default_treatment(column), None),
        }
    }

    /// The product rule, when the global floor overrides it.
    pub fn overridden(&self) -> Option<&crate::rules::ColumnRule> {
        match (self.product_rule, &self.floor) {
            (Some(mine), Some((floor, _)))
                if crate::global::under_floor(&mine.treatment, floor) =>
            {
                Some(mine)
            }
            _ => None,
        }
    }
}

/// Everything the policy layer knows, loaded and validated together. Immutable: a reload
/// builds a new one and swaps it in whole.
#[derive(Debug)]
pub struct PolicySet {
    pub(crate) access: Arc<AccessControl>,
    pub(crate) products: Arc<BTreeMap<String, ProductPolicy>>,
    pub(crate) fingerprint: String,
    /// The sources this version was built from, to layer grants on them.
    pub(crate) sources: Arc<crate::PolicySources>,
    pub(crate) grants: Option<Arc<GrantLayer>>,
    /// The governance team's floors (`policies/global.toml`), when present.
    pub(crate) global: Option<Arc<crate::global::GlobalRules>>,
    /// What this set has already resolved (empty in every new set: see [`crate::memo`]).
    pub(crate) resolved: crate::memo::Resolutions<Result<ResolvedTablePolicy, Denial>>,
}

impl PolicySet {
    /// This policy version with `grants`, a snapshot of the grants in force at `now` (as of
    /// store generation `generation`), layered on (see [`GrantLayer::new`]).
    pub async fn with_grants(
        &self,
        catalog: &Catalog,
        grants: Vec<meshgate_api::Grant>,
        generation: i64,
        now: meshgate_api::Millis,
    ) -> Result<PolicySet, crate::LoadError> {
        let layer = GrantLayer::new(
            catalog,
            grants,
            &self.sources,
            self.access.checks_denials(),
            generation,
            now,
        )
        .await?;
        Ok(PolicySet {
            access: Arc::clone(&self.access),
            products: Arc::clone(&self.products),
            fingerprint: self.fingerprint.clone(),
            sources: Arc::clone(&self.sources),
            grants: Some(Arc::new(layer)),
            global: self.global.clone(),
            resolved: Default::default(),
        })
    }

    /// The grant layer, when grants are enforced.
    pub fn grant_layer(&self) -> Option<&GrantLayer> {
        self.grants.as_deref()
    }
}

/// The access grants that admitted one caller, with their row filters bound to the caller.
/// A grant whose filter needs an attribute the caller lacks admits nothing (and is logged);
/// the others stay in force.
struct GrantScope {
    grants: Vec<BoundGrant>,
}

struct BoundGrant {
    id: String,
    /// `None`: every row.
    rows: Option<Expr>,
    /// `None`: every column (`<table>.<column>` otherwise).
    columns: Option<Vec<String>>,
}

impl BoundGrant {
    fn names(&self, qualified: &str) -> bool {
        self.columns
            .as_ref()
            .is_none_or(|c| c.iter().any(|n| n == qualified))
    }
}

impl GrantScope {
    fn bind(terms: &[crate::grants::GrantTerms], principal: &Principal) -> Self {
        let mut grants = Vec::with_capacity(terms.len());
        for (grant, filter) in terms {
            let rows = match filter.as_ref().map(|f| f.bind(principal)) {
                None => None,
                Some(Ok(expr)) => Some(expr),
                Some(Err(attribute)) => {
                    tracing::warn!(
                        grant = %grant.id,
                        principal = principal.id(),
                        %attribute,
                        "the grant's row filter needs an attribute the caller does not carry; the grant admits nothing"
                    );
                    continue;
                }
            };
            grants.push(BoundGrant {
                id: grant.id.clone(),
                rows,
                columns: grant.columns.clone(),
            });
        }
        grants.sort_by(|a, b| a.id.cmp(&b.id));
        Self { grants }
    }

    fn ids(&self) -> Vec<String> {
        self.grants.iter().map(|g| g.id.clone()).collect()
    }

    fn rule(&self) -> String {
        self.rule_of(|_| true)
    }

    /// `grant:<id>,grant:<id>...` of the grants `which` selects.
    fn rule_of(&self, which: impl Fn(&BoundGrant) -> bool) -> String {
        self.grants
            .iter()
            .filter(|g| which(g))
            .map(|g| format!("grant:{}", g.id))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The rows at least one of the grants `which` selects admits; `None` when one of them
    /// admits every row, `false` when it selects none.
    fn rows(&self, which: impl Fn(&BoundGrant) -> bool) -> Option<Expr> {
        let mut any: Option<Expr> = None;
        if !self.grants.iter().any(&which) {
            return Some(Expr::value(sqlparser::ast::Value::Boolean(false)));
        }
        for grant in self.grants.iter().filter(|g| which(g)) {
            let expr = Expr::Nested(Box::new(grant.rows.clone()?));
            any = Some(match any {
                None => expr,
                Some(left) => Expr::BinaryOp {
                    left: Box::new(left),
                    op: sqlparser::ast::BinaryOperator::Or,
                    right: Box::new(expr),
                },
            });
        }
        any
    }
}

/// How a caller got in: by the policy files, or by grants (with their terms).
enum Entry<'a> {
    Files,
    Grants(&'a [crate::grants::GrantTerms]),
}

impl PolicySet {
    /// A short hash of every policy source, identifying this policy version.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    pub fn access(&self) -> &AccessControl {
        &self.access
    }

    /// The files this version was loaded from.
    pub fn sources(&self) -> &crate::PolicySources {
        &self.sources
    }

    pub fn product_policy(&self, product: &str) -> Option<&ProductPolicy> {
        self.products.get(product)
    }

    pub fn product_policies(&self) -> impl Iterator<Item = &ProductPolicy> {
        self.products.values()
    }

    /// Casbin's coarse decision: may `principal` read `product` at all?
    pub fn check_access(
        &self,
        principal: &Principal,
        product: &Product,
    ) -> Result<SubjectSet, Denial> {
        self.admit(principal, product).map(|(subjects, _)| subjects)
    }

    fn admit(
        &self,
        principal: &Principal,
        product: &Product,
    ) -> Result<(SubjectSet, Entry<'_>), Denial> {
        if !principal.is_well_formed() {
            return Err(Denial::MalformedPrincipal {
                principal: principal.id().to_string(),
            });
        }
        let engine_failure = |reason| Denial::EngineFailure {
            product: product.id.clone(),
            reason,
        };
        let subjects = self.access.subjects(principal, &product.domain);
        if self
            .access
            .enforce(&subjects, &product.domain, &product.id)
            .map_err(engine_failure)?
        {
            return Ok((subjects, Entry::Files));
        }
        // Not by the files; by a grant in force? Only if no deny line of the files matches
        // (see `grants.rs`).
        let key = (principal.id().to_string(), product.id.clone());
        let mut why = NotAdmitted::NoGrant;
        if let Some(layer) = &self.grants {
            let terms = layer.terms.get(&key).filter(|t| !t.is_empty());
            if let Some(terms) = terms {
                let denied = self.access.denies(&subjects, &product.domain, &product.id);
                let admitted = match (denied, &layer.access) {
                    (Some(denied), _) => !denied.map_err(engine_failure)?,
                    // Another model effect: casbin with the grants' lines decides.
                    (None, Some(access)) => access
                        .enforce(&subjects, &product.domain, &product.id)
                        .map_err(engine_failure)?,
                    (None, None) => false,
                };
                if admitted {
                    return Ok((subjects, Entry::Grants(terms)));
                }
                why = NotAdmitted::DeniedByRule {
                    rules_file: self.rules_file_name(),
                    grant: terms.first().map(|(g, _)| g.id.clone()),
                };
            } else if let Some(lapsed) = layer.lapsed.get(&key) {
                // The most recent of the caller's grants explains the denial.
                if let Some(grant) = lapsed
                    .iter()
                    .max_by_key(|g| g.changed_at.max(g.valid_until))
                {
                    why = if grant.state == meshgate_api::GrantState::Suspended {
                        NotAdmitted::GrantSuspended {
                            grant: grant.id.clone(),
                            reason: grant.change_reason.clone(),
                        }
                    } else {
                        NotAdmitted::GrantExpired {
                            grant: grant.id.clone(),
                            at: grant.valid_until,
                        }
                    };
                }
            }
        }
        if why == NotAdmitted::NoGrant && self.deny_line_matches(&subjects, product)? {
            why = NotAdmitted::DeniedByRule {
                rules_file: self.rules_file_name(),
                grant: None,
            };
        }
        let contact = product
            .support
            .first()
            .map(|s| match &s.url {
                Some(url) => format!(" via {} ({url})", s.channel),
                None => format!(" via {}", s.channel),
            })
            .unwrap_or_default();
        Err(Denial::NotPermitted {
            principal: principal.id().to_string(),
            product: product.id.clone(),
            owner: format!(
                "its owner (team `{}`: {}){contact}",
                product.owner.team,
                product.owner.owners.join(", ")
            ),
            why: Box::new(why),
        })
    }

    /// The access rules' file name, without the directory it was read from (a denial goes to
    /// the caller, who has no business with the gateway's paths).
    fn rules_file_name(&self) -> String {
        let name = &self.sources.access_rules.name;
        std::path::Path::new(name)
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| name.clone())
    }

    /// Does a deny line of the access rules close `product` to `principal`, so that no grant
    /// could admit them? `false` when the model's effect is not deny-overrides-allow (the
    /// question has no answer apart from casbin's whole decision).
    pub fn closed_by_rule(&self, principal: &Principal, product: &Product) -> Result<bool, Denial> {
        if !principal.is_well_formed() {
            return Err(Denial::MalformedPrincipal {
                principal: principal.id().to_string(),
            });
        }
        self.deny_line_matches(&self.access.subjects(principal, &product.domain), product)
    }

    fn deny_line_matches(&self, subjects: &SubjectSet, product: &Product) -> Result<bool, Denial> {
        match self.access.denies(subjects, &product.domain, &product.id) {
            Some(denied) => denied.map_err(|reason| Denial::EngineFailure {
                product: product.id.clone(),
                reason,
            }),
            None => Ok(false),
        }
    }

    /// Resolve what `principal` sees of one table. Any doubt is a [`Denial`]. Resolved once
    /// per set, caller and table (see [`crate::memo`]).
    pub fn resolve(
        &self,
        principal: &Principal,
        product: &Product,
        table: &Table,
    ) -> Result<ResolvedTablePolicy, Denial> {
        let key = (
            product.id.as_str(),
            product.version.as_str(),
            table.name.as_str(),
        );
        self.resolved.get_or(principal, key, || {
            self.resolve_afresh(principal, product, table)
        })
    }

    /// [`PolicySet::resolve`] without the memo: what a first resolution costs (benchmarks),
    /// and the reference for what the memo hands out (tests).
    pub fn resolve_afresh(
        &self,
        principal: &Principal,
        product: &Product,
        table: &Table,
    ) -> Result<ResolvedTablePolicy, Denial> {
        let (subjects, entry) = self.admit(principal, product)?;
        let policy = self
            .products
            .get(&product.id)
            .ok_or_else(|| Denial::NoPolicy {
                product: product.id.clone(),
                team: product.owner.team.clone(),
            })?;
        let policy_id = policy.policy_id();
        let unresolvable = |reason: String| Denial::Unresolvable {
            principal: principal.id().to_string(),
            table: format!("{}.{}", product.domain, table.sql_name),
            policy: policy_id.clone(),
            reason,
        };

        let mut grants = Vec::new();
        let mut restrictions = Vec::new();
        for rule in policy.row_filters.iter().filter(|r| r.table == table.name) {
            if !subjects.selected_by(&rule.to, &rule.except) {
                continue;
            }
            let expr = rule.template.bind(principal).map_err(|attribute| {
                unresolvable(format!(
                    "row filter `{}` needs the caller attribute `{attribute}`, which `{}` does not carry",
                    rule.origin.id,
                    principal.id()
                ))
            })?;
            let bound = BoundFilter {
                rule: rule.origin.id.clone(),
                expr,
            };
            match rule.kind {
                FilterKind::Grant => grants.push(bound),
                FilterKind::Restriction => restrictions.push(bound),
            }
        }
        // A grant-admitted caller sees what the product policy shows any reader, narrowed
        // per grant (see `GrantScope`); the files' row grants do not apply to them.
        let scope = match entry {
            Entry::Grants(terms) => Some(GrantScope::bind(terms, principal)),
            Entry::Files => None,
        };
        let admission = match &scope {
            Some(scope) => {
                if scope.grants.is_empty() {
                    return Err(unresolvable(
                        "none of the access grants in force can be applied to this caller (a grant's \
                         row filter needs an attribute the caller does not carry); ask the product's \
                         owner to fix the grant"
                            .into(),
                    ));
                }
                // Rows: those at least one grant admits.
                if let Some(expr) = scope.rows(|_| true) {
                    restrictions.push(BoundFilter {
                        rule: scope.rule(),
                        expr,
                    });
                }
                Admission::Grants(scope.ids())
            }
            None if grants.is_empty() => {
                return Err(Denial::NoRowGrant {
                    principal: principal.id().to_string(),
                    product: product.id.clone(),
                    table: format!("{}.{}", product.domain, table.sql_name),
                    policy: policy_id,
                });
            }
            None => Admission::Files(grants),
        };

        let caller = crate::global::Caller {
            subjects: &subjects,
            in_domain: self.in_domain(principal, &subjects, product),
        };
        let mut columns = Vec::with_capacity(table.columns.len());
        for column in &table.columns {
            let (treatment, rule) = self
                .decide_column(policy, &caller, product, table, column)
                .map_err(unresolvable)?
                .outcome(column);
            columns.push(ResolvedColumn {
                name: column.name.clone(),
                treatment,
                rule,
                only_where: None,
            });
        }
        // Cells: a column shows only on the rows of the grants that name it. Where that is
        // every grant, the row restriction above already says so; where no grant names it,
        // it is hidden.
        if let Some(scope) = &scope {
            for column in &mut columns {
                if column.treatment == Treatment::Hidden {
                    continue;
                }
                let qualified = format!("{}.{}", table.name, column.name);
                let names = |g: &BoundGrant| g.names(&qualified);
                if !scope.grants.iter().any(names) {
                    column.treatment = Treatment::Hidden;
                    column.rule = Some(scope.rule());
                } else if !scope.grants.iter().all(names) {
                    column.only_where = scope.rows(names).map(|expr| BoundFilter {
                        rule: scope.rule_of(names),
                        expr,
                    });
                }
            }
        }
        if columns.iter().all(|c| c.treatment == Treatment::Hidden) {
            return Err(unresolvable(
                "every column is hidden for this caller".into(),
            ));
        }

        Ok(ResolvedTablePolicy {
            principal: principal.id().to_string(),
            product: product.id.clone(),
            domain: product.domain.clone(),
            table: table.sql_name.clone(),
            policy_id,
            admission,
            restrictions,
            columns,
            pushdown_user_predicates: policy.pushdown_user_predicates,
        })
    }

    /// What the product's rules and the global rules each say of one column for one caller
    /// (see [`ColumnDecision`]).
    fn decide_column<'a>(
        &'a self,
        policy: &'a ProductPolicy,
        caller: &crate::global::Caller<'_>,
        product: &Product,
        table: &Table,
        column: &Column,
    ) -> Result<ColumnDecision<'a>, String> {
        let applicable: Vec<_> = policy
            .columns
            .iter()
            .filter(|r| r.table == table.name && r.column == column.name)
            .filter(|r| caller.subjects.selected_by(&r.to, &r.except))
            .collect();
        let first = |wanted: fn(&Treatment) -> bool| {
            applicable.iter().copied().find(|r| wanted(&r.treatment))
        };
        let product_rule = if let Some(rule) = first(|t| *t == Treatment::Hidden) {
            Some(rule)
        } else if let Some(rule) = first(Treatment::is_protection) {
            // Load-time checks make two protections for one caller impossible; if it
            // happens anyway, refuse rather than pick one.
            if let Some(second) = applicable
                .iter()
                .find(|r| r.treatment.is_protection() && r.treatment != rule.treatment)
            {
                return Err(format!(
                    "column `{}` resolves to both `{}` (rule `{}`) and `{}` (rule `{}`)",
                    column.name, rule.treatment, rule.origin.id, second.treatment, second.origin.id
                ));
            }
            Some(rule)
        } else {
            first(|t| *t == Treatment::Clear)
        };
        let floor = match &self.global {
            Some(global) => global
                .floor(product, column, caller)
                .map_err(|m| format!("global rules: {m}"))?,
            None => None,
        };
        Ok(ColumnDecision {
            product_rule,
            floor,
        })
    }

    /// [`PolicySet::resolve`]'s decision for one column, before grants narrow it: `None`
    /// when the product has no policy. For `meshgate lint`, which asks whether a product
    /// rule gives way to a global one.
    pub fn column_decision(
        &self,
        principal: &Principal,
        product: &Product,
        table: &Table,
        column: &Column,
    ) -> Result<Option<ColumnDecision<'_>>, String> {
        let Some(policy) = self.products.get(&product.id) else {
            return Ok(None);
        };
        let subjects = self.access.subjects(principal, &product.domain);
        let caller = crate::global::Caller {
            subjects: &subjects,
            in_domain: self.in_domain(principal, &subjects, product),
        };
        self.decide_column(policy, &caller, product, table, column)
            .map(Some)
    }

    /// Whether the caller belongs to `product`'s own domain, as global rules' subject
    /// `domain:${product.domain}` means it: its `domain` attribute names the domain, it owns
    /// or is a delegate of the product, or it holds a role the access rules grant in that
    /// domain alone.
    pub fn in_domain(
        &self,
        principal: &Principal,
        subjects: &SubjectSet,
        product: &Product,
    ) -> bool {
        principal.attribute("domain") == Some(product.domain.as_str())
            || product.owner.decides(principal.id())
            || self
                .access
                .domain_roles(&product.domain)
                .is_some_and(|roles| !roles.is_disjoint(subjects.roles()))
    }

    /// The governance team's global rules, when the mesh has them.
    pub fn global(&self) -> Option<&crate::global::GlobalRules> {
        self.global.as_deref()
    }

    /// Resolve by SQL name (`<domain>.<table>`), for callers that only have the name.
    pub fn resolve_by_name(
        &self,
        catalog: &Catalog,
        principal: &Principal,
        domain: &str,
        table: &str,
    ) -> Option<Result<ResolvedTablePolicy, Denial>> {
        let (product, table) = catalog.table(domain, table)?;
        Some(self.resolve(principal, product, table))
    }
}
