//! Latency under concurrency: `clients` Flight SQL connections, each running small point
//! queries back to back for a fixed time.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::BenchError;
use crate::engines::{Engine, flight_client};
use crate::stats::percentile;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Load {
    pub clients: usize,
    pub queries: usize,
    pub errors: usize,
    pub seconds: f64,
    pub queries_per_second: f64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub first_error: Option<String>,
}

/// One order by key: `orders` is sorted by key, so statistics leave one row group to read.
pub fn point_query(key: u64) -> String {
    format!(
        "SELECT o_orderkey, o_custkey, o_totalprice, o_orderdate FROM tpch.orders WHERE o_orderkey = {key}"
    )
}

/// Run `clients` clients against `addr` for `duration`, the `i`-th signed in as `login(i)`
/// (user, password) when the server authenticates.
pub async fn run(
    addr: SocketAddr,
    login: Option<&dyn Fn(usize) -> (String, String)>,
    clients: usize,
    duration: Duration,
    max_key: u64,
) -> Result<Load, BenchError> {
    let mut engines = Vec::new();
    for client in 0..clients {
        let credentials = login.map(|login| login(client));
        let credentials = credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
        engines.push(Engine::Flight(flight_client(addr, credentials).await?));
    }
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = Vec::new();
    for (client, engine) in engines.into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut errors = Vec::new();
            // A fixed pseudo-random walk per client: runs are repeatable.
            let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ client as u64;
            while Instant::now() < deadline {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                let key = 1 + (state >> 33) % max_key.max(1);
                let began = Instant::now();
                match engine.run(&point_query(key)).await {
                    Ok(_) => latencies.push(began.elapsed().as_secs_f64() * 1000.0),
                    Err(e) => errors.push(e.to_string()),
                }
            }
            (latencies, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = Vec::new();
    for task in tasks {
        let (l, e) = task
            .await
            .map_err(|e| BenchError::Query(format!("client task: {e}")))?;
        latencies.extend(l);
        errors.extend(e);
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Load {
        clients,
        queries: latencies.len(),
        errors: errors.len(),
        seconds,
        queries_per_second: latencies.len() as f64 / seconds,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
        first_error: errors.into_iter().next(),
    })
}
