//! # meshgate
//!
//! A query gateway for a data mesh. Domain teams publish data products, each in its own
//! bucket of Parquet files; consumers query them in place over Arrow Flight SQL (or in
//! process, through this library), and every query is rewritten so that each product scan
//! is followed by the caller's row filter, masks, tokens and hidden columns before any of
//! the consumer's SQL runs.
//!
//! This crate is the facade an embedder depends on: it re-exports the pieces along the data's
//! path and adds the [`config`] file format (`meshgate.toml`). The `meshgate` command is the
//! `meshgate-cli` crate, and the reference mesh with its demo lakes `meshgate-reference`;
//! neither is compiled into an embedding application.
//!
//! | crate | job |
//! |---|---|
//! | [`catalog`] | product manifests (ODCS v3.1): products, tables, columns, owners |
//! | [`policy`] | who may read what (casbin), row filters and column treatments, resolution |
//! | [`protect`] | mask and tokenization kernels |
//! | [`storage`] | one object store per product bucket, behind one counting read-only store |
//! | [`engine`] | SQL planning with the policy rewrite; the embeddable API |
//! | [`flight`] | the Arrow Flight SQL server |
//!
//! Embedded use, with the same enforcement as the server:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let demo = meshgate_reference::demo(std::path::Path::new("/tmp/mesh")).await?;
//! let gateway = meshgate::Gateway::open(demo.config).await?;
//! let principal = gateway.authenticate("cib-reporting", "cib-reporting-pw")?;
//! let batches = gateway.session(principal).collect("SELECT * FROM reference.counterparties").await?;
//! # Ok(()) }
//! ```

/// The README's Rust snippets, compiled (and so kept true) as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
pub struct ReadmeDoctests;

pub mod blueprint;
pub mod check;
pub mod config;
pub mod lint;

pub use meshgate_api as api;
pub use meshgate_catalog as catalog;
pub use meshgate_console as console;
pub use meshgate_distributed as distributed;
pub use meshgate_engine as engine;
pub use meshgate_flight as flight;
pub use meshgate_governance as governance;
pub use meshgate_lineage as lineage;
pub use meshgate_policy as policy;
pub use meshgate_protect as protect;
pub use meshgate_storage as storage;

pub use meshgate_engine::{Gateway, GatewayConfig, GatewayError, Governance, Query, Session};
pub use meshgate_policy::Principal;
