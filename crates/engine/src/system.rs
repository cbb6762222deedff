//! `mesh.mesh_catalog`: the mesh catalog as SQL tables, built for the caller at query time.
//!
//! Discovery (`products`, `tables`, `columns`) is open to every authenticated principal and
//! never holds product data. Governance records (`access_requests`, `grants`, `audit`,
//! `audit_tables`, `audit_columns`, `flows`) are themselves governed, by the rule in
//! [`meshgate_governance::Viewer`]: an auditor sees everything, an owner (or delegate) what
//! touches their products, everyone their own. Each table is materialised from the store
//! for one query and one caller, so there is no path to rows the caller may not see.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::error::{DataFusionError, Result};
use meshgate_governance::{StoredAudit, Viewer, Workflow};

use crate::listing::{self, VisibleTable};
use crate::names::{CATALOG, SYSTEM_SCHEMA, TableKind};
use crate::scope::QueryScope;

pub(crate) const SYSTEM_TABLES: &[&str] = &[
    "products",
    "tables",
    "columns",
    "access_requests",
    "grants",
    "audit",
    "audit_tables",
    "audit_columns",
    "flows",
];

/// The `mesh_catalog` tables as listings show them (built for the caller, so their schemas
/// are exactly what a query gets).
pub(crate) async fn listing(scope: Arc<QueryScope>) -> Vec<VisibleTable> {
    let system = SystemSchema { scope, empty: true };
    let mut out = Vec::new();
    for name in SYSTEM_TABLES {
        let Ok(Some(table)) = system.materialize(name).await else {
            continue;
        };
        out.push(VisibleTable {
            catalog: CATALOG.to_string(),
            schema: SYSTEM_SCHEMA.to_string(),
            name: name.to_string(),
            table_type: TableKind::System,
            arrow_schema: table.schema(),
            description: format!("The mesh catalog: {name}"),
            product: String::new(),
            primary_key: Vec::new(),
        });
    }
    out
}

/// A table under construction: named, typed columns.
#[derive(Default)]
struct Columns {
    fields: Vec<Field>,
    arrays: Vec<ArrayRef>,
}

impl Columns {
    fn text<S: AsRef<str>>(
        mut self,
        name: &str,
        values: impl IntoIterator<Item = Option<S>>,
    ) -> Self {
        let array: StringArray = values
            .into_iter()
            .collect::<Vec<_>>()
            .iter()
            .map(|v| v.as_ref().map(AsRef::as_ref))
            .collect();
        self.fields.push(Field::new(name, DataType::Utf8, true));
        self.arrays.push(Arc::new(array));
        self
    }

    fn int(mut self, name: &str, values: impl IntoIterator<Item = Option<i64>>) -> Self {
        self.fields.push(Field::new(name, DataType::Int64, true));
        self.arrays
            .push(Arc::new(values.into_iter().collect::<Int64Array>()));
        self
    }

    fn time(mut self, name: &str, values: impl IntoIterator<Item = Option<i64>>) -> Self {
        let array = values
            .into_iter()
            .collect::<TimestampMillisecondArray>()
            .with_timezone("UTC");
        self.fields.push(Field::new(
            name,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ));
        self.arrays.push(Arc::new(array));
        self
    }

    fn flag(mut self, name: &str, values: impl IntoIterator<Item = Option<bool>>) -> Self {
        self.fields.push(Field::new(name, DataType::Boolean, true));
        self.arrays
            .push(Arc::new(values.into_iter().collect::<BooleanArray>()));
        self
    }

    fn table(self) -> Result<Arc<dyn TableProvider>> {
        let schema = Arc::new(Schema::new(self.fields));
        let batch = RecordBatch::try_new(Arc::clone(&schema), self.arrays)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

fn some<T>(values: impl IntoIterator<Item = T>) -> impl Iterator<Item = Option<T>> {
    values.into_iter().map(Some)
}

fn joined(list: &[String]) -> String {
    list.join(", ")
}

fn store_error(e: impl std::fmt::Display) -> DataFusionError {
    tracing::error!(error = %e, "governance store unavailable for a mesh_catalog table");
    DataFusionError::Execution(
        "the mesh catalog's records cannot be read now; try again later".into(),
    )
}

/// The `mesh_catalog` schema for one query.
#[derive(Debug)]
pub(crate) struct SystemSchema {
    pub(crate) scope: Arc<QueryScope>,
    /// Build every table without rows (and without reading anything): their schemas.
    pub(crate) empty: bool,
}

impl SystemSchema {
    /// A table's rows for this caller, read now.
    async fn materialize(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let table = match name {
            "products" => self.products().await?,
            "tables" => self.tables()?,
            "columns" => self.columns().await?,
            "access_requests" => self.access_requests().await?,
            "grants" => self.grants().await?,
            "audit" => self.audit().await?,
            "audit_tables" => self.audit_tables().await?,
            "audit_columns" => self.audit_columns().await?,
            "flows" => self.flows().await?,
            _ => return Ok(None),
        };
        Ok(Some(table))
    }

    fn viewer(&self) -> Viewer {
        let principal = self.scope.principal();
        Viewer::new(principal.id(), principal.roles().iter().map(String::as_str))
    }

    fn workflow(&self) -> Workflow<'_> {
        self.scope.shared().workflow()
    }

    async fn products(&self) -> Result<Arc<dyn TableProvider>> {
        let shared = self.scope.shared();
        let (lakes, products): (Vec<_>, Vec<_>) = if self.empty {
            (Vec::new(), Vec::new())
        } else {
            (
                shared.lake_status().await,
                shared.catalog().products().collect(),
            )
        };
        let policies = self.scope.policies();
        let principal = self.scope.principal();
        let access: Vec<bool> = products
            .iter()
            .map(|p| policies.check_access(principal, p).is_ok())
            .collect();
        let lake = |id: &str| lakes.iter().find(|l| l.product == id);
        Columns::default()
            .text("product_id", products.iter().map(|p| Some(&p.id)))
            .text("domain", products.iter().map(|p| Some(&p.domain)))
            .text("name", products.iter().map(|p| Some(&p.name)))
            .text("version", products.iter().map(|p| Some(&p.version)))
            .text("status", products.iter().map(|p| Some(&p.status)))
            .text("description", products.iter().map(|p| Some(&p.description)))
            .text("owner_team", products.iter().map(|p| Some(&p.owner.team)))
            .text(
                "owners",
                products.iter().map(|p| Some(joined(&p.owner.owners))),
            )
            .text("tags", products.iter().map(|p| Some(joined(&p.tags))))
            .text(
                "tables",
                products.iter().map(|p| {
                    Some(
                        p.tables
                            .iter()
                            .map(|t| format!("{}.{}", p.domain, t.name))
                            .collect::<Vec<_>>()
                            .join(", "),
                    )
                }),
            )
            .text(
                "slos",
                products.iter().map(|p| {
                    Some(
                        p.slos
                            .iter()
                            .map(|s| match &s.unit {
                                Some(unit) => format!("{}={} {unit}", s.property, s.value),
                                None => format!("{}={}", s.property, s.value),
                            })
                            .collect::<Vec<_>>()
                            .join("; "),
                    )
                }),
            )
            .text("bucket", products.iter().map(|p| Some(&p.location.bucket)))
            .time(
                "last_modified",
                products.iter().map(|p| {
                    lake(&p.id)
                        .and_then(|l| l.last_modified)
                        .map(|t| t.timestamp_millis())
                }),
            )
            .int(
                "files",
                products
                    .iter()
                    .map(|p| lake(&p.id).map(|l| i64::try_from(l.files).unwrap_or(i64::MAX))),
            )
            .flag("has_access", some(access.iter().copied()))
            .text(
                "how_to_request",
                products.iter().zip(&access).map(|(p, ok)| {
                    (!ok).then(|| {
                        format!(
                            "meshgate access request {} --purpose <why>, or the Flight action \
                             mesh.request_access; decided by team {} ({})",
                            p.id,
                            p.owner.team,
                            joined(&p.owner.owners)
                        )
                    })
                }),
            )
            .table()
    }

    fn tables(&self) -> Result<Arc<dyn TableProvider>> {
        let catalog = self.scope.shared().catalog();
        let rows: Vec<_> = catalog
            .products()
            .filter(|_| !self.empty)
            .flat_map(|p| p.tables.iter().map(move |t| (p, t)))
            .collect();
        Columns::default()
            .text("product_id", rows.iter().map(|(p, _)| Some(&p.id)))
            .text("table_schema", rows.iter().map(|(p, _)| Some(&p.domain)))
            .text("table_name", rows.iter().map(|(_, t)| Some(&t.name)))
            .text(
                "table_type",
                rows.iter().map(|(_, t)| {
                    Some(
                        if t.is_view() {
                            TableKind::View
                        } else {
                            TableKind::Table
                        }
                        .as_str(),
                    )
                }),
            )
            .text(
                "description",
                rows.iter().map(|(_, t)| Some(&t.description)),
            )
            .table()
    }

    /// Every column of every product with the caller's treatment (see
    /// [`listing::columns`]).
    async fn columns(&self) -> Result<Arc<dyn TableProvider>> {
        let listed = if self.empty {
            Vec::new()
        } else {
            listing::columns(&self.scope).await
        };
        let rows: Vec<_> = listed
            .iter()
            .map(|c| (c.product, c.table, c.position, c.column, &c.treatment))
            .collect();
        Columns::default()
            .text("product_id", rows.iter().map(|r| Some(&r.0.id)))
            .text("table_schema", rows.iter().map(|r| Some(&r.0.domain)))
            .text("table_name", rows.iter().map(|r| Some(&r.1.name)))
            .text("column_name", rows.iter().map(|r| Some(&r.3.name)))
            .int(
                "ordinal_position",
                rows.iter().map(|r| Some(r.2 as i64 + 1)),
            )
            .text(
                "data_type",
                rows.iter().map(|r| Some(r.3.data_type.to_string())),
            )
            .text("logical_type", rows.iter().map(|r| Some(&r.3.logical_type)))
            .flag("is_nullable", rows.iter().map(|r| Some(r.3.nullable)))
            .flag("primary_key", rows.iter().map(|r| Some(r.3.primary_key)))
            .text(
                "classification",
                rows.iter().map(|r| r.3.classification.as_ref()),
            )
            .text("tags", rows.iter().map(|r| Some(joined(&r.3.tags))))
            .text("description", rows.iter().map(|r| Some(&r.3.description)))
            .text("your_treatment", rows.iter().map(|r| Some(r.4)))
            .table()
    }

    async fn access_requests(&self) -> Result<Arc<dyn TableProvider>> {
        let rows = if self.empty {
            Vec::new()
        } else {
            self.workflow()
                .visible_requests(&self.viewer())
                .await
                .map_err(store_error)?
        };
        Columns::default()
            .text("request_id", rows.iter().map(|r| Some(&r.id)))
            .text("requester", rows.iter().map(|r| Some(&r.requester)))
            .text("product_id", rows.iter().map(|r| Some(&r.product)))
            .text(
                "columns",
                rows.iter().map(|r| r.columns.as_deref().map(joined)),
            )
            .text("purpose", rows.iter().map(|r| Some(&r.purpose)))
            .int(
                "valid_days",
                rows.iter().map(|r| Some(i64::from(r.valid_days))),
            )
            .text("state", rows.iter().map(|r| Some(r.state.as_str())))
            .time("created_at", rows.iter().map(|r| Some(r.created_at)))
            .time("expires_at", rows.iter().map(|r| Some(r.expires_at)))
            .time("decided_at", rows.iter().map(|r| r.decided_at))
            .text("decided_by", rows.iter().map(|r| r.decided_by.as_ref()))
            .text(
                "decision_comment",
                rows.iter().map(|r| r.decision_comment.as_ref()),
            )
            .text("grant_id", rows.iter().map(|r| r.grant_id.as_ref()))
            .table()
    }

    async fn grants(&self) -> Result<Arc<dyn TableProvider>> {
        let rows = if self.empty {
            Vec::new()
        } else {
            self.workflow()
                .visible_grants(&self.viewer())
                .await
                .map_err(store_error)?
        };
        Columns::default()
            .text("grant_id", rows.iter().map(|g| Some(&g.id)))
            .text("request_id", rows.iter().map(|g| g.request_id.as_ref()))
            .text("principal", rows.iter().map(|g| Some(&g.principal)))
            .text("product_id", rows.iter().map(|g| Some(&g.product)))
            .text(
                "columns",
                rows.iter().map(|g| g.columns.as_deref().map(joined)),
            )
            .text("row_filter", rows.iter().map(|g| g.row_filter.as_ref()))
            .text("purpose", rows.iter().map(|g| Some(&g.purpose)))
            .text("state", rows.iter().map(|g| Some(g.state.as_str())))
            .text("approved_by", rows.iter().map(|g| Some(&g.approved_by)))
            .time("created_at", rows.iter().map(|g| Some(g.created_at)))
            .time("valid_until", rows.iter().map(|g| Some(g.valid_until)))
            .time("changed_at", rows.iter().map(|g| Some(g.changed_at)))
            .text("changed_by", rows.iter().map(|g| Some(&g.changed_by)))
            .text(
                "change_reason",
                rows.iter().map(|g| g.change_reason.as_ref()),
            )
            .table()
    }

    /// The audit records the caller may see (see [`Workflow::visible_audit`]).
    async fn visible_audit(&self) -> Result<Vec<StoredAudit>> {
        if self.empty {
            return Ok(Vec::new());
        }
        self.workflow()
            .visible_audit(&self.viewer())
            .await
            .map_err(store_error)
    }

    async fn audit(&self) -> Result<Arc<dyn TableProvider>> {
        let rows = self.visible_audit().await?;
        let count = |v: Option<u64>| v.map(|v| i64::try_from(v).unwrap_or(i64::MAX));
        Columns::default()
            .text("query_id", rows.iter().map(|a| Some(&a.record.query_id)))
            .time("started_at", rows.iter().map(|a| Some(a.record.started_at)))
            .text("principal", rows.iter().map(|a| Some(&a.record.principal)))
            .text("app", rows.iter().map(|a| a.record.app.as_ref()))
            .text("client", rows.iter().map(|a| a.record.client.as_ref()))
            .text("method", rows.iter().map(|a| Some(&a.record.method)))
            .text(
                "statement_sha256",
                rows.iter().map(|a| Some(&a.record.statement_sha256)),
            )
            .text(
                "statement",
                rows.iter().map(|a| a.record.statement.as_ref()),
            )
            .text(
                "policy_version",
                rows.iter().map(|a| Some(&a.record.policy_version)),
            )
            .text(
                "decision",
                rows.iter().map(|a| Some(a.record.decision.as_str())),
            )
            .text("status", rows.iter().map(|a| Some(a.status.as_str())))
            .text(
                "products",
                rows.iter().map(|a| {
                    let products: BTreeSet<&str> = a.products().collect();
                    Some(products.into_iter().collect::<Vec<_>>().join(", "))
                }),
            )
            .int("rows_returned", rows.iter().map(|a| count(a.rows_returned)))
            .int(
                "bytes_returned",
                rows.iter().map(|a| count(a.bytes_returned)),
            )
            .int("duration_ms", rows.iter().map(|a| count(a.duration_ms)))
            .time("finished_at", rows.iter().map(|a| a.finished_at))
            .text("error", rows.iter().map(|a| a.record.error.as_ref()))
            .table()
    }

    async fn audit_tables(&self) -> Result<Arc<dyn TableProvider>> {
        let records = self.visible_audit().await?;
        let rows: Vec<_> = records
            .iter()
            .flat_map(|a| a.record.tables.iter().map(move |t| (a, t)))
            .collect();
        Columns::default()
            .text(
                "query_id",
                rows.iter().map(|(a, _)| Some(&a.record.query_id)),
            )
            .text("product_id", rows.iter().map(|(_, t)| Some(&t.product)))
            .text("table_name", rows.iter().map(|(_, t)| Some(&t.table)))
            .text("access", rows.iter().map(|(_, t)| Some(t.access.as_str())))
            .text(
                "decision",
                rows.iter().map(|(a, _)| Some(a.record.decision.as_str())),
            )
            .text("policy_id", rows.iter().map(|(_, t)| t.policy_id.as_ref()))
            .text(
                "row_filters",
                rows.iter().map(|(_, t)| Some(joined(&t.row_filters))),
            )
            .text(
                "grant_ids",
                rows.iter().map(|(_, t)| Some(joined(&t.grant_ids))),
            )
            .table()
    }

    async fn audit_columns(&self) -> Result<Arc<dyn TableProvider>> {
        let records = self.visible_audit().await?;
        let rows: Vec<_> = records
            .iter()
            .flat_map(|a| {
                a.record
                    .tables
                    .iter()
                    .flat_map(move |t| t.columns.iter().map(move |c| (a, t, c)))
            })
            .collect();
        Columns::default()
            .text(
                "query_id",
                rows.iter().map(|(a, _, _)| Some(&a.record.query_id)),
            )
            .text("product_id", rows.iter().map(|(_, t, _)| Some(&t.product)))
            .text("table_name", rows.iter().map(|(_, t, _)| Some(&t.table)))
            .text("column_name", rows.iter().map(|(_, _, c)| Some(&c.name)))
            .text("treatment", rows.iter().map(|(_, _, c)| Some(&c.treatment)))
            .text("rule", rows.iter().map(|(_, _, c)| c.rule.as_ref()))
            .table()
    }

    async fn flows(&self) -> Result<Arc<dyn TableProvider>> {
        let rows = if self.empty {
            Vec::new()
        } else {
            self.workflow()
                .visible_flows(&self.viewer())
                .await
                .map_err(store_error)?
        };
        let count = |v: u64| Some(i64::try_from(v).unwrap_or(i64::MAX));
        Columns::default()
            .text("product_id", rows.iter().map(|f| Some(&f.product)))
            .text("consumer_app", rows.iter().map(|f| Some(&f.consumer_app)))
            .text(
                "principals",
                rows.iter().map(|f| Some(joined(&f.principals))),
            )
            .text("columns", rows.iter().map(|f| Some(joined(&f.columns))))
            .text(
                "treatments",
                rows.iter().map(|f| Some(joined(&f.treatments))),
            )
            .int("queries", rows.iter().map(|f| count(f.queries)))
            .int("rows", rows.iter().map(|f| count(f.rows)))
            .time("first_access", rows.iter().map(|f| Some(f.first_access)))
            .time("last_access", rows.iter().map(|f| Some(f.last_access)))
            .table()
    }
}

#[async_trait::async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        SYSTEM_TABLES.iter().map(|t| t.to_string()).collect()
    }

    /// A lazy table: listings (information_schema, GetTables) see its schema without
    /// reading anything; only a scan reads the store.
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(&name) = SYSTEM_TABLES.iter().find(|t| **t == name) else {
            return Ok(None);
        };
        let shape = SystemSchema {
            scope: Arc::clone(&self.scope),
            empty: true,
        };
        let Some(empty) = shape.materialize(name).await? else {
            return Ok(None);
        };
        Ok(Some(Arc::new(SystemTable {
            name,
            schema: empty.schema(),
            scope: Arc::clone(&self.scope),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        SYSTEM_TABLES.contains(&name)
    }
}

/// A `mesh_catalog` table whose rows are read from the store when it is scanned, for the
/// scanning query's caller.
#[derive(Debug)]
struct SystemTable {
    name: &'static str,
    schema: datafusion::arrow::datatypes::SchemaRef,
    scope: Arc<QueryScope>,
}

#[async_trait::async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Base
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[datafusion::logical_expr::Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let system = SystemSchema {
            scope: Arc::clone(&self.scope),
            empty: false,
        };
        let table = system.materialize(self.name).await?.ok_or_else(|| {
            DataFusionError::Internal(format!("no mesh_catalog table {}", self.name))
        })?;
        table.scan(state, projection, filters, limit).await
    }
}
