//! A connection kept out of the pool for one kind of hot call (the grant-generation read,
//! the audit group commit), each of which a [`crate::group_commit::Grouped`] turn already
//! runs one at a time.
//!
//! Why not the pool: sqlx tests every connection it takes back with a ping (a trip to
//! SQLite's worker thread, a round trip to PostgreSQL) in a task of its own, so every pooled
//! statement cost two trips. These calls run once or twice per query; the pool stays for
//! everything else.
//!
//! A connection that failed, or whose caller stopped while it was in use, is dropped (its
//! transaction, if any, rolled back by the database) and the next call connects afresh; one
//! idle for longer than [`IDLE_CHECK`] is pinged before use, as the pool would, so that a
//! database restart in a quiet hour fails no query.

use std::ops::{Deref, DerefMut};
use std::time::{Duration, Instant};

use sqlx::Connection;
use tokio::sync::{Mutex, MutexGuard};

use crate::error::StoreError;

/// Idle longer than this, the connection is pinged before it is used again.
const IDLE_CHECK: Duration = Duration::from_secs(1);

/// One connection, made from `options` when first needed.
pub(crate) struct Dedicated<C: Connection> {
    options: C::Options,
    /// How long making a connection may take (the pool's acquire timeout).
    connect_timeout: Duration,
    kept: Mutex<Option<(C, Instant)>>,
}

impl<C: Connection> std::fmt::Debug for Dedicated<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dedicated").finish_non_exhaustive()
    }
}

impl<C: Connection> Dedicated<C> {
    pub(crate) fn new(options: C::Options, connect_timeout: Duration) -> Self {
        Self {
            options,
            connect_timeout,
            kept: Mutex::new(None),
        }
    }

    /// The connection, for one call: give it back with [`Held::keep`] once the call
    /// succeeded; dropped otherwise.
    pub(crate) async fn connection(&self) -> Result<Held<'_, C>, StoreError> {
        let mut slot = self.kept.lock().await;
        let reused = match slot.take() {
            Some((mut connection, last)) if last.elapsed() > IDLE_CHECK => {
                connection.ping().await.ok().map(|()| connection)
            }
            Some((connection, _)) => Some(connection),
            None => None,
        };
        let connection = match reused {
            Some(connection) => connection,
            None => tokio::time::timeout(self.connect_timeout, C::connect_with(&self.options))
                .await
                .map_err(|_| {
                    StoreError::Other(format!(
                        "no connection to the governance store within {:?}",
                        self.connect_timeout
                    ))
                })??,
        };
        Ok(Held { slot, connection })
    }
}

/// A dedicated connection in use.
pub(crate) struct Held<'a, C: Connection> {
    slot: MutexGuard<'a, Option<(C, Instant)>>,
    connection: C,
}

impl<C: Connection> Held<'_, C> {
    /// The call succeeded: keep the connection for the next one. (Dropped without this,
    /// the slot stays empty and the connection closes.)
    pub(crate) fn keep(self) {
        let Held {
            mut slot,
            connection,
        } = self;
        *slot = Some((connection, Instant::now()));
    }
}

impl<C: Connection> Deref for Held<'_, C> {
    type Target = C;

    fn deref(&self) -> &Self::Target {
        &self.connection
    }
}

impl<C: Connection> DerefMut for Held<'_, C> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.connection
    }
}

/// A store's dedicated connections: one for the grant-generation read, one for the audit
/// group commit (each used by one caller at a time, its [`crate::group_commit::Grouped`]
/// turn's).
#[derive(Debug)]
pub(crate) struct Hot<C: Connection> {
    pub(crate) generation: Dedicated<C>,
    pub(crate) audit: Dedicated<C>,
}

impl<C: Connection> Hot<C> {
    pub(crate) fn new(options: &C::Options, connect_timeout: Duration) -> Self {
        Self {
            generation: Dedicated::new(options.clone(), connect_timeout),
            audit: Dedicated::new(options.clone(), connect_timeout),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::SqliteConnection;
    use sqlx::sqlite::SqliteConnectOptions;

    /// Whether the connection handed out is the one that made the (connection-local) temporary
    /// table `marker`.
    async fn has_marker(connection: &mut SqliteConnection) -> bool {
        sqlx::query("SELECT count(*) FROM marker")
            .execute(connection)
            .await
            .is_ok()
    }

    /// A dedicated connection to a SQLite file in `dir`.
    fn on_file(dir: &std::path::Path) -> Dedicated<SqliteConnection> {
        let options = SqliteConnectOptions::new()
            .filename(dir.join("store.db"))
            .create_if_missing(true);
        Dedicated::new(options, Duration::from_secs(5))
    }

    #[tokio::test]
    async fn a_kept_connection_is_reused_and_one_not_kept_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let dedicated = on_file(dir.path());

        let mut held = dedicated.connection().await.unwrap();
        sqlx::query("CREATE TEMP TABLE marker (x INTEGER)")
            .execute(&mut *held)
            .await
            .unwrap();
        held.keep();

        let mut held = dedicated.connection().await.unwrap();
        assert!(has_marker(&mut held).await, "kept, so the same connection");
        // Not kept (a failed call, or a caller that stopped halfway): closed.
        drop(held);

        let mut held = dedicated.connection().await.unwrap();
        assert!(
            !has_marker(&mut held).await,
            "a new connection after one not kept"
        );
    }

    #[tokio::test]
    async fn one_caller_at_a_time() {
        let dir = tempfile::tempdir().unwrap();
        let dedicated = on_file(dir.path());
        let held = dedicated.connection().await.unwrap();
        let second = tokio::time::timeout(Duration::from_millis(100), dedicated.connection());
        assert!(
            second.await.is_err(),
            "the second caller waits for the first"
        );
        held.keep();
        assert!(dedicated.connection().await.is_ok());
    }
}
