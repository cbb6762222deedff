//! `mesh.mesh_catalog`: the mesh catalog as SQL tables, built for the caller at query time.
//!
//! Discovery (`products`, `tables`, `columns`) is open to every authenticated principal and
//! never holds product data. Governance records (`access_requests`, `grants`, `audit`,
//! `audit_tables`, `audit_columns`, `flows`) are themselves governed, by the rule in
//! [`meshgate_governance::Workflow::visibility`]: an auditor sees everything, an owner (or
//! delegate) what touches their products, everyone their own. Each table is materialised from the store
//! for one query and one caller, so there is no path to rows the caller may not see.

use std::collections::BTreeSet;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::catalog::{MemTable, SchemaProvider, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::logical_expr::{Expr, Operator, TableProviderFilterPushDown};
use meshgate_governance::{AuditFilter, StoredAudit, Viewer, Workflow};

use crate::listing::{self, VisibleTable};
use crate::names::{CATALOG, SYSTEM_SCHEMA, TableKind};
use crate::quality::QualityResult;
use crate::scope::{QueryScope, Resolved};

/// Declares each `mesh_catalog` table once: its variant, SQL name and description. What
/// it holds is its builder's (see [`SystemSchema::materialize`], which must name every
/// variant); its schema is what that builder makes with no rows.
macro_rules! system_tables {
    ($($variant:ident => $name:literal, $description:literal;)+) => {
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub(crate) enum SystemTable {
            $($variant,)+
        }

        impl SystemTable {
            pub(crate) const ALL: &[SystemTable] = &[$(Self::$variant,)+];

            pub(crate) fn name(self) -> &'static str {
                match self {
                    $(Self::$variant => $name,)+
                }
            }

            pub(crate) fn description(self) -> &'static str {
                match self {
                    $(Self::$variant => $description,)+
                }
            }

            pub(crate) fn named(name: &str) -> Option<Self> {
                Self::ALL.iter().copied().find(|t| t.name() == name)
            }
        }
    };
}

system_tables! {
    Products => "products", "Data products: owners, status, SLOs, whether you may read each and how to ask";
    Tables => "tables", "Every product's tables and views, listed whether or not you may read them";
    Columns => "columns", "Product columns with their classification and how each is shown to you";
    AccessRequests => "access_requests", "Access requests you may see: yours, and those for products you decide";
    Grants => "grants", "Grants you may see: yours, and those of products you decide";
    Audit => "audit", "One record per query you may see: who, how, the decision and the outcome";
    AuditTables => "audit_tables", "The product tables each audited query touched, and the policy applied";
    AuditColumns => "audit_columns", "The columns each audited query read, with their treatment";
    Flows => "flows", "Data flows: which product's data reached which consumer application";
    Quality => "quality", "Each product's quality rules and freshness SLO with their latest check (measured values for its owners)";
}

/// The `mesh_catalog` tables as listings show them (built for the caller, so their schemas
/// are exactly what a query gets).
pub(crate) async fn listing(scope: Arc<QueryScope>) -> Vec<VisibleTable> {
    let system = SystemSchema { scope, empty: true };
    let mut out = Vec::new();
    for &table in SystemTable::ALL {
        let Ok(provider) = system.materialize(table, AuditFilter::default()).await else {
            continue;
        };
        out.push(VisibleTable {
            catalog: CATALOG.to_string(),
            schema: SYSTEM_SCHEMA.to_string(),
            name: table.name().to_string(),
            table_type: TableKind::System,
            arrow_schema: provider.schema(),
            description: table.description().to_string(),
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

    fn real(mut self, name: &str, values: impl IntoIterator<Item = Option<f64>>) -> Self {
        self.fields.push(Field::new(name, DataType::Float64, true));
        self.arrays
            .push(Arc::new(values.into_iter().collect::<Float64Array>()));
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
    /// A table's rows for this caller, read now; `filter` narrows the `audit` table's read
    /// (see [`audit_filter`]).
    async fn materialize(
        &self,
        table: SystemTable,
        filter: AuditFilter,
    ) -> Result<Arc<dyn TableProvider>> {
        match table {
            SystemTable::Products => self.products().await,
            SystemTable::Tables => self.tables().await,
            SystemTable::Columns => self.columns().await,
            SystemTable::AccessRequests => self.access_requests().await,
            SystemTable::Grants => self.grants().await,
            SystemTable::Audit => self.audit(filter).await,
            SystemTable::AuditTables => self.audit_tables().await,
            SystemTable::AuditColumns => self.audit_columns().await,
            SystemTable::Flows => self.flows().await,
            SystemTable::Quality => self.quality(),
        }
    }

    fn viewer(&self) -> Viewer {
        let principal = self.scope.principal();
        Viewer::new(principal.id(), principal.roles().iter().map(String::as_str))
    }

    fn workflow(&self) -> Workflow<'_> {
        self.scope.shared().workflow(Some(self.scope.principal()))
    }

    async fn products(&self) -> Result<Arc<dyn TableProvider>> {
        let shared = self.scope.shared();
        let (lakes, products): (Vec<_>, Vec<_>) = if self.empty {
            (Vec::new(), Vec::new())
        } else {
            (
                shared.lake_status().await,
                self.scope.catalog().all_versions().collect(),
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
                "support",
                products.iter().map(|p| {
                    let channels: Vec<String> = p
                        .support
                        .iter()
                        .map(|s| {
                            let mut text = s.channel.clone();
                            if let Some(tool) = &s.tool {
                                text.push_str(&format!(" ({tool})"));
                            }
                            if let Some(url) = &s.url {
                                text.push_str(&format!(" {url}"));
                            }
                            text
                        })
                        .collect();
                    Some(channels.join("; "))
                }),
            )
            .text(
                "tables",
                products.iter().map(|p| {
                    Some(
                        p.tables
                            .iter()
                            .map(|t| format!("{}.{}", p.domain, t.sql_name))
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
                "published_at",
                products
                    .iter()
                    .map(|p| self.scope.mesh().product_published_at.get(&p.id).copied()),
            )
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
                "quality",
                products
                    .iter()
                    .map(|p| crate::quality::summary(&shared.quality().of(p))),
            )
            .text(
                "sunset",
                products
                    .iter()
                    .map(|p| p.sunset.as_ref().map(|s| s.date.as_str())),
            )
            .text(
                "replaced_by",
                products.iter().map(|p| {
                    self.scope
                        .catalog()
                        .successor(p)
                        .map(|next| next.version.clone())
                }),
            )
            .text(
                "how_to_request",
                products.iter().zip(&access).map(|(p, ok)| {
                    (!ok).then(|| {
                        format!(
                            "{}; decided by team {} ({})",
                            meshgate_api::how_to_request(&p.id),
                            p.owner.team,
                            joined(&p.owner.owners)
                        )
                    })
                }),
            )
            .table()
    }

    /// Every quality rule of every product with its latest result (see [`crate::quality`]
    /// for why measured values reach only the product's owners and delegates).
    fn quality(&self) -> Result<Arc<dyn TableProvider>> {
        let principal = self.scope.principal();
        let board = self.scope.shared().quality();
        let rows: Vec<(bool, QualityResult)> = self
            .scope
            .catalog()
            .products()
            .filter(|_| !self.empty)
            .flat_map(|p| {
                let decides = p.owner.decides(principal.id());
                board.of(p).into_iter().map(move |r| (decides, r))
            })
            .collect();
        Columns::default()
            .text("product_id", rows.iter().map(|(_, r)| Some(&r.product)))
            .text("version", rows.iter().map(|(_, r)| Some(&r.version)))
            .text(
                "table_name",
                rows.iter().map(|(_, r)| r.rule.table.as_ref()),
            )
            .text(
                "column_name",
                rows.iter().map(|(_, r)| r.rule.column.as_ref()),
            )
            .text("rule_id", rows.iter().map(|(_, r)| Some(&r.rule.id)))
            .text(
                "dimension",
                rows.iter().map(|(_, r)| r.rule.dimension.as_ref()),
            )
            .text(
                "expectation",
                rows.iter()
                    .map(|(_, r)| Some(r.rule.expectation()).filter(|e| !e.is_empty())),
            )
            .text("status", rows.iter().map(|(_, r)| Some(r.status.as_str())))
            .real(
                "measured",
                rows.iter().map(|(decides, r)| r.measured_for(*decides)),
            )
            .text(
                "detail",
                rows.iter()
                    .map(|(_, r)| Some(&r.detail).filter(|d| !d.is_empty())),
            )
            .time("checked_at", rows.iter().map(|(_, r)| r.checked_at))
            .table()
    }

    async fn tables(&self) -> Result<Arc<dyn TableProvider>> {
        let catalog = self.scope.catalog();
        let rows: Vec<_> = catalog
            .all_versions()
            .filter(|_| !self.empty)
            .flat_map(|p| p.tables.iter().map(move |t| (p, t)))
            .collect();
        // Which rows the caller gets, as a fact without the filter's text (which is the
        // owner's, and may name values the caller may not know).
        let mut your_rows = Vec::with_capacity(rows.len());
        for (product, table) in &rows {
            your_rows.push(
                match self.scope.resolve(&product.domain, &table.sql_name).await {
                    Some(Ok(Resolved::Table(t))) if t.filters_rows() => {
                        "some (a row filter applies)"
                    }
                    Some(Ok(Resolved::Table(_))) => "all",
                    Some(Ok(Resolved::View { .. })) => "as the view's tables",
                    Some(Err(_)) | None => "no access",
                },
            );
        }
        Columns::default()
            .text("product_id", rows.iter().map(|(p, _)| Some(&p.id)))
            .text("table_schema", rows.iter().map(|(p, _)| Some(&p.domain)))
            .text("table_name", rows.iter().map(|(_, t)| Some(&t.sql_name)))
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
            .text("your_rows", your_rows.iter().map(|r| Some(*r)))
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
    async fn visible_audit(&self, filter: AuditFilter) -> Result<Vec<StoredAudit>> {
        if self.empty {
            return Ok(Vec::new());
        }
        self.workflow()
            .visible_audit(&self.viewer(), filter)
            .await
            .map_err(store_error)
    }

    async fn audit(&self, filter: AuditFilter) -> Result<Arc<dyn TableProvider>> {
        let rows = self.visible_audit(filter).await?;
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
            .text("replica", rows.iter().map(|a| a.record.replica.as_ref()))
            .text(
                "workers",
                rows.iter()
                    .map(|a| (!a.workers.is_empty()).then(|| a.workers.join(", "))),
            )
            .table()
    }

    async fn audit_tables(&self) -> Result<Arc<dyn TableProvider>> {
        let records = self.visible_audit(AuditFilter::default()).await?;
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
        let records = self.visible_audit(AuditFilter::default()).await?;
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
                .visible_flows(&self.viewer(), None)
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
        SystemTable::ALL
            .iter()
            .map(|t| t.name().to_string())
            .collect()
    }

    /// A lazy table: listings (information_schema, GetTables) see its schema without
    /// reading anything; only a scan reads the store.
    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(table) = SystemTable::named(name) else {
            return Ok(None);
        };
        let shape = SystemSchema {
            scope: Arc::clone(&self.scope),
            empty: true,
        };
        let empty = shape.materialize(table, AuditFilter::default()).await?;
        Ok(Some(Arc::new(LazySystemTable {
            table,
            schema: empty.schema(),
            scope: Arc::clone(&self.scope),
        })))
    }

    fn table_exist(&self, name: &str) -> bool {
        SystemTable::named(name).is_some()
    }
}

/// A `mesh_catalog` table whose rows are read from the store when it is scanned, for the
/// scanning query's caller.
#[derive(Debug)]
struct LazySystemTable {
    table: SystemTable,
    schema: datafusion::arrow::datatypes::SchemaRef,
    scope: Arc<QueryScope>,
}

#[async_trait::async_trait]
impl TableProvider for LazySystemTable {
    fn schema(&self) -> datafusion::arrow::datatypes::SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> datafusion::datasource::TableType {
        datafusion::datasource::TableType::Base
    }

    /// The `audit` table's simple filters narrow the store's read (see [`audit_filter`]);
    /// DataFusion still applies them to what comes back.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.table == SystemTable::Audit && narrows(&mut AuditFilter::default(), f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn datafusion::catalog::Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
        let system = SystemSchema {
            scope: Arc::clone(&self.scope),
            empty: false,
        };
        let filter = audit_filter(filters, limit);
        let table = system.materialize(self.table, filter).await?;
        table.scan(state, projection, filters, limit).await
    }
}

/// The store read a scan of `audit` needs: `principal = '<text>'` and comparisons of
/// `started_at` with a timestamp narrow it, and a `limit` (which DataFusion passes only when
/// no filter is left above the scan) keeps the newest records. Everything else is read and
/// filtered by DataFusion. The narrowing is never tighter than the filter: bounds round
/// outwards to the millisecond.
fn audit_filter(filters: &[Expr], limit: Option<usize>) -> AuditFilter {
    let mut out = AuditFilter {
        limit,
        ..AuditFilter::default()
    };
    for filter in filters {
        narrows(&mut out, filter);
    }
    out
}

/// Narrow `out` by `filter` if it is one of the shapes [`audit_filter`] knows; whether it was.
fn narrows(out: &mut AuditFilter, filter: &Expr) -> bool {
    let Expr::BinaryExpr(binary) = filter else {
        return false;
    };
    let (Expr::Column(column), Expr::Literal(value, _)) = (&*binary.left, &*binary.right) else {
        return false;
    };
    match (column.name.as_str(), binary.op, value) {
        ("principal", Operator::Eq, ScalarValue::Utf8(Some(text))) => {
            out.principal = Some(text.clone());
            true
        }
        ("started_at", op, value) => {
            let Some(millis) = floor_millis(value) else {
                return false;
            };
            match op {
                Operator::Gt | Operator::GtEq => {
                    out.since = Some(out.since.map_or(millis, |s| s.max(millis)));
                    true
                }
                Operator::Lt | Operator::LtEq => {
                    let until = millis.saturating_add(1);
                    out.until = Some(out.until.map_or(until, |u| u.min(until)));
                    true
                }
                _ => false,
            }
        }
        _ => false,
    }
}

/// A timestamp literal in milliseconds, rounded down.
fn floor_millis(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::TimestampSecond(Some(v), _) => v.checked_mul(1000),
        ScalarValue::TimestampMillisecond(Some(v), _) => Some(*v),
        ScalarValue::TimestampMicrosecond(Some(v), _) => Some(v.div_euclid(1000)),
        ScalarValue::TimestampNanosecond(Some(v), _) => Some(v.div_euclid(1_000_000)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use datafusion::logical_expr::{col, lit};

    use super::*;

    fn at(millis: i64) -> Expr {
        lit(ScalarValue::TimestampMillisecond(Some(millis), None))
    }

    #[test]
    fn simple_audit_filters_narrow_the_store_read_and_nothing_else_does() {
        let filters = [
            col("principal").eq(lit("intern")),
            col("started_at").gt_eq(at(100)),
            col("started_at").lt(at(300)),
            col("started_at").lt_eq(at(250)),
            // Not understood: left to DataFusion.
            col("method").eq(lit("DoGet")),
            col("principal").not_eq(lit("x")),
        ];
        let filter = audit_filter(&filters, Some(7));
        assert_eq!(
            filter,
            AuditFilter {
                principal: Some("intern".into()),
                since: Some(100),
                until: Some(251),
                limit: Some(7),
                ..AuditFilter::default()
            }
        );
        assert!(!narrows(&mut AuditFilter::default(), &filters[4]));
        assert!(!narrows(&mut AuditFilter::default(), &filters[5]));
    }

    #[test]
    fn bounds_round_outwards_so_the_read_is_never_tighter_than_the_filter() {
        let nanos = |v: i64| lit(ScalarValue::TimestampNanosecond(Some(v), None));
        let since = audit_filter(&[col("started_at").gt(nanos(1_999_999))], None);
        assert_eq!(
            since.since,
            Some(1),
            "started_at > 1.999999 ms reads from 1 ms"
        );
        let until = audit_filter(&[col("started_at").lt_eq(nanos(1_000_001))], None);
        assert_eq!(
            until.until,
            Some(2),
            "started_at <= 1.000001 ms reads up to 2 ms"
        );
    }
}
