//! The caller's catalog as DataFusion sees it: `mesh.<domain>.<table>` and
//! `mesh.mesh_catalog.*`, one instance per query. Names resolve through the query's scope,
//! listings come from [`crate::listing`], and nothing can be registered.
//!
//! A table or view the caller may not read is absent from listings (`SHOW TABLES`,
//! `information_schema`) and naming it fails with the policy's denial, which says how to ask
//! for access.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider, TableProvider};
use datafusion::error::Result;

use crate::error::denial_to_datafusion;
use crate::listing;
use crate::names::{CATALOG, SYSTEM_SCHEMA};
use crate::scope::QueryScope;
use crate::system::SystemSchema;

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
        listing::schemas(&self.scope)
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
        self.scope.catalog().has_domain(name).then(|| {
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
        listing::tables_in(&self.scope, &self.domain)
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
            .shared()
            .catalog()
            .table(&self.domain, name)
            .is_some()
    }
}
