use thiserror::Error;

/// The store could not read or write.
#[derive(Debug, Error)]
#[error("governance store: {0}")]
pub struct StoreError(pub String);

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        Self(e.to_string())
    }
}

impl From<sqlx::migrate::MigrateError> for StoreError {
    fn from(e: sqlx::migrate::MigrateError) -> Self {
        Self(format!("migration failed: {e}"))
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
