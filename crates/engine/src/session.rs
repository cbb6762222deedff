//! A session: one authenticated principal running queries. It admits each statement (a
//! running slot, the time limit), plans it through [`crate::plan`], has it audited through
//! [`crate::audit`], and lists through [`crate::listing`]; it decides nothing itself.

use std::sync::Arc;

use std::time::Instant;
use tracing::Instrument;

use datafusion::arrow::array::RecordBatch;
use datafusion::common::ScalarValue;
use datafusion::physical_plan::SendableRecordBatchStream;
use meshgate_governance::now_millis;
use meshgate_policy::{PolicySet, Principal};

use crate::audit::Auditor;
use crate::distribute;
use crate::error::GatewayError;
use crate::listing::{Listing, Listings, VisibleTable};
use crate::plan::Statement;
use crate::query::{Prepared, Query, columns_of};
use crate::scope::QueryScope;
use crate::shared::{MeshState, Shared};
use crate::{params, plan, shape, system};

/// One principal's connection to the gateway.
#[derive(Debug, Clone)]
pub struct Session {
    shared: Arc<Shared>,
    /// What callers listed, kept by the gateway across its sessions.
    listings: Arc<Listings>,
    principal: Principal,
    default_schema: Option<String>,
    /// The caller's network address, for the audit log.
    client: Option<String>,
    /// How queries arrive (`library`, `flight`, ...), for the audit log.
    method: String,
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, listings: Arc<Listings>, principal: Principal) -> Self {
        Self {
            shared,
            listings,
            principal,
            default_schema: None,
            client: None,
            method: "library".into(),
        }
    }

    /// Record `client` (an address) and `method` (how queries arrive) in the audit log.
    pub fn with_origin(mut self, client: Option<String>, method: impl Into<String>) -> Self {
        self.client = client;
        self.method = method.into();
        self
    }

    /// Resolve unqualified table names in this schema (a domain), as the Flight SQL session
    /// option `schema` does. The catalog is always `mesh`.
    pub fn with_default_schema(mut self, schema: Option<String>) -> Self {
        self.default_schema = schema;
        self
    }

    pub fn default_schema(&self) -> Option<&str> {
        self.default_schema.as_deref()
    }

    pub fn principal(&self) -> &Principal {
        &self.principal
    }

    /// A scope under the policy version and the grants in force now.
    async fn scope(&self) -> Result<Arc<QueryScope>, GatewayError> {
        Ok(self.scope_under(self.shared.current_policies().await?))
    }

    /// A scope under `current`, the mesh and policy versions just read.
    fn scope_under(&self, current: (Arc<MeshState>, Arc<PolicySet>)) -> Arc<QueryScope> {
        plan::scope(
            Arc::clone(&self.shared),
            current,
            self.principal.clone(),
            self.default_schema.clone(),
        )
    }

    fn auditor(&self) -> Auditor<'_> {
        Auditor {
            shared: &self.shared,
            principal: &self.principal,
            client: self.client.as_deref(),
            method: &self.method,
        }
    }

    /// Plan a query as this principal. Refuses anything but read-only statements; resolves
    /// the caller's policy for every table named. Waits for a running slot (see
    /// [`crate::QueryLimits`]) which the query holds until it is dropped or its stream ends.
    pub async fn query(&self, sql: &str) -> Result<Query, GatewayError> {
        self.query_with_params(sql, None).await
    }

    /// [`Session::query`] with values for its `$1`/`?` parameters.
    pub async fn query_with_params(
        &self,
        sql: &str,
        params: Option<&[ScalarValue]>,
    ) -> Result<Query, GatewayError> {
        self.query_statement(Statement::Sql(sql), params).await
    }

    /// [`Session::query_with_params`] for SQL or a Substrait plan: both are planned, checked
    /// and enforced the same way.
    pub async fn query_statement(
        &self,
        statement: Statement<'_>,
        params: Option<&[ScalarValue]>,
    ) -> Result<Query, GatewayError> {
        erased(self.plan_query(statement, params, None)).await
    }

    /// [`Session::query_statement`] without parameters, continuing from `draft` (what
    /// [`Session::prepare_draft`] planned of this very statement) when it still applies:
    /// to this session's principal and default schema, under the mesh and the policy
    /// version (grants included) in force now. Otherwise, and always when it is `None`, the
    /// statement is planned afresh.
    pub async fn query_drafted(
        &self,
        statement: Statement<'_>,
        draft: Option<Draft>,
    ) -> Result<Query, GatewayError> {
        erased(self.plan_query(statement, None, draft)).await
    }

    async fn plan_query(
        &self,
        statement: Statement<'_>,
        params: Option<&[ScalarValue]>,
        draft: Option<Draft>,
    ) -> Result<Query, GatewayError> {
        // Spans name the steps only: no statement, no principal, no value.
        let span = tracing::info_span!("query", otel.name = "query");
        self.plan_query_in(statement, params, draft)
            .instrument(span)
            .await
    }

    async fn plan_query_in(
        &self,
        statement: Statement<'_>,
        params: Option<&[ScalarValue]>,
        draft: Option<Draft>,
    ) -> Result<Query, GatewayError> {
        let text = statement.text();
        let sql: &str = &text;
        let admission = self.shared.admission();
        let deadline = admission
            .limits()
            .timeout
            .map(|limit| (Instant::now() + limit, limit));
        let slot = Arc::new(
            admission
                .admit(self.principal.id(), deadline.map(|(at, _)| at))
                .await?,
        );
        let started = Instant::now();
        let started_at = now_millis();
        let current = self.shared.current_policies().await?;
        let draft = draft.filter(|draft| {
            let applies = params.is_none() && draft.applies(self, &current);
            let outcome = if applies { "continued" } else { "replanned" };
            self.shared.metrics().draft(outcome);
            applies
        });
        let scope = match &draft {
            Some(draft) => Arc::clone(&draft.scope),
            None => self.scope_under(current),
        };
        let planning = async {
            match draft {
                Some(Draft {
                    state,
                    logical,
                    large,
                    ..
                }) => shape::plan_on(large, plan::to_run(state, logical, false)).await,
                None => {
                    let parsed = plan::parse(&scope, statement)?;
                    let large = parsed.large;
                    shape::plan_on(large, plan::plan_to_run(&scope, parsed, params)).await
                }
            }
        };
        let planning = planning.instrument(tracing::info_span!("plan", otel.name = "plan"));
        let planned = match deadline {
            Some((at, limit)) => tokio::time::timeout_at(at.into(), planning)
                .await
                .unwrap_or_else(|_| {
                    Err(GatewayError::DeadlineExceeded(format!(
                        "planning took longer than the query time limit of {limit:?}"
                    )))
                }),
            None => planning.await,
        };
        // Large enough, and with workers to take it, the query is cut into stages for them.
        let planned = match planned {
            Ok((state, logical, physical)) => {
                match distribute::explain(&self.shared, &scope, &state, &logical).await {
                    Ok(Some(explained)) => Ok((state, logical, explained, None)),
                    Ok(None) => {
                        match distribute::distribute(
                            &self.shared,
                            &scope,
                            &state,
                            &logical,
                            &physical,
                        )
                        .await
                        {
                            Ok(distributed) => Ok((state, logical, physical, distributed)),
                            Err(error) => Err(error),
                        }
                    }
                    Err(error) => Err(error),
                }
            }
            Err(error) => Err(error),
        };
        let (state, logical, physical, distributed) = match planned {
            Ok(planned) => planned,
            Err(error) => {
                self.auditor()
                    .refused(sql, &scope, started_at, &error)
                    .await;
                return Err(error);
            }
        };
        // The record names what the sealed scans read, as planned here (the distributed plan
        // carries the same scans to the workers).
        let audit = self
            .auditor()
            .allowed(sql, &scope, started_at, started, &physical);
        let (plan, task, audit, recheck) = match distributed {
            None => (physical, plan::task_context(&scope, &state), audit, None),
            Some(d) => (
                d.plan,
                plan::task_context(&scope, &d.state),
                audit.with_workers(d.workers),
                Some(d.recheck),
            ),
        };
        Ok(Query::new(
            plan,
            Arc::new(task),
            Arc::clone(&scope.io),
            &logical,
            slot,
            deadline,
            audit,
        )
        .with_warnings(scope.warnings())
        .with_recheck(recheck))
    }

    /// Plan a statement without running it: its result columns and, when no values are
    /// given, its parameters. With values, the columns are those of the statement with the
    /// values bound. Planning holds a running slot (planning is work too) and gives it back
    /// when done. A refusal is audited here, at every front door that prepares.
    pub async fn prepare(
        &self,
        sql: &str,
        params: Option<&[ScalarValue]>,
    ) -> Result<Prepared, GatewayError> {
        self.prepare_statement(Statement::Sql(sql), params).await
    }

    /// [`Session::prepare`] for SQL or a Substrait plan.
    pub async fn prepare_statement(
        &self,
        statement: Statement<'_>,
        params: Option<&[ScalarValue]>,
    ) -> Result<Prepared, GatewayError> {
        let span = tracing::info_span!("plan", otel.name = "plan");
        erased(self.plan_prepared(statement, params).instrument(span)).await
    }

    /// [`Session::prepare_statement`] without parameters, also keeping what was planned as a
    /// [`Draft`] that [`Session::query_drafted`] can continue from: a front door that plans a
    /// statement to describe it and is then asked to run it (Flight SQL's `GetFlightInfo`,
    /// then `DoGet`) plans it once.
    pub async fn prepare_draft(
        &self,
        statement: Statement<'_>,
    ) -> Result<(Prepared, Draft), GatewayError> {
        let span = tracing::info_span!("plan", otel.name = "plan");
        let (prepared, draft) = erased(self.plan_drafted(statement, None).instrument(span)).await?;
        let draft = draft.ok_or_else(|| {
            GatewayError::Internal("a statement prepared without values left no draft".into())
        })?;
        Ok((prepared, draft))
    }

    async fn plan_prepared(
        &self,
        statement: Statement<'_>,
        params: Option<&[ScalarValue]>,
    ) -> Result<Prepared, GatewayError> {
        self.plan_drafted(statement, params)
            .await
            .map(|(prepared, _)| prepared)
    }

    /// Plan a statement to describe it; without values, what was planned is kept as a draft.
    async fn plan_drafted(
        &self,
        statement: Statement<'_>,
        params: Option<&[ScalarValue]>,
    ) -> Result<(Prepared, Option<Draft>), GatewayError> {
        let text = statement.text();
        let sql: &str = &text;
        let admission = self.shared.admission();
        let deadline = admission
            .limits()
            .timeout
            .map(|limit| Instant::now() + limit);
        let _slot = admission.admit(self.principal.id(), deadline).await?;
        let started_at = now_millis();
        let scope = self.scope().await?;
        let planning = plan::plan(&scope, statement, params);
        let planned = match deadline {
            Some(at) => tokio::time::timeout_at(at.into(), planning)
                .await
                .unwrap_or_else(|_| {
                    Err(GatewayError::DeadlineExceeded(
                        "planning took longer than the query time limit".into(),
                    ))
                }),
            None => planning.await,
        };
        let prepared = planned.and_then(|(state, logical, large)| {
            let prepared = Prepared {
                columns: columns_of(&logical),
                parameters: params::parameter_schema(&logical)?,
                warnings: scope.warnings(),
            };
            let draft = params.is_none().then(|| Draft {
                scope: Arc::clone(&scope),
                state,
                logical,
                large,
            });
            Ok((prepared, draft))
        });
        if let Err(error) = &prepared {
            self.auditor().refused(sql, &scope, started_at, error).await;
        }
        prepared
    }

    /// Plan and run a query, returning its result stream.
    pub async fn sql(&self, sql: &str) -> Result<SendableRecordBatchStream, GatewayError> {
        self.query(sql).await?.execute()
    }

    /// Plan and run a query, collecting every batch.
    pub async fn collect(&self, sql: &str) -> Result<Vec<RecordBatch>, GatewayError> {
        self.query(sql).await?.collect().await
    }

    /// What this principal may list: schemas, then every table and view they may read with
    /// the columns they see, then the mesh catalog's own tables. Every front door that
    /// lists (Flight SQL metadata, the console) lists through this; SQL listings read the
    /// same source (see [`crate::listing`]). The product part is kept by the gateway while
    /// the mesh and policy versions it was listed under hold, so a tool that lists on every
    /// refresh resolves each table once per change. Empty when no policy version can be had
    /// (the governance store is down): nothing is visible.
    pub async fn listing(&self) -> Listing {
        erased(async {
            let Ok(scope) = self.scope().await else {
                return Listing::default();
            };
            let products = self.listings.products(&scope).await;
            let mut tables = products.tables.clone();
            tables.extend(system::listing(scope).await);
            Listing {
                schemas: products.schemas.clone(),
                tables,
            }
        })
        .await
    }

    /// Every table and view this principal may read, with the columns it sees (the product
    /// part of [`Session::listing`]).
    pub async fn tables(&self) -> Vec<VisibleTable> {
        erased(async {
            match self.scope().await {
                Ok(scope) => self.listings.products(&scope).await.tables.clone(),
                Err(_) => Vec::new(),
            }
        })
        .await
    }
}

/// What [`Session::prepare_draft`] planned of a statement: its scope (the caller, the mesh
/// and the policy version it was resolved under) and its logical plan, not yet optimized or
/// run. Only the engine makes one and only [`Session::query_drafted`] uses it, after checking
/// that it still applies; a front door merely holds it in between.
pub struct Draft {
    scope: Arc<QueryScope>,
    state: datafusion::execution::SessionState,
    logical: datafusion::logical_expr::LogicalPlan,
    large: bool,
}

impl Draft {
    /// Planned for `session`'s principal (every role and attribute alike) and default schema,
    /// under the mesh version and the policy version with grants in force now (`current`,
    /// just read): a grant given, revoked or run out since, a reload or a publish, and the
    /// statement is planned again.
    fn applies(&self, session: &Session, current: &(Arc<MeshState>, Arc<PolicySet>)) -> bool {
        let (mesh, policies) = current;
        self.scope.same_versions(mesh, policies)
            && self.scope.principal() == &session.principal
            && self.scope.default_schema() == session.default_schema.as_deref()
    }
}

impl std::fmt::Debug for Draft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the plan: it can hold the statement's values.
        f.debug_struct("Draft")
            .field("principal", &self.scope.principal().id())
            .finish_non_exhaustive()
    }
}

/// `future` behind a `dyn Future + Send` box. The public async methods await their work
/// through it so that their futures' types stay small: a calling crate (the Flight server,
/// which needs every future `Send`) then proves `Send` of one box, not again through every
/// layer of planning and DataFusion beneath it (see also `shared::Template`).
fn erased<'a, T>(
    future: impl std::future::Future<Output = T> + Send + 'a,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>> {
    Box::pin(future)
}
