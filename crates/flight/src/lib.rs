//! # meshgate-flight
//!
//! Consumers reach data products from the tools they already use: JDBC/ODBC drivers, ADBC,
//! pyarrow, Polars, BI tools. They all speak Arrow Flight SQL, so this crate is meshgate's
//! front door: a Flight SQL server (arrow-flight + tonic) over the engine.
//!
//! It adds no policy of its own and bypasses none: it authenticates the caller (Basic in
//! the handshake, then a Bearer token), and every statement and metadata call runs through
//! the engine as that caller. Statement tickets are signed and bound to their principal, and
//! re-planned under the caller's policy when redeemed. Results stream; nothing is buffered
//! whole.

mod auth;
mod edge;
mod service;
mod tickets;

use std::future::Future;
use std::net::SocketAddr;

use arrow_flight::flight_service_server::FlightServiceServer;
use meshgate_engine::Gateway;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;

pub use auth::TOKEN_TTL;
pub use edge::{edge_schema, to_edge};
pub use service::MeshFlightService;

/// The largest gRPC message either side accepts. Flight batches are split near 2 MiB, but
/// tonic's 4 MiB default is easily exceeded by one wide row group; raised on both sides.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        source: std::io::Error,
    },
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

/// Serve Flight SQL on `listener` until `shutdown` completes.
pub async fn serve(
    gateway: Gateway,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let local: Option<SocketAddr> = listener.local_addr().ok();
    let service = MeshFlightService::new(gateway)
        .map_err(|e| ServeError::Transport(e.message().to_string()))?;
    let server = FlightServiceServer::new(service)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES);
    tracing::info!(?local, "serving Flight SQL");
    tonic::transport::Server::builder()
        .add_service(server)
        .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
        .await
        .map_err(|e| ServeError::Transport(e.to_string()))
}
