use thiserror::Error;

/// The store could not read or write. Every variant keeps its source; the engine refuses
/// queries on any of them (fail closed), and `/readyz` reports the store unready.
#[derive(Debug, Error)]
pub enum StoreError {
    /// The store cannot be reached now (refused or dropped connection, no connection free in
    /// time, the server shutting down): worth retrying once it is back.
    #[error("the governance store cannot be reached: {0}")]
    Unreachable(#[source] sqlx::Error),
    /// The store answered with an error.
    #[error("the governance store failed: {0}")]
    Database(#[source] sqlx::Error),
    #[error("the governance store's schema cannot be brought up to date: {0}")]
    Migration(#[from] sqlx::migrate::MigrateError),
    /// A stored value the store cannot read back (a record written by a newer gateway).
    #[error("the governance store holds a value this gateway cannot read: {0}")]
    Corrupt(String),
    /// Anything else, from stores outside this crate.
    #[error("the governance store failed: {0}")]
    Other(String),
    /// One failure answering several callers at once (a grouped read): each gets it whole.
    #[error(transparent)]
    Shared(std::sync::Arc<StoreError>),
}

impl StoreError {
    /// Is the store out of reach (as opposed to refusing one operation)?
    pub fn is_unreachable(&self) -> bool {
        match self {
            Self::Unreachable(_) => true,
            Self::Shared(e) => e.is_unreachable(),
            _ => false,
        }
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        use sqlx::Error as E;
        let unreachable = match &e {
            E::Io(_) | E::Tls(_) | E::PoolTimedOut | E::PoolClosed | E::WorkerCrashed => true,
            // 57P01..57P03: the server is shutting down or starting up; 08xxx: connection.
            E::Database(db) => db
                .code()
                .is_some_and(|c| c.starts_with("57P") || c.starts_with("08")),
            _ => false,
        };
        if unreachable {
            Self::Unreachable(e)
        } else {
            Self::Database(e)
        }
    }
}

/// Why an access-request or grant operation was refused. The text is shown to the caller:
/// it says what to do.
#[derive(Debug, Error)]
pub enum GovernanceError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    NotAllowed(String),
    #[error("{0}")]
    Invalid(String),
    /// The object is no longer in a state that allows the operation (includes losing a race
    /// with another decision).
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}
