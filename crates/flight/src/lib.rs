//! # meshgate-flight
//!
//! Consumers reach data products from the tools they already use: JDBC/ODBC drivers, ADBC,
//! pyarrow, Polars, BI tools. They all speak Arrow Flight SQL, so this crate is meshgate's
//! front door: a Flight SQL server (arrow-flight + tonic) over the engine.
//!
//! It adds no policy of its own and bypasses none: it authenticates the caller (Basic or a
//! JWT in the handshake, a Bearer token after it, or a client certificate), and every
//! statement and metadata call runs through the engine as that caller. Tickets and prepared
//! statement handles are signed and bound to their principal, and re-planned under the
//! caller's policy when redeemed. Results stream; nothing is buffered whole.
//!
//! Code map: [`service`](MeshFlightService) dispatches each Flight SQL command;
//! `auth` / `jwt` say who is calling; `tickets` signs handles; `drafts` holds what `GetFlightInfo` planned for its `DoGet`; `params` carries bound
//! values; `columns` and `edge` shape the schemas clients see; `sql_info` describes the
//! server; `served` authenticates every call before anything is decoded; `session_options` and `running` hold per-session and per-query state; `status`
//! maps failures to gRPC codes.

mod access;
mod auth;
mod columns;
mod drafts;
mod edge;
mod jwt;
pub mod ops;
mod params;
mod running;
mod served;
mod service;
mod session_options;
mod sessions;
mod sign_in;
mod sql_info;
mod status;
mod tickets;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use meshgate_engine::Gateway;
use tokio::net::TcpListener;
use tonic::transport::server::TcpIncoming;
use tonic::transport::{Certificate, Identity, ServerTlsConfig};
use zeroize::Zeroizing;

pub use edge::{edge_schema, to_edge};
pub use jwt::{JwtConfig, JwtKey, PrincipalNamespace, TokenError};
pub use ops::{serve_http, serve_ops};
pub use service::MeshFlightService;
pub use session_options::{
    CloseSessionRequest, CloseSessionResult, CloseSessionStatus, GetSessionOptionsRequest,
    GetSessionOptionsResult, OptionValue, SessionOptionValue, SetSessionOptionsErrorValue,
    SetSessionOptionsRequest, SetSessionOptionsResult,
};
pub use sign_in::{SignIn, SignedIn};

/// How the Flight SQL server listens, authenticates and shuts down.
#[derive(Debug, Clone)]
pub struct FlightConfig {
    /// TLS (rustls); `None` serves plain text (for local use and behind a TLS proxy).
    pub tls: Option<TlsConfig>,
    /// Identity providers whose signed tokens are accepted.
    pub jwt: Vec<JwtConfig>,
    /// How long a session token from the handshake stays valid.
    pub token_ttl: Duration,
    /// The largest gRPC message either side accepts. Flight batches are split near 2 MiB,
    /// but tonic's 4 MiB default is easily exceeded by one wide row group.
    pub max_message_bytes: usize,
    /// HTTP/2 and TCP keep-alive, so that long queries survive idle timeouts of load
    /// balancers and proxies, and dead clients are noticed.
    pub keepalive: Duration,
    /// On shutdown, how long running queries may take to finish before they are cancelled.
    pub drain_timeout: Duration,
}

impl Default for FlightConfig {
    fn default() -> Self {
        Self {
            tls: None,
            jwt: Vec::new(),
            token_ttl: Duration::from_secs(12 * 3600),
            max_message_bytes: 64 * 1024 * 1024,
            keepalive: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(30),
        }
    }
}

/// Server certificate and, for mutual TLS, the CA that client certificates must chain to.
#[derive(Clone)]
pub struct TlsConfig {
    pub cert_pem: Vec<u8>,
    pub key_pem: Zeroizing<Vec<u8>>,
    /// With a client CA, clients may present a certificate; its common name is their
    /// principal (it must be a known user).
    pub client_ca_pem: Option<Vec<u8>>,
    /// Refuse connections without a client certificate (only with `client_ca_pem`).
    pub client_cert_required: bool,
}

impl std::fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConfig")
            .field("mutual", &self.client_ca_pem.is_some())
            .field("client_cert_required", &self.client_cert_required)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
    #[error("the Flight SQL server is misconfigured: {0}")]
    Config(String),
    #[error("the Flight SQL server failed: {0}")]
    Transport(String),
}

/// Bind a listener (use port 0 for any free port; [`TcpListener::local_addr`] tells which).
pub async fn bind(addr: &str) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: addr.to_string(),
            source,
        })
}

fn tls_config(tls: &TlsConfig) -> ServerTlsConfig {
    let mut config =
        ServerTlsConfig::new().identity(Identity::from_pem(&tls.cert_pem, tls.key_pem.as_slice()));
    if let Some(ca) = &tls.client_ca_pem {
        config = config
            .client_ca_root(Certificate::from_pem(ca))
            .client_auth_optional(!tls.client_cert_required);
    }
    config
}

/// Serve Flight SQL on `listener` until `shutdown` completes, then drain: new calls are
/// refused with UNAVAILABLE, running queries get `drain_timeout` to finish, and whatever
/// still runs after that is cancelled.
pub async fn serve(
    gateway: Gateway,
    listener: TcpListener,
    config: FlightConfig,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let local: Option<SocketAddr> = listener.local_addr().ok();
    let audit = gateway.clone();
    let service = MeshFlightService::new(gateway, &config).map_err(ServeError::Config)?;
    let running = service.running();
    let server = FlightServiceServer::new(served::Served(service))
        .max_decoding_message_size(config.max_message_bytes)
        .max_encoding_message_size(config.max_message_bytes);
    let mut builder = tonic::transport::Server::builder()
        .http2_keepalive_interval(Some(config.keepalive))
        .http2_keepalive_timeout(Some(Duration::from_secs(20)));
    if let Some(tls) = &config.tls {
        builder = builder
            .tls_config(tls_config(tls))
            .map_err(|e| ServeError::Config(format!("TLS: {e}")))?;
    }
    let incoming = TcpIncoming::from(listener)
        .with_nodelay(Some(true))
        .with_keepalive(Some(config.keepalive));
    tracing::info!(?local, tls = config.tls.is_some(), "serving Flight SQL");

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = builder
        .add_service(server)
        .serve_with_incoming_shutdown(incoming, async {
            let _ = stopped.await;
        });
    tokio::pin!(server);
    tokio::select! {
        result = &mut server => return result.map_err(|e| ServeError::Transport(e.to_string())),
        () = shutdown => {}
    }
    running.start_draining();
    tracing::info!(
        running = running.count(),
        "shutting down: draining running queries"
    );
    let _ = stop.send(());
    let served = drain(server.as_mut(), &running, config.drain_timeout).await;
    // The queries have ended; their outcomes may still be queued for the audit.
    let unwritten = audit.flush_audit(Duration::from_secs(5)).await;
    if unwritten > 0 {
        tracing::error!(
            unwritten,
            "stopping with query outcomes not written to the audit (their records say running)"
        );
    }
    served
}

/// Wait for the server to stop, cancelling what still runs after `timeout`.
async fn drain(
    mut server: std::pin::Pin<&mut impl Future<Output = Result<(), tonic::transport::Error>>>,
    running: &running::Running,
    timeout: Duration,
) -> Result<(), ServeError> {
    match tokio::time::timeout(timeout, server.as_mut()).await {
        Ok(result) => result.map_err(|e| ServeError::Transport(e.to_string())),
        Err(_) => {
            tracing::warn!(
                running = running.count(),
                "queries still running after the drain timeout; cancelling them"
            );
            running.cancel_all();
            match tokio::time::timeout(Duration::from_secs(5), server.as_mut()).await {
                Ok(result) => result.map_err(|e| ServeError::Transport(e.to_string())),
                // Clients that do not read their streams do not hold the process hostage.
                Err(_) => Ok(()),
            }
        }
    }
}
