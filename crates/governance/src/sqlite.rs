//! The embedded default store: one SQLite file in the gateway's data directory.
//!
//! Durability: WAL journal with `synchronous = FULL`, so a record `record_query` returned
//! for survives the gateway being killed (and a power cut) the instant after.

use std::path::Path;

use sqlx::Row;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};

use crate::dedicated::Hot;
use crate::error::StoreError;
use crate::group_commit::{AuditWrite, GroupCommit, Grouped};
use crate::migrations::{self, SQLITE};
use crate::rows;
use crate::store::{AuditQuery, VisibleTo};
use meshgate_api::{
    AccessRequest, AuditOutcome, AuditRecord, Grant, GrantState, Millis, RequestState, StoredAudit,
};

/// How long opening a connection to the file may take (the pool's default).
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A [`GovernanceStore`] in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Concurrent queries' audit writes, committed together.
    commits: std::sync::Arc<GroupCommit>,
    /// Concurrent reads of the grant generation, answered by one read.
    reads: std::sync::Arc<Grouped<(), i64>>,
    /// The connections those two use (see [`crate::dedicated`]).
    hot: std::sync::Arc<Hot<sqlx::SqliteConnection>>,
}

impl SqliteStore {
    /// Open (creating if needed) the store at `path` and bring its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_at(path, None).await
    }

    /// Open an existing store to read only: neither created nor migrated, and no write
    /// reaches it (for tools that report on a gateway's state, such as `policy diff`).
    pub async fn open_read_only(path: &Path) -> Result<Self, StoreError> {
        if !path.is_file() {
            return Err(StoreError::Other(format!(
                "there is no governance store at {}",
                path.display()
            )));
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .read_only(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let hot = Hot::new(&options, CONNECT_TIMEOUT).into();
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
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
    pub async fn open_at(path: &Path, version: Option<i64>) -> Result<Self, StoreError> {
        let io = |what: &str, p: &Path, e: std::io::Error| {
            StoreError::Other(format!("cannot {what} {}: {e}", p.display()))
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| io("create the directory", dir, e))?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let hot = Hot::new(&options, CONNECT_TIMEOUT).into();
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            // A connection to a local file does not go stale; the test would cost every
            // statement (a grant generation read, an audit write) one more trip to SQLite's
            // worker thread.
            .test_before_acquire(false)
            .connect_with(options)
            .await?;
        // Several processes may open one store at once (gateways, tests); SQLite's
        // migration lock is a no-op, so serialise migrations with a lock file.
        let lock_path = path.with_extension("migrate.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| io("open", &lock_path, e))?;
        let locked = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| StoreError::Other(e.to_string()))?
            .map_err(|e| io("lock", &lock_path, e))?;
        let migrated = migrations::migrator(SQLITE, version)
            .await?
            .run(&pool)
            .await;
        drop(locked);
        migrated?;
        Ok(Self {
            pool,
            commits: Default::default(),
            reads: Default::default(),
            hot,
        })
    }

    /// The rows of `table` (`access_requests` or `grants`: constants, never input) that
    /// `visible` may see, by the record's `subject` column and its product, mapped.
    async fn visible<T>(
        &self,
        table: &'static str,
        subject: &'static str,
        visible: Option<&VisibleTo>,
        map: fn(&SqliteRow) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let (everyone, principal, products) = rows::visibility(visible);
        let sql = format!(
            "SELECT * FROM {table} WHERE ?1 OR {subject} = ?2 \
             OR product IN (SELECT value FROM json_each(?3)) ORDER BY created_at, id"
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

    /// The rows of one audit table (`audit`, `audit_tables`, `audit_columns`: constants,
    /// never input) that belong to a page of query ids (a JSON array), in `order`.
    async fn page_rows(
        &self,
        table: &'static str,
        ids: &str,
        order: &'static str,
    ) -> Result<Vec<SqliteRow>, StoreError> {
        let sql = format!(
            "SELECT * FROM {table} WHERE query_id IN (SELECT value FROM json_each(?1)) ORDER BY {order}"
        );
        Ok(sqlx::query(&sql).bind(ids).fetch_all(&self.pool).await?)
    }

    async fn audit_page(&self, query: &AuditQuery) -> Result<Vec<StoredAudit>, StoreError> {
        // The page: ids of the newest matching records. The viewer's rule and the filters are
        // evaluated here, on the indexes, not by reading the log into memory.
        let (everyone, principal, products) = rows::visibility(query.visible_to.as_ref());
        let f = rows::audit_filter(&query.filter);
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT a.query_id FROM audit a \
             WHERE (?1 OR a.principal = ?2 OR EXISTS (SELECT 1 FROM audit_tables t \
                    WHERE t.query_id = a.query_id AND t.product IN (SELECT value FROM json_each(?3)))) \
               AND (?4 IS NULL OR a.principal = ?4) \
               AND (?5 IS NULL OR a.started_at >= ?5) \
               AND (?6 IS NULL OR a.started_at < ?6) \
               AND (?8 IS NULL OR a.app = ?8) \
               AND (?9 IS NULL OR a.decision = ?9) \
               AND (?10 IS NULL OR EXISTS (SELECT 1 FROM audit_tables p \
                    WHERE p.query_id = a.query_id AND p.product = ?10)) \
             ORDER BY a.started_at DESC, a.rowid DESC LIMIT ?7",
        )
        .bind(everyone)
        .bind(principal)
        .bind(products)
        .bind(f.principal)
        .bind(f.since)
        .bind(f.until)
        .bind(f.limit.unwrap_or(-1))
        .bind(f.app)
        .bind(f.decision)
        .bind(f.product)
        .fetch_all(&self.pool)
        .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = rows::list_json(&ids);
        let columns = self.page_rows("audit_columns", &ids, "rowid").await?;
        let tables = self.page_rows("audit_tables", &ids, "rowid").await?;
        let audit = self.page_rows("audit", &ids, "started_at, rowid").await?;
        rows::audit_page(&audit, &tables, &columns)
    }
}

crate::sql_store::governance_store!(SqliteStore, SqliteRow);
