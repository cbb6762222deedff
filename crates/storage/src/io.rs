//! Storage request accounting, per query and per product.
//!
//! On S3, the number of requests sets both latency and cost, so every request a query makes
//! is counted where it leaves the gateway (see `MeshStore`). Counters are per query: each
//! query reads through its own counting view of the shared stores.

use std::collections::BTreeMap;
use std::sync::Mutex;

/// Requests one product's storage received for one query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProductIo {
    /// GET requests (each coalesced range read is one).
    pub gets: u64,
    pub heads: u64,
    /// LIST calls.
    pub lists: u64,
    /// Bytes received by GETs.
    pub bytes: u64,
    /// Write attempts refused by the gateway itself (always 0 unless there is a bug).
    pub writes_refused: u64,
}

impl ProductIo {
    pub fn requests(&self) -> u64 {
        self.gets + self.heads + self.lists
    }
}

/// Everything one query asked of storage, and the files it refused to read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IoReport {
    pub products: BTreeMap<String, ProductIo>,
    /// `(product, file key, reason)` of every file left out because it does not match its
    /// manifest or is not readable Parquet.
    pub refused_files: Vec<(String, String, String)>,
}

impl IoReport {
    pub fn total(&self) -> ProductIo {
        self.products
            .values()
            .fold(ProductIo::default(), |mut sum, p| {
                sum.gets += p.gets;
                sum.heads += p.heads;
                sum.lists += p.lists;
                sum.bytes += p.bytes;
                sum.writes_refused += p.writes_refused;
                sum
            })
    }
}

/// Live counters for one query.
#[derive(Debug, Default)]
pub struct IoCounters {
    report: Mutex<IoReport>,
}

pub(crate) enum Request {
    Get(u64),
    Head,
    List,
    WriteRefused,
}

impl IoCounters {
    pub(crate) fn record(&self, product: &str, request: Request) {
        if let Ok(mut report) = self.report.lock() {
            let io = report.products.entry(product.to_string()).or_default();
            match request {
                Request::Get(bytes) => {
                    io.gets += 1;
                    io.bytes += bytes;
                }
                Request::Head => io.heads += 1,
                Request::List => io.lists += 1,
                Request::WriteRefused => io.writes_refused += 1,
            }
        }
    }

    pub fn refuse_file(&self, product: &str, file: &str, reason: &str) {
        if let Ok(mut report) = self.report.lock() {
            let entry = (product.to_string(), file.to_string(), reason.to_string());
            if !report.refused_files.contains(&entry) {
                report.refused_files.push(entry);
            }
        }
    }

    /// What was counted so far.
    pub fn report(&self) -> IoReport {
        self.report.lock().map(|r| r.clone()).unwrap_or_default()
    }
}
