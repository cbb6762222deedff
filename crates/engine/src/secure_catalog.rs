//! The catalog a consumer's query sees: `mesh.<domain>.<table>`, built per query for one
//! caller and one policy version.
//!
//! Resolution happens here, when the planner looks a table up: the caller's policy for that
//! table is resolved once per query and compiled into a [`ProtectedTable`]. A table the
//! caller may not read is absent from listings (`SHOW TABLES`, `information_schema`, Flight
//! SQL metadata) and naming it fails with the policy's denial, which says how to ask for
//! access. Nothing can be registered into this catalog.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::Result;
use meshgate_policy::{Denial, PolicySet, Principal};

use crate::compile;
use crate::error::denial_to_datafusion;
use crate::gateway::GatewayInner;
use crate::protected::ProtectedTable;

/// The only catalog: `mesh`.
pub const CATALOG: &str = "mesh";

type Resolution = Result<Arc<ProtectedTable>, Denial>;

/// One caller, one policy version, one query.
#[derive(Debug)]
pub(crate) struct QueryScope {
    gateway: Arc<GatewayInner>,
    principal: Principal,
    policies: Arc<PolicySet>,
    resolved: Mutex<BTreeMap<(String, String), Resolution>>,
}

impl QueryScope {
    pub(crate) fn new(
        gateway: Arc<GatewayInner>,
        principal: Principal,
        policies: Arc<PolicySet>,
    ) -> Self {
        Self {
            gateway,
            principal,
            policies,
            resolved: Mutex::new(BTreeMap::new()),
        }
    }

    /// The caller's view of `domain.table`; `None` if no product publishes that table.
    pub(crate) fn table(&self, domain: &str, table: &str) -> Option<Resolution> {
        let key = (domain.to_string(), table.to_string());
        if let Ok(cache) = self.resolved.lock()
            && let Some(hit) = cache.get(&key)
        {
            return Some(hit.clone());
        }
        let (product, table_def) = self.gateway.catalog.table(domain, table)?;
        let resolution = self.policies.resolve(&self.principal, product, table_def).and_then(|policy| {
            let policy_id = policy.policy_id.clone();
            compile::protected_table(&self.gateway, policy).map(Arc::new).map_err(|reason| {
                // A policy that does not compile denies; it never falls back to raw data.
                tracing::error!(principal = self.principal.id(), %domain, %table, %reason, "policy does not compile");
                Denial::Unresolvable {
                    principal: self.principal.id().to_string(),
                    table: format!("{domain}.{table}"),
                    policy: policy_id,
                    reason: "the policy could not be compiled; the product's owner has been told".into(),
                }
            })
        });
        if let Ok(mut cache) = self.resolved.lock() {
            cache.insert(key, resolution.clone());
        }
        Some(resolution)
    }

    /// Tables of a domain the caller may read, in name order.
    pub(crate) fn visible_tables(&self, domain: &str) -> Vec<Arc<ProtectedTable>> {
        let names: Vec<String> = self
            .gateway
            .catalog
            .tables_in_domain(domain)
            .map(|(_, t)| t.name.clone())
            .collect();
        names
            .iter()
            .filter_map(|name| self.table(domain, name)?.ok())
            .collect()
    }

    /// Domains where the caller may read at least one table.
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
            .filter(|d| !self.visible_tables(d).is_empty())
            .collect()
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
        self.scope.visible_domains()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
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
            .visible_tables(&self.domain)
            .iter()
            .map(|t| t.policy().table.clone())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match self.scope.table(&self.domain, name) {
            None => Ok(None),
            Some(Ok(table)) => Ok(Some(table as Arc<dyn TableProvider>)),
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
