//! # meshgate-engine
//!
//! Consumers write ordinary SQL against data products; the product owner's policy must hold
//! for every row and value that comes back, whatever the SQL does. This crate is where that
//! is guaranteed. It plans SQL with DataFusion against a per-query catalog in which every
//! product table is a [`ProtectedTable`]: its scan is the raw Parquet scan followed by the
//! caller's row filter, masks and tokens, and a projection without hidden columns, sealed in
//! one [`ProtectedScanExec`] beneath every user operator.
//!
//! The invariants (see ARCHITECTURE.md):
//! 1. every product scan is wrapped before any user operator, wherever the table appears
//!    (joins, subqueries, CTEs, UNION branches);
//! 2. user predicates see filtered, masked values only; the only ones pushed into a
//!    protected scan are those that cannot fail and read clear columns only
//!    (`leakproof.rs` lists them);
//! 3. a protected scan reports no metrics, statistics only to a caller who sees every row
//!    and only of columns shown in the clear (inexact), and displays only its table and
//!    policy id;
//! 4. policy is resolved once per (caller, table) per query; anything that does not resolve
//!    denies;
//! 5. consumers run read-only statements only, against the `mesh` catalog only;
//! 6. no statement exhausts the planner (`shape.rs` bounds it, and large ones plan on a
//!    stack of their own), and no principal takes every running slot (`limits.rs`);
//! 7. a failure reaches every reader but the caller as its class, never its text
//!    ([`GatewayError::redacted`]).
//!
//! ```no_run
//! # async fn demo(config: meshgate_engine::GatewayConfig) -> Result<(), meshgate_engine::GatewayError> {
//! use meshgate_engine::Gateway;
//! use meshgate_policy::Principal;
//!
//! let gateway = Gateway::open(config).await?;
//! let analyst = Principal::new("cib-reporting").with_attribute("lob", "CIB");
//! let batches = gateway.session(analyst).collect("SELECT * FROM reference.counterparties").await?;
//! # Ok(()) }
//! ```

// Layers, bottom up; every module imports only modules listed before it here (no cycle is
// checked by `tests/layers.rs`; ARCHITECTURE.md describes each layer):
// 1. names, error, leakproof, lake_table, shape, lockdown, limits, params, config
// 2. the rewrite: protected, compile
// 3. quality (what checks measure), then shared (the state every session shares)
// 4. the query layer, in this order: scope, listing, system, providers, plan, audit, query
// 5. the faces: session, gateway, actions
mod actions;
mod audit;
mod compile;
mod config;
mod distribute;
mod error;
mod gateway;
mod lake_table;
mod leakproof;
mod limits;
mod listing;
mod lockdown;
pub mod metrics;
mod names;
mod params;
mod plan;
mod protected;
mod providers;
mod quality;
mod query;
mod scope;
mod session;
mod shape;
mod shared;
mod substrait;
mod system;
mod visible;
mod wire;
mod worker;

pub use actions::ActionError;
pub use compile::type_check_row_filter;
pub use config::{AuditSettings, GatewayConfig, Governance};
pub use config::{Distribution, OnWorkerDown, WorkerNetwork};
pub use error::WorkerFailure;
pub use error::{Abort, GatewayError};
pub use gateway::Gateway;
pub use limits::{DEFAULT_QUERY_TIMEOUT, QueryLimits};
pub use listing::{Listing, VisibleTable};
pub use meshgate_lineage::LineageConfig;
pub use names::{CATALOG, SYSTEM_SCHEMA, TableKind};
pub use params::check_parameters;
pub use plan::{MAX_STATEMENT_BYTES, Statement};
pub use protected::{ProtectedScanExec, ProtectedTable};
pub use quality::{QualityResult, QualityStatus};
pub use query::{Column, Prepared, Query, ScanReport};

/// The result schema's metadata key under which front doors give a query's warnings (one
/// per line; see [`Query::warnings`]).
pub const WARNINGS_METADATA_KEY: &str = "meshgate.warnings";
pub use session::{Draft, Session};
pub use shape::{
    MAX_EXPRESSION_DEPTH, MAX_EXPRESSIONS, MAX_RELATIONS, MAX_SET_OPERATIONS, PLANNING_STACK_BYTES,
};
pub use substrait::substrait_version;
pub use tokio_util::sync::CancellationToken;
pub use wire::{SealCodec, SealRefusal};
pub use worker::WorkerNode;
