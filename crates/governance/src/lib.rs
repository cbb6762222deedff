//! # meshgate-governance
//!
//! Enforcement alone does not make a mesh: consumers must be able to ask for access, owners
//! must decide and see their decision take effect at once, and owners and auditors must see
//! where every product's data goes. This crate is that state and its rules:
//!
//! The records themselves are the API contract's ([`meshgate_api`]), re-exported here.
//!
//! - **access requests and grants** ([`Workflow`]): two state machines, decided only by a
//!   product's owners or delegates, never by the requester; every grant expires;
//! - **the audit log**: one durable [`AuditRecord`] per query, written before its first
//!   result batch leaves (the engine refuses the query if the write fails);
//! - **data flows** ([`flows()`]): the audit folded into product -> consumer app edges;
//! - **the store** ([`GovernanceStore`]): a small trait with an embedded SQLite default
//!   ([`SqliteStore`]) and a PostgreSQL store that many gateway replicas share
//!   ([`PostgresStore`]), each with versioned migrations. The engine reads the grants in force
//!   from it and hands the policy crate a snapshot.
//!
//! It decides nothing about rows and columns: an active grant admits a caller, the policy
//! crate still decides what they see.

mod dedicated;
mod error;
pub mod flows;
mod group_commit;
mod migrations;
mod postgres;
mod rows;
mod sql_store;
mod sqlite;
mod store;
pub mod workflow;

pub use error::{GovernanceError, StoreError};
pub use flows::flows;
pub use meshgate_api::{
    AccessRequest, AuditColumn, AuditOutcome, AuditRecord, AuditTable, DAY_MILLIS, Decision, Flow,
    Grant, GrantState, Millis, QueryStatus, RequestState, StoredAudit, TableAccess, now_millis,
};
pub use postgres::{PostgresOptions, PostgresStore};
pub use sqlite::SqliteStore;
pub use store::{AuditFilter, AuditQuery, GovernanceStore, VisibleTo};
pub use workflow::{AUDITOR_ROLE, AccessRules, Approval, NewRequest, Viewer, Workflow};
