//! The service as served, in front of arrow-flight's Flight SQL dispatch:
//!
//! - **Authentication comes first.** Every call but the handshake is authenticated before the
//!   dispatch decodes anything, so an anonymous caller learns nothing: not the actions the
//!   server takes (ListActions), not how it decodes a message, not which commands exist; it
//!   gets UNAUTHENTICATED for everything. The caller found here travels with the request, so
//!   the service does not authenticate twice.
//! - **Malformed requests are the caller's error.** The dispatch reports a message that does
//!   not decode as INTERNAL; a client then believes the server is broken. This wrapper
//!   answers those with INVALID_ARGUMENT and says what to fix.
//! - **A prepared Substrait plan gets its handle.** arrow-flight 59's dispatch runs
//!   `CreatePreparedSubstraitPlan` and drops its result (an empty stream), so this wrapper
//!   answers that action itself.

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo,
    SchemaResult, Ticket,
};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::service::MeshFlightService;

/// The Flight SQL service as served.
pub struct Served(pub MeshFlightService);

impl Served {
    /// `CreatePreparedSubstraitPlan`, answered with the prepared statement's result.
    async fn create_prepared_substrait_plan(
        &self,
        request: Request<Action>,
    ) -> Answer<<Self as FlightService>::DoActionStream> {
        use arrow_flight::sql::server::FlightSqlService;
        use arrow_flight::sql::{ActionCreatePreparedSubstraitPlanRequest, Any, ProstMessageExt};
        use prost::Message;

        let malformed = |what: &str| {
            Status::invalid_argument(format!(
                "malformed CreatePreparedSubstraitPlan request: {what}; send an \
                 ActionCreatePreparedSubstraitPlanRequest packed in a google.protobuf.Any"
            ))
        };
        let any =
            Any::decode(request.get_ref().body.as_ref()).map_err(|_| malformed("not an Any"))?;
        let command: ActionCreatePreparedSubstraitPlanRequest = any
            .unpack()
            .map_err(|_| malformed("its message does not decode"))?
            .ok_or_else(|| malformed("it carries another message"))?;
        let result = self
            .0
            .do_action_create_prepared_substrait_plan(command, request)
            .await?;
        let body = result.as_any().encode_to_vec().into();
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(
            arrow_flight::Result { body },
        )]))))
    }
}

fn caller_error(status: Status) -> Status {
    let message = status.message();
    let undecodable = message.starts_with("ParseError(")
        || message.contains("Unable to decode")
        || message.contains("failed to decode Protobuf message");
    if status.code() == Code::Internal && undecodable {
        Status::invalid_argument(format!(
            "malformed Flight SQL request (not a Flight SQL message this server can decode): {message}"
        ))
    } else {
        status
    }
}

type Answer<T> = Result<Response<T>, Status>;

/// The Flight SQL commands, as metric labels: a closed list, so a caller's bytes never
/// become a label value.
const COMMANDS: &[&str] = &[
    "CommandStatementQuery",
    "CommandStatementSubstraitPlan",
    "CommandPreparedStatementQuery",
    "CommandStatementUpdate",
    "CommandPreparedStatementUpdate",
    "CommandStatementIngest",
    "CommandGetCatalogs",
    "CommandGetDbSchemas",
    "CommandGetTables",
    "CommandGetTableTypes",
    "CommandGetPrimaryKeys",
    "CommandGetExportedKeys",
    "CommandGetImportedKeys",
    "CommandGetCrossReference",
    "CommandGetSqlInfo",
    "CommandGetXdbcTypeInfo",
    "TicketStatementQuery",
];

/// The command a `google.protobuf.Any` carries, as a label (`other` when it is none of them).
fn command_label(any: &[u8]) -> &'static str {
    use prost::Message;
    let Ok(any) = arrow_flight::sql::Any::decode(any) else {
        return "other";
    };
    let name = any.type_url.rsplit('.').next().unwrap_or("");
    COMMANDS
        .iter()
        .find(|c| **c == name)
        .copied()
        .unwrap_or("other")
}

/// An action's type, as a label: the Flight SQL and meshgate actions by name, anything else
/// `other`.
fn action_label(action: &str) -> &'static str {
    const FLIGHT_SQL: &[&str] = &[
        "CreatePreparedStatement",
        "ClosePreparedStatement",
        "CreatePreparedSubstraitPlan",
        "BeginTransaction",
        "EndTransaction",
        "BeginSavepoint",
        "EndSavepoint",
        "CancelQuery",
        "CancelFlightInfo",
        "RenewFlightEndpoint",
        "SetSessionOptions",
        "GetSessionOptions",
        "CloseSession",
    ];
    FLIGHT_SQL
        .iter()
        .copied()
        .chain(meshgate_api::ACTIONS.iter().map(|(name, _)| *name))
        .find(|a| *a == action)
        .unwrap_or("other")
}

/// A gRPC status as a label.
fn status_label(code: Code) -> &'static str {
    match code {
        Code::Ok => "ok",
        Code::Cancelled => "cancelled",
        Code::Unknown => "unknown",
        Code::InvalidArgument => "invalid_argument",
        Code::DeadlineExceeded => "deadline_exceeded",
        Code::NotFound => "not_found",
        Code::AlreadyExists => "already_exists",
        Code::PermissionDenied => "permission_denied",
        Code::ResourceExhausted => "resource_exhausted",
        Code::FailedPrecondition => "failed_precondition",
        Code::Aborted => "aborted",
        Code::OutOfRange => "out_of_range",
        Code::Unimplemented => "unimplemented",
        Code::Internal => "internal",
        Code::Unavailable => "unavailable",
        Code::DataLoss => "data_loss",
        Code::Unauthenticated => "unauthenticated",
    }
}

/// The caller's W3C trace context (`traceparent`, `tracestate`), for the call's span to
/// continue; empty when tracing is off (no propagator is installed then).
fn trace_parent(metadata: &tonic::metadata::MetadataMap) -> opentelemetry::Context {
    struct Headers<'a>(&'a tonic::metadata::MetadataMap);
    impl opentelemetry::propagation::Extractor for Headers<'_> {
        fn get(&self, key: &str) -> Option<&str> {
            self.0.get(key).and_then(|v| v.to_str().ok())
        }
        fn keys(&self) -> Vec<&str> {
            self.0
                .keys()
                .filter_map(|k| match k {
                    tonic::metadata::KeyRef::Ascii(k) => Some(k.as_str()),
                    tonic::metadata::KeyRef::Binary(_) => None,
                })
                .collect()
        }
    }
    opentelemetry::global::get_text_map_propagator(|p| p.extract(&Headers(metadata)))
}

impl Served {
    /// Answer `method` (`command`: its Flight SQL command) in a span of its own that
    /// continues the caller's trace (`parent`), and count it: its status and how long until
    /// the first response (streams run on after, in the query's `execute` span).
    async fn observed<T>(
        &self,
        method: &'static str,
        command: &'static str,
        parent: opentelemetry::Context,
        answer: impl Future<Output = Answer<T>>,
    ) -> Answer<T> {
        use tracing::Instrument;
        use tracing_opentelemetry::OpenTelemetrySpanExt;
        let span = tracing::info_span!(
            "rpc",
            otel.name = method,
            otel.kind = "server",
            rpc.system = "grpc",
            rpc.method = method,
            flight_sql.command = command,
            rpc.grpc.status = tracing::field::Empty,
        );
        // No tracing pipeline (tracing off): nothing to continue.
        let _ = span.set_parent(parent);
        let started = std::time::Instant::now();
        let result = answer.instrument(span.clone()).await.map_err(caller_error);
        let status = match &result {
            Ok(_) => "ok",
            Err(s) => status_label(s.code()),
        };
        span.record("rpc.grpc.status", status);
        self.0
            .gateway()
            .metrics()
            .rpc(method, command, status, started.elapsed());
        result
    }
}

#[tonic::async_trait]
impl FlightService for Served {
    type HandshakeStream = <MeshFlightService as FlightService>::HandshakeStream;
    type ListFlightsStream = <MeshFlightService as FlightService>::ListFlightsStream;
    type DoGetStream = <MeshFlightService as FlightService>::DoGetStream;
    type DoPutStream = <MeshFlightService as FlightService>::DoPutStream;
    type DoActionStream = <MeshFlightService as FlightService>::DoActionStream;
    type ListActionsStream = <MeshFlightService as FlightService>::ListActionsStream;
    type DoExchangeStream = <MeshFlightService as FlightService>::DoExchangeStream;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Answer<Self::HandshakeStream> {
        let parent = trace_parent(request.metadata());
        self.observed("Handshake", "none", parent, self.0.handshake(request))
            .await
    }

    async fn list_flights(&self, request: Request<Criteria>) -> Answer<Self::ListFlightsStream> {
        let parent = trace_parent(request.metadata());
        self.observed("ListFlights", "none", parent, async {
            let request = self.0.authenticated(request).await?;
            self.0.list_flights(request).await
        })
        .await
    }

    async fn get_flight_info(&self, request: Request<FlightDescriptor>) -> Answer<FlightInfo> {
        let command = command_label(&request.get_ref().cmd);
        let parent = trace_parent(request.metadata());
        self.observed("GetFlightInfo", command, parent, async {
            let request = self.0.authenticated(request).await?;
            self.0.get_flight_info(request).await
        })
        .await
    }

    async fn poll_flight_info(&self, request: Request<FlightDescriptor>) -> Answer<PollInfo> {
        let command = command_label(&request.get_ref().cmd);
        let parent = trace_parent(request.metadata());
        self.observed("PollFlightInfo", command, parent, async {
            let request = self.0.authenticated(request).await?;
            self.0.poll_flight_info(request).await
        })
        .await
    }

    async fn get_schema(&self, request: Request<FlightDescriptor>) -> Answer<SchemaResult> {
        let command = command_label(&request.get_ref().cmd);
        let parent = trace_parent(request.metadata());
        self.observed("GetSchema", command, parent, async {
            let request = self.0.authenticated(request).await?;
            self.0.get_schema(request).await
        })
        .await
    }

    async fn do_get(&self, request: Request<Ticket>) -> Answer<Self::DoGetStream> {
        let command = command_label(&request.get_ref().ticket);
        let parent = trace_parent(request.metadata());
        self.observed("DoGet", command, parent, async {
            let request = self.0.authenticated(request).await?;
            self.0.do_get(request).await
        })
        .await
    }

    async fn do_put(&self, request: Request<Streaming<FlightData>>) -> Answer<Self::DoPutStream> {
        let parent = trace_parent(request.metadata());
        self.observed("DoPut", "none", parent, async {
            let request = self.0.authenticated(request).await?;
            self.0.do_put(request).await
        })
        .await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Answer<Self::DoExchangeStream> {
        let parent = trace_parent(request.metadata());
        self.observed("DoExchange", "none", parent, async {
            let request = self.0.authenticated(request).await?;
            self.0.do_exchange(request).await
        })
        .await
    }

    async fn do_action(&self, request: Request<Action>) -> Answer<Self::DoActionStream> {
        let action = action_label(&request.get_ref().r#type);
        let parent = trace_parent(request.metadata());
        self.observed("DoAction", action, parent, async {
            let request = self.0.authenticated(request).await?;
            if action == "CreatePreparedSubstraitPlan" {
                return self.create_prepared_substrait_plan(request).await;
            }
            self.0.do_action(request).await
        })
        .await
    }

    async fn list_actions(&self, request: Request<Empty>) -> Answer<Self::ListActionsStream> {
        let parent = trace_parent(request.metadata());
        self.observed("ListActions", "none", parent, async {
            let request = self.0.authenticated(request).await?;
            self.0.list_actions(request).await
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undecodable_messages_are_the_callers_error() {
        let status = caller_error(Status::internal(
            "ParseError(\"Unable to decode Any value: invalid wire type value: 6\")",
        ));
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(status.message().contains("malformed Flight SQL request"));
        // Anything else passes through unchanged.
        let status = caller_error(Status::internal("a bug"));
        assert_eq!((status.code(), status.message()), (Code::Internal, "a bug"));
        let status = caller_error(Status::permission_denied("no"));
        assert_eq!(status.code(), Code::PermissionDenied);
    }
}
