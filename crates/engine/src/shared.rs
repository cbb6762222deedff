//! The state every session of one gateway shares: the catalog, the policy version in force,
//! the product lakes, the DataFusion runtime and template, admission, governance and
//! lineage. Fields are private; [`crate::Gateway`] builds it ([`Shared::open`]) and is the only
//! writer of the policy version ([`Shared::replace_policies`]). The grants in force are a cache
//! refreshed by [`Shared::current_policies`], never written by a caller.

use std::sync::Arc;

use arc_swap::ArcSwap;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SessionState, SessionStateBuilder, context::SessionConfig};
use meshgate_catalog::{Catalog, Product};
use meshgate_governance::{AccessRules, GovernanceStore, Workflow, now_millis};
use meshgate_lineage::Lineage;
use meshgate_policy::{PolicySet, UserDirectory};
use meshgate_protect::{KeyOrigin, MasterKey};
use meshgate_storage::{LakeStatus, Lakes};

use crate::compile::Compiler;
use crate::config::Distribution;
use crate::config::{AuditSettings, GatewayConfig};
use crate::error::GatewayError;
use crate::lake_table::{LakeTable, RawTables};
use crate::limits::{Admission, YieldAfterJoins};
use crate::names::{CATALOG, SYSTEM_SCHEMA};
use crate::visible::VisibleStatistics;
use crate::wire::{SealCodec, SealHost};

/// DataFusion's session template, behind a trait object for the compiler's sake: a
/// `SessionState` reaches `LogicalPlan` (its prepared plans), a recursive type whose `Send`
/// and `Sync` the compiler derives again from scratch wherever a future holding the gateway
/// must be `Send`: in each Flight method, some 4 s of type checking apiece (170 s for the
/// Flight crate). Behind `dyn Template` the answer is the trait's bound, proven once here.
trait Template: Send + Sync + std::fmt::Debug {
    fn state(&self) -> &SessionState;
}

impl Template for SessionState {
    fn state(&self) -> &SessionState {
        self
    }
}

/// The admission share quality checks run under, apart from every consumer's: checks take
/// one running slot at most and never a consumer's share.
const QUALITY_PRINCIPAL: &str = "(quality checks)";

/// Functions consumers may not call: they describe the deployment, not the mesh.
const HIDDEN_FUNCTIONS: &[&str] = &["version"];

/// One published version of the mesh: its catalog, its policies, the lakes and raw tables
/// of its products. A query holds one version from its start to its end; publishing builds
/// a new one, checks it whole and swaps it in, so a query never sees a product of one
/// version with the policies of another.
#[derive(Debug)]
pub(crate) struct MeshState {
    pub(crate) catalog: Arc<Catalog>,
    /// The policy version of this catalog, layered with the grants in force (the grant
    /// refresh and a policy reload swap it). Shared with the seal codec, which checks a
    /// sealed scan it receives against it.
    pub(crate) policies: Arc<ArcSwap<PolicySet>>,
    pub(crate) lakes: Lakes,
    /// The raw (unprotected) scan of each product table. Never registered in any catalog:
    /// reachable only through a `ProtectedTable`.
    pub(crate) raw_tables: RawTables,
    /// Encodes sealed scans for workers (and decodes them, for stages this node runs).
    pub(crate) seal_codec: SealCodec,
    /// The statistics of the rows row filters admit, kept from the previous mesh version
    /// (its entries name each table's product version and schema).
    pub(crate) visible: Arc<VisibleStatistics>,
    /// When this version was published (milliseconds since the epoch).
    pub(crate) published_at: i64,
    /// When each product was published at the version it has here: kept from the previous
    /// mesh version while its contract's version stays the same.
    pub(crate) product_published_at: std::collections::BTreeMap<String, i64>,
}

#[derive(Debug)]
pub(crate) struct Shared {
    /// The mesh version in force; see [`MeshState`].
    mesh: ArcSwap<MeshState>,
    /// Where new products' lakes are opened from, on publish.
    storage: meshgate_storage::StorageConfig,
    users: UserDirectory,
    master_key: MasterKey,
    /// The runtime every query shares: memory pool, spill directory and the caches (Parquet
    /// metadata above all, so footers are read once per file, not once per session). Each
    /// query gets its own object store registry on top, to count its own requests.
    runtime: Arc<RuntimeEnv>,
    /// A fully configured DataFusion session (functions, options) that every query's state
    /// is copied from (see [`Template`] for why it is behind a trait object).
    template: Box<dyn Template>,
    /// Running slots and the queue for them.
    admission: Admission,
    governance: Arc<dyn GovernanceStore>,
    audit: AuditSettings,
    replica: Option<String>,
    metrics: Arc<crate::metrics::Metrics>,
    lineage: Option<Lineage>,
    /// Held while the grants in force are re-read, so concurrent queries re-read once.
    grant_refresh: tokio::sync::Mutex<()>,
    distribution: Option<Distribution>,
    /// The latest quality results of every product.
    quality: crate::quality::QualityBoard,
}

impl Shared {
    /// Validate policies against the catalog, open every product's lake and prepare the
    /// shared runtime. Any problem is an error; nothing is half-opened.
    pub(crate) async fn open(config: GatewayConfig) -> Result<Self, GatewayError> {
        let catalog = Arc::new(config.catalog);

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
        if config.distribution.is_some() {
            // Plans are made in process and distributed afterwards; DataFusion Distributed
            // cannot cut a plan with a physical uncorrelated scalar subquery.
            session_config
                .options_mut()
                .optimizer
                .enable_physical_uncorrelated_scalar_subquery = false;
        }
        // Planning states are copies of the template: its runtime reaches no storage at all
        // (a query runs with its own runtime, `plan::task_context`).
        let planning_runtime = RuntimeEnv {
            object_store_registry: Arc::new(crate::lake_table::MeshStores::none()),
            ..RuntimeEnv::clone(&runtime)
        };
        let mut template = SessionStateBuilder::new()
            .with_config(session_config)
            .with_runtime_env(Arc::new(planning_runtime))
            .with_default_features()
            .with_physical_optimizer_rule(Arc::new(YieldAfterJoins))
            .build();
        // The engine's build and platform are no business of consumers.
        for hidden in HIDDEN_FUNCTIONS {
            datafusion::execution::FunctionRegistry::deregister_udf(&mut template, hidden)
                .map_err(|e| GatewayError::Config(e.to_string()))?;
        }

        let metrics = Arc::new(crate::metrics::Metrics::default());
        let mesh = MeshState::build(
            &template,
            Arc::clone(&catalog),
            &config.policies,
            &config.storage,
            &config.master_key,
            None,
            Arc::new(VisibleStatistics::new(
                config.statistics_behind_row_filters,
                Arc::clone(&metrics),
            )),
        )
        .await?;

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
            mesh: ArcSwap::from_pointee(mesh),
            storage: config.storage,
            users: config.users.unwrap_or_default(),
            master_key: config.master_key,
            runtime,
            template: Box::new(template),
            admission: Admission::new(config.limits),
            governance,
            audit: config.audit,
            replica: config.replica,
            metrics,
            lineage,
            grant_refresh: tokio::sync::Mutex::new(()),
            distribution: config.distribution,
            quality: crate::quality::QualityBoard::default(),
        })
    }

    pub(crate) fn quality(&self) -> &crate::quality::QualityBoard {
        &self.quality
    }

    /// Measure the quality rules of `products` (every product if `None`) in the mesh
    /// version in force, one table at a time, each holding a running slot like a query
    /// does, so checks never take more of the gateway than one consumer's query. Results
    /// replace each product's previous ones.
    pub(crate) async fn check_quality(
        &self,
        products: Option<&[String]>,
    ) -> Result<Vec<crate::quality::QualityResult>, GatewayError> {
        use meshgate_catalog::quality::Check;
        let _one_run = self.quality.running.lock().await;
        let mesh = self.mesh();
        let chosen: Vec<Arc<Product>> = mesh
            .catalog
            .products()
            .filter(|p| products.is_none_or(|ids| ids.contains(&p.id)))
            .cloned()
            .collect();
        let cache = Some(self.runtime.cache_manager.get_file_metadata_cache());
        let mut all = Vec::new();
        for product in chosen {
            // Only the products checked are listed, and only those with a freshness rule.
            let lake = if product
                .quality
                .iter()
                .any(|r| matches!(r.check, Check::Freshness { .. }))
            {
                mesh.lakes.product_status(&product, cache.clone()).await
            } else {
                None
            };
            let now = now_millis();
            let mut results = Vec::with_capacity(product.quality.len());
            for rule in &product.quality {
                match rule.check {
                    Check::Freshness { .. } => results.push(crate::quality::freshness(
                        &product,
                        rule,
                        lake.as_ref(),
                        now,
                    )),
                    Check::NotChecked { .. } => {
                        results.push(crate::quality::QualityResult::pending(&product, rule))
                    }
                    Check::Metric { .. } => {}
                }
            }
            for table in product.tables.iter().filter(|t| !t.is_view()) {
                let rules: Vec<&meshgate_catalog::QualityRule> = product
                    .quality
                    .iter()
                    .filter(|r| {
                        r.table.as_deref() == Some(table.name.as_str())
                            && matches!(r.check, Check::Metric { .. })
                    })
                    .collect();
                let Some(raw) = mesh
                    .raw_tables
                    .get(&(product.domain.clone(), table.sql_name.clone()))
                    .filter(|_| !rules.is_empty())
                else {
                    continue;
                };
                let _slot = self.admission.admit(QUALITY_PRINCIPAL, None).await?;
                results.extend(
                    crate::quality::measure_table(
                        self.quality_state(&mesh),
                        &product,
                        (Arc::clone(raw), mesh.lakes.clone()),
                        &rules,
                        now_millis(),
                    )
                    .await,
                );
            }
            // In the contract's order, as every reader lists them.
            results.sort_by_key(|r| product.quality.iter().position(|q| *q == r.rule));
            self.quality.record(&product.id, results.clone());
            all.extend(results);
        }
        Ok(all)
    }

    /// Rows of `domain.table` that `after` selects and `before` does not, and the reverse,
    /// over the raw files now (see [`crate::Gateway::count_row_changes`]).
    pub(crate) async fn count_row_changes(
        &self,
        domain: &str,
        table: &str,
        before: &str,
        after: &str,
    ) -> Result<(u64, u64), GatewayError> {
        let mesh = self.mesh();
        let raw = mesh
            .raw_tables
            .get(&(domain.to_string(), table.to_string()))
            .ok_or_else(|| GatewayError::NotFound(format!("no product table {domain}.{table}")))?;
        let _slot = self.admission.admit(QUALITY_PRINCIPAL, None).await?;
        crate::quality::count_row_changes(
            self.quality_state(&mesh),
            (Arc::clone(raw), mesh.lakes.clone()),
            before,
            after,
        )
        .await
        .map_err(|e| {
            GatewayError::InvalidQuery(format!("cannot count the rows of {domain}.{table}: {e}"))
        })
    }

    /// A session for quality checks: the template, this mesh version's lakes as the only
    /// store, memory capped like one query's. No catalog: a check reads its raw table
    /// directly, and nothing else.
    fn quality_state(&self, mesh: &MeshState) -> SessionState {
        let memory_pool: Arc<dyn datafusion::execution::memory_pool::MemoryPool> =
            match self.admission.limits().memory {
                Some(cap) => Arc::new(crate::limits::QueryPool::new(
                    Arc::clone(&self.runtime.memory_pool),
                    cap,
                )),
                None => Arc::clone(&self.runtime.memory_pool),
            };
        let runtime = RuntimeEnv {
            memory_pool,
            disk_manager: Arc::clone(&self.runtime.disk_manager),
            cache_manager: Arc::clone(&self.runtime.cache_manager),
            object_store_registry: Arc::new(crate::lake_table::MeshStores::new(
                mesh.lakes.store(None),
            )),
        };
        SessionStateBuilder::new_from_existing(self.template().clone())
            .with_runtime_env(Arc::new(runtime))
            .build()
    }

    /// The mesh version in force now.
    pub(crate) fn mesh(&self) -> Arc<MeshState> {
        self.mesh.load_full()
    }

    /// Make `catalog` with `sources` the mesh version in force, once the whole of it checks
    /// (policies against the catalog, every product's lake opened, every row filter
    /// compiled). On error the previous version stays in force, untouched.
    pub(crate) async fn publish(
        &self,
        catalog: Catalog,
        sources: &meshgate_policy::PolicySources,
    ) -> Result<Arc<MeshState>, GatewayError> {
        let previous = self.mesh();
        let mesh = Arc::new(
            MeshState::build(
                self.template.state(),
                Arc::new(catalog),
                sources,
                &self.storage,
                &self.master_key,
                Some(&previous),
                Arc::clone(&previous.visible),
            )
            .await?,
        );
        self.mesh.store(Arc::clone(&mesh));
        if let Some(lineage) = &self.lineage {
            lineage.set_catalog(Arc::clone(&mesh.catalog));
        }
        Ok(mesh)
    }

    pub(crate) fn distribution(&self) -> Option<&Distribution> {
        self.distribution.as_ref()
    }

    /// The catalog in force now.
    pub(crate) fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.mesh.load().catalog)
    }

    /// The policy version in force now, without the grants (see [`Self::current_policies`]).
    pub(crate) fn policies(&self) -> Arc<PolicySet> {
        self.mesh.load().policies.load_full()
    }

    /// Make `policies` the version in force for the catalog in force, once they compile
    /// against every table. On error the previous version stays in force.
    pub(crate) fn replace_policies(&self, policies: PolicySet) -> Result<(), GatewayError> {
        let mesh = self.mesh.load_full();
        self.compiler(&mesh)
            .validate_row_filters(&policies, &mesh.catalog)?;
        mesh.policies.store(Arc::new(policies));
        Ok(())
    }

    pub(crate) fn users(&self) -> &UserDirectory {
        &self.users
    }

    pub(crate) fn runtime(&self) -> &Arc<RuntimeEnv> {
        &self.runtime
    }

    pub(crate) fn template(&self) -> &SessionState {
        self.template.state()
    }

    pub(crate) fn admission(&self) -> &Admission {
        &self.admission
    }

    pub(crate) fn governance(&self) -> &Arc<dyn GovernanceStore> {
        &self.governance
    }

    pub(crate) fn metrics(&self) -> &Arc<crate::metrics::Metrics> {
        &self.metrics
    }

    /// The gauges read now: running and queued queries, memory held in the shared pool.
    pub(crate) fn gauges(&self) -> crate::metrics::Gauges {
        let (queries_running, queries_queued) = self.admission.load();
        crate::metrics::Gauges {
            queries_running,
            queries_queued,
            memory_reserved_bytes: self.runtime.memory_pool.reserved(),
            quality_breaches: self
                .catalog()
                .products()
                .map(|p| {
                    let results = self.quality.of(p);
                    let breached = results
                        .iter()
                        .filter(|r| r.status == crate::quality::QualityStatus::Breached)
                        .count();
                    (p.id.clone(), breached)
                })
                .collect(),
        }
    }

    pub(crate) fn master_key(&self) -> &MasterKey {
        &self.master_key
    }

    pub(crate) fn replica(&self) -> Option<&str> {
        self.replica.as_deref()
    }

    pub(crate) fn audit_settings(&self) -> &AuditSettings {
        &self.audit
    }

    pub(crate) fn lineage(&self) -> Option<&Lineage> {
        self.lineage.as_ref()
    }

    /// What compiling a caller's policy into a protected table of `mesh` takes.
    pub(crate) fn compiler<'a>(&'a self, mesh: &'a MeshState) -> Compiler<'a> {
        Compiler {
            template: self.template.state(),
            raw_tables: &mesh.raw_tables,
            lakes: &mesh.lakes,
            master_key: &self.master_key,
        }
    }

    /// The access workflow over this gateway's store and the catalog in force (see
    /// [`Rules`]).
    pub(crate) fn workflow<'a>(
        &'a self,
        caller: Option<&'a meshgate_policy::Principal>,
    ) -> Workflow<'a> {
        Workflow::new(self.governance.as_ref(), self.catalog()).with_rules(Rules {
            shared: self,
            caller,
        })
    }

    /// What each product's lake holds now (see [`crate::Gateway::lake_status`]).
    pub(crate) async fn lake_status(&self) -> Vec<LakeStatus> {
        let cache = Some(self.runtime.cache_manager.get_file_metadata_cache());
        let mesh = self.mesh();
        mesh.lakes.status(&mesh.catalog, cache).await
    }

    /// The policy version in force with the grants in force now. Re-reads the grants when
    /// the store's grant generation moved or a grant's time ran out, so a decision applies
    /// from the very next query. A store that cannot be read refuses the query.
    /// With them, the mesh version they belong to.
    pub(crate) async fn current_policies(
        &self,
    ) -> Result<(Arc<MeshState>, Arc<PolicySet>), GatewayError> {
        let started = std::time::Instant::now();
        let mesh = self.mesh();
        let current = self.current_policies_untimed(&mesh).await;
        self.metrics.policy_resolution(started.elapsed());
        current.map(|policies| (mesh, policies))
    }

    async fn current_policies_untimed(
        &self,
        mesh: &MeshState,
    ) -> Result<Arc<PolicySet>, GatewayError> {
        let unavailable = |e: &dyn std::fmt::Display| {
            tracing::error!(error = %e, "governance store unavailable; refusing queries");
            GatewayError::Unavailable(
                "the governance store cannot be read, so the gateway cannot tell which grants \
                 are in force and refuses queries; try again later (operators: see the \
                 gateway's log and /readyz)"
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
        let current = mesh.policies.load_full();
        if fresh(&current, generation, now) {
            return Ok(current);
        }
        let _refresh = self.grant_refresh.lock().await;
        let current = mesh.policies.load_full();
        if fresh(&current, generation, now) {
            return Ok(current);
        }
        let mut grants = self
            .governance
            .grants_in_force(now)
            .await
            .map_err(|e| unavailable(&e))?;
        // Not in force, so they admit nobody: they only let a denial say why.
        grants.extend(
            self.governance
                .lapsed_grants(now)
                .await
                .map_err(|e| unavailable(&e))?,
        );
        let layered = Arc::new(
            current
                .with_grants(&mesh.catalog, grants, generation, now)
                .await
                .map_err(|e| unavailable(&e))?,
        );
        // A policy reload that happened meanwhile wins; its grants are layered next query.
        mesh.policies
            .compare_and_swap(&current, Arc::clone(&layered));
        Ok(layered)
    }
}

/// The access rules as a workflow consults them: the policy files in force, with the caller's
/// own principal (roles from its token included) for the caller, and the user directory's
/// for anyone else (a requester whose request an owner approves). A principal only a token
/// asserts and who is not the caller is checked by its id alone; its queries are still
/// refused by any rule that matches its roles.
pub(crate) struct Rules<'a> {
    pub(crate) shared: &'a Shared,
    pub(crate) caller: Option<&'a meshgate_policy::Principal>,
}

impl AccessRules for Rules<'_> {
    fn grant_can_open(&self, principal: &str, product: &Product) -> Result<(), String> {
        let principal = match self.caller.filter(|c| c.id() == principal) {
            Some(caller) => caller.clone(),
            None => self
                .shared
                .users
                .principal(principal)
                .cloned()
                .unwrap_or_else(|| meshgate_policy::Principal::new(principal)),
        };
        match self.shared.policies().closed_by_rule(&principal, product) {
            Ok(false) => Ok(()),
            Ok(true) => Err(format!(
                "a deny rule of the access rules closes `{}` to `{}`, and a deny rule wins over any grant",
                product.id,
                principal.id()
            )),
            Err(denial) => Err(denial.to_string()),
        }
    }
}

impl MeshState {
    /// A mesh version: `catalog` with the policies of `sources`, each product's lake opened
    /// from `storage`, and every row filter compiled. Any problem is an error.
    pub(crate) async fn build(
        template: &SessionState,
        catalog: Arc<Catalog>,
        sources: &meshgate_policy::PolicySources,
        storage: &meshgate_storage::StorageConfig,
        master_key: &MasterKey,
        previous: Option<&MeshState>,
        visible: Arc<VisibleStatistics>,
    ) -> Result<Self, GatewayError> {
        if catalog.domains().contains(SYSTEM_SCHEMA) {
            return Err(GatewayError::Config(format!(
                "the domain name `{SYSTEM_SCHEMA}` is reserved for the mesh catalog's own tables"
            )));
        }
        let policies = PolicySet::load(&catalog, sources).await?;
        let lakes =
            Lakes::open(&catalog, storage).map_err(|e| GatewayError::Config(e.to_string()))?;
        let parquet_options = template.table_options().parquet.clone();
        let view_types = parquet_options.global.schema_force_view_types;
        let mut raw_tables = RawTables::new();
        for product in catalog.all_versions() {
            for table in product.tables.iter().filter(|t| !t.is_view()) {
                let format = ParquetFormat::default().with_options(parquet_options.clone());
                let raw = LakeTable::new(
                    Arc::clone(product),
                    table.clone(),
                    view_types,
                    format,
                    Arc::clone(&visible),
                );
                raw_tables.insert(
                    (product.domain.clone(), table.sql_name.clone()),
                    Arc::new(raw),
                );
            }
        }
        Compiler {
            template,
            raw_tables: &raw_tables,
            lakes: &lakes,
            master_key,
        }
        .validate_row_filters(&policies, &catalog)?;
        let policies = Arc::new(ArcSwap::from_pointee(policies));
        let seal_codec = seal_codec(&lakes, master_key, &policies);
        let published_at = now_millis();
        let product_published_at = catalog
            .products()
            .map(|product| {
                let kept = previous.and_then(|mesh| {
                    let before = mesh.catalog.product(&product.id)?;
                    (before.version == product.version)
                        .then(|| mesh.product_published_at.get(&product.id).copied())
                        .flatten()
                });
                (product.id.clone(), kept.unwrap_or(published_at))
            })
            .collect();
        Ok(Self {
            catalog,
            policies,
            lakes,
            raw_tables,
            seal_codec,
            visible,
            published_at,
            product_published_at,
        })
    }
}

/// The seal codec of a node holding `lakes`, `master_key` and `policies`: a sealed scan it is
/// sent reads through its own stores, with its own key, and only under its own policy version.
pub(crate) fn seal_codec(
    lakes: &Lakes,
    master_key: &MasterKey,
    policies: &Arc<ArcSwap<PolicySet>>,
) -> SealCodec {
    let stores = Arc::new(crate::lake_table::MeshStores::new(lakes.store(None)));
    SealCodec::new(Arc::new(SealHost::new(
        stores,
        master_key.clone(),
        Arc::clone(policies),
    )))
}
