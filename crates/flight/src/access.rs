//! Access requests and grants as Flight actions, so a client can ask for access right where
//! it got the permission error, and an owner can decide from any Flight client.
//!
//! Each action's body and result are JSON. Who may do what is decided by
//! [`meshgate_governance::Workflow`]; decisions take effect from the next query.
//!
//! | action | body |
//! |---|---|
//! | `mesh.request_access` | `{"product", "purpose", "columns"?: [..], "valid_days"?}` |
//! | `mesh.cancel_request` | `{"request_id"}` |
//! | `mesh.approve_request` | `{"request_id", "columns"?, "row_filter"?, "valid_days"?, "comment"?}` |
//! | `mesh.reject_request` | `{"request_id", "comment"?}` |
//! | `mesh.revoke_grant`, `mesh.suspend_grant`, `mesh.resume_grant` | `{"grant_id", "reason"?}` |
//! | `mesh.list_requests`, `mesh.list_grants` | `{}` (the ones the caller may see) |

use meshgate_engine::Gateway;
use meshgate_governance::{Approval, GovernanceError, NewRequest};
use serde::Deserialize;
use serde_json::{Value, json};
use tonic::Status;

pub(crate) const ACTIONS: &[(&str, &str)] = &[
    (
        "mesh.request_access",
        "Ask a product's owner for access: {\"product\", \"purpose\", \"columns\"?, \"valid_days\"?}",
    ),
    (
        "mesh.cancel_request",
        "Withdraw your pending request: {\"request_id\"}",
    ),
    (
        "mesh.approve_request",
        "Owners: approve a request, optionally narrower: {\"request_id\", \"columns\"?, \"row_filter\"?, \"valid_days\"?, \"comment\"?}",
    ),
    (
        "mesh.reject_request",
        "Owners: reject a request: {\"request_id\", \"comment\"?}",
    ),
    (
        "mesh.revoke_grant",
        "Owners: end a grant: {\"grant_id\", \"reason\"?}",
    ),
    (
        "mesh.suspend_grant",
        "Owners: pause a grant: {\"grant_id\", \"reason\"?}",
    ),
    (
        "mesh.resume_grant",
        "Owners: resume a paused grant: {\"grant_id\", \"reason\"?}",
    ),
    ("mesh.list_requests", "Access requests you may see: {}"),
    ("mesh.list_grants", "Grants you may see: {}"),
];

pub(crate) fn is_access_action(name: &str) -> bool {
    ACTIONS.iter().any(|(a, _)| *a == name)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestBody {
    product: String,
    purpose: String,
    #[serde(default)]
    columns: Vec<String>,
    valid_days: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DecisionBody {
    request_id: String,
    #[serde(default)]
    columns: Vec<String>,
    row_filter: Option<String>,
    valid_days: Option<u32>,
    comment: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GrantBody {
    grant_id: String,
    reason: Option<String>,
}

fn parse<T: for<'de> Deserialize<'de>>(action: &str, body: &[u8]) -> Result<T, Status> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        Status::invalid_argument(format!(
            "`{action}` takes a JSON body ({e}); ListActions describes it"
        ))
    })
}

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

fn json_of(value: impl serde::Serialize) -> Result<Value, Status> {
    serde_json::to_value(value).map_err(|e| Status::internal(e.to_string()))
}

/// Run one access action as `principal`; the JSON result.
pub(crate) async fn run(
    gateway: &Gateway,
    principal: &meshgate_policy::Principal,
    action: &str,
    body: &[u8],
) -> Result<Vec<u8>, Status> {
    let actor = principal.id();
    let workflow = gateway.workflow();
    let result = match action {
        "mesh.request_access" => {
            let b: RequestBody = parse(action, body)?;
            let request = workflow
                .request(
                    actor,
                    NewRequest {
                        product: b.product,
                        columns: b.columns,
                        purpose: b.purpose,
                        valid_days: b.valid_days,
                    },
                )
                .await
                .map_err(to_status)?;
            json_of(request)?
        }
        "mesh.cancel_request" => {
            let b: DecisionBody = parse(action, body)?;
            json_of(
                workflow
                    .cancel(actor, &b.request_id)
                    .await
                    .map_err(to_status)?,
            )?
        }
        "mesh.approve_request" => {
            let b: DecisionBody = parse(action, body)?;
            let check = |product: &meshgate_catalog::Product, filter: &str| {
                gateway.check_grant_filter(product, filter)
            };
            let approval = Approval {
                columns: b.columns,
                row_filter: b.row_filter,
                valid_days: b.valid_days,
                comment: b.comment,
            };
            let (request, grant) = workflow
                .approve(actor, &b.request_id, approval, &check)
                .await
                .map_err(to_status)?;
            json!({"request": json_of(request)?, "grant": json_of(grant)?})
        }
        "mesh.reject_request" => {
            let b: DecisionBody = parse(action, body)?;
            json_of(
                workflow
                    .reject(actor, &b.request_id, b.comment)
                    .await
                    .map_err(to_status)?,
            )?
        }
        "mesh.revoke_grant" | "mesh.suspend_grant" | "mesh.resume_grant" => {
            let b: GrantBody = parse(action, body)?;
            let grant = match action {
                "mesh.revoke_grant" => workflow.revoke(actor, &b.grant_id, b.reason).await,
                "mesh.suspend_grant" => workflow.suspend(actor, &b.grant_id, b.reason).await,
                _ => workflow.resume(actor, &b.grant_id, b.reason).await,
            }
            .map_err(to_status)?;
            json_of(grant)?
        }
        "mesh.list_requests" => {
            let _: Value = parse(action, body)?;
            json_of(
                workflow
                    .visible_requests(&Gateway::viewer(principal))
                    .await
                    .map_err(to_status)?,
            )?
        }
        "mesh.list_grants" => {
            let _: Value = parse(action, body)?;
            json_of(
                workflow
                    .visible_grants(&Gateway::viewer(principal))
                    .await
                    .map_err(to_status)?,
            )?
        }
        other => {
            return Err(Status::invalid_argument(format!(
                "unknown action `{other}`"
            )));
        }
    };
    serde_json::to_vec(&result).map_err(|e| Status::internal(e.to_string()))
}
