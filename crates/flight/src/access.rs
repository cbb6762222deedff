//! Access requests and grants as Flight actions, so a client can ask for access right where
//! it got the permission error, and an owner can decide from any Flight client.
//!
//! The actions, their JSON bodies and replies are the contract of [`meshgate_api`]; this
//! file only maps each to [`meshgate_governance::Workflow`], which decides who may do what.
//! Decisions take effect from the next query.

use meshgate_api::{
    Action, ApiError, ApproveRequest, Approved, CancelRequest, CheckQuality, ListGrants,
    ListRequests, MeshAction, QualityCheck, RejectRequest, RequestAccess, ResumeGrant, RevokeGrant,
    SuspendGrant,
};
use meshgate_engine::Gateway;
use meshgate_governance::{Approval, GovernanceError, NewRequest};
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

/// The reply of action `A`, encoded.
fn reply<A: MeshAction>(result: Result<A::Reply, GovernanceError>) -> Result<Vec<u8>, Status> {
    A::encode_reply(&result.map_err(to_status)?).map_err(api_status)
}

/// Run one access action as `principal`; its JSON reply.
pub(crate) async fn run(
    gateway: &Gateway,
    principal: &meshgate_policy::Principal,
    name: &str,
    body: &[u8],
) -> Result<Vec<u8>, Status> {
    let actor = principal.id();
    let workflow = gateway.workflow_for(principal);
    let viewer = Gateway::viewer(principal);
    match Action::parse(name, body).map_err(api_status)? {
        Action::RequestAccess(b) => reply::<RequestAccess>(
            workflow
                .request(
                    actor,
                    NewRequest {
                        product: b.product,
                        columns: b.columns,
                        purpose: b.purpose,
                        valid_days: b.valid_days,
                    },
                )
                .await,
        ),
        Action::CancelRequest(b) => {
            reply::<CancelRequest>(workflow.cancel(actor, &b.request_id).await)
        }
        Action::ApproveRequest(b) => {
            let check = |product: &meshgate_catalog::Product, filter: &str| {
                gateway.check_grant_filter(product, filter)
            };
            let approval = Approval {
                columns: b.columns,
                row_filter: b.row_filter,
                valid_days: b.valid_days,
                comment: b.comment,
            };
            let approved = workflow
                .approve(actor, &b.request_id, approval, &check)
                .await
                .map(|(request, grant)| Approved { request, grant });
            reply::<ApproveRequest>(approved)
        }
        Action::RejectRequest(b) => {
            reply::<RejectRequest>(workflow.reject(actor, &b.request_id, b.comment).await)
        }
        Action::RevokeGrant(RevokeGrant(b)) => {
            reply::<RevokeGrant>(workflow.revoke(actor, &b.grant_id, b.reason).await)
        }
        Action::SuspendGrant(SuspendGrant(b)) => {
            reply::<SuspendGrant>(workflow.suspend(actor, &b.grant_id, b.reason).await)
        }
        Action::ResumeGrant(ResumeGrant(b)) => {
            reply::<ResumeGrant>(workflow.resume(actor, &b.grant_id, b.reason).await)
        }
        Action::ListRequests(_) => reply::<ListRequests>(workflow.visible_requests(&viewer).await),
        Action::ListGrants(_) => reply::<ListGrants>(workflow.visible_grants(&viewer).await),
        Action::CheckQuality(b) => {
            let results = gateway
                .check_quality(Some(principal), b.product.as_deref())
                .await
                .map_err(crate::status::status)?;
            let checks = results
                .iter()
                .map(|r| QualityCheck {
                    product: r.product.clone(),
                    version: r.version.clone(),
                    table: r.rule.table.clone(),
                    column: r.rule.column.clone(),
                    rule: r.rule.id.clone(),
                    expectation: r.rule.expectation(),
                    status: r.status.as_str().to_string(),
                    // Only the products the caller decides were checked.
                    measured: r.measured_for(true),
                    detail: r.detail.clone(),
                    checked_at: r.checked_at,
                })
                .collect();
            CheckQuality::encode_reply(&checks).map_err(api_status)
        }
    }
}
