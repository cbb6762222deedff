//! Engine errors: typed inside, with messages a caller or operator can act on.

use datafusion::error::DataFusionError;
use meshgate_policy::{AuthError, Denial, LoadError};
use meshgate_storage::{ProductStorageError, find_storage_error};

/// Everything a gateway call can fail with. The variant decides how the Flight server
/// reports it (permission denied, invalid argument, ...); the message is safe to show the
/// caller: it never contains key material or data the caller may not see.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The caller may not read something the query touches.
    #[error("{0}")]
    Denied(#[from] Denial),
    /// Wrong user name or password.
    #[error("{0}")]
    Unauthenticated(#[from] AuthError),
    /// The statement is valid SQL but not something consumers may run.
    #[error("{0}")]
    NotAllowed(String),
    /// The SQL does not parse or plan (the planner's own message).
    #[error("{0}")]
    InvalidQuery(String),
    /// A product's storage failed: unreachable, too slow, refusing the gateway's
    /// credentials, or a file vanished. Names the product; never carries credentials.
    #[error("{0}")]
    Storage(ProductStorageError),
    /// The query failed while running.
    #[error("query failed: {0}")]
    Execution(String),
    /// The gateway's configuration or policies cannot be loaded.
    #[error("{0}")]
    Config(String),
    /// A bug: an invariant the engine relies on does not hold. The query is refused.
    #[error("internal error (the query was refused): {0}")]
    Internal(String),
}

impl From<LoadError> for GatewayError {
    fn from(e: LoadError) -> Self {
        Self::Config(e.to_string())
    }
}

/// Carries a [`Denial`] through DataFusion, which only knows `DataFusionError`.
pub(crate) fn denial_to_datafusion(denial: Denial) -> DataFusionError {
    DataFusionError::External(Box::new(denial))
}

/// The denial inside a DataFusion error, however deeply it was wrapped.
fn find_denial(error: &DataFusionError) -> Option<Denial> {
    match error {
        DataFusionError::External(inner) => inner.downcast_ref::<Denial>().cloned(),
        DataFusionError::Context(_, inner) => find_denial(inner),
        DataFusionError::Shared(inner) => find_denial(inner),
        DataFusionError::Diagnostic(_, inner) => find_denial(inner),
        DataFusionError::Collection(errors) => errors.iter().find_map(find_denial),
        _ => None,
    }
}

impl GatewayError {
    /// Classify an error raised while planning.
    pub(crate) fn from_planning(error: DataFusionError) -> Self {
        if let Some(denial) = find_denial(&error) {
            return Self::Denied(denial);
        }
        if let Some(storage) = find_storage_error(&error) {
            return Self::Storage(storage);
        }
        match error.find_root() {
            DataFusionError::Internal(m) => Self::Internal(m.clone()),
            DataFusionError::ResourcesExhausted(m) => Self::Execution(m.clone()),
            root => Self::InvalidQuery(root.to_string()),
        }
    }

    /// Classify an error raised while executing.
    pub fn from_execution(error: DataFusionError) -> Self {
        if let Some(denial) = find_denial(&error) {
            return Self::Denied(denial);
        }
        if let Some(storage) = find_storage_error(&error) {
            return Self::Storage(storage);
        }
        // The whole chain: its context frames say which product failed.
        Self::Execution(error.strip_backtrace())
    }
}
