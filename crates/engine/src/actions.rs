//! The governance actions (`meshgate_api::Action`) run as one principal: the one place an
//! action becomes a call of the access workflow or of a quality check, for every front door
//! (Flight `DoAction`, the console's forms). The workflow decides who may do what; a front
//! door only carries the body in and the reply out.

use meshgate_api::{
    Action, ApiError, ApproveRequest, Approved, CancelRequest, CheckQuality, ListGrants,
    ListRequests, MeshAction, QualityCheck, RejectRequest, RequestAccess, ResumeGrant, RevokeGrant,
    SuspendGrant,
};
use meshgate_governance::{Approval, GovernanceError, NewRequest};
use meshgate_policy::Principal;

use crate::error::GatewayError;
use crate::gateway::Gateway;

/// Why an action did not run, typed so each front door says it its own way.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// The action or its body does not fit the contract.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The workflow refused it (not found, not allowed, invalid, conflict) or its store
    /// failed.
    #[error(transparent)]
    Governance(#[from] GovernanceError),
    /// The gateway refused it (a quality check by someone who does not decide).
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

/// The reply of action `A`, encoded.
fn reply<A: MeshAction>(result: Result<A::Reply, GovernanceError>) -> Result<Vec<u8>, ActionError> {
    Ok(A::encode_reply(&result?)?)
}

impl Gateway {
    /// Run the governance action `name` with its JSON `body` as `principal`; its JSON reply
    /// (see [`MeshAction::decode_reply`]). Decisions take effect from the next query.
    pub async fn run_action(
        &self,
        principal: &Principal,
        name: &str,
        body: &[u8],
    ) -> Result<Vec<u8>, ActionError> {
        let actor = principal.id();
        let workflow = self.workflow_for(principal);
        let viewer = Gateway::viewer(principal);
        match Action::parse(name, body)? {
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
                    self.check_grant_filter(product, filter)
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
            Action::ListRequests(_) => {
                reply::<ListRequests>(workflow.visible_requests(&viewer).await)
            }
            Action::ListGrants(_) => reply::<ListGrants>(workflow.visible_grants(&viewer).await),
            Action::CheckQuality(b) => {
                let results = self
                    .check_quality(Some(principal), b.product.as_deref())
                    .await?;
                let checks: Vec<QualityCheck> = results
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
                Ok(CheckQuality::encode_reply(&checks)?)
            }
        }
    }

    /// [`Gateway::run_action`] with a typed body and reply.
    pub async fn act<A: MeshAction>(
        &self,
        principal: &Principal,
        action: &A,
    ) -> Result<A::Reply, ActionError> {
        let reply = self
            .run_action(principal, A::NAME, &action.encode()?)
            .await?;
        Ok(A::decode_reply(&reply)?)
    }
}
