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

use arrow_flight::flight_service_server::FlightService;
use arrow_flight::{
    Action, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PollInfo,
    SchemaResult, Ticket,
};
use tonic::{Code, Request, Response, Status, Streaming};

use crate::service::MeshFlightService;

/// The Flight SQL service as served.
pub struct Served(pub MeshFlightService);

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
        self.0.handshake(request).await.map_err(caller_error)
    }

    async fn list_flights(&self, request: Request<Criteria>) -> Answer<Self::ListFlightsStream> {
        let request = self.0.authenticated(request).await?;
        self.0.list_flights(request).await.map_err(caller_error)
    }

    async fn get_flight_info(&self, request: Request<FlightDescriptor>) -> Answer<FlightInfo> {
        let request = self.0.authenticated(request).await?;
        self.0.get_flight_info(request).await.map_err(caller_error)
    }

    async fn poll_flight_info(&self, request: Request<FlightDescriptor>) -> Answer<PollInfo> {
        let request = self.0.authenticated(request).await?;
        self.0.poll_flight_info(request).await.map_err(caller_error)
    }

    async fn get_schema(&self, request: Request<FlightDescriptor>) -> Answer<SchemaResult> {
        let request = self.0.authenticated(request).await?;
        self.0.get_schema(request).await.map_err(caller_error)
    }

    async fn do_get(&self, request: Request<Ticket>) -> Answer<Self::DoGetStream> {
        let request = self.0.authenticated(request).await?;
        self.0.do_get(request).await.map_err(caller_error)
    }

    async fn do_put(&self, request: Request<Streaming<FlightData>>) -> Answer<Self::DoPutStream> {
        let request = self.0.authenticated(request).await?;
        self.0.do_put(request).await.map_err(caller_error)
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Answer<Self::DoExchangeStream> {
        let request = self.0.authenticated(request).await?;
        self.0.do_exchange(request).await.map_err(caller_error)
    }

    async fn do_action(&self, request: Request<Action>) -> Answer<Self::DoActionStream> {
        let request = self.0.authenticated(request).await?;
        self.0.do_action(request).await.map_err(caller_error)
    }

    async fn list_actions(&self, request: Request<Empty>) -> Answer<Self::ListActionsStream> {
        let request = self.0.authenticated(request).await?;
        self.0.list_actions(request).await.map_err(caller_error)
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
