//! Storage errors. Runtime failures name the product and the bucket and say what went wrong
//! in words an operator can act on; they never carry credentials.

use std::fmt;

/// A configuration that cannot be opened.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("product `{product}`: {message}")]
    Config { product: String, message: String },
}

/// What went wrong talking to a product's storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Problem {
    /// The store refused the gateway's credentials (403/401).
    AccessDenied,
    /// The bucket does not exist.
    NoSuchBucket,
    /// An object the gateway listed is gone (deleted, or replaced, mid-query).
    ObjectMissing,
    /// The endpoint could not be reached.
    Unreachable,
    /// The endpoint did not answer in time.
    Timeout,
    /// The gateway tried to write; it never does.
    WriteRefused,
    /// Anything else.
    Other,
}

/// A failure talking to one product's storage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductStorageError {
    pub product: String,
    pub bucket: String,
    pub problem: Problem,
    /// The object, when one was involved (its key in the bucket).
    pub object: Option<String>,
}

impl ProductStorageError {
    /// Whether retrying later may succeed (the store, not the request, is the problem).
    pub fn is_transient(&self) -> bool {
        matches!(self.problem, Problem::Unreachable | Problem::Timeout)
    }
}

impl fmt::Display for ProductStorageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Self {
            product,
            bucket,
            problem,
            object,
        } = self;
        write!(f, "product `{product}`: ")?;
        match problem {
            Problem::AccessDenied => write!(
                f,
                "its storage refused the gateway's credentials for bucket `{bucket}`; an operator must check the \
                 product's storage credentials"
            ),
            Problem::NoSuchBucket => write!(
                f,
                "its bucket `{bucket}` does not exist on the configured endpoint"
            ),
            Problem::ObjectMissing => match object {
                Some(object) => write!(
                    f,
                    "file `{object}` in bucket `{bucket}` disappeared while being read; retry the query"
                ),
                None => write!(
                    f,
                    "a file in bucket `{bucket}` disappeared while being read; retry the query"
                ),
            },
            Problem::Unreachable => write!(
                f,
                "its storage (bucket `{bucket}`) cannot be reached; retry later"
            ),
            Problem::Timeout => write!(
                f,
                "its storage (bucket `{bucket}`) did not answer in time; retry later"
            ),
            Problem::WriteRefused => write!(
                f,
                "the gateway never writes to product storage (bucket `{bucket}`)"
            ),
            Problem::Other => write!(
                f,
                "reading bucket `{bucket}` failed; the gateway's log has the details"
            ),
        }
    }
}

impl std::error::Error for ProductStorageError {}

/// Classify an object_store error from a product's store: the typed transport error when
/// there is one (connect, timeout), else the S3 status and error code.
pub(crate) fn classify(error: &object_store::Error) -> Problem {
    use object_store::client::{HttpError, HttpErrorKind};
    match error {
        object_store::Error::PermissionDenied { .. }
        | object_store::Error::Unauthenticated { .. } => {
            return Problem::AccessDenied;
        }
        object_store::Error::NotFound { .. } => {
            return if chain_text(error).contains("NoSuchBucket") {
                Problem::NoSuchBucket
            } else {
                Problem::ObjectMissing
            };
        }
        _ => {}
    }
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = source {
        if let Some(http) = e.downcast_ref::<HttpError>() {
            match http.kind() {
                HttpErrorKind::Connect | HttpErrorKind::Request | HttpErrorKind::Interrupted => {
                    return Problem::Unreachable;
                }
                HttpErrorKind::Timeout => return Problem::Timeout,
                _ => break,
            }
        }
        source = e.source();
    }
    let text = chain_text(error);
    if text.contains("NoSuchBucket") {
        Problem::NoSuchBucket
    } else if [
        "AccessDenied",
        "status code: 403",
        "status code: 401",
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId",
    ]
    .iter()
    .any(|needle| text.contains(needle))
    {
        Problem::AccessDenied
    } else if text.contains("status code: 404") {
        Problem::ObjectMissing
    } else {
        Problem::Other
    }
}

/// The error and all its sources, as one string.
fn chain_text(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        text.push_str(" | ");
        text.push_str(&inner.to_string());
        source = inner.source();
    }
    text
}

/// The product storage error somewhere in an error's source chain.
pub fn find_storage_error(
    error: &(dyn std::error::Error + 'static),
) -> Option<ProductStorageError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<ProductStorageError>() {
            return Some(found.clone());
        }
        current = e.source();
    }
    None
}
