//! # meshgate-bench
//!
//! Users pick a policy gateway only if enforcement is close to free, so this crate measures
//! what meshgate costs, side by side in one run on the same files: embedded DataFusion (the
//! engine baseline), `datafusion-flight-sql-server` (the Flight SQL peer without
//! enforcement), meshgate without and with policies, the same policies written by hand in
//! SQL (the twins that isolate the rewrite's own cost), meshgate over the in-process S3
//! server, DuckDB / DataFusion-Python / Polars (`peers.py`), and the physical limits (raw
//! reads, Flight transport of pre-built batches). Every configuration's answers are checked
//! against the baseline's before any time is reported.
//!
//! The `meshgate-bench` binary runs it all and writes `RESULTS.md` and `results.json`;
//! `benches/micro.rs` holds the criterion micro-benchmarks, whose bodies live in [`micro`]
//! so that the report measures exactly the same code.

pub mod concurrency;
pub mod distributed;
pub mod engines;
pub mod limits;
pub mod mesh;
pub mod micro;
pub mod nostore;
pub mod refmesh;
pub mod report;
pub mod scale;
pub mod stats;
pub mod tpch;
pub mod verify;

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("generating the data: {0}")]
    Data(String),
    #[error("setting up {what}: {message}")]
    Setup { what: String, message: String },
    #[error("{0}")]
    Query(String),
}

impl BenchError {
    pub fn io(path: &Path) -> impl Fn(std::io::Error) -> BenchError + '_ {
        move |e| BenchError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        }
    }

    pub fn setup(what: &str) -> impl Fn(String) -> BenchError + '_ {
        move |message| BenchError::Setup {
            what: what.to_string(),
            message,
        }
    }
}
