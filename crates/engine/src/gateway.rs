//! The gateway: the catalog, the current policy version, the product lakes and one shared
//! DataFusion runtime, opened once and shared by every session.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arc_swap::ArcSwap;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{
    FunctionRegistry, SessionState, SessionStateBuilder, context::SessionConfig,
};
use meshgate_catalog::{Catalog, Product};
use meshgate_governance::{GovernanceStore, SqliteStore, Viewer, Workflow, now_millis};
use meshgate_lineage::{Lineage, LineageConfig};
use meshgate_policy::{AuthError, PolicySet, PolicySources, Principal, UserDirectory};
use meshgate_protect::{KeyOrigin, MasterKey};
use meshgate_storage::{LakeStatus, Lakes, StorageConfig};

use crate::audit::AuditSettings;
use crate::compile;
use crate::error::GatewayError;
use crate::lake_table::LakeTable;
use crate::limits::{Admission, QueryLimits, YieldAfterJoins};
use crate::secure_catalog::CATALOG;
use crate::session::Session;

/// Everything needed to open a gateway.
#[derive(Debug)]
pub struct GatewayConfig {
    pub catalog: Catalog,
    pub policies: PolicySources,
    /// Static users for password logins; `None` means no password logins.
    pub users: Option<UserDirectory>,
    pub storage: StorageConfig,
    pub master_key: MasterKey,
    /// DataFusion's target partitions (default: the number of cores).
    pub target_partitions: Option<usize>,
    /// Memory all running queries may use together; beyond it operators spill to disk
    /// (default: unbounded).
    pub memory_limit: Option<usize>,
    /// Where spill files go (default: the system's temporary directory). They are deleted
    /// when the operator that wrote them finishes.
    pub spill_dir: Option<PathBuf>,
    /// Concurrency, time and memory limits of each query.
    pub limits: QueryLimits,
    /// Evaluate the filters inside a protected scan (the policy's row filter and the
    /// leakproof user predicates) in the Parquet decoder, cheapest first, and decode other
    /// columns only for matching rows (DataFusion's `pushdown_filters` and
    /// `reorder_filters`). Safe for enforcement either way: nothing else is ever pushed.
    pub parquet_pushdown: bool,
    /// Access requests, grants and the audit log. Every query is recorded here before it
    /// runs, and grants in force here admit callers; if it cannot be read or written,
    /// queries are refused.
    pub governance: Governance,
    pub audit: AuditSettings,
    /// OpenLineage events for every query (off unless a file or URL is set).
    pub lineage: LineageConfig,
}

/// Where access requests, grants and the audit log live.
#[derive(Debug, Clone)]
pub enum Governance {
    /// The embedded default: a SQLite file (created, and migrated, on open).
    Sqlite(PathBuf),
    /// A store opened by the embedding application.
    Store(Arc<dyn GovernanceStore>),
}

impl Governance {
    async fn open(self) -> Result<Arc<dyn GovernanceStore>, GatewayError> {
        match self {
            Self::Store(store) => Ok(store),
            Self::Sqlite(path) => SqliteStore::open(&path)
                .await
                .map(|s| Arc::new(s) as Arc<dyn GovernanceStore>)
                .map_err(|e| GatewayError::Config(e.to_string())),
        }
    }
}

/// An open gateway. Cheap to clone; every clone shares the same state.
#[derive(Debug, Clone)]
pub struct Gateway {
    inner: Arc<GatewayInner>,
}

#[derive(Debug)]
pub(crate) struct GatewayInner {
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) policies: ArcSwap<PolicySet>,
    pub(crate) users: UserDirectory,
    pub(crate) master_key: MasterKey,
    pub(crate) lakes: Lakes,
    /// The runtime every query shares: memory pool, spill directory and the caches (Parquet
    /// metadata above all, so footers are read once per file, not once per session). Each
    /// query gets its own object store registry on top, to count its own requests.
    pub(crate) runtime: Arc<RuntimeEnv>,
    /// A fully configured DataFusion session (functions, options) that every query's state
    /// is copied from.
    pub(crate) template: SessionState,
    /// The raw (unprotected) scan of each product table. Never registered in any catalog:
    /// reachable only through a `ProtectedTable`.
    pub(crate) raw_tables: RawTables,
    /// Running slots and the queue for them.
    pub(crate) admission: Admission,
    pub(crate) governance: Arc<dyn GovernanceStore>,
    pub(crate) audit: AuditSettings,
    pub(crate) lineage: Option<Lineage>,
    /// Held while the grants in force are re-read, so concurrent queries re-read once.
    pub(crate) grant_refresh: tokio::sync::Mutex<()>,
}

impl GatewayInner {
    /// The access workflow over this gateway's store and catalog.
    pub(crate) fn workflow(&self) -> Workflow<'_> {
        Workflow::new(self.governance.as_ref(), &self.catalog)
    }

    /// What each product's lake holds now (see [`Gateway::lake_status`]).
    pub(crate) async fn lake_status(&self) -> Vec<LakeStatus> {
        let cache = Some(self.runtime.cache_manager.get_file_metadata_cache());
        self.lakes.status(&self.catalog, cache).await
    }

    /// The policy version in force with the grants in force now. Re-reads the grants when
    /// the store's grant generation moved or a grant's time ran out, so a decision applies
    /// from the very next query. A store that cannot be read refuses the query.
    pub(crate) async fn current_policies(&self) -> Result<Arc<PolicySet>, GatewayError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "governance store unavailable; refusing queries");
            GatewayError::Unavailable(
                "the gateway cannot read its grants, so it refuses queries; try again later \
                 (operators: see the gateway's log)"
                    .into(),
            )
        };
        let fresh = |policies: &PolicySet, generation: i64, now: i64| {
            policies
                .grant_layer()
                .is_some_and(|layer| layer.current(generation, now))
        };
        let generation = self
            .governance
            .grant_generation()
            .await
            .map_err(|e| unavailable(&e))?;
        let now = now_millis();
        let current = self.policies.load_full();
        if fresh(&current, generation, now) {
            return Ok(current);
        }
        let _refresh = self.grant_refresh.lock().await;
        let current = self.policies.load_full();
        if fresh(&current, generation, now) {
            return Ok(current);
        }
        let layered = Arc::new(
            current
                .with_grants(&self.catalog, Arc::clone(&self.governance), generation, now)
                .await
                .map_err(|e| unavailable(&e))?,
        );
        // A policy reload that happened meanwhile wins; its grants are layered next query.
        self.policies
            .compare_and_swap(&current, Arc::clone(&layered));
        Ok(layered)
    }
}

/// Functions consumers may not call: they describe the deployment, not the mesh.
const HIDDEN_FUNCTIONS: &[&str] = &["version"];

/// The raw scan of each product table, by (domain, table).
pub(crate) type RawTables = HashMap<(String, String), Arc<LakeTable>>;

impl Gateway {
    /// Open a gateway: validate policies against the catalog, open every product's lake and
    /// prepare the shared runtime. Any problem is an error; nothing is half-opened.
    pub async fn open(config: GatewayConfig) -> Result<Self, GatewayError> {
        let catalog = Arc::new(config.catalog);
        let policies = PolicySet::load(&catalog, &config.policies).await?;
        let lakes = Lakes::open(&catalog, &config.storage)
            .map_err(|e| GatewayError::Config(e.to_string()))?;

        let mut runtime = RuntimeEnvBuilder::new();
        if let Some(limit) = config.memory_limit {
            runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
        }
        if let Some(dir) = config.spill_dir {
            std::fs::create_dir_all(&dir).map_err(|e| {
                GatewayError::Config(format!(
                    "cannot create the spill directory {}: {e}",
                    dir.display()
                ))
            })?;
            runtime = runtime.with_disk_manager_builder(
                DiskManagerBuilder::default().with_mode(DiskManagerMode::Directories(vec![dir])),
            );
        }
        let runtime = runtime
            .build_arc()
            .map_err(|e| GatewayError::Config(e.to_string()))?;

        let mut session_config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG, "public")
            .with_create_default_catalog_and_schema(false);
        if let Some(partitions) = config.target_partitions {
            session_config = session_config.with_target_partitions(partitions);
        }
        if config.parquet_pushdown {
            let parquet = &mut session_config.options_mut().execution.parquet;
            parquet.pushdown_filters = true;
            parquet.reorder_filters = true;
        }
        let mut template = SessionStateBuilder::new()
            .with_config(session_config)
            .with_runtime_env(Arc::clone(&runtime))
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(YieldAfterJoins))
            .build();
        // The engine's build and platform are no business of consumers.
        for hidden in HIDDEN_FUNCTIONS {
            template
                .deregister_udf(hidden)
                .map_err(|e| GatewayError::Config(e.to_string()))?;
        }

        let parquet_options = template.table_options().parquet.clone();
        let view_types = parquet_options.global.schema_force_view_types;
        let mut raw_tables = RawTables::new();
        for product in catalog.products() {
            for table in product.tables.iter().filter(|t| !t.is_view()) {
                let format = ParquetFormat::default().with_options(parquet_options.clone());
                let raw = LakeTable::new(Arc::clone(product), table.clone(), view_types, format);
                raw_tables.insert((product.domain.clone(), table.name.clone()), Arc::new(raw));
            }
        }

        compile::validate_row_filters(&template, &policies, &catalog, &raw_tables)?;
        if catalog.domains().contains(crate::system::SYSTEM_SCHEMA) {
            return Err(GatewayError::Config(format!(
                "the domain name `{}` is reserved for the mesh catalog's own tables",
                crate::system::SYSTEM_SCHEMA
            )));
        }
        let governance = config.governance.open().await?;
        let lineage = config
            .lineage
            .is_enabled()
            .then(|| Lineage::start(&config.lineage, Arc::clone(&catalog)));

        if config.master_key.origin() == KeyOrigin::Demo {
            tracing::warn!(
                "tokenizing with the public demo master key: tokens protect nothing; set {} for real data",
                meshgate_protect::MASTER_KEY_ENV
            );
        }

        Ok(Self {
            inner: Arc::new(GatewayInner {
                catalog,
                policies: ArcSwap::from_pointee(policies),
                users: config.users.unwrap_or_default(),
                master_key: config.master_key,
                lakes,
                runtime,
                template,
                raw_tables,
                admission: Admission::new(config.limits),
                governance,
                audit: config.audit,
                lineage,
                grant_refresh: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// A session for an authenticated principal. The principal's identity and attributes
    /// are fixed for the session; nothing in SQL can change them.
    pub fn session(&self, principal: Principal) -> Session {
        Session::new(Arc::clone(&self.inner), principal)
    }

    /// Check a user name and password against the static user directory.
    pub fn authenticate(&self, user: &str, password: &str) -> Result<Principal, AuthError> {
        self.inner.users.authenticate(user, password)
    }

    /// A static user's principal, without a password: for identities proven another way
    /// (a client certificate). `None` for names the user directory does not know.
    pub fn known_principal(&self, name: &str) -> Option<Principal> {
        self.inner.users.principal(name).cloned()
    }

    /// The static users' names: identities that only a password (or a certificate naming
    /// them) proves, which no token issuer may assert.
    pub fn user_names(&self) -> Vec<String> {
        self.inner.users.names().map(str::to_string).collect()
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The policy version in force now (each query layers the grants in force on it).
    pub fn policies(&self) -> Arc<PolicySet> {
        self.inner.policies.load_full()
    }

    /// The governance store (access requests, grants, audit).
    pub fn governance(&self) -> &Arc<dyn GovernanceStore> {
        &self.inner.governance
    }

    /// The access workflow (requests, approvals, grants) over this gateway's store and
    /// catalog. Its decisions are enforced from the next query on.
    pub fn workflow(&self) -> Workflow<'_> {
        self.inner.workflow()
    }

    /// Whether `filter` can serve as a grant's row filter on `product` (what
    /// [`Workflow::approve`] needs to check an approval).
    pub fn check_grant_filter(&self, product: &Product, filter: &str) -> Result<(), String> {
        compile::check_grant_filter(&self.inner, product, filter)
    }

    /// Which governance records `principal` sees: auditors (role `auditor`) all, owners and
    /// delegates those touching their products, everyone their own.
    pub fn viewer(principal: &Principal) -> Viewer {
        Viewer {
            id: principal.id().to_string(),
            auditor: principal.roles().contains("auditor"),
        }
    }

    /// The SQL functions consumers may call, with DataFusion's documentation section
    /// (`Math Functions`, `String Functions`, ...), for clients that list them.
    pub fn sql_functions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .inner
            .template
            .scalar_functions()
            .values()
            .map(|f| {
                let section = f
                    .documentation()
                    .map(|d| d.doc_section.label.to_string())
                    .unwrap_or_default();
                (f.name().to_string(), section)
            })
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// The limits every query runs under.
    pub fn limits(&self) -> &QueryLimits {
        self.inner.admission.limits()
    }

    /// What each product's lake holds now: file count, bytes, freshness, refused files, or
    /// why it cannot be read. For operators and the catalog; it never returns data.
    pub async fn lake_status(&self) -> Vec<LakeStatus> {
        self.inner.lake_status().await
    }

    /// Load new policy sources and, only if they validate, make them the version in force.
    /// On error the previous version stays in force.
    pub async fn reload_policies(&self, sources: &PolicySources) -> Result<String, GatewayError> {
        let policies = PolicySet::load(&self.inner.catalog, sources).await?;
        let inner = &self.inner;
        compile::validate_row_filters(
            &inner.template,
            &policies,
            &inner.catalog,
            &inner.raw_tables,
        )?;
        let fingerprint = policies.fingerprint().to_string();
        self.inner.policies.store(Arc::new(policies));
        Ok(fingerprint)
    }
}
