//! What the SQLite and PostgreSQL stores do alike, written once: both keep the same tables
//! and bind the same statements (SQLite reads PostgreSQL's `$n` placeholders too), and differ
//! only in how they connect and in the few reads that use each database's JSON functions
//! (`visible`, `audit_page`), which each store implements itself.

/// `impl GovernanceStore` for a store with a `pool` field (rows of type `$row`) and the
/// inherent `visible` and `audit_page` reads, and the inherent helpers both stores share.
macro_rules! governance_store {
    ($store:ty, $row:ty) => {
        impl $store {
            /// Run statements on the store directly: for operators' repairs and for tests that
            /// need a store in a particular state (a failing disk, an old schema).
            pub async fn execute_raw(&self, sql: &str) -> Result<(), StoreError> {
                sqlx::raw_sql(sql).execute(&self.pool).await?;
                Ok(())
            }

            /// The migration versions applied to this store, in order.
            pub async fn applied_migrations(&self) -> Result<Vec<i64>, StoreError> {
                Ok(
                    sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                        .fetch_all(&self.pool)
                        .await?,
                )
            }

            /// A batch of audit writes (see [`crate::group_commit`]) in one transaction, one
            /// result per write. If the transaction fails, each write is tried again on its own,
            /// so that one refused write does not fail the queries it shared a commit with.
            async fn write_audit(&self, batch: Vec<AuditWrite>) -> Vec<Result<(), StoreError>> {
                let written = self.write_audit_together(&batch).await;
                match written {
                    Ok(()) => batch.iter().map(|_| Ok(())).collect(),
                    Err(e) if batch.len() == 1 => vec![Err(e)],
                    Err(_) => {
                        let mut results = Vec::with_capacity(batch.len());
                        for write in &batch {
                            results
                                .push(self.write_audit_together(std::slice::from_ref(write)).await);
                        }
                        results
                    }
                }
            }

            /// The records first (their rows, tables and columns each in a few multi-row
            /// statements), then the outcomes (one statement), each of which follows its own
            /// record (in this batch or an earlier one).
            async fn write_audit_together(&self, batch: &[AuditWrite]) -> Result<(), StoreError> {
                let batch = rows::AuditBatch::new(batch);
                let mut connection = self.hot.audit.connection().await?;
                let mut tx = sqlx::Connection::begin(&mut *connection).await?;
                for rows in batch.statements() {
                    rows.bind(sqlx::query(&rows.statement()))
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                connection.keep();
                Ok(())
            }

            /// The row `sql` selects by `id`, mapped.
            async fn one<T>(
                &self,
                sql: &str,
                id: &str,
                map: fn(&$row) -> Result<T, StoreError>,
            ) -> Result<Option<T>, StoreError> {
                sqlx::query(sql)
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .as_ref()
                    .map(map)
                    .transpose()
            }
        }

        #[async_trait::async_trait]
        impl $crate::store::GovernanceStore for $store {
            async fn insert_request(&self, r: &AccessRequest) -> Result<(), StoreError> {
                rows::bind_request(sqlx::query(rows::INSERT_REQUEST), r)
                    .execute(&self.pool)
                    .await?;
                Ok(())
            }

            async fn request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
                self.one(
                    "SELECT * FROM access_requests WHERE id = $1",
                    id,
                    rows::request_from,
                )
                .await
            }

            async fn requests(
                &self,
                visible: Option<&VisibleTo>,
            ) -> Result<Vec<AccessRequest>, StoreError> {
                self.visible("access_requests", "requester", visible, rows::request_from)
                    .await
            }

            async fn decide_request(
                &self,
                r: &AccessRequest,
                expected: RequestState,
                grant: Option<&Grant>,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let changed =
                    rows::bind_decision(sqlx::query(rows::DECIDE_REQUEST), r, expected.as_str())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                if changed != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                if let Some(grant) = grant {
                    rows::bind_grant(sqlx::query(rows::INSERT_GRANT), grant)
                        .execute(&mut *tx)
                        .await?;
                    sqlx::query(rows::BUMP_GENERATION).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(true)
            }

            async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
                self.one("SELECT * FROM grants WHERE id = $1", id, rows::grant_from)
                    .await
            }

            async fn grants(&self, visible: Option<&VisibleTo>) -> Result<Vec<Grant>, StoreError> {
                self.visible("grants", "principal", visible, rows::grant_from)
                    .await
            }

            async fn update_grant(
                &self,
                g: &Grant,
                expected: GrantState,
            ) -> Result<bool, StoreError> {
                let mut tx = self.pool.begin().await?;
                let changed =
                    rows::bind_grant_update(sqlx::query(rows::UPDATE_GRANT), g, expected.as_str())
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                if changed != 1 {
                    tx.rollback().await?;
                    return Ok(false);
                }
                sqlx::query(rows::BUMP_GENERATION).execute(&mut *tx).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn expire(&self, now: Millis) -> Result<(), StoreError> {
                let mut tx = self.pool.begin().await?;
                sqlx::query(rows::EXPIRE_REQUESTS)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let grants = sqlx::query(rows::EXPIRE_GRANTS)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                if grants > 0 {
                    sqlx::query(rows::BUMP_GENERATION).execute(&mut *tx).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn grant_generation(&self) -> Result<i64, StoreError> {
                // Callers asking at once share one read, taken after all of them asked.
                self.reads
                    .read(|| async {
                        let mut connection = self.hot.generation.connection().await?;
                        let generation = sqlx::query(rows::GENERATION)
                            .fetch_one(&mut *connection)
                            .await?
                            .try_get(0)?;
                        connection.keep();
                        Ok(generation)
                    })
                    .await
            }

            async fn grants_in_force(&self, now: Millis) -> Result<Vec<Grant>, StoreError> {
                sqlx::query(rows::GRANTS_IN_FORCE)
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(rows::grant_from)
                    .collect()
            }

            async fn lapsed_grants(&self, now: Millis) -> Result<Vec<Grant>, StoreError> {
                sqlx::query(rows::LAPSED_GRANTS)
                    .bind(now)
                    .bind(now - crate::store::LAPSED_WINDOW_DAYS * meshgate_api::DAY_MILLIS)
                    .fetch_all(&self.pool)
                    .await?
                    .iter()
                    .map(rows::grant_from)
                    .collect()
            }

            async fn record_query(&self, a: &AuditRecord) -> Result<(), StoreError> {
                self.commits
                    .submit(
                        AuditWrite::Start(a.clone()),
                        std::time::Duration::ZERO,
                        |batch| self.write_audit(batch),
                    )
                    .await
            }

            async fn finish_query(
                &self,
                query_id: &str,
                o: &AuditOutcome,
            ) -> Result<(), StoreError> {
                let write = AuditWrite::End(query_id.to_string(), o.clone());
                // Nothing waits for an outcome: it lingers, to ride along in a record's commit.
                self.commits
                    .submit(write, crate::group_commit::OUTCOME_LINGER, |batch| {
                        self.write_audit(batch)
                    })
                    .await
            }

            fn flush(&self) {
                self.commits.flush();
            }

            async fn audit(&self, query: &AuditQuery) -> Result<Vec<StoredAudit>, StoreError> {
                self.audit_page(query).await
            }
        }
    };
}

pub(crate) use governance_store;
