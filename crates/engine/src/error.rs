//! Engine errors: typed inside, with messages a caller or operator can act on.

use datafusion::error::DataFusionError;
use meshgate_policy::{AuthError, Denial, LoadError};
use meshgate_storage::{ProductStorageError, find_storage_error};
use std::fmt;
use std::time::Duration;

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
    /// The statement cannot be run as written (meshgate's own message).
    #[error("{0}")]
    InvalidQuery(String),
    /// The SQL does not parse or plan. The caller sees the planner's own message, which can
    /// quote the statement's literals; every other reader (audit, lineage, logs) gets
    /// `class`, which names the kind of failure and never a value.
    #[error("{message}")]
    Rejected { message: String, class: String },
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
    /// The query failed while running. `message` is for the caller (it can quote the value
    /// a function failed on, a value the caller may see); `class` for everyone else.
    #[error("query failed: {message}")]
    Execution { message: String, class: String },
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
/// A worker a distributed query ran on could not be reached or went away while the query
/// ran. Raised by the network to the workers (`meshgate-distributed`); the caller gets
/// UNAVAILABLE naming the worker, and the gateway and other queries go on.
#[derive(Debug, thiserror::Error)]
#[error("worker {worker} {problem}; the query did not complete: run it again")]
pub struct WorkerFailure {
    /// The worker's address as configured.
    pub worker: String,
    /// What happened, written by meshgate (never a value).
    pub problem: String,
}

/// A query's audit record could not be written: nothing of the query may leave. Raised by
/// its result stream (`audit::Audited`); the caller gets UNAVAILABLE with this text.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error(
    "the audit log in the governance store cannot be written, so the gateway refuses queries; \
     try again later (operators: see the gateway's log and /readyz)"
)]
pub struct AuditUnavailable;

fn find_abort(error: &DataFusionError) -> Option<GatewayError> {
    find_in_chain::<Abort>(error).map(|abort| match abort {
        Abort::Cancelled => GatewayError::Cancelled(abort.to_string()),
        Abort::TimedOut(_) => GatewayError::DeadlineExceeded(abort.to_string()),
    })
}

/// The first error of type `T` in an error's source chain, however deeply it was wrapped.
fn find_in_chain<T: std::error::Error + 'static>(error: &DataFusionError) -> Option<&T> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
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
            root => Self::Rejected {
                message: root.to_string(),
                class: failure_class(&error),
            },
        }
    }

    /// Classify an error raised while executing.
    pub fn from_execution(error: DataFusionError) -> Self {
        Self::of_execution(&error)
    }

    /// [`Self::from_execution`] without taking the error (a stream's error is also passed on).
    pub(crate) fn of_execution(error: &DataFusionError) -> Self {
        if let Some(denial) = find_denial(error) {
            return Self::Denied(denial);
        }
        if let Some(storage) = find_storage_error(error) {
            return Self::Storage(storage);
        }
        if let Some(abort) = find_abort(error) {
            return abort;
        }
        if let Some(unavailable) = find_in_chain::<AuditUnavailable>(error) {
            return Self::Unavailable(unavailable.to_string());
        }
        if let Some(worker) = find_in_chain::<WorkerFailure>(error) {
            return Self::Unavailable(worker.to_string());
        }
        if let DataFusionError::ResourcesExhausted(m) = error.find_root() {
            return Self::ResourceExhausted(format!(
                "{m}; narrow the query (filter earlier, select fewer columns) or ask an operator to raise the limit"
            ));
        }
        // The whole chain: its context frames say which product failed.
        Self::Execution {
            class: failure_class(error),
            message: error.strip_backtrace(),
        }
    }

    /// The failure as every reader but the caller sees it (the audit log, lineage events,
    /// the gateway's log): what kind of failure, and of which product where one is known,
    /// never a value. Values reach error text by quoting (a failed cast quotes the string it
    /// failed on, a planner error the statement's literal), so only texts meshgate writes
    /// itself from identifiers and counts pass through; the rest become their class.
    pub fn redacted(&self) -> String {
        let code = self.code();
        match self {
            // Denials are written by meshgate from ids and rule names.
            Self::Denied(denial) => format!("{code}: {denial}"),
            Self::Rejected { class, .. } | Self::Execution { class, .. } => {
                format!("{code}: {class}")
            }
            Self::Storage(e) => format!("{code}: product `{}`: {:?}", e.product, e.problem),
            Self::Internal(_) => format!("{code}: an invariant of the engine did not hold"),
            Self::Unauthenticated(_) => code.to_string(),
            // Written by meshgate from statement kinds, identifiers, counts and limits.
            Self::NotAllowed(m)
            | Self::InvalidQuery(m)
            | Self::NotFound(m)
            | Self::Overloaded(m)
            | Self::ResourceExhausted(m)
            | Self::DeadlineExceeded(m)
            | Self::Cancelled(m)
            | Self::Unavailable(m)
            | Self::Config(m) => format!("{code}: {m}"),
        }
    }

    /// A short, stable name of the kind of failure.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Denied(_) => "denied",
            Self::Unauthenticated(_) => "unauthenticated",
            Self::NotAllowed(_) => "not_allowed",
            Self::InvalidQuery(_) | Self::Rejected { .. } => "invalid_query",
            Self::NotFound(_) => "not_found",
            Self::Overloaded(_) => "overloaded",
            Self::ResourceExhausted(_) => "resource_exhausted",
            Self::DeadlineExceeded(_) => "deadline_exceeded",
            Self::Cancelled(_) => "cancelled",
            Self::Unavailable(_) => "unavailable",
            Self::Storage(_) => "storage",
            Self::Execution { .. } => "execution",
            Self::Config(_) => "config",
            Self::Internal(_) => "internal",
        }
    }
}

/// What kind of failure a DataFusion error is, without its message: the variant of its root
/// (and of an Arrow error inside), and the product whose sealed scan raised it.
pub(crate) fn failure_class(error: &DataFusionError) -> String {
    let seal = find_seal_failure(error);
    if let Some(class) = seal.and_then(|s| s.policy_failure.as_ref()) {
        return class.clone();
    }
    let mut class = match error.find_root() {
        DataFusionError::ArrowError(arrow, _) => format!("arrow error ({})", arrow_kind(arrow)),
        DataFusionError::SchemaError(schema, _) => {
            format!("schema error ({})", schema_kind(schema))
        }
        DataFusionError::SQL(..) => "SQL syntax error".into(),
        DataFusionError::Plan(_) => "planning error".into(),
        DataFusionError::NotImplemented(_) => "not supported".into(),
        DataFusionError::Execution(_) | DataFusionError::ExecutionJoin(_) => {
            "execution error".into()
        }
        DataFusionError::ResourcesExhausted(_) => "resources exhausted".into(),
        DataFusionError::ParquetError(_) => "Parquet error".into(),
        DataFusionError::ObjectStore(_) => "object store error".into(),
        DataFusionError::IoError(_) => "IO error".into(),
        DataFusionError::Internal(_) => "internal error".into(),
        DataFusionError::Configuration(_) => "configuration error".into(),
        DataFusionError::External(_) => "external error".into(),
        _ => "error".into(),
    };
    if let Some(sealed) = seal {
        class.push_str(&format!(
            " in the sealed scan of product `{}` (table {})",
            sealed.product, sealed.table
        ));
    }
    class
}

fn arrow_kind(error: &datafusion::arrow::error::ArrowError) -> &'static str {
    use datafusion::arrow::error::ArrowError as A;
    match error {
        A::CastError(_) => "cast",
        A::ParseError(_) => "parse",
        A::ComputeError(_) => "compute",
        A::DivideByZero => "division by zero",
        A::ArithmeticOverflow(_) => "arithmetic overflow",
        A::InvalidArgumentError(_) => "invalid argument",
        A::SchemaError(_) => "schema",
        A::MemoryError(_) => "memory",
        A::NotYetImplemented(_) => "not implemented",
        A::DictionaryKeyOverflowError | A::RunEndIndexOverflowError | A::OffsetOverflowError(_) => {
            "overflow"
        }
        _ => "other",
    }
}

fn schema_kind(error: &datafusion::common::SchemaError) -> &'static str {
    use datafusion::common::SchemaError as S;
    match error {
        S::FieldNotFound { .. } => "unknown column",
        S::AmbiguousReference { .. } => "ambiguous column",
        S::DuplicateQualifiedField { .. } | S::DuplicateUnqualifiedField { .. } => {
            "duplicate column"
        }
    }
}

/// Why a running query stopped early.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Abort {
    #[error("the query was cancelled")]
    Cancelled,
    #[error("the query took longer than its limit of {0:?}")]
    TimedOut(Duration),
}

/// A failure raised inside a sealed scan, with the product and table it happened in.
///
/// Storage and file errors keep their source (they name objects, never values, and
/// credentials never reach them). Anything else was raised while evaluating the policy's own
/// expressions on raw rows, hidden ones included (a row filter whose cast fails names the
/// value it failed on), so its text is dropped: the caller, the audit and the gateway's log
/// get only its class (see [`failure_class`]).
#[derive(Debug)]
pub(crate) struct SealFailure {
    pub(crate) product: String,
    pub(crate) table: String,
    pub(crate) policy_id: String,
    /// For a failure of the policy's expressions: its value-free class.
    pub(crate) policy_failure: Option<String>,
    pub(crate) source: Option<DataFusionError>,
}

impl fmt::Display for SealFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reading product `{}` (table {}): ",
            self.product, self.table
        )?;
        match &self.source {
            Some(source) => write!(f, "{source}"),
            None => write!(
                f,
                "policy {} could not be applied to the product's data; the gateway's log says \
                 how it failed (tell the product's owner)",
                self.policy_id
            ),
        }
    }
}

impl std::error::Error for SealFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.as_ref().map(|e| e as _)
    }
}

/// The sealed-scan failure somewhere in an error's chain.
pub(crate) fn find_seal_failure(error: &DataFusionError) -> Option<&SealFailure> {
    find_in_chain(error)
}
