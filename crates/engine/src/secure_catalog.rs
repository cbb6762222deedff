//! The catalog a consumer's query sees: `mesh.<domain>.<table>`, built per query for one
//! caller and one policy version.
//!
//! Resolution happens here, when the planner looks a table up: the caller's policy for that
//! table is resolved once per query and compiled into a [`ProtectedTable`]. A published view
//! is planned here too, as the caller (invoker rights): every table it reads resolves through
//! this same catalog, so each is wrapped in the caller's policy. A table or view the caller
//! may not read is absent from listings (`SHOW TABLES`, `information_schema`, Flight SQL
//! metadata) and naming it fails with the policy's denial, which says how to ask for access.
//! Nothing can be registered into this catalog.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::{
    CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider, view::ViewTable,
};
use datafusion::common::{ScalarValue, TableReference};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::memory_pool::MemoryPool;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::execution::runtime_env::RuntimeEnv;

use crate::limits::QueryPool;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use meshgate_catalog::{Product, Table};
use meshgate_policy::{Denial, PolicySet, Principal};
use meshgate_storage::IoCounters;
use object_store::ObjectStore;
use url::Url;

use crate::compile;
use crate::error::{GatewayError, denial_to_datafusion};
use crate::gateway::GatewayInner;
use crate::lockdown;
use crate::protected::ProtectedTable;
use crate::system::{SYSTEM_SCHEMA, SystemSchema};

/// The only catalog: `mesh`.
pub const CATALOG: &str = "mesh";

/// The longest statement accepted (a guard against oversized requests, not a feature).
pub const MAX_STATEMENT_BYTES: usize = 1 << 20;

/// Bind parameter values (`$1`, `$2`, ... in order), each cast to the type the plan expects
/// where the plan knows it (clients send `str` for `lob = ?`, the column is a string view).
fn bind_parameters(plan: LogicalPlan, params: &[ScalarValue]) -> Result<LogicalPlan, GatewayError> {
    let types = plan
        .get_parameter_types()
        .map_err(GatewayError::from_planning)?;
    if types.len() != params.len() {
        return Err(GatewayError::InvalidQuery(format!(
            "the statement has {} parameter(s) but {} value(s) were bound",
            types.len(),
            params.len()
        )));
    }
    let mut values = Vec::with_capacity(params.len());
    for (i, value) in params.iter().enumerate() {
        let name = format!("${}", i + 1);
        let value = match types.get(&name) {
            Some(Some(expected)) if value.data_type() != *expected => {
                value.cast_to(expected).map_err(|_| {
                    GatewayError::InvalidQuery(format!(
                        "parameter {name}: a {} value cannot be used as {expected}",
                        value.data_type()
                    ))
                })?
            }
            _ => value.clone(),
        };
        values.push(value);
    }
    plan.with_param_values(values)
        .map_err(GatewayError::from_planning)
}

/// A parsed statement within meshgate's limits (see [`QueryScope::parse`]).
pub(crate) struct Parsed {
    statement: datafusion::sql::parser::Statement,
    /// Large enough to plan on the planning stack (see [`crate::shape`]).
    pub(crate) large: bool,
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

    /// `TABLE` or `VIEW`, as catalogs report it.
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Self::Table(_) => "TABLE",
            Self::View { .. } => "VIEW",
        }
    }
}

type Resolution = Result<Resolved, Denial>;

/// One caller, one policy version, one query.
#[derive(Debug)]
pub(crate) struct QueryScope {
    gateway: Arc<GatewayInner>,
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
        gateway: Arc<GatewayInner>,
        principal: Principal,
        policies: Arc<PolicySet>,
        default_schema: Option<String>,
    ) -> Self {
        Self {
            gateway,
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

    /// A fresh DataFusion state whose only catalog is this scope, and whose only object
    /// store is this query's counting view of the product lakes.
    pub(crate) fn state(self: &Arc<Self>) -> SessionState {
        let shared = &self.gateway.runtime;
        // With a per-query memory limit, the query reserves from its own capped share of
        // the shared pool.
        let memory_pool: Arc<dyn MemoryPool> = match self.gateway.admission.limits().memory {
            Some(cap) => Arc::new(QueryPool::new(Arc::clone(&shared.memory_pool), cap)),
            None => Arc::clone(&shared.memory_pool),
        };
        let runtime = RuntimeEnv {
            memory_pool,
            disk_manager: Arc::clone(&shared.disk_manager),
            cache_manager: Arc::clone(&shared.cache_manager),
            object_store_registry: Arc::new(QueryStores {
                mesh: self.gateway.lakes.store(Some(Arc::clone(&self.io))),
            }),
        };
        let mut builder = SessionStateBuilder::new_from_existing(self.gateway.template.clone())
            .with_catalog_list(Arc::new(SecureCatalogList::new(Arc::clone(self))))
            .with_runtime_env(Arc::new(runtime));
        if let Some(schema) = &self.default_schema {
            let config = self
                .gateway
                .template
                .config()
                .clone()
                .with_default_catalog_and_schema(CATALOG, schema);
            builder = builder.with_config(config);
        }
        builder.build()
    }

    /// Remember the product tables a statement's text mentions (`schema.table`, or a bare
    /// name in the default schema), before it is checked or planned.
    fn mention(&self, references: &[TableReference]) {
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
                && self
                    .gateway
                    .catalog
                    .table(schema, reference.table())
                    .is_some()
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
                let (product, table) = self.gateway.catalog.table(&key.0, &key.1)?;
                let outcome = match resolved.get(key) {
                    Some(Ok(Resolved::Table(t))) => Ok(Some(t.policy().policy_id.clone())),
                    Some(Ok(Resolved::View { .. })) => Ok(None),
                    Some(Err(_)) | None => Err(()),
                };
                Some((product.id.clone(), table.name.clone(), outcome))
            })
            .collect()
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

    pub(crate) fn gateway(&self) -> &GatewayInner {
        &self.gateway
    }

    pub(crate) fn principal(&self) -> &Principal {
        &self.principal
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
        let (product, table) = self.gateway.catalog.table(domain, name)?;
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
        compile::protected_table(&self.gateway, policy, Arc::clone(&self.io)).map(|t| Resolved::Table(Arc::new(t))).map_err(|reason| {
            // A policy that does not compile denies; it never falls back to raw data.
            tracing::error!(principal = self.principal.id(), product = %product.id, table = %table.name, %reason, "policy does not compile");
            Denial::Unresolvable {
                principal: self.principal.id().to_string(),
                table: format!("{}.{}", product.domain, table.name),
                policy: policy_id,
                reason: "the policy could not be compiled; the product's owner has been told".into(),
            }
        })
    }

    /// Plan a published view as the caller. Reading it needs `read` on its product, and every
    /// table it reads is resolved for the caller like any other reference.
    async fn plan_view(self: &Arc<Self>, product: &Product, view: &Table, sql: &str) -> Resolution {
        self.policies.check_access(&self.principal, product)?;
        let key = (product.domain.clone(), view.name.clone());
        let qualified = format!("{}.{}", product.domain, view.name);
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
        let planned = self.plan(sql, None).await;
        if let Ok(mut planning) = self.planning.lock() {
            planning.remove(&key);
        }
        let plan = match planned {
            Ok((_, plan)) => plan,
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
            name: view.name.clone(),
            view: Arc::new(ViewTable::new(plan, Some(sql.to_string()))),
        })
    }

    /// Parse and measure one statement (see [`crate::shape`]): the first step of
    /// [`QueryScope::plan`], apart so that a caller can plan the rest on the planning stack
    /// when the statement is large.
    pub(crate) fn parse(&self, sql: &str) -> Result<Parsed, GatewayError> {
        if sql.len() > MAX_STATEMENT_BYTES {
            return Err(GatewayError::InvalidQuery(format!(
                "the statement is {} bytes long; the limit is {MAX_STATEMENT_BYTES}",
                sql.len()
            )));
        }
        let state = self.gateway.template.clone();
        let dialect = state.config().options().sql_parser.dialect;
        let statement = lockdown::parse_one(sql, &dialect, &state)?;
        match crate::shape::check(&statement) {
            Ok(measured) => Ok(Parsed {
                statement,
                large: measured.large,
            }),
            Err(over) => {
                crate::shape::discard(statement);
                Err(over)
            }
        }
    }

    /// Parse, check and plan one statement as the caller: the single path every consumer
    /// statement and every view definition takes. Returns the state it was planned in.
    pub(crate) async fn plan(
        self: &Arc<Self>,
        sql: &str,
        params: Option<&[ScalarValue]>,
    ) -> Result<(SessionState, LogicalPlan), GatewayError> {
        let parsed = self.parse(sql)?;
        let large = parsed.large;
        crate::shape::plan_on(large, self.plan_parsed(parsed, params)).await
    }

    /// [`QueryScope::plan`] after [`QueryScope::parse`].
    pub(crate) async fn plan_parsed(
        self: &Arc<Self>,
        parsed: Parsed,
        params: Option<&[ScalarValue]>,
    ) -> Result<(SessionState, LogicalPlan), GatewayError> {
        let state = self.state();
        let mut statement = parsed.statement;
        let references = state
            .resolve_table_references(&statement)
            .map_err(GatewayError::from_planning)?;
        // Whatever happens next, the audit names the products the statement mentions.
        self.mention(&references);
        lockdown::check_statement(&statement)?;
        lockdown::number_question_marks(&mut statement)?;
        // Listings (information_schema, SHOW ...) must include views, which plan
        // asynchronously; DataFusion lists synchronously, so resolve everything first.
        if references
            .iter()
            .any(|r| r.schema() == Some("information_schema"))
        {
            self.prepare_listing().await;
        }
        let mut plan = state
            .statement_to_plan(statement)
            .await
            .map_err(GatewayError::from_planning)?;
        lockdown::sql_options()
            .verify_plan(&plan)
            .map_err(|e| GatewayError::NotAllowed(e.strip_backtrace().to_string()))?;
        lockdown::check_tables(&plan)?;
        if let Some(params) = params {
            plan = bind_parameters(plan, params)?;
        }
        Ok((state, plan))
    }

    /// Resolve every table and view, so that synchronous listings see views too.
    pub(crate) async fn prepare_listing(self: &Arc<Self>) {
        if self.listed.load(Ordering::Acquire) {
            return;
        }
        let names: Vec<(String, String)> = self
            .gateway
            .catalog
            .products()
            .flat_map(|p| p.tables.iter().map(|t| (p.domain.clone(), t.name.clone())))
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
        for (product, table) in self.gateway.catalog.tables_in_domain(domain) {
            let key = (domain.to_string(), table.name.clone());
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

    /// Domains where the caller may read at least one table or view.
    pub(crate) fn visible_domains(&self) -> Vec<String> {
        let domains: Vec<String> = self
            .gateway
            .catalog
            .domains()
            .into_iter()
            .map(str::to_string)
            .collect();
        domains
            .into_iter()
            .filter(|d| !self.visible(d).is_empty())
            .collect()
    }
}

/// A query's object stores: the counting mesh store, and nothing else (no URL a query names
/// can reach any other store).
#[derive(Debug)]
struct QueryStores {
    mesh: Arc<dyn ObjectStore>,
}

impl ObjectStoreRegistry for QueryStores {
    fn register_store(
        &self,
        _url: &Url,
        _store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        None
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if url.scheme() == "meshgate" && url.host_str() == Some("products") {
            Ok(Arc::clone(&self.mesh))
        } else {
            Err(DataFusionError::Plan(format!(
                "no storage is reachable at {url}"
            )))
        }
    }
}

#[derive(Debug)]
pub(crate) struct SecureCatalogList {
    catalog: Arc<SecureCatalog>,
}

impl SecureCatalogList {
    pub(crate) fn new(scope: Arc<QueryScope>) -> Self {
        Self {
            catalog: Arc::new(SecureCatalog { scope }),
        }
    }
}

impl CatalogProviderList for SecureCatalogList {
    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        // Consumers cannot create catalogs (DDL is refused before planning); ignore.
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        vec![CATALOG.to_string()]
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        (name == CATALOG).then(|| Arc::clone(&self.catalog) as Arc<dyn CatalogProvider>)
    }
}

#[derive(Debug)]
struct SecureCatalog {
    scope: Arc<QueryScope>,
}

impl CatalogProvider for SecureCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.scope.visible_domains();
        names.push(SYSTEM_SCHEMA.to_string());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == SYSTEM_SCHEMA {
            return Some(Arc::new(SystemSchema {
                scope: Arc::clone(&self.scope),
                empty: false,
            }));
        }
        // Every domain resolves, so that naming a denied table yields the denial (with how to
        // request access) rather than "schema not found".
        self.scope
            .gateway
            .catalog
            .domains()
            .contains(name)
            .then(|| {
                Arc::new(DomainSchema {
                    scope: Arc::clone(&self.scope),
                    domain: name.to_string(),
                }) as _
            })
    }
}

#[derive(Debug)]
struct DomainSchema {
    scope: Arc<QueryScope>,
    domain: String,
}

#[async_trait]
impl SchemaProvider for DomainSchema {
    fn table_names(&self) -> Vec<String> {
        self.scope
            .visible(&self.domain)
            .iter()
            .map(|t| t.name().to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match self.scope.resolve_named(&self.domain, name).await {
            None => Ok(None),
            Some(Ok(resolved)) => Ok(Some(resolved.provider())),
            Some(Err(denial)) => Err(denial_to_datafusion(denial)),
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        self.scope
            .gateway
            .catalog
            .table(&self.domain, name)
            .is_some()
    }
}
