//! Versioned schema migrations, embedded so the binary carries its schema. Each store has its
//! own list (the SQL dialects differ); a version, once released, never changes (sqlx refuses a
//! store whose applied migration's checksum differs).

use std::borrow::Cow;
use std::future::Future;
use std::pin::Pin;

use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};

use crate::error::StoreError;

/// `(version, description, SQL)`.
pub(crate) type Steps = &'static [(i64, &'static str, &'static str)];

pub(crate) const SQLITE: Steps = &[
    (
        1,
        "access and audit",
        include_str!("../migrations/sqlite/0001_access_and_audit.sql"),
    ),
    (
        2,
        "audit table access",
        include_str!("../migrations/sqlite/0002_audit_table_access.sql"),
    ),
    (
        3,
        "audit replica",
        include_str!("../migrations/sqlite/0003_audit_replica.sql"),
    ),
    (
        4,
        "audit workers",
        include_str!("../migrations/sqlite/0004_audit_workers.sql"),
    ),
];

pub(crate) const POSTGRES: Steps = &[
    (
        1,
        "access and audit",
        include_str!("../migrations/postgres/0001_access_and_audit.sql"),
    ),
    (
        2,
        "audit replica",
        include_str!("../migrations/postgres/0002_audit_replica.sql"),
    ),
    (
        3,
        "audit workers",
        include_str!("../migrations/postgres/0003_audit_workers.sql"),
    ),
];

#[derive(Debug)]
struct Embedded(Steps);

impl MigrationSource<'static> for Embedded {
    fn resolve(
        self,
    ) -> Pin<
        Box<
            dyn Future<Output = Result<Vec<Migration>, Box<dyn std::error::Error + Send + Sync>>>
                + Send,
        >,
    > {
        Box::pin(async move {
            Ok(self
                .0
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

/// The migrator for `steps`, up to and including `upto` (every step when `None`): stores open
/// at the newest version; tests stop earlier to build an old store and upgrade it.
pub(crate) async fn migrator(steps: Steps, upto: Option<i64>) -> Result<Migrator, StoreError> {
    let end = steps
        .iter()
        .position(|(v, _, _)| upto.is_some_and(|u| *v > u))
        .unwrap_or(steps.len());
    Ok(Migrator::new(Embedded(&steps[..end])).await?)
}
