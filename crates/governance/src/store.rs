//! The seam between the governance rules and where their state lives.
//!
//! [`GovernanceStore`] is small on purpose: it stores and reads records, and its two
//! updates are compare-and-set on the state (so two owners deciding the same request at
//! once cannot both win). Every rule about who may do what lives in [`crate::workflow`].
//! [`crate::SqliteStore`] is the embedded default; a PostgreSQL store serving many gateway
//! replicas implements the same trait.

use async_trait::async_trait;

use crate::error::StoreError;
use crate::model::{
    AccessRequest, AuditOutcome, AuditRecord, Grant, GrantState, Millis, RequestState, StoredAudit,
};

#[async_trait]
pub trait GovernanceStore: Send + Sync + std::fmt::Debug {
    async fn insert_request(&self, request: &AccessRequest) -> Result<(), StoreError>;

    async fn request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError>;

    async fn requests(&self) -> Result<Vec<AccessRequest>, StoreError>;

    /// Replace a request whose state is still `expected`, and insert the grant an approval
    /// creates, in one transaction. `false` when the request was no longer `expected`.
    async fn decide_request(
        &self,
        updated: &AccessRequest,
        expected: RequestState,
        grant: Option<&Grant>,
    ) -> Result<bool, StoreError>;

    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError>;

    async fn grants(&self) -> Result<Vec<Grant>, StoreError>;

    /// Replace a grant whose state is still `expected`. `false` when it was not.
    async fn update_grant(&self, updated: &Grant, expected: GrantState)
    -> Result<bool, StoreError>;

    /// Mark undecided requests past their expiry and active or suspended grants past their
    /// `valid_until` as expired. Enforcement never depends on this having run (an expired
    /// grant is not in force whatever its state says); it keeps the records truthful.
    async fn expire(&self, now: Millis) -> Result<(), StoreError>;

    /// A number that changes with every grant change, read in one round trip: a gateway
    /// rebuilds the grants it enforces when it differs from the one it built them at.
    async fn grant_generation(&self) -> Result<i64, StoreError>;

    /// Grants in force at `now`, the casbin adapter's and the policy layer's source.
    async fn grants_in_force(&self, now: Millis) -> Result<Vec<Grant>, StoreError>;

    /// Write a query's audit record durably. The query must not send anything unless this
    /// returned `Ok`.
    async fn record_query(&self, record: &AuditRecord) -> Result<(), StoreError>;

    /// Record how a query ended.
    async fn finish_query(&self, query_id: &str, outcome: &AuditOutcome) -> Result<(), StoreError>;

    /// Every audit record, oldest first. Callers filter by who may see what.
    async fn audit(&self) -> Result<Vec<StoredAudit>, StoreError>;
}
