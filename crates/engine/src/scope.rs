//! One caller, one policy version, one query: which product tables and views the caller
//! may read, resolved once each.
//!
//! Resolution happens when the planner (or a listing) looks a name up: the caller's policy
//! for that table is resolved once per query and compiled into a [`ProtectedTable`]. A
//! published view is planned as the caller (invoker rights) through the [`ViewPlanner`] the
//! query layer provides: every table it reads resolves through this same scope, so each is
//! wrapped in the caller's policy. Anything that does not resolve denies.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::{TableProvider, view::ViewTable};
use datafusion::common::TableReference;
use datafusion::logical_expr::LogicalPlan;
use meshgate_catalog::{Catalog, Lifecycle, Product, Table};
use meshgate_policy::{Denial, PolicySet, Principal};
use meshgate_storage::IoCounters;

use crate::error::GatewayError;
use crate::names::{CATALOG, TableKind};
use crate::protected::ProtectedTable;
use crate::shared::{MeshState, Shared};

/// Plans a published view's definition as the scope's caller. The query layer implements
/// it (planning needs the catalog this scope feeds, so it sits above).
#[async_trait]
pub(crate) trait ViewPlanner: std::fmt::Debug + Send + Sync {
    async fn plan_view(
        &self,
        scope: &Arc<QueryScope>,
        sql: &str,
    ) -> Result<LogicalPlan, GatewayError>;
}

/// A table or view as one caller sees it in one query.
#[derive(Debug, Clone)]
pub(crate) enum Resolved {
    Table(Arc<ProtectedTable>),
    View {
        product: String,
        domain: String,
        name: String,
        view: Arc<ViewTable>,
    },
}

impl Resolved {
    pub(crate) fn provider(&self) -> Arc<dyn TableProvider> {
        match self {
            Self::Table(t) => Arc::clone(t) as _,
            Self::View { view, .. } => Arc::clone(view) as _,
        }
    }

    pub(crate) fn domain(&self) -> &str {
        match self {
            Self::Table(t) => &t.policy().domain,
            Self::View { domain, .. } => domain,
        }
    }

    pub(crate) fn name(&self) -> &str {
        match self {
            Self::Table(t) => &t.policy().table,
            Self::View { name, .. } => name,
        }
    }

    pub(crate) fn product(&self) -> &str {
        match self {
            Self::Table(t) => &t.policy().product,
            Self::View { product, .. } => product,
        }
    }

    pub(crate) fn kind(&self) -> TableKind {
        match self {
            Self::Table(_) => TableKind::Table,
            Self::View { .. } => TableKind::View,
        }
    }
}

pub(crate) type Resolution = Result<Resolved, Denial>;

/// One caller, one policy version, one query.
#[derive(Debug)]
pub(crate) struct QueryScope {
    shared: Arc<Shared>,
    /// The mesh version this query runs on, from its start to its end.
    mesh: Arc<MeshState>,
    planner: Arc<dyn ViewPlanner>,
    principal: Principal,
    policies: Arc<PolicySet>,
    resolved: Mutex<BTreeMap<(String, String), Resolution>>,
    /// Tables and views the statement (or a view it reads) named, as opposed to those only a
    /// listing resolved: the audit attributes the query to them.
    named: Mutex<BTreeSet<(String, String)>>,
    /// Views being planned right now, to refuse a view that (indirectly) reads itself.
    planning: Mutex<BTreeSet<(String, String)>>,
    /// Whether every table and view has been resolved (listings need views, which plan
    /// asynchronously, while DataFusion lists tables synchronously).
    listed: AtomicBool,
    /// This query's storage requests.
    pub(crate) io: Arc<IoCounters>,
    /// The schema unqualified table names resolve in (a session option).
    default_schema: Option<String>,
}

impl QueryScope {
    pub(crate) fn new(
        shared: Arc<Shared>,
        mesh: Arc<MeshState>,
        planner: Arc<dyn ViewPlanner>,
        principal: Principal,
        policies: Arc<PolicySet>,
        default_schema: Option<String>,
    ) -> Self {
        Self {
            shared,
            mesh,
            planner,
            principal,
            policies,
            default_schema,
            resolved: Mutex::new(BTreeMap::new()),
            named: Mutex::new(BTreeSet::new()),
            planning: Mutex::new(BTreeSet::new()),
            listed: AtomicBool::new(false),
            io: Arc::new(IoCounters::default()),
        }
    }

    /// Remember the product tables a statement's text mentions (`schema.table`, or a bare
    /// name in the default schema), before it is checked or planned.
    pub(crate) fn mention(&self, references: &[TableReference]) {
        let Ok(mut named) = self.named.lock() else {
            return;
        };
        for reference in references {
            let schema = match reference {
                TableReference::Bare { .. } => self.default_schema.as_deref(),
                TableReference::Partial { schema, .. } => Some(schema.as_ref()),
                TableReference::Full {
                    catalog, schema, ..
                } if catalog.as_ref() == CATALOG => Some(schema.as_ref()),
                TableReference::Full { .. } => None,
            };
            if let Some(schema) = schema
                && self.mesh.catalog.table(schema, reference.table()).is_some()
            {
                named.insert((schema.to_string(), reference.table().to_string()));
            }
        }
    }

    /// Every product table and view this query named, and, when it listed the catalog
    /// (information_schema, `SHOW ...`), every one the listing showed: `(product, table,
    /// Ok(policy id) | Err(()) when denied, or named by a statement refused before it was
    /// resolved)`, in name order.
    pub(crate) fn touched(&self) -> Vec<(String, String, Result<Option<String>, ()>)> {
        let (Ok(resolved), Ok(named)) = (self.resolved.lock(), self.named.lock()) else {
            return Vec::new();
        };
        let listed = self.listed.load(Ordering::Acquire);
        let keys: BTreeSet<&(String, String)> = named
            .iter()
            .chain(
                resolved
                    .iter()
                    .filter(|(_, r)| listed && r.is_ok())
                    .map(|(k, _)| k),
            )
            .collect();
        keys.into_iter()
            .filter_map(|key| {
                let (product, table) = self.mesh.catalog.table(&key.0, &key.1)?;
                let outcome = match resolved.get(key) {
                    Some(Ok(Resolved::Table(t))) => Ok(Some(t.policy().policy_id.clone())),
                    Some(Ok(Resolved::View { .. })) => Ok(None),
                    Some(Err(_)) | None => Err(()),
                };
                Some((product.id.clone(), table.sql_name.clone(), outcome))
            })
            .collect()
    }

    /// What the consumer should know about the products the statement (or a view it reads)
    /// names: each deprecated one, with its last day served.
    pub(crate) fn warnings(&self) -> Vec<String> {
        let named = match self.named.lock() {
            Ok(named) => named.clone(),
            Err(_) => return Vec::new(),
        };
        let now = meshgate_governance::now_millis();
        let mut products = BTreeSet::new();
        for (domain, name) in &named {
            if let Some((product, table)) = self.mesh.catalog.table(domain, name)
                && let Lifecycle::Deprecated(sunset) = product.lifecycle(now)
            {
                products.insert(format!(
                    "product `{}` (version {}) is deprecated and served until {} (UTC); {}",
                    product.id,
                    product.version,
                    sunset.date,
                    replacement(&self.mesh.catalog, product, table)
                ));
            }
        }
        products.into_iter().collect()
    }

    /// [`QueryScope::resolve`] for a name the statement itself (or a view it reads) uses.
    pub(crate) async fn resolve_named(
        self: &Arc<Self>,
        domain: &str,
        name: &str,
    ) -> Option<Resolution> {
        if let Ok(mut named) = self.named.lock() {
            named.insert((domain.to_string(), name.to_string()));
        }
        self.resolve(domain, name).await
    }

    pub(crate) fn shared(&self) -> &Shared {
        &self.shared
    }

    /// The mesh version of this query.
    pub(crate) fn mesh(&self) -> &MeshState {
        &self.mesh
    }

    /// The catalog of this query's mesh version.
    pub(crate) fn catalog(&self) -> &meshgate_catalog::Catalog {
        &self.mesh.catalog
    }

    /// The schema unqualified names resolve in, if the session set one.
    pub(crate) fn default_schema(&self) -> Option<&str> {
        self.default_schema.as_deref()
    }

    pub(crate) fn principal(&self) -> &Principal {
        &self.principal
    }

    /// The mesh version and the policy version (grants included) this scope resolves under.
    pub(crate) fn versions(&self) -> (&Arc<MeshState>, &Arc<PolicySet>) {
        (&self.mesh, &self.policies)
    }

    /// Whether this scope was resolved under exactly `mesh` and `policies` (the same
    /// versions, not equal ones).
    pub(crate) fn same_versions(&self, mesh: &Arc<MeshState>, policies: &Arc<PolicySet>) -> bool {
        Arc::ptr_eq(&self.mesh, mesh) && Arc::ptr_eq(&self.policies, policies)
    }

    pub(crate) fn policies(&self) -> &PolicySet {
        &self.policies
    }

    /// The policy version this scope resolves with.
    pub(crate) fn policy_version(&self) -> String {
        match self.policies.grant_layer() {
            Some(layer) => format!(
                "{}+grants.{}",
                self.policies.fingerprint(),
                layer.generation
            ),
            None => self.policies.fingerprint().to_string(),
        }
    }

    fn cached(&self, key: &(String, String)) -> Option<Resolution> {
        self.resolved.lock().ok()?.get(key).cloned()
    }

    fn store(&self, key: (String, String), resolution: Resolution) {
        if let Ok(mut cache) = self.resolved.lock() {
            cache.insert(key, resolution);
        }
    }

    /// The caller's view of `domain.name`; `None` if no product publishes that name.
    pub(crate) async fn resolve(self: &Arc<Self>, domain: &str, name: &str) -> Option<Resolution> {
        let key = (domain.to_string(), name.to_string());
        if let Some(hit) = self.cached(&key) {
            return Some(hit);
        }
        let (product, table) = self.mesh.catalog.table(domain, name)?;
        if let Some(retired) = retired(&self.mesh.catalog, product, table) {
            let resolution: Resolution = Err(retired);
            self.store(key, resolution.clone());
            return Some(resolution);
        }
        let resolution = match &table.view {
            // Boxed: planning a view resolves the tables it reads, possibly views again.
            Some(sql) => Box::pin(self.plan_view(product, table, sql)).await,
            None => self.resolve_table(product, table),
        };
        self.store(key, resolution.clone());
        Some(resolution)
    }

    fn resolve_table(&self, product: &Product, table: &Table) -> Resolution {
        let policy = self.policies.resolve(&self.principal, product, table)?;
        let policy_id = policy.policy_id.clone();
        self.shared.compiler(&self.mesh).protected_table(policy, Arc::clone(&self.io), self.policies.fingerprint()).map(|t| Resolved::Table(Arc::new(t))).map_err(|reason| {
            // A policy that does not compile denies; it never falls back to raw data.
            tracing::error!(principal = self.principal.id(), product = %product.id, table = %table.sql_name, %reason, "policy does not compile");
            Denial::Unresolvable {
                principal: self.principal.id().to_string(),
                table: format!("{}.{}", product.domain, table.sql_name),
                policy: policy_id,
                reason: "the policy could not be compiled; the product's owner has been told".into(),
            }
        })
    }

    /// Plan a published view as the caller. Reading it needs `read` on its product, and every
    /// table it reads is resolved for the caller like any other reference.
    async fn plan_view(self: &Arc<Self>, product: &Product, view: &Table, sql: &str) -> Resolution {
        self.policies.check_access(&self.principal, product)?;
        let key = (product.domain.clone(), view.sql_name.clone());
        let qualified = format!("{}.{}", product.domain, view.sql_name);
        let unresolvable = |reason: String| Denial::Unresolvable {
            principal: self.principal.id().to_string(),
            table: qualified.clone(),
            policy: format!("view {qualified}"),
            reason,
        };
        if !self
            .planning
            .lock()
            .map(|mut p| p.insert(key.clone()))
            .unwrap_or(false)
        {
            return Err(unresolvable("the view reads itself".into()));
        }
        let planned = self.planner.plan_view(self, sql).await;
        if let Ok(mut planning) = self.planning.lock() {
            planning.remove(&key);
        }
        let plan = match planned {
            Ok(plan) => plan,
            Err(GatewayError::Denied(denial)) => return Err(denial),
            Err(error) => {
                tracing::warn!(principal = self.principal.id(), view = %qualified, %error, "view does not plan for this caller");
                return Err(unresolvable(
                    "its definition reads columns or tables your policy does not show you, or no longer plans".into(),
                ));
            }
        };
        let planned_names: Vec<&str> = plan
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().as_str())
            .collect();
        let declared: Vec<&str> = view.columns.iter().map(|c| c.name.as_str()).collect();
        if planned_names != declared {
            tracing::error!(view = %qualified, ?planned_names, ?declared, "view columns differ from its manifest");
            return Err(unresolvable(
                "its columns differ from its manifest; the product's owner must fix it".into(),
            ));
        }
        Ok(Resolved::View {
            product: product.id.clone(),
            domain: product.domain.clone(),
            name: view.sql_name.clone(),
            view: Arc::new(ViewTable::new(plan, Some(sql.to_string()))),
        })
    }

    /// Resolve every table and view, so that synchronous listings see views too.
    pub(crate) async fn prepare_listing(self: &Arc<Self>) {
        if self.listed.load(Ordering::Acquire) {
            return;
        }
        let names: Vec<(String, String)> = self
            .mesh
            .catalog
            .all_versions()
            .flat_map(|p| {
                p.tables
                    .iter()
                    .map(|t| (p.domain.clone(), t.sql_name.clone()))
            })
            .collect();
        for (domain, name) in names {
            self.resolve(&domain, &name).await;
        }
        self.listed.store(true, Ordering::Release);
    }

    /// What the caller may read in a domain, in name order. Tables resolve on demand; views
    /// appear once resolved (see [`QueryScope::prepare_listing`]).
    pub(crate) fn visible(&self, domain: &str) -> Vec<Resolved> {
        let mut out = Vec::new();
        for (product, table) in self.mesh.catalog.tables_in_domain(domain) {
            let key = (domain.to_string(), table.sql_name.clone());
            let resolution = match self.cached(&key) {
                Some(hit) => hit,
                None if table.is_view() => continue,
                None => {
                    let resolution = self.resolve_table(product, table);
                    self.store(key, resolution.clone());
                    resolution
                }
            };
            if let Ok(resolved) = resolution {
                out.push(resolved);
            }
        }
        out
    }
}

/// What replaces `table` of a deprecated or retired `product`: the newer major version's
/// table of the same name, or, without one, who to ask.
fn replacement(catalog: &Catalog, product: &Product, table: &Table) -> String {
    match catalog
        .successor(product)
        .and_then(|next| Some((next, next.table(&table.name)?)))
    {
        Some((next, newer)) => format!(
            "version {} is served as `{}.{}`",
            next.version, next.domain, newer.sql_name
        ),
        None => format!(
            "ask its owner (team `{}`) what replaces it",
            product.owner.team
        ),
    }
}

/// Why `product` is no longer served, if it is not: `retired`, or deprecated past its sunset.
fn retired(catalog: &Catalog, product: &Product, table: &Table) -> Option<Denial> {
    let reason = match product.lifecycle(meshgate_governance::now_millis()) {
        Lifecycle::Retired(Some(sunset)) => format!(
            "its last day served was {} (UTC); {}",
            sunset.date,
            replacement(catalog, product, table)
        ),
        Lifecycle::Retired(None) => match catalog.successor(product) {
            Some(_) => format!(
                "its owner retired this version; {}",
                replacement(catalog, product, table)
            ),
            None => format!("its owner (team `{}`) retired it", product.owner.team),
        },
        Lifecycle::Served | Lifecycle::Deprecated(_) => return None,
    };
    Some(Denial::Retired {
        product: product.id.clone(),
        reason,
    })
}
