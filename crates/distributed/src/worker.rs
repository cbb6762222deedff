//! `meshgate worker`: a process that runs the stages its gateways send it, behind the
//! signature check ([`crate::guard`]) and, when configured, mutual TLS.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use async_trait::async_trait;
use datafusion::common::Result;
use datafusion::execution::SessionState;
use datafusion_distributed::{
    ChannelResolver, DistributedExt, Worker, WorkerQueryContext, WorkerSessionBuilder,
};
use meshgate_engine::WorkerNode;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use crate::guard::GuardLayer;
use crate::network::{ClientTls, Network};
use crate::signing::StageSigner;

/// TLS for a worker: its certificate and key and, for mutual TLS, the CA whose certificates
/// gateways (and peer workers) must present (PEM).
#[derive(Clone)]
pub struct ServerTls {
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
    pub client_ca_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerTls")
            .field("mutual", &self.client_ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// What one worker process serves with.
#[derive(Debug)]
pub struct WorkerServer {
    pub node: Arc<WorkerNode>,
    pub signer: Arc<StageSigner>,
    pub tls: Option<ServerTls>,
    /// How this worker reaches its peers for shuffles (the same CA and identity as a gateway).
    pub peers_tls: Option<ClientTls>,
    /// Requests refused since start (for the worker's log and tests).
    pub refused: Arc<AtomicU64>,
    /// Stages this worker ran since start.
    pub stages: Arc<AtomicU64>,
    /// Bytes this worker sent since start (stage outputs: shuffles and results).
    pub sent: Arc<AtomicU64>,
}

/// The session every stage runs in: the seal codec of the mesh version this worker holds
/// when the stage arrives, and signed channels to its peers.
struct Sessions {
    node: Arc<WorkerNode>,
    peers: Arc<Network>,
    stages: Arc<AtomicU64>,
}

#[async_trait]
impl WorkerSessionBuilder for Sessions {
    async fn build_session_state(&self, ctx: WorkerQueryContext) -> Result<SessionState> {
        self.stages
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Ok(ctx
            .builder
            .with_distributed_user_codec(self.node.seal_codec())
            .with_distributed_channel_resolver(
                Arc::clone(&self.peers) as Arc<dyn ChannelResolver + Send + Sync>
            )
            .build())
    }
}

impl WorkerServer {
    /// Serve on `listener` until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        // Peers are whatever a signed plan names: a plan comes from a gateway of this mesh.
        let peers = Network::new(Vec::new(), Arc::clone(&self.signer), self.peers_tls.clone());
        let worker = Worker::from_session_builder(Sessions {
            node: Arc::clone(&self.node),
            peers,
            stages: Arc::clone(&self.stages),
        })
        .with_runtime_env(self.node.runtime())
        .with_version(env!("CARGO_PKG_VERSION"));
        let mut builder = tonic::transport::Server::builder();
        if let Some(tls) = &self.tls {
            let mut config = ServerTlsConfig::new()
                .identity(Identity::from_pem(&tls.cert_pem, tls.key_pem.as_slice()));
            if let Some(ca) = &tls.client_ca_pem {
                config = config.client_ca_root(Certificate::from_pem(ca));
            }
            builder = builder.tls_config(config)?;
        }
        builder
            .layer(GuardLayer::new(
                Arc::clone(&self.signer),
                self.refused,
                self.sent,
            ))
            .add_service(worker.into_worker_server())
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await
    }
}
