//! The gateway: the face an embedder holds. It opens the shared state once, hands out
//! sessions (with the listings they keep between them), and is the only writer of the
//! policy version in force.

use std::sync::Arc;

use meshgate_catalog::{Catalog, Product};
use meshgate_governance::{GovernanceStore, Viewer, Workflow};
use meshgate_policy::{AuthError, PolicySet, PolicySources, Principal};
use meshgate_storage::LakeStatus;

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::limits::QueryLimits;
use crate::listing::Listings;
use crate::session::Session;
use crate::shared::Shared;

/// An open gateway. Cheap to clone; every clone shares the same state.
#[derive(Debug, Clone)]
pub struct Gateway {
    shared: Arc<Shared>,
    listings: Arc<Listings>,
}

impl Gateway {
    /// Open a gateway: validate policies against the catalog, open every product's lake and
    /// prepare the shared runtime. Any problem is an error; nothing is half-opened.
    pub async fn open(config: GatewayConfig) -> Result<Self, GatewayError> {
        Ok(Self {
            shared: Arc::new(Shared::open(config).await?),
            listings: Arc::default(),
        })
    }

    /// A session for an authenticated principal. The principal's identity and attributes
    /// are fixed for the session; nothing in SQL can change them.
    pub fn session(&self, principal: Principal) -> Session {
        Session::new(
            Arc::clone(&self.shared),
            Arc::clone(&self.listings),
            principal,
        )
    }

    /// Check a user name and password against the static user directory.
    pub fn authenticate(&self, user: &str, password: &str) -> Result<Principal, AuthError> {
        self.shared.users().authenticate(user, password)
    }

    /// A static user's principal, without a password: for identities proven another way
    /// (a client certificate). `None` for names the user directory does not know.
    pub fn known_principal(&self, name: &str) -> Option<Principal> {
        self.shared.users().principal(name).cloned()
    }

    /// The gateway's operational counters (see [`crate::metrics`]).
    pub fn metrics(&self) -> &crate::metrics::Metrics {
        self.shared.metrics()
    }

    /// Every metric in Prometheus' text format, with the gauges read now.
    pub fn render_metrics(&self) -> String {
        self.shared.metrics().render(self.shared.gauges())
    }

    /// Is the governance store answering now? (`/readyz`: a replica that cannot reach it
    /// refuses every query, so it should get none.)
    pub async fn store_reachable(&self) -> Result<(), String> {
        self.shared
            .governance()
            .grant_generation()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }

    /// Write the audit outcomes still queued, waiting at most `within`: for a gateway that is
    /// stopping, after its queries ended (the store holds outcomes back a moment to commit
    /// them with other writes). Returns how many were still unwritten when it gave up.
    pub async fn flush_audit(&self, within: std::time::Duration) -> i64 {
        self.shared.governance().flush();
        let metrics = self.shared.metrics();
        let deadline = tokio::time::Instant::now() + within;
        while metrics.audit_pending() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        metrics.audit_pending().max(0)
    }

    /// The key that signs what this gateway hands out for `purpose` (see
    /// [`meshgate_protect::MasterKey::signing_key`]): the same on every replica that shares
    /// the master secret.
    pub fn signing_key(&self, purpose: &str) -> zeroize::Zeroizing<[u8; 32]> {
        self.shared.master_key().signing_key(purpose)
    }

    /// The static users' names: identities that only a password (or a certificate naming
    /// them) proves, which no token issuer may assert.
    pub fn user_names(&self) -> Vec<String> {
        self.shared.users().names().map(str::to_string).collect()
    }

    /// The catalog in force now (a publish replaces it; hold the returned one for a
    /// consistent view).
    pub fn catalog(&self) -> Arc<Catalog> {
        self.shared.catalog()
    }

    /// When the mesh version in force was published (milliseconds since the epoch): the
    /// gateway's start, or its last [`Gateway::publish`].
    pub fn published_at(&self) -> i64 {
        self.shared.mesh().published_at
    }

    /// The policy version in force now (each query layers the grants in force on it).
    pub fn policies(&self) -> Arc<PolicySet> {
        self.shared.policies()
    }

    /// The governance store (access requests, grants, audit).
    pub fn governance(&self) -> &Arc<dyn GovernanceStore> {
        self.shared.governance()
    }

    /// The access workflow (requests, approvals, grants) over this gateway's store and
    /// catalog. Its decisions are enforced from the next query on.
    pub fn workflow(&self) -> Workflow<'_> {
        self.shared.workflow(None)
    }

    /// [`Gateway::workflow`] acting for `caller`: a request of theirs is checked against the
    /// access rules with their own roles and attributes (from their token, say), not only
    /// those the user directory knows.
    pub fn workflow_for<'a>(&'a self, caller: &'a Principal) -> Workflow<'a> {
        self.shared.workflow(Some(caller))
    }

    /// Whether `filter` can serve as a grant's row filter on `product` (what
    /// [`Workflow::approve`] needs to check an approval).
    pub fn check_grant_filter(&self, product: &Product, filter: &str) -> Result<(), String> {
        let mesh = self.shared.mesh();
        self.shared
            .compiler(&mesh)
            .check_grant_filter(product, filter)
    }

    /// Which governance records `principal` sees (the rule is governance's, see
    /// [`Viewer`]).
    pub fn viewer(principal: &Principal) -> Viewer {
        Viewer::new(principal.id(), principal.roles().iter().map(String::as_str))
    }

    /// The SQL functions consumers may call, with DataFusion's documentation section
    /// (`Math Functions`, `String Functions`, ...), for clients that list them.
    pub fn sql_functions(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = self
            .shared
            .template()
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
        self.shared.admission().limits()
    }

    /// What each product's lake holds now: file count, bytes, freshness, refused files, or
    /// why it cannot be read. For operators and the catalog; it never returns data.
    pub async fn lake_status(&self) -> Vec<LakeStatus> {
        self.shared.lake_status().await
    }

    /// Load new policy sources and, only if they validate, make them the version in force.
    /// On error the previous version stays in force.
    pub async fn reload_policies(&self, sources: &PolicySources) -> Result<String, GatewayError> {
        let policies = PolicySet::load(&self.shared.catalog(), sources).await?;
        let fingerprint = policies.fingerprint().to_string();
        self.shared.replace_policies(policies)?;
        Ok(fingerprint)
    }

    /// Publish a new version of the mesh: `catalog` (products added, changed or removed)
    /// with the policies of `sources`. Only if all of it checks (the policies against the
    /// catalog, every product's lake opened with the gateway's storage settings, every row
    /// filter compiled) does it become the version the next query sees; queries running now
    /// finish on the version they started with. On error the previous version stays in
    /// force, untouched. Returns the new policy version.
    pub async fn publish(
        &self,
        catalog: Catalog,
        sources: &PolicySources,
    ) -> Result<String, GatewayError> {
        let mesh = self.shared.publish(catalog, sources).await?;
        let version = mesh.policies.load().fingerprint().to_string();
        Ok(version)
    }

    /// Measure the quality rules of the products `caller` decides (owns or is a delegate
    /// of), or of every product when `caller` is `None` (the gateway's own schedule). With
    /// `product`, that product only; a caller who does not decide it is refused. Results
    /// are recorded for `mesh_catalog.quality` and returned with the measured values, which
    /// only deciders get (see [`QualityResult::measured_for`](crate::QualityResult)).
    pub async fn check_quality(
        &self,
        caller: Option<&Principal>,
        product: Option<&str>,
    ) -> Result<Vec<crate::QualityResult>, GatewayError> {
        let catalog = self.shared.catalog();
        if let Some(id) = product
            && catalog.product(id).is_none()
        {
            return Err(GatewayError::NotFound(format!(
                "there is no product `{id}`; mesh_catalog.products lists them"
            )));
        }
        let decides = |p: &Product| caller.is_none_or(|c| p.owner.decides(c.id()));
        let chosen: Vec<String> = catalog
            .products()
            .filter(|p| product.is_none_or(|id| p.id == id))
            .filter(|p| decides(p))
            .map(|p| p.id.clone())
            .collect();
        if chosen.is_empty() {
            return Err(GatewayError::NotAllowed(match product {
                Some(id) => format!(
                    "only the owners and delegates of `{id}` run its quality checks; its latest results are in mesh_catalog.quality"
                ),
                None => "you own no product whose quality you could check; every product's latest results are in mesh_catalog.quality".into(),
            }));
        }
        self.shared.check_quality(Some(&chosen)).await
    }

    /// For operators' tools (`meshgate policy diff --data`): how many rows of
    /// `domain.table` the row predicate `after` adds to `before`, and removes, counted over
    /// the product's raw files now. Not reachable from any front door: only a program that
    /// holds the gateway (and so the lakes' credentials) can ask.
    pub async fn count_row_changes(
        &self,
        domain: &str,
        table: &str,
        before: &str,
        after: &str,
    ) -> Result<(u64, u64), GatewayError> {
        self.shared
            .count_row_changes(domain, table, before, after)
            .await
    }
}
