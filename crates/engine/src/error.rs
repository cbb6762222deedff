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
    /// A table, schema or catalog the query names does not exist.
    #[error("{0}")]
    NotFound(String),
    /// Too many queries are running and waiting.
    #[error("{0}")]
    Overloaded(String),
    /// The query needs more memory than it may use.
    #[error("{0}")]
    ResourceExhausted(String),
    /// The query ran out of time.
    #[error("{0}")]
    DeadlineExceeded(String),
    /// The query was cancelled by its caller.
    #[error("{0}")]
    Cancelled(String),
    /// The gateway cannot take the query now (shutting down).
    #[error("{0}")]
    Unavailable(String),
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

/// A cancellation or timeout raised by the query's guard.
fn find_abort(error: &DataFusionError) -> Option<GatewayError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(abort) = e.downcast_ref::<crate::limits::Abort>() {
            return Some(match abort {
                crate::limits::Abort::Cancelled => GatewayError::Cancelled(abort.to_string()),
                crate::limits::Abort::TimedOut(_) => {
                    GatewayError::DeadlineExceeded(abort.to_string())
                }
            });
        }
        current = e.source();
    }
    None
}

/// DataFusion's planner reports unknown tables and schemas as plan errors.
fn is_not_found(message: &str) -> bool {
    (message.contains("table '") && message.contains("not found"))
        || message.contains("failed to resolve schema")
        || message.contains("failed to resolve catalog")
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
        if let Some(abort) = find_abort(&error) {
            return abort;
        }
        match error.find_root() {
            DataFusionError::Internal(m) => Self::Internal(m.clone()),
            DataFusionError::ResourcesExhausted(m) => Self::ResourceExhausted(m.clone()),
            DataFusionError::Plan(m) if is_not_found(m) => Self::NotFound(m.clone()),
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
        if let Some(abort) = find_abort(&error) {
            return abort;
        }
        if let DataFusionError::ResourcesExhausted(m) = error.find_root() {
            return Self::ResourceExhausted(format!(
                "{m}; narrow the query (filter earlier, select fewer columns) or ask an operator to raise the limit"
            ));
        }
        // The whole chain: its context frames say which product failed.
        Self::Execution(error.strip_backtrace())
    }
}
