//! Workers for distributed execution: `meshgate worker` processes on loopback, over the
//! reference mesh's files, and the gateway configuration that hands every query to them.
//!
//! The master key is the demo key's bytes taken as an ordinary key: tokens come out exactly
//! as the reference mesh's truth computes them, and stage signatures are derived from it as
//! any deployment's are (the demo key itself cannot sign stages).

#![allow(dead_code)] // each test module uses a different part

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use meshgate::distributed::{DEFAULT_TTL, Network, StageSigner};
use meshgate::engine::{Distribution, OnWorkerDown, WorkerNetwork};
use meshgate::protect::MasterKey;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;

use crate::support::truth::data_dir;

/// The demo key's bytes (SHA-256 of its public phrase), as a key file holds them.
pub fn key_hex() -> String {
    hex::encode(Sha256::digest(
        b"meshgate demo master key - public, never use for real data",
    ))
}

/// The same bytes as an ordinary master key.
pub fn master_key() -> MasterKey {
    MasterKey::from_bytes(&Sha256::digest(
        b"meshgate demo master key - public, never use for real data",
    ))
    .unwrap()
}

pub fn signer() -> Arc<StageSigner> {
    Arc::new(StageSigner::new(&master_key(), DEFAULT_TTL).unwrap())
}

fn repo() -> PathBuf {
    crate::support::manifest_dir()
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// One `meshgate worker` process.
pub struct Worker {
    pub child: Child,
    pub addr: SocketAddr,
    pub config: PathBuf,
    /// The policy directory this worker reads (its own copy).
    pub policies: PathBuf,
    /// The contracts' directory this worker reads (its own copy).
    pub products: PathBuf,
    /// `http` or, with TLS, `https`.
    pub scheme: &'static str,
}

impl Worker {
    pub fn url(&self) -> url::Url {
        url::Url::parse(&format!("{}://{}", self.scheme, self.addr)).unwrap()
    }

    /// Reload the worker's policy directory (SIGHUP) and wait until it has.
    pub async fn reload(&self) {
        let pid = self.child.id().expect("the worker runs");
        std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The address a `meshgate worker` process (stdout piped) says it listens on; its output is
/// read on in the background, so it never blocks on a full pipe.
pub async fn listening_address(worker: &mut Child) -> SocketAddr {
    let mut lines = BufReader::new(worker.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
            .await
            .expect("the worker starts within a minute")
            .unwrap()
            .expect("the worker prints its address");
        if let Some(addr) = line.strip_prefix("worker listening on ") {
            break addr.parse().unwrap();
        }
    };
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    addr
}

/// Workers of one test.
pub struct Cluster {
    pub workers: Vec<Worker>,
    pub dir: tempfile::TempDir,
}

impl Cluster {
    /// `n` workers over the reference mesh's local files.
    pub async fn start(n: usize) -> Self {
        Self::start_with(n, None).await
    }

    /// `n` workers serving TLS with `tls` (`ca`, `cert`, `key` PEM): only clients with a
    /// certificate from that CA connect.
    pub async fn start_with(n: usize, tls: Option<(&str, &str, &str)>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("master.key"), key_hex()).unwrap();
        let mut extra = String::new();
        if let Some((ca, cert, key)) = tls {
            for (file, pem) in [("ca.pem", ca), ("node.pem", cert), ("node.key", key)] {
                std::fs::write(dir.path().join(file), pem).unwrap();
            }
            extra.push_str(
                "ca = \"ca.pem\"\ncert = \"node.pem\"\nkey = \"node.key\"\ndomain = \"localhost\"\n",
            );
        }
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let mut worker = Self::spawn(dir.path(), i, &extra).await;
            if tls.is_some() {
                worker.scheme = "https";
            }
            workers.push(worker);
        }
        Self { workers, dir }
    }

    async fn spawn(dir: &Path, i: usize, extra: &str) -> Worker {
        let repo = repo();
        let policies = dir.join(format!("policies-{i}"));
        crate::cli::copy_dir(&repo.join("policies"), &policies);
        let products = dir.join(format!("products-{i}"));
        crate::cli::copy_dir(&repo.join("products"), &products);
        let config = dir.join(format!("worker-{i}.toml"));
        std::fs::write(
            &config,
            format!(
                "products = \"{products}\"\npolicies = \"{policies}\"\nwatch = \"200ms\"\n\
                 master_key_file = \"master.key\"\n\
                 [storage.default]\nkind = \"local\"\npath = \"{data}/s3/{{bucket}}\"\n\
                 [distributed]\nlisten = \"127.0.0.1:0\"\n{extra}",
                products = products.display(),
                policies = policies.display(),
                data = data_dir().display(),
            ),
        )
        .unwrap();
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshgate"))
            .args(["worker", "--config"])
            .arg(&config)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let addr = listening_address(&mut child).await;
        Worker {
            child,
            addr,
            config,
            policies,
            products,
            scheme: "http",
        }
    }

    pub fn urls(&self) -> Vec<url::Url> {
        self.workers.iter().map(Worker::url).collect()
    }

    /// The network to these workers, probed.
    pub async fn network(&self) -> Arc<Network> {
        let network = Network::new(self.urls(), signer(), None);
        network.probe().await;
        assert_eq!(
            network.live().len(),
            self.workers.len(),
            "every worker answers its probe"
        );
        network
    }

    /// Hand every query that reads a product to these workers, in small tasks (so that a
    /// table's files are split across workers).
    pub async fn distribution(&self) -> Distribution {
        distribution(self.network().await, OnWorkerDown::Skip)
    }

    /// Make `config` a gateway of this cluster.
    pub async fn configure(&self, config: &mut meshgate::GatewayConfig) {
        config.master_key = master_key();
        config.distribution = Some(self.distribution().await);
    }
}

/// Every query that reads a product handed to `network`'s workers, in small tasks.
pub fn distribution(network: Arc<Network>, on_worker_down: OnWorkerDown) -> Distribution {
    Distribution {
        network,
        min_scan_bytes: 0,
        bytes_per_partition: 64 << 10,
        on_worker_down,
    }
}
