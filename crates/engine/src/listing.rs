//! What one caller sees of the mesh: schemas, tables and views with their kinds, and
//! columns with the caller's treatment. The one source every listing reads: SQL
//! (`information_schema`, `SHOW TABLES`, through the catalog providers), `mesh_catalog`'s
//! `columns`, and Flight SQL metadata (through [`crate::Session::listing`]); a new front
//! door lists through here too, never through a copy.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use meshgate_catalog::{Column as ManifestColumn, Product, Table};

use crate::names::{CATALOG, SYSTEM_SCHEMA, TableKind};
use crate::scope::{QueryScope, Resolved};

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

/// Schemas (domains) where the caller may read at least one table or view, then the mesh
/// catalog's own schema. Views count once resolved (see [`QueryScope::prepare_listing`]).
pub(crate) fn schemas(scope: &QueryScope) -> Vec<String> {
    let mut schemas: Vec<String> = scope
        .shared()
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
pub(crate) async fn tables(scope: &Arc<QueryScope>) -> Vec<VisibleTable> {
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
