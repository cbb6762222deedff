//! The operations listener: plain HTTP on its own address (so it can be firewalled apart from
//! Flight SQL), for the platform team's tools, never for data.
//!
//! - `GET /metrics`: every metric in Prometheus' text format (see `meshgate_engine::metrics`:
//!   labels never carry a principal, a statement or a value);
//! - `GET /healthz`: the process is up and answering;
//! - `GET /readyz`: the replica can answer queries: its catalog is loaded, its governance
//!   store answers (without it every query is refused, so a load balancer should send none),
//!   and its lakes were listed. 503 with what is wrong otherwise.
//!
//! These show no product data, no principal and no policy and need no credentials. The same
//! listener may also serve other routes handed to [`serve_http`] (the console, which signs
//! its users in and shows each only what the engine gives them); without them, bind it where
//! only the platform's scrapers and probes reach it.

use std::future::Future;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use meshgate_engine::Gateway;
use tokio::net::TcpListener;

use crate::ServeError;

/// How long `/readyz` waits for the store before calling it unreachable.
const STORE_PROBE: Duration = Duration::from_secs(2);

/// Serve the operations endpoints on `listener` until `shutdown` completes.
pub async fn serve_ops(
    gateway: Gateway,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    serve_http(gateway, listener, Router::new(), shutdown).await
}

/// Serve the operations endpoints and `more` routes on `listener` until `shutdown`
/// completes.
pub async fn serve_http(
    gateway: Gateway,
    listener: TcpListener,
    more: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(gateway)
        .merge(more);
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|e| ServeError::Transport(format!("operations listener: {e}")))
}

async fn metrics(State(gateway): State<Gateway>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        gateway.render_metrics(),
    )
}

async fn readyz(State(gateway): State<Gateway>) -> impl IntoResponse {
    let store = match tokio::time::timeout(STORE_PROBE, gateway.store_reachable()).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(format!(
            "the governance store did not answer within {STORE_PROBE:?}"
        )),
    };
    let lakes = gateway.lake_status().await;
    let failed: Vec<&str> = lakes
        .iter()
        .filter(|l| l.error.is_some())
        .map(|l| l.product.as_str())
        .collect();
    // One product's bucket being down refuses only that product's queries; the replica is
    // still ready for the rest. None of them listed means it serves nothing.
    let lakes_ok = lakes.is_empty() || failed.len() < lakes.len();
    let ready = store.is_ok() && lakes_ok;
    let body = serde_json::json!({
        "ready": ready,
        "catalog": format!("{} products", gateway.catalog().products().count()),
        "store": match &store {
            Ok(()) => "reachable".to_string(),
            Err(e) => e.clone(),
        },
        "lakes": {
            "listed": lakes.len() - failed.len(),
            "failed": failed,
        },
    });
    let code = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        [(header::CONTENT_TYPE, "application/json")],
        format!("{body}\n"),
    )
}
