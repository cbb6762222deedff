//! What opening a gateway takes: [`GatewayConfig`], where governance lives, what the audit
//! keeps. Plain data; [`crate::Gateway::open`] turns it into the shared state.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion_distributed::ChannelResolver;
use url::Url;

use meshgate_catalog::Catalog;
use meshgate_governance::{GovernanceStore, PostgresOptions, PostgresStore, SqliteStore};
use meshgate_lineage::LineageConfig;
use meshgate_policy::{PolicySources, UserDirectory};
use meshgate_protect::MasterKey;
use meshgate_storage::StorageConfig;

use crate::error::GatewayError;
use crate::limits::QueryLimits;

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
    /// Give the planner of a caller behind a row filter the statistics of the rows it sees
    /// (row count; min, max, null count of its clear columns), computed by reading each file
    /// once under that filter in the background (one file at a time, resting three times as
    /// long after each). Off: such callers' scans report no statistics, and their joins and
    /// filters plan without them.
    pub statistics_behind_row_filters: bool,
    /// Access requests, grants and the audit log. Every query is recorded here before it
    /// runs, and grants in force here admit callers; if it cannot be read or written,
    /// queries are refused.
    pub governance: Governance,
    pub audit: AuditSettings,
    /// This gateway's name among the replicas that share one store, written on each of its
    /// audit records (`None`: records name no replica).
    pub replica: Option<String>,
    /// OpenLineage events for every query (off unless a file or URL is set).
    pub lineage: LineageConfig,
    /// Hand large queries to workers (`None`: every query runs in this process).
    pub distribution: Option<Distribution>,
}

/// Where access requests, grants and the audit log live.
#[derive(Debug, Clone)]
pub enum Governance {
    /// The embedded default: a SQLite file (created, and migrated, on open).
    Sqlite(PathBuf),
    /// A PostgreSQL database that every replica of the gateway shares (migrated on open).
    Postgres(PostgresOptions),
    /// A store opened by the embedding application.
    Store(Arc<dyn GovernanceStore>),
}

impl Governance {
    pub(crate) async fn open(self) -> Result<Arc<dyn GovernanceStore>, GatewayError> {
        match self {
            Self::Store(store) => Ok(store),
            Self::Sqlite(path) => SqliteStore::open(&path)
                .await
                .map(|s| Arc::new(s) as Arc<dyn GovernanceStore>)
                .map_err(|e| GatewayError::Config(e.to_string())),
            Self::Postgres(options) => PostgresStore::open(&options)
                .await
                .map(|s| Arc::new(s) as Arc<dyn GovernanceStore>)
                .map_err(|e| {
                    GatewayError::Config(format!("PostgreSQL store at {}: {e}", options.url))
                }),
        }
    }

    /// Open the configured store to read only: never created, migrated or written (for
    /// tools that report on a gateway's state).
    pub async fn open_read_only(self) -> Result<Arc<dyn GovernanceStore>, GatewayError> {
        match self {
            Self::Store(store) => Ok(store),
            Self::Sqlite(path) => SqliteStore::open_read_only(&path)
                .await
                .map(|s| Arc::new(s) as Arc<dyn GovernanceStore>)
                .map_err(|e| GatewayError::Config(e.to_string())),
            Self::Postgres(options) => PostgresStore::open_read_only(&options)
                .await
                .map(|s| Arc::new(s) as Arc<dyn GovernanceStore>)
                .map_err(|e| {
                    GatewayError::Config(format!("PostgreSQL store at {}: {e}", options.url))
                }),
        }
    }
}

/// What the audit keeps (`[audit]` in `meshgate.toml`).
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuditSettings {
    /// Store each statement's text next to its hash. Off by default: statements can carry
    /// personal data in their literals.
    pub keep_statements: bool,
}

/// The workers a gateway may hand stages to and the way to them: signed channels, and which
/// workers answer now. Implemented by `meshgate-distributed`.
#[async_trait::async_trait]
pub trait WorkerNetwork: ChannelResolver + Send + Sync + fmt::Debug {
    /// Every configured worker.
    fn configured(&self) -> Vec<Url>;
    /// The configured workers that answered their last probe.
    fn live(&self) -> Vec<Url>;
    /// Ask `workers` now whether they answer, leave out of the next plans those that do not,
    /// and return them. Called when a distributed query fails with an error that names no
    /// worker: a worker that saw its peer go away reports it as text, which the gateway
    /// cannot tell from the query's own failure.
    async fn recheck(&self, workers: &[Url]) -> Vec<Url>;
}

/// What to do when a configured worker does not answer at planning time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnWorkerDown {
    /// Distribute over the workers that answer (in process when none does).
    #[default]
    Skip,
    /// Run the query in process unless every worker answers.
    Local,
}

/// How this gateway distributes queries.
#[derive(Clone, Debug)]
pub struct Distribution {
    pub network: Arc<dyn WorkerNetwork>,
    /// Queries whose sealed scans read at least this many bytes of Parquet are distributed
    /// (0: every query that reads a product).
    pub min_scan_bytes: u64,
    /// Bytes of Parquet one partition of a task reads; fewer means more tasks.
    pub bytes_per_partition: usize,
    pub on_worker_down: OnWorkerDown,
}
