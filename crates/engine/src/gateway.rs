//! The gateway: the catalog, the current policy version, the product lakes and one shared
//! DataFusion runtime, opened once and shared by every session.

use std::collections::HashMap;
use std::sync::Arc;

use arc_swap::ArcSwap;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SessionState, context::SessionConfig};
use meshgate_catalog::{Catalog, Table};
use meshgate_policy::{AuthError, PolicySet, PolicySources, Principal, UserDirectory};
use meshgate_protect::{KeyOrigin, MasterKey};
use meshgate_storage::{Lakes, StorageConfig};

use crate::compile;
use crate::error::GatewayError;
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
    /// A fully configured DataFusion session (functions, options, the shared runtime with its
    /// object stores and caches) that every query's state is copied from.
    pub(crate) template: SessionState,
    /// The raw (unprotected) scan of each product table, keyed by (domain, table). Never
    /// registered in any catalog: reachable only through a `ProtectedTable`.
    pub(crate) raw_tables: RawTables,
}

/// The raw scan of each product table, by (domain, table).
pub(crate) type RawTables = HashMap<(String, String), Arc<ListingTable>>;

impl Gateway {
    /// Open a gateway: validate policies against the catalog, open every product's lake and
    /// prepare the shared runtime. Any problem is an error; nothing is half-opened.
    pub async fn open(config: GatewayConfig) -> Result<Self, GatewayError> {
        let catalog = Arc::new(config.catalog);
        let policies = PolicySet::load(&catalog, &config.policies).await?;
        let lakes = Lakes::open(&catalog, &config.storage)
            .map_err(|e| GatewayError::Config(e.to_string()))?;

        // One runtime for every session and query: object stores and the Parquet metadata
        // cache are shared, so footers are read once per file, not once per session.
        let runtime = RuntimeEnvBuilder::new()
            .build_arc()
            .map_err(|e| GatewayError::Config(e.to_string()))?;
        lakes
            .register(&runtime)
            .map_err(|e| GatewayError::Config(e.to_string()))?;

        let mut session_config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema(CATALOG, "public")
            .with_create_default_catalog_and_schema(false);
        if let Some(partitions) = config.target_partitions {
            session_config = session_config.with_target_partitions(partitions);
        }
        let template = SessionStateBuilder::new()
            .with_config(session_config)
            .with_runtime_env(runtime)
            .with_default_features()
            .build();

        let parquet_options = template.table_options().parquet.clone();
        let view_types = parquet_options.global.schema_force_view_types;
        let mut raw_tables = RawTables::new();
        for product in catalog.products() {
            for table in product.tables.iter().filter(|t| !t.is_view()) {
                let url = product.location.table_url(table);
                let table_url = ListingTableUrl::parse(&url).map_err(|e| {
                    GatewayError::Config(format!(
                        "product `{}`: bad table location {url}: {e}",
                        product.id
                    ))
                })?;
                let format = ParquetFormat::default().with_options(parquet_options.clone());
                let options = ListingOptions::new(Arc::new(format)).with_file_extension(".parquet");
                let listing = ListingTableConfig::new(table_url)
                    .with_listing_options(options)
                    .with_schema(scan_schema(table, view_types));
                let raw = ListingTable::try_new(listing).map_err(|e| {
                    GatewayError::Config(format!(
                        "product `{}`, table `{}`: {e}",
                        product.id, table.name
                    ))
                })?;
                raw_tables.insert((product.domain.clone(), table.name.clone()), Arc::new(raw));
            }
        }

        compile::validate_row_filters(&template, &policies, &catalog, &raw_tables)?;

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
                template,
                raw_tables,
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

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// The policy version in force now.
    pub fn policies(&self) -> Arc<PolicySet> {
        self.inner.policies.load_full()
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

/// The schema a table is scanned with: the manifest's types, with strings and binaries as
/// Arrow view types when DataFusion reads Parquet that way (its default, and its fastest).
fn scan_schema(table: &Table, view_types: bool) -> SchemaRef {
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|c| {
            let data_type = match (&c.data_type, view_types) {
                (DataType::Utf8, true) => DataType::Utf8View,
                (DataType::Binary, true) => DataType::BinaryView,
                (other, _) => other.clone(),
            };
            Field::new(&c.name, data_type, c.nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}
