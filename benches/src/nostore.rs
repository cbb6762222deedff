//! A diagnostic for the concurrency part: the gateway's own SQLite store, except that the
//! calls every query makes of it do not reach it. The grant generation is read once and then
//! answered from memory, and audit records and outcomes are accepted without being written.
//!
//! This is not a configuration meshgate offers, and it must never be one: such a gateway
//! would miss grants changed by another process, and it would send answers that no durable
//! record describes. It is here to measure, in every run and beside the real gateway, what
//! those per-query trips to the store cost under load, against a peer that makes none.
//! Nothing changes grants while the load runs, so its answers are the gateway's own.

use std::path::Path;

use meshgate::governance::{
    AccessRequest, AuditOutcome, AuditQuery, AuditRecord, GovernanceStore, Grant, GrantState,
    Millis, RequestState, SqliteStore, StoreError, StoredAudit, VisibleTo,
};
use tokio::sync::OnceCell;

/// See the module's documentation.
#[derive(Debug)]
pub struct WithoutStoreTrips {
    store: SqliteStore,
    generation: OnceCell<i64>,
}

impl WithoutStoreTrips {
    /// Open (creating if needed) the SQLite store at `path`, as the gateway would.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            store: SqliteStore::open(path).await?,
            generation: OnceCell::new(),
        })
    }
}

#[async_trait::async_trait]
impl GovernanceStore for WithoutStoreTrips {
    async fn insert_request(&self, r: &AccessRequest) -> Result<(), StoreError> {
        self.store.insert_request(r).await
    }
    async fn request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
        self.store.request(id).await
    }
    async fn requests(&self, v: Option<&VisibleTo>) -> Result<Vec<AccessRequest>, StoreError> {
        self.store.requests(v).await
    }
    async fn decide_request(
        &self,
        r: &AccessRequest,
        expected: RequestState,
        grant: Option<&Grant>,
    ) -> Result<bool, StoreError> {
        self.store.decide_request(r, expected, grant).await
    }
    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        self.store.grant(id).await
    }
    async fn grants(&self, v: Option<&VisibleTo>) -> Result<Vec<Grant>, StoreError> {
        self.store.grants(v).await
    }
    async fn update_grant(&self, g: &Grant, expected: GrantState) -> Result<bool, StoreError> {
        self.store.update_grant(g, expected).await
    }
    async fn expire(&self, now: Millis) -> Result<(), StoreError> {
        self.store.expire(now).await
    }
    /// Read once, then remembered: the trip removed.
    async fn grant_generation(&self) -> Result<i64, StoreError> {
        self.generation
            .get_or_try_init(|| self.store.grant_generation())
            .await
            .copied()
    }
    async fn grants_in_force(&self, now: Millis) -> Result<Vec<Grant>, StoreError> {
        self.store.grants_in_force(now).await
    }
    async fn lapsed_grants(&self, now: Millis) -> Result<Vec<Grant>, StoreError> {
        self.store.lapsed_grants(now).await
    }
    /// Accepted, not written: the commit removed.
    async fn record_query(&self, _: &AuditRecord) -> Result<(), StoreError> {
        Ok(())
    }
    /// Accepted, not written.
    async fn finish_query(&self, _: &str, _: &AuditOutcome) -> Result<(), StoreError> {
        Ok(())
    }
    fn flush(&self) {
        self.store.flush();
    }
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<StoredAudit>, StoreError> {
        self.store.audit(query).await
    }
}

/// The benchmark's gateway on local files (as [`crate::mesh::gateway`]), its store wrapped.
pub async fn gateway(
    data: &crate::tpch::TpchData,
    state_dir: &Path,
) -> Result<meshgate::Gateway, crate::BenchError> {
    let mut config = crate::mesh::gateway_config(data, &crate::mesh::Lake::Local, state_dir, true)?;
    let setup = crate::BenchError::setup("the diagnostic store");
    // The very store the gateway would have opened, wrapped.
    let meshgate::Governance::Sqlite(path) = &config.governance else {
        return Err(setup(
            "the benchmark gateway's store is not a SQLite file".into(),
        ));
    };
    let store = WithoutStoreTrips::open(path)
        .await
        .map_err(|e| setup(e.to_string()))?;
    config.governance = meshgate::Governance::Store(std::sync::Arc::new(store));
    meshgate::Gateway::open(config)
        .await
        .map_err(|e| crate::BenchError::setup("meshgate without store trips")(e.to_string()))
}
