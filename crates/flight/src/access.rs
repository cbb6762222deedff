//! Access requests and grants as Flight actions, so a client can ask for access right where
//! it got the permission error, and an owner can decide from any Flight client.
//!
//! The actions, their JSON bodies and replies are the contract of [`meshgate_api`]; the
//! engine runs them ([`Gateway::run_action`], where the workflow decides who may do what);
//! this file only maps the outcome to gRPC. Decisions take effect from the next query.

use meshgate_api::ApiError;
use meshgate_engine::{ActionError, Gateway};
use meshgate_governance::GovernanceError;
use tonic::Status;

/// Every governance action's name starts with this.
pub(crate) const PREFIX: &str = "mesh.";

fn to_status(error: GovernanceError) -> Status {
    match error {
        GovernanceError::NotFound(m) => Status::not_found(m),
        GovernanceError::NotAllowed(m) => Status::permission_denied(m),
        GovernanceError::Invalid(m) => Status::invalid_argument(m),
        GovernanceError::Conflict(m) => Status::failed_precondition(m),
        GovernanceError::Store(e) => {
            tracing::error!(error = %e, "governance store unavailable");
            Status::unavailable("the access workflow is unavailable now; try again later")
        }
    }
}

fn api_status(error: ApiError) -> Status {
    match error {
        ApiError::Encode { .. } => Status::internal(error.to_string()),
        _ => Status::invalid_argument(error.to_string()),
    }
}

/// Run one access action as `principal`; its JSON reply.
pub(crate) async fn run(
    gateway: &Gateway,
    principal: &meshgate_policy::Principal,
    name: &str,
    body: &[u8],
) -> Result<Vec<u8>, Status> {
    gateway
        .run_action(principal, name, body)
        .await
        .map_err(|error| match error {
            ActionError::Api(e) => api_status(e),
            ActionError::Governance(e) => to_status(e),
            ActionError::Gateway(e) => crate::status::status(e),
        })
}
