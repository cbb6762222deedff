//! The store for a gateway of many replicas: one PostgreSQL database they all share.
//!
//! Every replica reads the grant generation per query and writes its audit records here, so a
//! decision taken through one replica applies on all of them by their next query, and the
//! audit is one log whichever replica answered. Migrations take PostgreSQL's advisory lock, so
//! replicas starting together upgrade the schema once.

use std::time::Duration;

use sqlx::Row;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};

use crate::dedicated::Hot;
use crate::error::StoreError;
use crate::group_commit::{AuditWrite, GroupCommit, Grouped};
use crate::migrations::{self, POSTGRES};
use crate::rows;
use crate::store::{AuditQuery, VisibleTo};
use meshgate_api::{
    AccessRequest, AuditOutcome, AuditRecord, Grant, GrantState, Millis, RequestState, StoredAudit,
};

/// How a gateway connects to its PostgreSQL store.
#[derive(Clone)]
pub struct PostgresOptions {
    /// `postgres://user@host:port/database?sslmode=...`, without a password.
    pub url: String,
    /// The password, read from where the configuration names (never written in it).
    pub password: Option<zeroize::Zeroizing<String>>,
    /// Connections this replica holds at most (default 10).
    pub max_connections: u32,
    /// How long a store operation waits for a connection before the query is refused
    /// (default 5 s): the bound on how long a query hangs while the store is down.
    pub acquire_timeout: Duration,
}

impl std::fmt::Debug for PostgresOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresOptions")
            .field("url", &self.url)
            .field("password", &self.password.as_ref().map(|_| "(set)"))
            .field("max_connections", &self.max_connections)
            .field("acquire_timeout", &self.acquire_timeout)
            .finish()
    }
}

impl PostgresOptions {
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            password: None,
            max_connections: 10,
            acquire_timeout: Duration::from_secs(5),
        }
    }

    /// Does `location` name a PostgreSQL database (rather than a SQLite file)?
    pub fn is_postgres_url(location: &str) -> bool {
        location.starts_with("postgres://") || location.starts_with("postgresql://")
    }

    fn connect_options(&self) -> Result<PgConnectOptions, StoreError> {
        let options: PgConnectOptions = self.url.parse().map_err(|e| {
            StoreError::Other(format!("the PostgreSQL URL `{}` is invalid: {e}", self.url))
        })?;
        Ok(match &self.password {
            Some(password) => options.password(password),
            None => options,
        }
        .application_name("meshgate"))
    }
}

/// A [`GovernanceStore`] in a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
    /// Concurrent queries' audit writes, committed together.
    commits: std::sync::Arc<GroupCommit>,
    /// Concurrent reads of the grant generation, answered by one read.
    reads: std::sync::Arc<Grouped<(), i64>>,
    /// The connections those two use (see [`crate::dedicated`]).
    hot: std::sync::Arc<Hot<sqlx::PgConnection>>,
}

impl PostgresStore {
    /// Connect and bring the schema up to date. The pool connects lazily after this, so a
    /// replica whose store goes away keeps running (refusing queries) and recovers without a
    /// restart when it is back.
    pub async fn open(options: &PostgresOptions) -> Result<Self, StoreError> {
        Self::open_at(options, None).await
    }

    /// Connect to read only: not migrated, and every transaction read-only (for tools that
    /// report on a gateway's state, such as `policy diff`).
    pub async fn open_read_only(options: &PostgresOptions) -> Result<Self, StoreError> {
        let connect = options
            .connect_options()?
            .options([("default_transaction_read_only", "on")]);
        let hot = Hot::new(&connect, options.acquire_timeout).into();
        let pool = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        Ok(Self {
            pool,
            commits: Default::default(),
            reads: Default::default(),
            hot,
        })
    }

    /// Open the store migrated only up to schema `version`: for tests that upgrade an old store.
    #[doc(hidden)]
    pub async fn open_at(
        options: &PostgresOptions,
        version: Option<i64>,
    ) -> Result<Self, StoreError> {
        let connect = options.connect_options()?;
        let hot = Hot::new(&connect, options.acquire_timeout).into();
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await?;
        migrations::migrator(POSTGRES, version)
            .await?
            .run(&pool)
            .await?;
        Ok(Self {
            pool,
            commits: Default::default(),
            reads: Default::default(),
            hot,
        })
    }

    /// See `SqliteStore::visible`: the same rule, in PostgreSQL's JSON functions.
    async fn visible<T>(
        &self,
        table: &'static str,
        subject: &'static str,
        visible: Option<&VisibleTo>,
        map: fn(&PgRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let (everyone, principal, products) = rows::visibility(visible);
        let sql = format!(
            "SELECT * FROM {table} WHERE $1 OR {subject} = $2 \
             OR product IN (SELECT json_array_elements_text($3::json)) ORDER BY created_at, id"
        );
        sqlx::query(&sql)
            .bind(everyone)
            .bind(principal)
            .bind(products)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(map)
            .collect()
    }

    async fn page_rows(
        &self,
        table: &'static str,
        ids: &str,
        order: &'static str,
    ) -> Result<Vec<PgRow>, StoreError> {
        let sql = format!(
            "SELECT * FROM {table} WHERE query_id IN (SELECT json_array_elements_text($1::json)) \
             ORDER BY {order}"
        );
        Ok(sqlx::query(&sql).bind(ids).fetch_all(&self.pool).await?)
    }

    async fn audit_page(&self, query: &AuditQuery) -> Result<Vec<StoredAudit>, StoreError> {
        let (everyone, principal, products) = rows::visibility(query.visible_to.as_ref());
        let f = rows::audit_filter(&query.filter);
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT a.query_id FROM audit a \
             WHERE ($1 OR a.principal = $2 OR EXISTS (SELECT 1 FROM audit_tables t \
                    WHERE t.query_id = a.query_id \
                      AND t.product IN (SELECT json_array_elements_text($3::json)))) \
               AND ($4::text IS NULL OR a.principal = $4) \
               AND ($5::bigint IS NULL OR a.started_at >= $5) \
               AND ($6::bigint IS NULL OR a.started_at < $6) \
               AND ($8::text IS NULL OR a.app = $8) \
               AND ($9::text IS NULL OR a.decision = $9) \
               AND ($10::text IS NULL OR EXISTS (SELECT 1 FROM audit_tables p \
                    WHERE p.query_id = a.query_id AND p.product = $10)) \
             ORDER BY a.started_at DESC, a.seq DESC LIMIT $7",
        )
        .bind(everyone)
        .bind(principal)
        .bind(products)
        .bind(f.principal)
        .bind(f.since)
        .bind(f.until)
        .bind(f.limit)
        .bind(f.app)
        .bind(f.decision)
        .bind(f.product)
        .fetch_all(&self.pool)
        .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = rows::list_json(&ids);
        let columns = self.page_rows("audit_columns", &ids, "seq").await?;
        let tables = self.page_rows("audit_tables", &ids, "seq").await?;
        let audit = self.page_rows("audit", &ids, "started_at, seq").await?;
        rows::audit_page(&audit, &tables, &columns)
    }
}

crate::sql_store::governance_store!(PostgresStore, PgRow);
