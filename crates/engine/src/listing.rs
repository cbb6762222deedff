//! What one caller sees of the mesh: schemas, tables and views with their kinds, and
//! columns with the caller's treatment. The one source every listing reads: SQL
//! (`information_schema`, `SHOW TABLES`, through the catalog providers), `mesh_catalog`'s
//! `columns`, and Flight SQL metadata (through [`crate::Session::listing`]); a new front
//! door lists through here too, never through a copy.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use datafusion::arrow::datatypes::SchemaRef;
use meshgate_catalog::{Column as ManifestColumn, Product, Table};
use meshgate_policy::{PolicySet, Principal};

use crate::names::{CATALOG, SYSTEM_SCHEMA, TableKind};
use crate::scope::{QueryScope, Resolved};
use crate::shared::MeshState;

/// A table as one caller sees it (for catalog metadata).
#[derive(Debug, Clone)]
pub struct VisibleTable {
    pub catalog: String,
    pub schema: String,
    pub name: String,
    pub table_type: TableKind,
    /// Columns as the caller sees them: hidden columns absent, protected ones with their
    /// protected type.
    pub arrow_schema: SchemaRef,
    pub description: String,
    /// The product's id (empty for the mesh catalog's own tables).
    pub product: String,
    /// Primary key columns the caller can see, in key order.
    pub primary_key: Vec<String>,
}

/// Everything one caller may list: schemas in name order, then every table and view they
/// may read followed by the mesh catalog's tables.
#[derive(Debug, Clone, Default)]
pub struct Listing {
    pub schemas: Vec<String>,
    pub tables: Vec<VisibleTable>,
}

/// A manifest column with what this caller gets of it.
pub(crate) struct ListedColumn<'a> {
    pub(crate) product: &'a Product,
    pub(crate) table: &'a Table,
    /// Its position in the manifest, from 0.
    pub(crate) position: usize,
    pub(crate) column: &'a ManifestColumn,
    /// The treatment as catalog readers see it, `no access` for a product the caller may not
    /// read, `as the view's tables` for a view's column.
    pub(crate) treatment: String,
}

/// At most this many listed tables are kept, over every caller (see [`Listings`]); an
/// empty listing counts as one.
const KEPT_TABLES: usize = 16_384;

/// What each caller listed of the products (their schemas and tables, as
/// [`Listings::products`] answers), kept while nothing it depends on changes. A BI tool lists
/// again on every refresh (GetTables, GetDbSchemas, GetPrimaryKeys...), and resolving every
/// table of a large mesh for the caller is nearly all of a listing's cost.
///
/// Kept under one mesh version and one policy version, grants in force included (a grant
/// given, revoked or run out, a reload or a publish each make new ones, as for
/// [`crate::Draft`]), and only until the first product's lifecycle changes (a sunset ending:
/// the product is then refused). Keyed by the whole principal (roles and attributes) and the
/// default schema. Bounded: when full it starts over.
#[derive(Debug, Default)]
pub(crate) struct Listings {
    kept: Mutex<Kept>,
}

/// The listings of one mesh and policy version, held weakly so that they keep no old version
/// alive (a version gone cannot be upgraded, so nothing kept under it is answered).
#[derive(Default)]
struct Kept {
    mesh: Weak<MeshState>,
    policies: Weak<PolicySet>,
    /// The first moment (milliseconds since the epoch) at which a product's lifecycle
    /// changes: from then on nothing kept is answered.
    until: i64,
    tables: usize,
    by_caller: HashMap<(Principal, Option<String>), Arc<Listing>>,
}

impl std::fmt::Debug for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never who listed what.
        f.debug_struct("Kept")
            .field("callers", &self.by_caller.len())
            .field("tables", &self.tables)
            .finish_non_exhaustive()
    }
}

impl Kept {
    fn holds(&self, scope: &QueryScope, now: i64) -> bool {
        now < self.until
            && self
                .mesh
                .upgrade()
                .zip(self.policies.upgrade())
                .is_some_and(|(mesh, policies)| scope.same_versions(&mesh, &policies))
    }
}

impl Listings {
    /// The schemas and product tables `scope`'s caller may read (no `mesh_catalog` tables:
    /// see [`crate::Session::listing`]); listed through `scope` unless kept.
    pub(crate) async fn products(&self, scope: &Arc<QueryScope>) -> Arc<Listing> {
        // Read before resolving, so a lifecycle change during the listing is one to come.
        let now = meshgate_governance::now_millis();
        let key = (
            scope.principal().clone(),
            scope.default_schema().map(str::to_string),
        );
        if let Some(kept) = self.kept.lock().ok().and_then(|kept| {
            kept.holds(scope, now)
                .then(|| kept.by_caller.get(&key).cloned())
                .flatten()
        }) {
            return kept;
        }
        let tables = tables(scope).await;
        let listed = Arc::new(Listing {
            schemas: schemas(scope),
            tables,
        });
        // A poisoned lock keeps nothing: every listing is then made afresh.
        if let Ok(mut kept) = self.kept.lock() {
            if !kept.holds(scope, now) {
                let (mesh, policies) = scope.versions();
                *kept = Kept {
                    mesh: Arc::downgrade(mesh),
                    policies: Arc::downgrade(policies),
                    until: scope
                        .catalog()
                        .lifecycle_changes_at(now)
                        .unwrap_or(i64::MAX),
                    ..Kept::default()
                };
            }
            let size = listed.tables.len() + 1;
            if kept.tables + size > KEPT_TABLES {
                kept.by_caller.clear();
                kept.tables = 0;
            }
            if let Some(replaced) = kept.by_caller.insert(key, Arc::clone(&listed)) {
                kept.tables -= replaced.tables.len() + 1;
            }
            kept.tables += size;
        }
        listed
    }
}

/// Schemas (domains) where the caller may read at least one table or view, then the mesh
/// catalog's own schema. Views count once resolved (see [`QueryScope::prepare_listing`]).
pub(crate) fn schemas(scope: &QueryScope) -> Vec<String> {
    let mut schemas: Vec<String> = scope
        .catalog()
        .domains()
        .into_iter()
        .filter(|d| !scope.visible(d).is_empty())
        .map(str::to_string)
        .collect();
    schemas.push(SYSTEM_SCHEMA.to_string());
    schemas.sort();
    schemas
}

/// The tables and views the caller may read in one schema, in name order.
pub(crate) fn tables_in(scope: &QueryScope, domain: &str) -> Vec<Resolved> {
    scope.visible(domain)
}

/// Every table and view the caller may read, with the columns they see.
async fn tables(scope: &Arc<QueryScope>) -> Vec<VisibleTable> {
    scope.prepare_listing().await;
    let catalog = scope.catalog();
    let mut out = Vec::new();
    for domain in catalog.domains() {
        for resolved in tables_in(scope, domain) {
            let definition = catalog
                .table(resolved.domain(), resolved.name())
                .map(|(_, t)| t);
            let arrow_schema = resolved.provider().schema();
            let primary_key = definition
                .map(|t| {
                    t.columns
                        .iter()
                        .filter(|c| c.primary_key && arrow_schema.field_with_name(&c.name).is_ok())
                        .map(|c| c.name.clone())
                        .collect()
                })
                .unwrap_or_default();
            out.push(VisibleTable {
                catalog: CATALOG.to_string(),
                schema: resolved.domain().to_string(),
                name: resolved.name().to_string(),
                table_type: resolved.kind(),
                arrow_schema,
                description: definition
                    .map(|t| t.description.clone())
                    .unwrap_or_default(),
                product: resolved.product().to_string(),
                primary_key,
            });
        }
    }
    out
}

/// Every column of every product as its manifest describes it, with the caller's
/// treatment. A product the caller may not read shows all its columns (that is what they
/// would ask for); in one they may read, a column hidden from them, or a table or view that
/// does not resolve for them, is absent, as in every other listing.
pub(crate) async fn columns(scope: &Arc<QueryScope>) -> Vec<ListedColumn<'_>> {
    let catalog = scope.catalog();
    let mut out = Vec::new();
    for product in catalog.all_versions() {
        let admitted = scope
            .policies()
            .check_access(scope.principal(), product)
            .is_ok();
        for table in &product.tables {
            let resolved = if admitted {
                match scope.resolve(&product.domain, &table.sql_name).await {
                    Some(Ok(resolved)) => Some(resolved),
                    _ => continue,
                }
            } else {
                None
            };
            for (position, column) in table.columns.iter().enumerate() {
                let treatment = match &resolved {
                    None => "no access".to_string(),
                    Some(Resolved::View { .. }) => "as the view's tables".to_string(),
                    Some(Resolved::Table(t)) => {
                        match t.policy().visible_columns().find(|c| c.name == column.name) {
                            Some(c) => c.describe(),
                            None => continue,
                        }
                    }
                };
                out.push(ListedColumn {
                    product,
                    table,
                    position,
                    column,
                    treatment,
                });
            }
        }
    }
    out
}
