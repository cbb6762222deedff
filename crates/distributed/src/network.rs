//! The gateway's view of its workers: a signed (and, with TLS configured, mutually
//! authenticated) channel to each, which of them answer, and failures that name the worker.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion_distributed::grpc::{BoxCloneSyncChannel, create_worker_client};
use datafusion_distributed::{
    ChannelResolver, CoordinatorToWorkerMsg, ExecuteTaskRequest, GetWorkerInfoRequest,
    GetWorkerInfoResponse, SetPlanRequest, WorkerChannel, WorkerToCoordinatorMsg,
};
use futures::StreamExt;
use futures::stream::BoxStream;
use http::HeaderMap;
use meshgate_engine::{WorkerFailure, WorkerNetwork};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use url::Url;

use crate::client::Signing;
use crate::signing::StageSigner;

/// TLS towards workers: the CA that signed their certificates and, for mutual TLS, this
/// node's own certificate and key (PEM).
#[derive(Clone)]
pub struct ClientTls {
    pub ca_pem: Vec<u8>,
    pub identity: Option<(Vec<u8>, Vec<u8>)>,
    /// The name the workers' certificates carry, when it is not the host of their URL.
    pub domain: Option<String>,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("mutual", &self.identity.is_some())
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

/// How long a worker has to answer a probe or a connection attempt.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// A gateway's (or worker's) channels to workers.
pub struct Network {
    workers: Vec<Url>,
    signer: Arc<StageSigner>,
    tls: Option<ClientTls>,
    channels: Mutex<HashMap<Url, BoxCloneSyncChannel>>,
    /// Shared with every channel handed out, so that a worker seen going away mid-query is
    /// left out of the next query's plan without waiting for the next probe.
    live: Arc<RwLock<BTreeSet<Url>>>,
}

impl std::fmt::Debug for Network {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Network")
            .field("workers", &self.workers)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl Network {
    /// Channels to `workers`, signed by `signer`; every worker counts as live until probed.
    pub fn new(workers: Vec<Url>, signer: Arc<StageSigner>, tls: Option<ClientTls>) -> Arc<Self> {
        let live = workers.iter().cloned().collect();
        Arc::new(Self {
            workers,
            signer,
            tls,
            channels: Mutex::default(),
            live: Arc::new(RwLock::new(live)),
        })
    }

    fn channel(&self, url: &Url) -> Result<BoxCloneSyncChannel> {
        if let Ok(channels) = self.channels.lock()
            && let Some(channel) = channels.get(url)
        {
            return Ok(channel.clone());
        }
        let mut endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| failure(url, format!("is not a valid address: {e}")))?
            .connect_timeout(PROBE_TIMEOUT)
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(10))
            .keep_alive_timeout(Duration::from_secs(10));
        if let Some(tls) = &self.tls {
            let mut config =
                ClientTlsConfig::new().ca_certificate(Certificate::from_pem(&tls.ca_pem));
            if let Some((cert, key)) = &tls.identity {
                config = config.identity(Identity::from_pem(cert, key));
            }
            if let Some(domain) = &tls.domain {
                config = config.domain_name(domain.clone());
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| failure(url, format!("TLS configuration: {e}")))?;
        }
        let channel = BoxCloneSyncChannel::new(Signing {
            inner: endpoint.connect_lazy(),
            signer: Arc::clone(&self.signer),
        });
        if let Ok(mut channels) = self.channels.lock() {
            channels.insert(url.clone(), channel.clone());
        }
        Ok(channel)
    }

    /// Whether the worker at `url` answers a probe now.
    async fn answers_now(&self, url: &Url) -> bool {
        match self.channel(url) {
            Ok(channel) => answers(channel).await,
            Err(_) => false,
        }
    }

    /// Ask every configured worker whether it answers, and remember who did.
    pub async fn probe(&self) {
        let mut live = BTreeSet::new();
        for url in &self.workers {
            if self.answers_now(url).await {
                live.insert(url.clone());
            } else {
                tracing::warn!(worker = %url, "a worker does not answer");
            }
        }
        if let Ok(mut current) = self.live.write() {
            *current = live;
        }
    }

    /// Probe now, then every `interval` for as long as the network is in use.
    pub async fn start_probing(self: &Arc<Self>, interval: Duration) {
        self.probe().await;
        let network = Arc::downgrade(self);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(network) = network.upgrade() else {
                    return;
                };
                network.probe().await;
            }
        });
    }
}

#[async_trait]
impl WorkerNetwork for Network {
    fn configured(&self) -> Vec<Url> {
        self.workers.clone()
    }

    fn live(&self) -> Vec<Url> {
        self.live
            .read()
            .map(|l| l.iter().cloned().collect())
            .unwrap_or_default()
    }

    async fn recheck(&self, workers: &[Url]) -> Vec<Url> {
        // All at once: a query's failure waits for the slowest probe, not their sum.
        let answered =
            futures::future::join_all(workers.iter().map(|url| self.answers_now(url))).await;
        let down: Vec<Url> = workers
            .iter()
            .zip(answered)
            .filter(|(_, answered)| !answered)
            .map(|(url, _)| url.clone())
            .collect();
        for url in &down {
            leave_out(&self.live, url);
        }
        down
    }
}

#[async_trait]
impl ChannelResolver for Network {
    async fn get_worker_client_for_url(&self, url: &Url) -> Result<Box<dyn WorkerChannel>> {
        let channel = self.channel(url)?;
        Ok(Box::new(Named {
            worker: Worker {
                url: url.clone(),
                live: Arc::clone(&self.live),
                channel: channel.clone(),
            },
            inner: create_worker_client(channel),
        }))
    }
}

/// Whether the worker behind `channel` answers a probe in time.
async fn answers(channel: BoxCloneSyncChannel) -> bool {
    let mut client = create_worker_client(channel);
    matches!(
        tokio::time::timeout(
            PROBE_TIMEOUT,
            client.get_worker_info(GetWorkerInfoRequest {})
        )
        .await,
        Ok(Ok(_))
    )
}

fn failure(url: &Url, problem: String) -> DataFusionError {
    DataFusionError::External(Box::new(WorkerFailure {
        worker: url.to_string(),
        problem,
    }))
}

/// Take `url` out of the live set (no query is planned on it until it answers a probe);
/// whether it was in it.
fn leave_out(live: &RwLock<BTreeSet<Url>>, url: &Url) -> bool {
    let removed = live
        .write()
        .map(|mut live| live.remove(url))
        .unwrap_or(false);
    if removed {
        tracing::warn!(worker = %url, "a worker went away; no query uses it until it answers a probe");
    }
    removed
}

/// A worker as its channel's failures see it.
#[derive(Clone)]
struct Worker {
    url: Url,
    live: Arc<RwLock<BTreeSet<Url>>>,
    channel: BoxCloneSyncChannel,
}

impl Worker {
    /// A worker's errors that are the network's or the worker's refusal (not the query's own)
    /// become a [`WorkerFailure`] naming the worker. A worker that went away counts as down
    /// until it answers a probe again.
    fn named(&self, error: DataFusionError) -> DataFusionError {
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(&error);
        while let Some(e) = current {
            if e.downcast_ref::<WorkerFailure>().is_some() {
                return error;
            }
            if let Some(status) = e.downcast_ref::<tonic::Status>() {
                let problem = match status.code() {
                    tonic::Code::PermissionDenied => {
                        format!("refused the stage ({})", status.message())
                    }
                    tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
                        // A status with a source is the channel's own (connection refused or
                        // reset): the worker is gone. One the worker sent is its answer.
                        if std::error::Error::source(status).is_some() {
                            self.went_away();
                        }
                        "went away or cannot be reached".to_string()
                    }
                    code => format!("failed ({code:?})"),
                };
                return failure(&self.url, problem);
            }
            current = e.source();
        }
        error
    }

    /// Leave the worker out of the next plans at once, then ask it: one that still answers
    /// (the error was its peer's, say) is back within a probe's time.
    fn went_away(&self) {
        if !leave_out(&self.live, &self.url) {
            return;
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let worker = self.clone();
            runtime.spawn(async move {
                if answers(worker.channel).await
                    && let Ok(mut live) = worker.live.write()
                {
                    live.insert(worker.url);
                }
            });
        }
    }
}

/// A worker's channel whose failures name the worker.
struct Named {
    worker: Worker,
    inner: Box<dyn WorkerChannel>,
}

#[async_trait]
impl WorkerChannel for Named {
    async fn coordinator_channel(
        &mut self,
        headers: HeaderMap,
        set_plan_request: SetPlanRequest,
        c2w_stream: BoxStream<'static, CoordinatorToWorkerMsg>,
        metrics: ExecutionPlanMetricsSet,
        task_ctx: &Arc<TaskContext>,
    ) -> Result<BoxStream<'static, Result<WorkerToCoordinatorMsg>>> {
        let worker = self.worker.clone();
        let stream = self
            .inner
            .coordinator_channel(headers, set_plan_request, c2w_stream, metrics, task_ctx)
            .await
            .map_err(|e| worker.named(e))?;
        Ok(stream.map(move |m| m.map_err(|e| worker.named(e))).boxed())
    }

    async fn execute_task(
        &mut self,
        headers: HeaderMap,
        request: ExecuteTaskRequest,
        metrics: ExecutionPlanMetricsSet,
        task_ctx: &Arc<TaskContext>,
    ) -> Result<Vec<BoxStream<'static, Result<RecordBatch>>>> {
        let streams = self
            .inner
            .execute_task(headers, request, metrics, task_ctx)
            .await
            .map_err(|e| self.worker.named(e))?;
        Ok(streams
            .into_iter()
            .map(|s| {
                let worker = self.worker.clone();
                s.map(move |b| b.map_err(|e| worker.named(e))).boxed()
            })
            .collect())
    }

    async fn get_worker_info(
        &mut self,
        request: GetWorkerInfoRequest,
    ) -> Result<GetWorkerInfoResponse> {
        self.inner
            .get_worker_info(request)
            .await
            .map_err(|e| self.worker.named(e))
    }
}
