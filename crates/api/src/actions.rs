//! The governance actions: one type per action, carrying its name, its description (what
//! Flight `ListActions` says), its JSON body and the type of its reply.
//!
//! The Flight service parses a `DoAction` into [`Action`] and replies with the action's
//! [`MeshAction::Reply`]; the CLI (and any Rust client) builds the body type and decodes the
//! reply with [`MeshAction::decode_reply`]. Neither writes a name or a body field by hand.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::records::{AccessRequest, Grant, QualityCheck};

/// One governance action: its wire name, what it does, and what it returns.
pub trait MeshAction: Serialize + DeserializeOwned {
    /// The Flight action type, `mesh.<verb>`.
    const NAME: &'static str;
    /// One line for `ListActions`: who may run it and its body.
    const DESCRIPTION: &'static str;
    /// What the action returns (as JSON in the first result).
    type Reply: Serialize + DeserializeOwned;

    /// The action's body as sent.
    fn encode(&self) -> Result<Vec<u8>, ApiError> {
        serde_json::to_vec(self).map_err(|e| ApiError::Encode {
            action: Self::NAME,
            reason: e.to_string(),
        })
    }

    /// A reply as sent.
    fn encode_reply(reply: &Self::Reply) -> Result<Vec<u8>, ApiError> {
        serde_json::to_vec(reply).map_err(|e| ApiError::Encode {
            action: Self::NAME,
            reason: e.to_string(),
        })
    }

    /// A reply as received.
    fn decode_reply(bytes: &[u8]) -> Result<Self::Reply, ApiError> {
        serde_json::from_slice(bytes).map_err(|e| ApiError::BadReply {
            action: Self::NAME,
            reason: e.to_string(),
        })
    }
}

/// A body or reply that does not fit the contract.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("unknown action `{0}`; ListActions lists the `mesh.*` actions")]
    UnknownAction(String),
    #[error("`{action}` takes a JSON body ({reason}); ListActions describes it")]
    BadBody {
        action: &'static str,
        reason: String,
    },
    #[error("`{action}` returned a reply this client does not understand: {reason}")]
    BadReply {
        action: &'static str,
        reason: String,
    },
    #[error("cannot encode `{action}`: {reason}")]
    Encode {
        action: &'static str,
        reason: String,
    },
}

/// Ask a product's owner for access.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestAccess {
    pub product: String,
    /// What the access is for; required.
    pub purpose: String,
    /// `column` or `table.column`; empty asks for the whole product.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// Days; the workflow's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_days: Option<u32>,
}

/// Withdraw one's own pending request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CancelRequest {
    pub request_id: String,
}

/// An owner approves a request, optionally narrower than asked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveRequest {
    pub request_id: String,
    /// Only these of the requested columns; empty keeps the request's.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub columns: Vec<String>,
    /// A SQL predicate the granted rows must satisfy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub row_filter: Option<String>,
    /// Fewer days than requested.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_days: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// What an approval returns: the decided request and the grant it created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approved {
    pub request: AccessRequest,
    pub grant: Grant,
}

/// An owner rejects a request.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    pub request_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

/// A change of one grant's state by an owner, with an optional reason for the record.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantChange {
    pub grant_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// An owner ends a grant for good.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RevokeGrant(pub GrantChange);

/// An owner pauses a grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SuspendGrant(pub GrantChange);

/// An owner resumes a paused grant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ResumeGrant(pub GrantChange);

/// The access requests the caller may see.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListRequests {}

/// The grants the caller may see.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListGrants {}

/// Owners: measure the quality rules of a product they decide now (or of every product they
/// decide), instead of waiting for the schedule.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckQuality {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product: Option<String>,
}

/// Declares each action once: its trait impl, its variant of [`Action`] and its line in
/// [`ACTIONS`].
macro_rules! actions {
    ($($ty:ident => $name:literal, $reply:ty, $description:literal;)+) => {
        $(
            impl MeshAction for $ty {
                const NAME: &'static str = $name;
                const DESCRIPTION: &'static str = $description;
                type Reply = $reply;
            }
        )+

        /// Any governance action, as the server receives it.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Action {
            $($ty($ty),)+
        }

        impl Action {
            /// Parse a `DoAction`: its type and body. An empty body reads as `{}`.
            pub fn parse(name: &str, body: &[u8]) -> Result<Self, ApiError> {
                let body = if body.iter().all(u8::is_ascii_whitespace) {
                    b"{}".as_slice()
                } else {
                    body
                };
                match name {
                    $($name => serde_json::from_slice(body).map(Self::$ty).map_err(|e| {
                        ApiError::BadBody { action: $name, reason: e.to_string() }
                    }),)+
                    other => Err(ApiError::UnknownAction(other.to_string())),
                }
            }

            /// The action's wire name.
            pub fn name(&self) -> &'static str {
                match self {
                    $(Self::$ty(_) => $name,)+
                }
            }
        }

        /// Every action with its description, in the order `ListActions` lists them.
        pub const ACTIONS: &[(&str, &str)] = &[$(($name, $description),)+];
    };
}

actions! {
    RequestAccess => "mesh.request_access", AccessRequest,
        "Ask a product's owner for access: {\"product\", \"purpose\", \"columns\"?, \"valid_days\"?}";
    CancelRequest => "mesh.cancel_request", AccessRequest,
        "Withdraw your pending request: {\"request_id\"}";
    ApproveRequest => "mesh.approve_request", Approved,
        "Owners: approve a request, optionally narrower: {\"request_id\", \"columns\"?, \"row_filter\"?, \"valid_days\"?, \"comment\"?}";
    RejectRequest => "mesh.reject_request", AccessRequest,
        "Owners: reject a request: {\"request_id\", \"comment\"?}";
    RevokeGrant => "mesh.revoke_grant", Grant,
        "Owners: end a grant: {\"grant_id\", \"reason\"?}";
    SuspendGrant => "mesh.suspend_grant", Grant,
        "Owners: pause a grant: {\"grant_id\", \"reason\"?}";
    ResumeGrant => "mesh.resume_grant", Grant,
        "Owners: resume a paused grant: {\"grant_id\", \"reason\"?}";
    ListRequests => "mesh.list_requests", Vec<AccessRequest>,
        "Access requests you may see: {}";
    ListGrants => "mesh.list_grants", Vec<Grant>,
        "Grants you may see: {}";
    CheckQuality => "mesh.check_quality", Vec<QualityCheck>,
        "Owners: run the quality checks of your products now: {\"product\"?}";
}

/// How a consumer asks for access to `product`, for every message that tells them (a
/// permission error, `mesh_catalog.products.how_to_request`): the CLI command and the
/// Flight action with its body.
pub fn how_to_request(product: &str) -> String {
    let body = RequestAccess {
        product: product.to_string(),
        purpose: "<why>".into(),
        ..RequestAccess::default()
    };
    let body = serde_json::to_string(&body).unwrap_or_default();
    format!(
        "meshgate access request {product} --purpose <why>, or the Flight action {} with {body}",
        RequestAccess::NAME
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_body_round_trips_through_parse() {
        let bodies = [
            (
                RequestAccess::NAME,
                RequestAccess {
                    product: "p".into(),
                    purpose: "why".into(),
                    columns: vec!["t.c".into()],
                    valid_days: Some(3),
                }
                .encode(),
            ),
            (
                RevokeGrant::NAME,
                RevokeGrant(GrantChange {
                    grant_id: "g".into(),
                    reason: None,
                })
                .encode(),
            ),
            (ListGrants::NAME, ListGrants {}.encode()),
        ];
        for (name, body) in bodies {
            let body = body.unwrap();
            let parsed = Action::parse(name, &body).unwrap();
            assert_eq!(parsed.name(), name);
        }
        assert_eq!(ACTIONS.len(), 10);
    }

    #[test]
    fn bodies_are_strict_and_say_what_is_wrong() {
        let err = Action::parse(CancelRequest::NAME, br#"{"request_id":"r","extra":1}"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("mesh.cancel_request") && err.contains("extra"),
            "{err}"
        );
        let err = Action::parse("mesh.nope", b"{}").unwrap_err().to_string();
        assert!(err.contains("unknown action `mesh.nope`"), "{err}");
        assert!(matches!(
            Action::parse(ListRequests::NAME, b"  "),
            Ok(Action::ListRequests(_))
        ));
    }

    #[test]
    fn how_to_request_names_the_command_and_the_action_with_its_body() {
        let text = how_to_request("credit.loans");
        assert!(text.starts_with("meshgate access request credit.loans --purpose <why>"));
        assert!(
            text.contains(
                r#"mesh.request_access with {"product":"credit.loans","purpose":"<why>"}"#
            )
        );
        // The body in the text is one the server accepts.
        let body = text.split(" with ").nth(1).unwrap();
        assert!(Action::parse(RequestAccess::NAME, body.as_bytes()).is_ok());
    }
}
