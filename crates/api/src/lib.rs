//! # meshgate-api
//!
//! The contract between meshgate and everything that drives or reads its governance: the
//! Flight actions, the CLI, `mesh_catalog`, and later the console and replicas. Written once
//! here so no front door spells an action name, a body field or a record twice:
//!
//! - **records** ([`AccessRequest`], [`Grant`], [`AuditRecord`], [`Flow`], ...): what the
//!   governance store keeps and every front door returns;
//! - **actions** ([`MeshAction`], [`Action`]): one type per `mesh.*` action with its name,
//!   description, body and reply type;
//! - [`how_to_request`]: the one text that tells a consumer how to ask for access.
//!
//! It depends on serde alone: a client can speak the contract without the gateway.

mod actions;
mod records;

pub use actions::{
    ACTIONS, Action, ApiError, ApproveRequest, Approved, CancelRequest, CheckQuality, GrantChange,
    ListGrants, ListRequests, MeshAction, RejectRequest, RequestAccess, ResumeGrant, RevokeGrant,
    SuspendGrant, how_to_request,
};
pub use records::{
    AccessRequest, AuditColumn, AuditOutcome, AuditRecord, AuditTable, DAY_MILLIS, Decision, Flow,
    Grant, GrantState, Millis, QualityCheck, QueryStatus, RequestState, StoredAudit, TableAccess,
    iso8601, now_millis,
};
