//! The Flight SQL service: every call authenticates, then goes through the engine as the
//! caller. Metadata results are computed for the caller at `DoGet` time, so a ticket for
//! `GetTables` shows each client only its own tables.

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::server::FlightSqlService;
use arrow_flight::sql::{
    CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo, CommandGetTables,
    CommandStatementQuery, ProstMessageExt, SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use futures::{Stream, StreamExt, TryStreamExt, stream};
use meshgate_engine::{CATALOG, Gateway, GatewayError};
use meshgate_policy::Principal;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::auth::{self, Tokens};
use crate::edge::{edge_schema, to_edge};
use crate::tickets::TicketSigner;

/// The Flight SQL service over one gateway.
pub struct MeshFlightService {
    gateway: Gateway,
    tokens: Tokens,
    tickets: TicketSigner,
    sql_info: SqlInfoData,
}

impl MeshFlightService {
    pub fn new(gateway: Gateway) -> Result<Self, Status> {
        let mut info = SqlInfoDataBuilder::new();
        info.append(SqlInfo::FlightSqlServerName, "meshgate");
        info.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
        info.append(SqlInfo::FlightSqlServerArrowVersion, "59");
        info.append(SqlInfo::FlightSqlServerReadOnly, true);
        let sql_info = info.build().map_err(|e| Status::internal(e.to_string()))?;
        Ok(Self {
            gateway,
            tokens: Tokens::default(),
            tickets: TicketSigner::new(),
            sql_info,
        })
    }

    async fn principal<T>(&self, request: &Request<T>) -> Result<Principal, Status> {
        auth::authenticate(&self.gateway, &self.tokens, request.metadata()).await
    }

    /// FlightInfo for a metadata command. Its ticket is the command itself: `DoGet` answers
    /// it for whoever redeems the ticket, never for whoever asked first.
    async fn metadata_info(
        &self,
        request: Request<FlightDescriptor>,
        command: impl ProstMessageExt,
        schema: &SchemaRef,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let info = flight_info(
            schema,
            command.as_any().encode_to_vec(),
            request.into_inner(),
        )?;
        Ok(Response::new(info))
    }
}

/// How an engine error is reported over gRPC. Messages are the engine's own, which never
/// carry key material or data the caller may not see.
pub(crate) fn status(error: GatewayError) -> Status {
    let message = error.to_string();
    match error {
        GatewayError::Denied(_) => Status::permission_denied(message),
        GatewayError::Unauthenticated(_) => Status::unauthenticated(message),
        GatewayError::NotAllowed(_) | GatewayError::InvalidQuery(_) => {
            Status::invalid_argument(message)
        }
        // The product's storage is down, slow or refusing the gateway: try again later.
        GatewayError::Storage(_) => Status::unavailable(message),
        GatewayError::Execution(_) => Status::internal(message),
        GatewayError::Config(_) | GatewayError::Internal(_) => Status::internal(message),
    }
}

fn flight_error(error: FlightError) -> Status {
    match error {
        FlightError::Tonic(status) => *status,
        other => Status::internal(other.to_string()),
    }
}

type DoGetStream = <MeshFlightService as FlightService>::DoGetStream;

/// Stream batches to the client as Flight data in the edge schema; nothing is buffered whole.
fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, Status>> + Send + 'static,
) -> Response<DoGetStream> {
    let edge = edge_schema(&schema);
    let converted = {
        let edge = Arc::clone(&edge);
        batches.map(move |batch| {
            batch
                .and_then(|b| to_edge(b, &edge).map_err(|e| Status::internal(e.to_string())))
                .map_err(FlightError::from)
        })
    };
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(edge)
        .build(converted)
        .map_err(flight_error);
    Response::new(Box::pin(flight) as DoGetStream)
}

/// A FlightInfo whose single endpoint has no location: clients reuse this connection.
fn flight_info(
    schema: &SchemaRef,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    let info = FlightInfo::new()
        .try_with_schema(&edge_schema(schema))
        .map_err(|e| Status::internal(e.to_string()))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor)
        .with_ordered(false);
    Ok(info)
}

fn one_batch(batch: Result<RecordBatch, FlightError>) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(flight_error)?;
    let schema = batch.schema();
    Ok(encode(schema, stream::iter([Ok(batch)])))
}

#[tonic::async_trait]
impl FlightSqlService for MeshFlightService {
    type FlightService = MeshFlightService;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<
        Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>,
        Status,
    > {
        let basic = auth::handshake_basic(request.metadata())?;
        let principal = auth::basic_login(&self.gateway, basic).await?;
        tracing::info!(principal = principal.id(), "login");
        let token = self.tokens.issue(principal);
        let header = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|_| Status::internal("token header"))?;
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.into_bytes().into(),
        };
        let mut response: Response<
            Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>,
        > = Response::new(Box::pin(stream::iter([Ok(reply)])));
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let principal = self.principal(&request).await?;
        let session = self.gateway.session(principal.clone());
        // Planning here authorizes the query and fixes the schema the client is promised.
        let planned = session.query(&query.query).await.map_err(status)?;
        let handle = self.tickets.sign(principal.id(), &query.query)?;
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        }
        .as_any()
        .encode_to_vec();
        Ok(Response::new(flight_info(
            &planned.schema(),
            ticket,
            request.into_inner(),
        )?))
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request).await?;
        let sql = self
            .tickets
            .verify(&ticket.statement_handle, principal.id())?;
        // Planned again as the caller, under the policy version in force now.
        let planned = self
            .gateway
            .session(principal)
            .query(&sql)
            .await
            .map_err(status)?;
        let schema = planned.schema();
        let batches = planned.execute().map_err(status)?;
        let batches = batches.map_err(|e| status(GatewayError::from_execution(e)));
        Ok(encode(schema, batches))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(request, query, &schema).await
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let mut builder = query.into_builder();
        builder.append(CATALOG);
        one_batch(builder.build())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(request, query, &schema).await
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request).await?;
        let mut schemas: Vec<String> = self
            .gateway
            .session(principal)
            .tables()
            .await
            .into_iter()
            .map(|t| t.schema)
            .collect();
        schemas.dedup();
        let mut builder = query.into_builder();
        for schema in schemas {
            builder.append(CATALOG, schema);
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.metadata_info(request, query, &schema).await
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let principal = self.principal(&request).await?;
        let tables = self.gateway.session(principal).tables().await;
        let mut builder = query.into_builder();
        for table in tables {
            builder
                .append(
                    &table.catalog,
                    &table.schema,
                    &table.name,
                    "TABLE",
                    &edge_schema(&table.arrow_schema),
                )
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.metadata_info(request, query, &schema).await
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        one_batch(query.into_builder(&self.sql_info).build())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
