//! The distributed configuration: TPC-H on one gateway and two workers against single-process
//! meshgate and against DataFusion Distributed itself with no enforcement, on the same files.
//!
//! Workers run in this process, each on a runtime and thread of its own, behind real gRPC on
//! loopback (meshgate's workers behind their signature check, DataFusion Distributed's plain).
//! On this machine they share its cores with the gateway, so the numbers measure what
//! distribution costs (planning stages, encoding and signing plans, shuffling batches over
//! gRPC), not what more machines buy; the report turns the measured costs into a model for N
//! machines. Every worker counts the bytes it sends (stage outputs: shuffles and results).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion_distributed::{DistributedExt, SessionStateBuilderExt, Worker, WorkerResolver};
use futures::future::BoxFuture;
use http_body_util::BodyExt;
use meshgate::GatewayConfig;
use meshgate::distributed::{Network, StageSigner, WorkerServer};
use meshgate::engine::{Distribution, OnWorkerDown, WorkerNetwork, WorkerNode};
use meshgate::protect::MasterKey;
use url::Url;

use crate::BenchError;
use crate::mesh;
use crate::tpch::TpchData;

/// Bytes of Parquet one partition of a task reads: TPC-H SF1's lineitem (~200 MB) becomes a
/// few tasks per worker.
pub const BYTES_PER_PARTITION: usize = 16 << 20;

/// A key both kinds of node derive stage signatures from (the demo key cannot sign).
pub fn master_key() -> MasterKey {
    match MasterKey::from_bytes(b"meshgate benchmark key, not a secret, 32+ bytes") {
        Ok(key) => key,
        Err(_) => unreachable!("the benchmark key is long enough"),
    }
}

/// Workers on loopback, each on a thread and runtime of its own, with the bytes each sent.
pub struct Workers {
    pub urls: Vec<Url>,
    sent: Vec<Arc<AtomicU64>>,
    _threads: Vec<std::thread::JoinHandle<()>>,
}

impl Workers {
    /// Bytes every worker sent so far.
    pub fn bytes_sent(&self) -> u64 {
        self.sent.iter().map(|s| s.load(Ordering::Relaxed)).sum()
    }
}

type Serve = Box<
    dyn FnOnce(tokio::net::TcpListener, Arc<AtomicU64>) -> BoxFuture<'static, Result<(), String>>
        + Send,
>;

fn start(n: usize, make: impl Fn() -> Serve) -> Result<Workers, BenchError> {
    let mut urls = Vec::with_capacity(n);
    let mut sent = Vec::with_capacity(n);
    let mut threads = Vec::with_capacity(n);
    for _ in 0..n {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|e| BenchError::setup("a worker")(e.to_string()))?;
        let addr = listener
            .local_addr()
            .map_err(|e| BenchError::setup("a worker")(e.to_string()))?;
        urls.push(
            Url::parse(&format!("http://{addr}"))
                .map_err(|e| BenchError::setup("a worker")(e.to_string()))?,
        );
        let counter = Arc::new(AtomicU64::new(0));
        sent.push(Arc::clone(&counter));
        let serve = make();
        threads.push(std::thread::spawn(move || {
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    eprintln!("a worker's runtime: {e}");
                    return;
                }
            };
            runtime.block_on(async move {
                match tokio::net::TcpListener::from_std(listener) {
                    Ok(listener) => {
                        if let Err(e) = serve(listener, counter).await {
                            eprintln!("a worker stopped: {e}");
                        }
                    }
                    Err(e) => eprintln!("a worker's listener: {e}"),
                }
            });
        }));
    }
    Ok(Workers {
        urls,
        sent,
        _threads: threads,
    })
}

/// `n` meshgate workers holding what `config` holds (catalog, policies, lake, master key).
pub fn meshgate_workers(
    n: usize,
    config: impl Fn() -> Result<GatewayConfig, BenchError>,
) -> Result<Workers, BenchError> {
    let signer = Arc::new(
        StageSigner::new(&master_key(), meshgate::distributed::DEFAULT_TTL)
            .map_err(|e| BenchError::setup("stage signatures")(e.to_string()))?,
    );
    let mut configs = Vec::with_capacity(n);
    for _ in 0..n {
        configs.push(config()?);
    }
    let configs = std::sync::Mutex::new(configs);
    start(n, || {
        let config = configs.lock().ok().and_then(|mut c| c.pop());
        let signer = Arc::clone(&signer);
        Box::new(move |listener, sent| {
            Box::pin(async move {
                let config = config.ok_or("no configuration")?;
                serve_worker(
                    config,
                    signer,
                    listener,
                    sent,
                    std::future::pending(),
                    |_| Ok(()),
                )
                .await
            })
        })
    })
}

/// Open `config`'s worker node and serve it on `listener` until `shutdown`, counting the
/// bytes it sends in `sent`; `listening` hears the address once the node is open (its error
/// stops the worker).
async fn serve_worker(
    config: GatewayConfig,
    signer: Arc<StageSigner>,
    listener: tokio::net::TcpListener,
    sent: Arc<AtomicU64>,
    shutdown: impl Future<Output = ()>,
    listening: impl FnOnce(std::net::SocketAddr) -> Result<(), String>,
) -> Result<(), String> {
    let node = WorkerNode::open(config).await.map_err(|e| e.to_string())?;
    listening(listener.local_addr().map_err(|e| e.to_string())?)?;
    WorkerServer {
        node: Arc::new(node),
        signer,
        tls: None,
        peers_tls: None,
        refused: Arc::default(),
        stages: Arc::default(),
        sent,
    }
    .serve(listener, shutdown)
    .await
    .map_err(|e| e.to_string())
}

/// A gateway configuration that hands every query to the workers at `urls`; the network,
/// to see which of them it counts as live.
pub async fn distribute(
    config: &mut GatewayConfig,
    urls: &[Url],
) -> Result<Arc<Network>, BenchError> {
    let signer = Arc::new(
        StageSigner::new(&master_key(), meshgate::distributed::DEFAULT_TTL)
            .map_err(|e| BenchError::setup("stage signatures")(e.to_string()))?,
    );
    let network = Network::new(urls.to_vec(), signer, None);
    network.probe().await;
    if network.live().len() != urls.len() {
        return Err(BenchError::setup("meshgate workers")(
            "a worker does not answer".into(),
        ));
    }
    config.master_key = master_key();
    config.distribution = Some(Distribution {
        network: Arc::clone(&network) as Arc<dyn WorkerNetwork>,
        min_scan_bytes: 0,
        bytes_per_partition: BYTES_PER_PARTITION,
        on_worker_down: OnWorkerDown::Skip,
    });
    Ok(network)
}

/// `n` plain DataFusion Distributed workers (no authentication, no policy), counting the
/// bytes they send.
pub fn plain_workers(n: usize) -> Result<Workers, BenchError> {
    start(n, || {
        Box::new(move |listener, sent| {
            Box::pin(async move {
                tonic::transport::Server::builder()
                    .layer(tower::layer::layer_fn(move |inner| Counting {
                        inner,
                        sent: Arc::clone(&sent),
                    }))
                    .add_service(Worker::default().into_worker_server())
                    .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
    })
}

/// DataFusion Distributed itself as the coordinator, over `workers`, on the same files.
pub async fn plain_coordinator(
    data: &TpchData,
    workers: &Workers,
) -> Result<SessionContext, BenchError> {
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_config(SessionConfig::new().with_information_schema(true))
        .with_distributed_worker_resolver(Urls(workers.urls.clone()))
        .with_distributed_planner()
        .with_distributed_file_scan_config_bytes_per_partition(BYTES_PER_PARTITION)
        .map_err(|e| BenchError::setup("DataFusion Distributed")(e.to_string()))?
        .build();
    let ctx = SessionContext::from(state);
    mesh::register_schema(&ctx, "tpch", data).await?;
    Ok(ctx)
}

struct Urls(Vec<Url>);

impl WorkerResolver for Urls {
    fn get_urls(&self) -> datafusion::common::Result<Vec<Url>> {
        Ok(self.0.clone())
    }
}

/// Counts the bytes of every response body a plain worker sends.
#[derive(Clone)]
struct Counting<S> {
    inner: S,
    sent: Arc<AtomicU64>,
}

impl<S, B> tower::Service<http::Request<tonic::body::Body>> for Counting<S>
where
    S: tower::Service<http::Request<tonic::body::Body>, Response = http::Response<B>>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    type Response = http::Response<tonic::body::Body>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, S::Error>>;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let sent = Arc::clone(&self.sent);
        let response = self.inner.call(request);
        Box::pin(async move {
            let response = response.await?;
            Ok(response.map(|body| {
                tonic::body::Body::new(body.map_frame(move |frame| {
                    if let Some(data) = frame.data_ref() {
                        sent.fetch_add(data.len() as u64, Ordering::Relaxed);
                    }
                    frame
                }))
            }))
        })
    }
}

/// meshgate workers as processes of their own (this binary with `--serve-worker`), which the
/// fault pass kills with SIGKILL. Each ends when this process drops it or goes away (its
/// standard input closes).
pub struct WorkerProcesses {
    pub urls: Vec<Url>,
    children: Vec<tokio::process::Child>,
}

impl WorkerProcesses {
    /// Start `n` workers: this binary with `args` and `--serve-worker`, each printing the
    /// address it listens on.
    pub async fn spawn(n: usize, args: &[String]) -> Result<Self, BenchError> {
        use tokio::io::AsyncBufReadExt;
        let setup = BenchError::setup("worker processes");
        let exe = std::env::current_exe().map_err(|e| setup(e.to_string()))?;
        let mut processes = Self {
            urls: Vec::with_capacity(n),
            children: Vec::with_capacity(n),
        };
        for _ in 0..n {
            let mut child = tokio::process::Command::new(&exe)
                .args(args)
                .arg("--serve-worker")
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .kill_on_drop(true)
                .spawn()
                .map_err(|e| setup(format!("{}: {e}", exe.display())))?;
            let stdout = child
                .stdout
                .take()
                .ok_or_else(|| setup("no standard output".into()))?;
            processes.children.push(child);
            let mut lines = tokio::io::BufReader::new(stdout).lines();
            let line = tokio::time::timeout(std::time::Duration::from_secs(120), lines.next_line())
                .await
                .map_err(|_| setup("a worker did not start within 120 s".into()))?
                .map_err(|e| setup(e.to_string()))?
                .ok_or_else(|| setup("a worker exited before listening".into()))?;
            let addr = line
                .strip_prefix("worker listening on ")
                .ok_or_else(|| setup(format!("unexpected first line: {line}")))?;
            processes
                .urls
                .push(Url::parse(&format!("http://{addr}")).map_err(|e| setup(e.to_string()))?);
        }
        Ok(processes)
    }

    /// SIGKILL worker `i`, without waiting for it.
    pub fn kill(&mut self, i: usize) -> Result<(), BenchError> {
        let setup = BenchError::setup("killing a worker");
        self.children
            .get_mut(i)
            .ok_or_else(|| setup(format!("no worker {i}")))?
            .start_kill()
            .map_err(|e| setup(e.to_string()))
    }
}

/// The worker process's side: serve `config`'s worker on a free loopback port, print
/// `worker listening on ADDR`, and stop when standard input closes (the harness is gone).
pub async fn serve_worker_process(config: GatewayConfig) -> Result<(), BenchError> {
    use std::io::Write as _;
    use tokio::io::AsyncReadExt;
    let setup = BenchError::setup("a worker process");
    let signer = Arc::new(
        StageSigner::new(&master_key(), meshgate::distributed::DEFAULT_TTL)
            .map_err(|e| setup(e.to_string()))?,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| setup(e.to_string()))?;
    let orphaned = async {
        let mut sink = Vec::new();
        let _ = tokio::io::stdin().read_to_end(&mut sink).await;
    };
    // The harness waits for this line.
    let announce = |addr| {
        let mut stdout = std::io::stdout();
        writeln!(stdout, "worker listening on {addr}")
            .and_then(|()| stdout.flush())
            .map_err(|e| e.to_string())
    };
    serve_worker(config, signer, listener, Arc::default(), orphaned, announce)
        .await
        .map_err(setup)
}
