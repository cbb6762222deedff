//! The seam between the governance rules and where their state lives.
//!
//! [`GovernanceStore`] is small on purpose: it stores and reads records, and its two
//! updates are compare-and-set on the state (so two owners deciding the same request at
//! once cannot both win). Every rule about who may do what lives in [`crate::workflow`].
//! [`crate::SqliteStore`] is the embedded default; a PostgreSQL store serving many gateway
//! replicas implements the same trait.

use async_trait::async_trait;

use crate::error::StoreError;
use meshgate_api::{
    AccessRequest, AuditOutcome, AuditRecord, Grant, GrantState, Millis, RequestState, StoredAudit,
};

#[async_trait]
pub trait GovernanceStore: Send + Sync + std::fmt::Debug {
    async fn insert_request(&self, request: &AccessRequest) -> Result<(), StoreError>;

    async fn request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError>;

    /// The requests `visible` may see (`None`: every request), oldest first.
    async fn requests(&self, visible: Option<&VisibleTo>)
    -> Result<Vec<AccessRequest>, StoreError>;

    /// Replace a request whose state is still `expected`, and insert the grant an approval
    /// creates, in one transaction. `false` when the request was no longer `expected`.
    async fn decide_request(
        &self,
        updated: &AccessRequest,
        expected: RequestState,
        grant: Option<&Grant>,
    ) -> Result<bool, StoreError>;

    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError>;

    /// The grants `visible` may see (`None`: every grant), oldest first.
    async fn grants(&self, visible: Option<&VisibleTo>) -> Result<Vec<Grant>, StoreError>;

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

    /// Grants in force at `now`, the snapshot the engine layers on the policy files.
    async fn grants_in_force(&self, now: Millis) -> Result<Vec<Grant>, StoreError>;

    /// Grants that are not in force at `now` but explain a denial: suspended ones, and those
    /// that ran out in the last [`LAPSED_WINDOW_DAYS`] days. They admit nobody; a denial names
    /// them ("your grant is suspended") instead of saying there is none. A store without them
    /// (the default) only makes denials less specific.
    async fn lapsed_grants(&self, now: Millis) -> Result<Vec<Grant>, StoreError> {
        let _ = now;
        Ok(Vec::new())
    }

    /// Write a query's audit record durably. The query must not send anything unless this
    /// returned `Ok`.
    async fn record_query(&self, record: &AuditRecord) -> Result<(), StoreError>;

    /// Record how a query ended. A store may hold the write back for a moment, to commit it
    /// with other writes; it returns once the outcome is written.
    async fn finish_query(&self, query_id: &str, outcome: &AuditOutcome) -> Result<(), StoreError>;

    /// The gateway is stopping: write what is held back now, and hold nothing back from here
    /// on.
    fn flush(&self) {}

    /// The audit records `query` selects, oldest first: the store applies the viewer's rule
    /// and the filters itself, so answering "my last 20 queries" never reads the whole log.
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<StoredAudit>, StoreError>;
}

/// How long after it ran out a grant still explains a denial.
pub const LAPSED_WINDOW_DAYS: i64 = 90;

/// Which audit records a store read returns. [`crate::Workflow`] builds `visible_to` from
/// the viewer; the rest is the reader's own narrowing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    /// `None`: every record (an auditor, or the gateway itself).
    pub visible_to: Option<VisibleTo>,
    pub filter: AuditFilter,
}

/// The records one viewer who is not an auditor may see: their own, and those touching a
/// product they decide. Built by [`crate::Workflow::visibility`] from a [`crate::Viewer`]:
/// the one statement of the rule, which a store may also evaluate itself (in SQL).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VisibleTo {
    pub principal: String,
    pub products: Vec<String>,
}

impl VisibleTo {
    /// May the viewer see a record made by `subject` touching `products`?
    pub fn sees<'p>(&self, subject: &str, products: impl IntoIterator<Item = &'p str>) -> bool {
        subject == self.principal || products.into_iter().any(|p| self.decides(p))
    }

    /// Does the viewer decide access to `product`?
    pub fn decides(&self, product: &str) -> bool {
        self.products.iter().any(|p| p == product)
    }
}

/// A reader's narrowing of the audit log; every field `None` reads everything visible.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only queries run by this principal.
    pub principal: Option<String>,
    /// Only queries started at or after this instant...
    pub since: Option<Millis>,
    /// ...and before this one.
    pub until: Option<Millis>,
    /// Only queries of this consumer application.
    pub app: Option<String>,
    /// Only queries with this decision (`allow`, `deny`, ...).
    pub decision: Option<String>,
    /// Only queries that touched this product.
    pub product: Option<String>,
    /// At most this many records: the newest that match.
    pub limit: Option<usize>,
}

impl AuditQuery {
    /// Does `record` match (for stores that filter in memory, and to check those that do not)?
    pub fn matches(&self, record: &AuditRecord) -> bool {
        let visible = self.visible_to.as_ref().is_none_or(|v| {
            v.sees(
                &record.principal,
                record.tables.iter().map(|t| t.product.as_str()),
            )
        });
        let f = &self.filter;
        visible
            && f.principal.as_ref().is_none_or(|p| *p == record.principal)
            && f.since.is_none_or(|s| record.started_at >= s)
            && f.until.is_none_or(|u| record.started_at < u)
            && f.app
                .as_ref()
                .is_none_or(|a| record.app.as_ref() == Some(a))
            && f.decision
                .as_ref()
                .is_none_or(|d| record.decision.as_str() == d)
            && f.product
                .as_ref()
                .is_none_or(|p| record.tables.iter().any(|t| t.product == *p))
    }
}
