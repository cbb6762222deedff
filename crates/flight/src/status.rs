//! How failures are reported over gRPC: each kind of failure has its status code, so that
//! clients and operators can tell "fix your query" from "retry later" from "ask for access".
//! Messages are the engine's own, which never carry key material or values the caller may
//! not see; they are capped in length so that an error can never become a data channel.

use arrow_flight::error::FlightError;
use meshgate_engine::GatewayError;
use tonic::Status;

/// Longer messages are cut: a person reads the first lines, and nothing should be able to
/// smuggle a large payload out through an error.
const MAX_MESSAGE_CHARS: usize = 2_000;

fn capped(message: String) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message;
    }
    let mut cut: String = message.chars().take(MAX_MESSAGE_CHARS).collect();
    cut.push_str(" [...]");
    cut
}

/// The gRPC status of an engine error.
pub(crate) fn status(error: GatewayError) -> Status {
    let message = capped(error.to_string());
    match error {
        GatewayError::Unauthenticated(_) => Status::unauthenticated(message),
        GatewayError::Denied(_) => Status::permission_denied(message),
        GatewayError::NotAllowed(_)
        | GatewayError::InvalidQuery(_)
        | GatewayError::Rejected { .. } => Status::invalid_argument(message),
        GatewayError::NotFound(_) => Status::not_found(message),
        GatewayError::Overloaded(_) | GatewayError::ResourceExhausted(_) => {
            Status::resource_exhausted(message)
        }
        GatewayError::DeadlineExceeded(_) => Status::deadline_exceeded(message),
        GatewayError::Cancelled(_) => Status::cancelled(message),
        // The product's storage is down, slow or refusing the gateway, or the gateway is
        // shutting down: try again later.
        GatewayError::Storage(_) | GatewayError::Unavailable(_) => Status::unavailable(message),
        GatewayError::Execution { .. } | GatewayError::Config(_) | GatewayError::Internal(_) => {
            Status::internal(message)
        }
    }
}

/// The gRPC status of an error raised while encoding or decoding Flight data.
pub(crate) fn flight_status(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        FlightError::ProtocolError(m) | FlightError::DecodeError(m) => {
            Status::invalid_argument(capped(m))
        }
        other => Status::internal(capped(other.to_string())),
    }
}

/// A status for a request the client got wrong.
pub(crate) fn invalid(message: impl Into<String>) -> Status {
    Status::invalid_argument(capped(message.into()))
}

/// A status for a failure inside the server; the detail goes to the log, not the client.
pub(crate) fn internal(context: &str, error: impl std::fmt::Display) -> Status {
    tracing::error!(%error, "{context}");
    Status::internal(format!(
        "internal error while {context}; the gateway's log has details"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tonic::Code;

    #[test]
    fn each_failure_has_its_code() {
        let cases = [
            (
                GatewayError::Denied(meshgate_policy::Denial::MalformedPrincipal {
                    principal: "a b".into(),
                }),
                Code::PermissionDenied,
            ),
            (GatewayError::NotFound("t".into()), Code::NotFound),
            (
                GatewayError::InvalidQuery("q".into()),
                Code::InvalidArgument,
            ),
            (GatewayError::NotAllowed("q".into()), Code::InvalidArgument),
            (
                GatewayError::Overloaded("o".into()),
                Code::ResourceExhausted,
            ),
            (
                GatewayError::ResourceExhausted("m".into()),
                Code::ResourceExhausted,
            ),
            (
                GatewayError::DeadlineExceeded("d".into()),
                Code::DeadlineExceeded,
            ),
            (GatewayError::Cancelled("c".into()), Code::Cancelled),
            (GatewayError::Unavailable("u".into()), Code::Unavailable),
        ];
        for (error, code) in cases {
            assert_eq!(status(error).code(), code);
        }
    }

    #[test]
    fn long_messages_are_cut() {
        let status = status(GatewayError::InvalidQuery("x".repeat(10_000)));
        assert!(status.message().len() < MAX_MESSAGE_CHARS + 10);
        assert!(status.message().ends_with("[...]"));
    }
}
