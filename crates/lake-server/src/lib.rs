//! # meshgate-lake-server
//!
//! Product lakes are S3 buckets, and meshgate must be shown reading them over HTTP with
//! real signatures and real refusals, not through a shortcut. This crate runs an
//! S3-compatible server inside the process (s3s with the s3s-fs backend, files under a root
//! directory) so that `meshgate demo` and the tests exercise exactly the path a deployment on
//! AWS S3 or MinIO does:
//!
//! - every request must be signed (SigV4/SigV2) with a registered key;
//! - each key is granted specific buckets, read-only or read-write, and anything else is a
//!   real `403 AccessDenied`;
//! - every request is logged (key, operation, bucket, key, allowed), so tests can prove what
//!   the gateway did and did not do;
//! - the server can be stalled (a slow endpoint) or stopped and restarted (an outage).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder as ConnBuilder;
use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::SimpleAuth;
use s3s::path::S3Path;
use s3s::service::S3ServiceBuilder;
use s3s::{S3Result, s3_error};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// One access key and what it may do.
#[derive(Clone)]
pub struct KeyGrant {
    pub access_key: String,
    pub secret_key: String,
    /// Buckets this key may use.
    pub buckets: Vec<String>,
    /// Whether the key may write (put, delete, create) or only read (get, head, list).
    pub write: bool,
}

impl std::fmt::Debug for KeyGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyGrant")
            .field("access_key", &self.access_key)
            .field("buckets", &self.buckets)
            .field("write", &self.write)
            .finish_non_exhaustive()
    }
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRecord {
    /// The access key that signed it (`None`: unsigned or not verifiable).
    pub access_key: Option<String>,
    /// The S3 operation, e.g. `GetObject`, `ListObjectsV2`, `PutObject`.
    pub operation: String,
    pub bucket: Option<String>,
    pub key: Option<String>,
    pub allowed: bool,
}

impl RequestRecord {
    /// Whether the operation only reads.
    pub fn is_read(&self) -> bool {
        is_read_operation(&self.operation)
    }
}

fn is_read_operation(operation: &str) -> bool {
    operation.starts_with("Get") || operation.starts_with("Head") || operation.starts_with("List")
}

#[derive(Debug, thiserror::Error)]
pub enum LakeServerError {
    #[error("cannot prepare the lake directory {path}: {message}")]
    Root { path: String, message: String },
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

struct Shared {
    grants: Vec<KeyGrant>,
    log: Mutex<Vec<RequestRecord>>,
    stalled: watch::Sender<bool>,
}

struct Access {
    shared: Arc<Shared>,
}

#[async_trait::async_trait]
impl S3Access for Access {
    async fn check(&self, cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        // A stalled server holds every request: this is how tests play a slow endpoint.
        let mut stalled = self.shared.stalled.subscribe();
        while *stalled.borrow_and_update() {
            if stalled.changed().await.is_err() {
                break;
            }
        }
        let operation = cx.s3_op().name().to_string();
        let (bucket, key) = match cx.s3_path() {
            S3Path::Root => (None, None),
            S3Path::Bucket { bucket } => (Some(bucket.to_string()), None),
            S3Path::Object { bucket, key } => (Some(bucket.to_string()), Some(key.to_string())),
        };
        let access_key = cx.credentials().map(|c| c.access_key.clone());
        let grant = access_key
            .as_ref()
            .and_then(|k| self.shared.grants.iter().find(|g| &g.access_key == k));
        let allowed = match (grant, &bucket) {
            (Some(grant), Some(bucket)) => {
                grant.buckets.iter().any(|b| b == bucket)
                    && (grant.write || is_read_operation(&operation))
            }
            // Listing buckets needs no bucket grant; it reveals names only.
            (Some(_), None) => operation == "ListBuckets",
            (None, _) => false,
        };
        if let Ok(mut log) = self.shared.log.lock() {
            log.push(RequestRecord {
                access_key,
                operation,
                bucket,
                key,
                allowed,
            });
        }
        if allowed {
            Ok(())
        } else {
            Err(s3_error!(AccessDenied, "this key may not do that here"))
        }
    }
}

/// A running in-process S3 server.
pub struct LakeServer {
    addr: SocketAddr,
    root: PathBuf,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

impl std::fmt::Debug for LakeServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LakeServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl LakeServer {
    /// Serve the buckets under `root` (one directory per bucket: create them first, a
    /// missing one is a missing bucket) on `addr` (`127.0.0.1:0` for any free port).
    pub async fn start(
        root: PathBuf,
        addr: SocketAddr,
        grants: Vec<KeyGrant>,
    ) -> Result<Self, LakeServerError> {
        let (stalled, _) = watch::channel(false);
        let shared = Arc::new(Shared {
            grants,
            log: Mutex::new(Vec::new()),
            stalled,
        });
        let (addr, task) = serve(&root, addr, &shared).await?;
        Ok(Self {
            addr,
            root,
            shared,
            task,
        })
    }

    /// Serve again on the same address, root and keys after [`LakeServer::stop`]: the store
    /// comes back.
    pub async fn restart(&mut self) -> Result<(), LakeServerError> {
        self.task.abort();
        let (_, task) = serve(&self.root, self.addr, &self.shared).await?;
        self.task = task;
        Ok(())
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:<port>`.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared
            .log
            .lock()
            .map(|log| log.clone())
            .unwrap_or_default()
    }

    /// Forget the request log.
    pub fn clear_requests(&self) {
        if let Ok(mut log) = self.shared.log.lock() {
            log.clear();
        }
    }

    /// Hold (or release) every request, as a slow endpoint would.
    pub fn set_stalled(&self, stalled: bool) {
        self.shared.stalled.send_replace(stalled);
    }

    /// Stop serving: the listener closes and open connections are cut.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for LakeServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(
    root: &std::path::Path,
    addr: SocketAddr,
    shared: &Arc<Shared>,
) -> Result<(SocketAddr, JoinHandle<()>), LakeServerError> {
    let root_error = |message: String| LakeServerError::Root {
        path: root.display().to_string(),
        message,
    };
    let fs = s3s_fs::FileSystem::new(root).map_err(|e| root_error(format!("{e:?}")))?;
    let service = {
        let mut auth = SimpleAuth::new();
        for grant in &shared.grants {
            auth.register(grant.access_key.clone(), grant.secret_key.clone().into());
        }
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(auth);
        builder.set_access(Access {
            shared: Arc::clone(shared),
        });
        builder.build()
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| LakeServerError::Bind { addr, source })?;
    let addr = listener
        .local_addr()
        .map_err(|source| LakeServerError::Bind { addr, source })?;
    let task = tokio::spawn(async move {
        // Connections live in this set: stopping the server drops it, which aborts them,
        // exactly like an endpoint that goes away mid-request.
        let mut connections = tokio::task::JoinSet::new();
        loop {
            let socket = match listener.accept().await {
                Ok((socket, _)) => socket,
                Err(error) => {
                    tracing::warn!(%error, "lake server: accept failed");
                    continue;
                }
            };
            let service = service.clone();
            connections.spawn(async move {
                let _ = ConnBuilder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(socket), service)
                    .await;
            });
            while connections.try_join_next().is_some() {}
        }
    });
    Ok((addr, task))
}
