//! The embedded default store: one SQLite file in the gateway's data directory.
//!
//! Durability: WAL journal with `synchronous = FULL`, so a record `record_query` returned
//! for survives the gateway being killed (and a power cut) the instant after.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::str::FromStr;

use async_trait::async_trait;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Row, Sqlite, Transaction};

use crate::error::StoreError;
use crate::store::{AuditQuery, GovernanceStore, VisibleTo};
use meshgate_api::{
    AccessRequest, AuditColumn, AuditOutcome, AuditRecord, AuditTable, Grant, GrantState, Millis,
    QueryStatus, RequestState, StoredAudit,
};

/// The versioned migrations, embedded so the binary carries its schema.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "access and audit",
        include_str!("../migrations/0001_access_and_audit.sql"),
    ),
    (
        2,
        "audit table access",
        include_str!("../migrations/0002_audit_table_access.sql"),
    ),
];

#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<Vec<Migration>, Box<dyn std::error::Error + Send + Sync>>>
                + Send,
        >,
    > {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, description, sql)| {
                    Migration::new(
                        *version,
                        Cow::Borrowed(*description),
                        MigrationType::Simple,
                        Cow::Borrowed(*sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

/// A [`GovernanceStore`] in a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Open (creating if needed) the store at `path` and bring its schema up to date.
    pub async fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError(format!(
                    "cannot create the directory {}: {e}",
                    dir.display()
                ))
            })?;
        }
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(std::time::Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(|e| StoreError(format!("cannot open {}: {e}", path.display())))?;
        // Several processes may open one store at once (gateways, tests); SQLite's
        // migration lock is a no-op, so serialise migrations with a lock file.
        let lock_path = path.with_extension("migrate.lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|e| StoreError(format!("cannot open {}: {e}", lock_path.display())))?;
        let locked = tokio::task::spawn_blocking(move || lock.lock().map(|()| lock))
            .await
            .map_err(|e| StoreError(e.to_string()))?
            .map_err(|e| StoreError(format!("cannot lock {}: {e}", lock_path.display())))?;
        let migrator = Migrator::new(Embedded).await?;
        let migrated = migrator.run(&pool).await;
        drop(locked);
        migrated?;
        Ok(Self { pool })
    }

    /// Run statements on the store directly: for operators' repairs and for tests that
    /// need a store in a particular state (a failing disk, an old schema).
    pub async fn execute_raw(&self, sql: &str) -> Result<(), StoreError> {
        sqlx::raw_sql(sql).execute(&self.pool).await?;
        Ok(())
    }

    /// The row `sql` selects by `id`, mapped.
    async fn one<T>(
        &self,
        sql: &str,
        id: &str,
        map: fn(&SqliteRow) -> Result<T, StoreError>,
    ) -> Result<Option<T>, StoreError> {
        sqlx::query(sql)
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(map)
            .transpose()
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
        let (everyone, principal, products) = visibility(visible);
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

    /// The migration versions applied to this store, in order.
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

    pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
        let rows = sqlx::query("SELECT version FROM _sqlx_migrations ORDER BY version")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| r.try_get::<i64, _>(0).map_err(StoreError::from))
            .collect()
    }
}

fn to_json(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref()
        .map(|l| serde_json::to_string(l).unwrap_or_else(|_| "[]".into()))
}

fn from_json(text: Option<String>) -> Result<Option<Vec<String>>, StoreError> {
    text.map(|t| serde_json::from_str(&t).map_err(|e| StoreError(format!("bad list `{t}`: {e}"))))
        .transpose()
}

fn list_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

/// A viewer's rule as query parameters: (sees everything, their id, the products they
/// decide as a JSON array).
fn visibility(visible: Option<&VisibleTo>) -> (bool, String, String) {
    match visible {
        None => (true, String::new(), "[]".to_string()),
        Some(v) => (false, v.principal.clone(), list_json(&v.products)),
    }
}

fn parse<T: FromStr<Err = String>>(text: String) -> Result<T, StoreError> {
    text.parse().map_err(StoreError)
}

fn unsigned(value: Option<i64>) -> Option<u64> {
    value.map(|v| u64::try_from(v).unwrap_or(0))
}

fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

fn request_from(row: &SqliteRow) -> Result<AccessRequest, StoreError> {
    Ok(AccessRequest {
        id: row.try_get("id")?,
        requester: row.try_get("requester")?,
        product: row.try_get("product")?,
        columns: from_json(row.try_get("columns")?)?,
        purpose: row.try_get("purpose")?,
        valid_days: u32::try_from(row.try_get::<i64, _>("valid_days")?).unwrap_or(0),
        state: parse(row.try_get("state")?)?,
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        decided_at: row.try_get("decided_at")?,
        decided_by: row.try_get("decided_by")?,
        decision_comment: row.try_get("decision_comment")?,
        grant_id: row.try_get("grant_id")?,
    })
}

fn grant_from(row: &SqliteRow) -> Result<Grant, StoreError> {
    Ok(Grant {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        principal: row.try_get("principal")?,
        product: row.try_get("product")?,
        domain: row.try_get("domain")?,
        columns: from_json(row.try_get("columns")?)?,
        row_filter: row.try_get("row_filter")?,
        purpose: row.try_get("purpose")?,
        state: parse(row.try_get("state")?)?,
        approved_by: row.try_get("approved_by")?,
        created_at: row.try_get("created_at")?,
        valid_until: row.try_get("valid_until")?,
        changed_at: row.try_get("changed_at")?,
        changed_by: row.try_get("changed_by")?,
        change_reason: row.try_get("change_reason")?,
    })
}

async fn bump_generation(tx: &mut Transaction<'_, Sqlite>) -> Result<(), StoreError> {
    sqlx::query("UPDATE grant_generation SET value = value + 1 WHERE id = 1")
        .execute(&mut **tx)
        .await?;
    Ok(())
}

async fn insert_grant(tx: &mut Transaction<'_, Sqlite>, grant: &Grant) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO grants (id, request_id, principal, product, domain, columns, row_filter, \
         purpose, state, approved_by, created_at, valid_until, changed_at, changed_by, change_reason) \
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(&grant.id)
    .bind(&grant.request_id)
    .bind(&grant.principal)
    .bind(&grant.product)
    .bind(&grant.domain)
    .bind(to_json(&grant.columns))
    .bind(&grant.row_filter)
    .bind(&grant.purpose)
    .bind(grant.state.as_str())
    .bind(&grant.approved_by)
    .bind(grant.created_at)
    .bind(grant.valid_until)
    .bind(grant.changed_at)
    .bind(&grant.changed_by)
    .bind(&grant.change_reason)
    .execute(&mut **tx)
    .await?;
    bump_generation(tx).await
}

#[async_trait]
impl GovernanceStore for SqliteStore {
    async fn insert_request(&self, r: &AccessRequest) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO access_requests (id, requester, product, columns, purpose, valid_days, \
             state, created_at, expires_at, decided_at, decided_by, decision_comment, grant_id) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&r.id)
        .bind(&r.requester)
        .bind(&r.product)
        .bind(to_json(&r.columns))
        .bind(&r.purpose)
        .bind(i64::from(r.valid_days))
        .bind(r.state.as_str())
        .bind(r.created_at)
        .bind(r.expires_at)
        .bind(r.decided_at)
        .bind(&r.decided_by)
        .bind(&r.decision_comment)
        .bind(&r.grant_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
        self.one(
            "SELECT * FROM access_requests WHERE id = ?",
            id,
            request_from,
        )
        .await
    }

    async fn requests(
        &self,
        visible: Option<&VisibleTo>,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        self.visible("access_requests", "requester", visible, request_from)
            .await
    }

    async fn decide_request(
        &self,
        r: &AccessRequest,
        expected: RequestState,
        grant: Option<&Grant>,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE access_requests SET state = ?, decided_at = ?, decided_by = ?, \
             decision_comment = ?, grant_id = ? WHERE id = ? AND state = ?",
        )
        .bind(r.state.as_str())
        .bind(r.decided_at)
        .bind(&r.decided_by)
        .bind(&r.decision_comment)
        .bind(&r.grant_id)
        .bind(&r.id)
        .bind(expected.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        if let Some(grant) = grant {
            insert_grant(&mut tx, grant).await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        self.one("SELECT * FROM grants WHERE id = ?", id, grant_from)
            .await
    }

    async fn grants(&self, visible: Option<&VisibleTo>) -> Result<Vec<Grant>, StoreError> {
        self.visible("grants", "principal", visible, grant_from)
            .await
    }

    async fn update_grant(&self, g: &Grant, expected: GrantState) -> Result<bool, StoreError> {
        let mut tx = self.pool.begin().await?;
        let changed = sqlx::query(
            "UPDATE grants SET state = ?, valid_until = ?, changed_at = ?, changed_by = ?, \
             change_reason = ? WHERE id = ? AND state = ?",
        )
        .bind(g.state.as_str())
        .bind(g.valid_until)
        .bind(g.changed_at)
        .bind(&g.changed_by)
        .bind(&g.change_reason)
        .bind(&g.id)
        .bind(expected.as_str())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed != 1 {
            tx.rollback().await?;
            return Ok(false);
        }
        bump_generation(&mut tx).await?;
        tx.commit().await?;
        Ok(true)
    }

    async fn expire(&self, now: Millis) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "UPDATE access_requests SET state = 'expired', decided_at = ? \
             WHERE state = 'pending' AND expires_at <= ?",
        )
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let grants = sqlx::query(
            "UPDATE grants SET state = 'expired', changed_at = ?, changed_by = 'meshgate', \
             change_reason = 'valid_until passed' \
             WHERE state IN ('active', 'suspended') AND valid_until <= ?",
        )
        .bind(now)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if grants > 0 {
            bump_generation(&mut tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn grant_generation(&self) -> Result<i64, StoreError> {
        Ok(
            sqlx::query("SELECT value FROM grant_generation WHERE id = 1")
                .fetch_one(&self.pool)
                .await?
                .try_get(0)?,
        )
    }

    async fn grants_in_force(&self, now: Millis) -> Result<Vec<Grant>, StoreError> {
        sqlx::query("SELECT * FROM grants WHERE state = 'active' AND valid_until > ? ORDER BY id")
            .bind(now)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(grant_from)
            .collect()
    }

    async fn lapsed_grants(&self, now: Millis) -> Result<Vec<Grant>, StoreError> {
        sqlx::query(
            "SELECT * FROM grants WHERE state = 'suspended' \
             OR (state IN ('active', 'expired') AND valid_until <= ? AND valid_until > ?) ORDER BY id",
        )
        .bind(now)
        .bind(now - crate::store::LAPSED_WINDOW_DAYS * meshgate_api::DAY_MILLIS)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(grant_from)
        .collect()
    }

    async fn record_query(&self, a: &AuditRecord) -> Result<(), StoreError> {
        let mut tx = self.pool.begin().await?;
        let status = match a.decision {
            meshgate_api::Decision::Allow => QueryStatus::Running,
            meshgate_api::Decision::Deny => QueryStatus::Denied,
            meshgate_api::Decision::Error => QueryStatus::Failed,
        };
        sqlx::query(
            "INSERT INTO audit (query_id, started_at, principal, app, client, method, \
             statement_sha256, statement, policy_version, decision, status, error) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&a.query_id)
        .bind(a.started_at)
        .bind(&a.principal)
        .bind(&a.app)
        .bind(&a.client)
        .bind(&a.method)
        .bind(&a.statement_sha256)
        .bind(&a.statement)
        .bind(&a.policy_version)
        .bind(a.decision.as_str())
        .bind(status.as_str())
        .bind(&a.error)
        .execute(&mut *tx)
        .await?;
        for t in &a.tables {
            sqlx::query(
                "INSERT INTO audit_tables (query_id, product, tbl, access, policy_id, row_filters, \
                 grant_ids) VALUES (?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(&a.query_id)
            .bind(&t.product)
            .bind(&t.table)
            .bind(t.access.as_str())
            .bind(&t.policy_id)
            .bind(list_json(&t.row_filters))
            .bind(list_json(&t.grant_ids))
            .execute(&mut *tx)
            .await?;
            for c in &t.columns {
                sqlx::query(
                    "INSERT INTO audit_columns (query_id, product, tbl, col, treatment, rule) \
                     VALUES (?, ?, ?, ?, ?, ?)",
                )
                .bind(&a.query_id)
                .bind(&t.product)
                .bind(&t.table)
                .bind(&c.name)
                .bind(&c.treatment)
                .bind(&c.rule)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn finish_query(&self, query_id: &str, o: &AuditOutcome) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE audit SET status = ?, rows_returned = ?, bytes_returned = ?, duration_ms = ?, \
             finished_at = ?, error = COALESCE(?, error) WHERE query_id = ?",
        )
        .bind(o.status.as_str())
        .bind(signed(o.rows_returned))
        .bind(signed(o.bytes_returned))
        .bind(signed(o.duration_ms))
        .bind(meshgate_api::now_millis())
        .bind(&o.error)
        .bind(query_id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<StoredAudit>, StoreError> {
        // The page: ids of the newest matching records. The viewer's rule and the filters are
        // evaluated here, on the indexes, not by reading the log into memory.
        let (everyone, principal, products) = visibility(query.visible_to.as_ref());
        let f = &query.filter;
        let limit = f.limit.map_or(-1, |l| i64::try_from(l).unwrap_or(i64::MAX));
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT a.query_id FROM audit a \
             WHERE (?1 OR a.principal = ?2 OR EXISTS (SELECT 1 FROM audit_tables t \
                    WHERE t.query_id = a.query_id AND t.product IN (SELECT value FROM json_each(?3)))) \
               AND (?4 IS NULL OR a.principal = ?4) \
               AND (?5 IS NULL OR a.started_at >= ?5) \
               AND (?6 IS NULL OR a.started_at < ?6) \
             ORDER BY a.started_at DESC, a.rowid DESC LIMIT ?7",
        )
        .bind(everyone)
        .bind(principal)
        .bind(products)
        .bind(f.principal.as_deref())
        .bind(f.since)
        .bind(f.until)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let ids = list_json(&ids);
        let mut columns: BTreeMap<(String, String, String), Vec<AuditColumn>> = BTreeMap::new();
        for row in self.page_rows("audit_columns", &ids, "rowid").await? {
            columns
                .entry((
                    row.try_get("query_id")?,
                    row.try_get("product")?,
                    row.try_get("tbl")?,
                ))
                .or_default()
                .push(AuditColumn {
                    name: row.try_get("col")?,
                    treatment: row.try_get("treatment")?,
                    rule: row.try_get("rule")?,
                });
        }
        let mut tables: BTreeMap<String, Vec<AuditTable>> = BTreeMap::new();
        for row in self.page_rows("audit_tables", &ids, "rowid").await? {
            let query_id: String = row.try_get("query_id")?;
            let product: String = row.try_get("product")?;
            let table: String = row.try_get("tbl")?;
            let cols = columns
                .remove(&(query_id.clone(), product.clone(), table.clone()))
                .unwrap_or_default();
            tables.entry(query_id).or_default().push(AuditTable {
                product,
                table,
                access: parse(row.try_get("access")?)?,
                policy_id: row.try_get("policy_id")?,
                row_filters: from_json(row.try_get("row_filters")?)?.unwrap_or_default(),
                grant_ids: from_json(row.try_get("grant_ids")?)?.unwrap_or_default(),
                columns: cols,
            });
        }
        let rows = self.page_rows("audit", &ids, "started_at, rowid").await?;
        rows.iter()
            .map(|row| {
                let query_id: String = row.try_get("query_id")?;
                Ok(StoredAudit {
                    record: AuditRecord {
                        tables: tables.remove(&query_id).unwrap_or_default(),
                        query_id,
                        started_at: row.try_get("started_at")?,
                        principal: row.try_get("principal")?,
                        app: row.try_get("app")?,
                        client: row.try_get("client")?,
                        method: row.try_get("method")?,
                        statement_sha256: row.try_get("statement_sha256")?,
                        statement: row.try_get("statement")?,
                        policy_version: row.try_get("policy_version")?,
                        decision: parse(row.try_get("decision")?)?,
                        error: row.try_get("error")?,
                    },
                    status: parse(row.try_get("status")?)?,
                    rows_returned: unsigned(row.try_get("rows_returned")?),
                    bytes_returned: unsigned(row.try_get("bytes_returned")?),
                    duration_ms: unsigned(row.try_get("duration_ms")?),
                    finished_at: row.try_get("finished_at")?,
                })
            })
            .collect()
    }
}
