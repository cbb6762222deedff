//! Latency under concurrency: `clients` Flight SQL connections, each running small point
//! queries back to back for a fixed time, in slices.

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

/// `clients` Flight SQL connections to one server, signed in once and then loaded slice by
/// slice, so that servers can take turns in short slices (A B A B ...) on the same
/// connections: a change of the machine's speed then hits every server alike.
pub struct Clients {
    engines: Vec<Engine>,
    /// Each client's pseudo-random walk, carried on from slice to slice.
    walks: Vec<u64>,
    latencies: Vec<f64>,
    errors: Vec<String>,
    seconds: f64,
}

impl Clients {
    /// Connect `clients` clients to `addr`, the `i`-th signed in as `login(i)` (user,
    /// password) when the server authenticates.
    pub async fn connect(
        addr: SocketAddr,
        login: Option<&dyn Fn(usize) -> (String, String)>,
        clients: usize,
    ) -> Result<Self, BenchError> {
        let mut engines = Vec::new();
        for client in 0..clients {
            let credentials = login.map(|login| login(client));
            let credentials = credentials.as_ref().map(|(u, p)| (u.as_str(), p.as_str()));
            engines.push(Engine::Flight(flight_client(addr, credentials).await?));
        }
        Ok(Self {
            walks: (0..clients)
                .map(|client| 0x9e37_79b9_7f4a_7c15u64 ^ client as u64)
                .collect(),
            engines,
            latencies: Vec::new(),
            errors: Vec::new(),
            seconds: 0.0,
        })
    }

    /// Every client runs point queries back to back for `duration` (a fixed pseudo-random
    /// walk of keys per client, so runs are repeatable); the slice adds to the load.
    pub async fn drive(&mut self, duration: Duration, max_key: u64) -> Result<(), BenchError> {
        let started = Instant::now();
        let deadline = started + duration;
        let mut tasks = Vec::new();
        for (engine, walk) in self.engines.iter().zip(&self.walks) {
            let (engine, mut state) = (engine.clone(), *walk);
            tasks.push(tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = Vec::new();
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
                (state, latencies, errors)
            }));
        }
        for (task, walk) in tasks.into_iter().zip(&mut self.walks) {
            let (state, latencies, errors) = task
                .await
                .map_err(|e| BenchError::Query(format!("client task: {e}")))?;
            *walk = state;
            self.latencies.extend(latencies);
            self.errors.extend(errors);
        }
        self.seconds += started.elapsed().as_secs_f64();
        Ok(())
    }

    /// Everything measured over the slices driven so far.
    pub fn load(&self) -> Load {
        Load {
            clients: self.engines.len(),
            queries: self.latencies.len(),
            errors: self.errors.len(),
            seconds: self.seconds,
            queries_per_second: self.latencies.len() as f64 / self.seconds,
            p50_ms: percentile(&self.latencies, 0.5),
            p99_ms: percentile(&self.latencies, 0.99),
            first_error: self.errors.first().cloned(),
        }
    }
}
