//! The Flight SQL service: every call authenticates, then goes through the engine as the
//! caller. Metadata results are computed for the caller at `DoGet` time, so a ticket for
//! `GetTables` shows each client only its own tables; statement tickets and prepared
//! statement handles are signed, bound to their principal and planned again when used
//! (`DoGet` continues from its `GetFlightInfo`'s plan only where the engine finds that it
//! still applies: see `drafts.rs`).

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::{Int32Builder, RecordBatch, StringBuilder, UInt8Builder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::FlightService;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionCreatePreparedSubstraitPlanRequest,
    ActionEndSavepointRequest, ActionEndTransactionRequest, Any, Command, CommandGetCatalogs,
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementIngest, CommandStatementQuery, CommandStatementSubstraitPlan,
    CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, SubstraitPlan,
    TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus,
    FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest, HandshakeResponse, Ticket,
};
use bytes::Bytes;
use datafusion::common::ScalarValue;
use futures::{Stream, StreamExt, TryStreamExt, stream};
use meshgate_engine::{
    CATALOG, CancellationToken, Gateway, GatewayError, Prepared, Session, Statement, TableKind,
    check_parameters,
};
use meshgate_policy::Principal;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::{Request, Response, Status, Streaming};

use crate::FlightConfig;
use crate::auth::{Authenticator, Caller};
use crate::columns::{Origin, result_schema, table_schema};
use crate::drafts::{self, Drafts};
use crate::edge::{edge_parameters, to_edge};
use crate::jwt::JwtVerifier;
use crate::params;
use crate::running::{Cancelled, Registration, Running, draining_status};
use crate::session_options::{
    CLOSE_SESSION, CloseSessionResult, CloseSessionStatus, GET_SESSION_OPTIONS,
    SET_SESSION_OPTIONS, SetSessionOptionsRequest,
};
use crate::sql_info::{sql_info, xdbc_type_info};
use crate::status::{flight_status, internal, invalid, status};
use crate::tickets::{Kind, TicketSigner};

const CANCEL_FLIGHT_INFO: &str = "CancelFlightInfo";

/// `ActionCancelQueryResult.CancelResult` values (arrow-rs does not export the enum).
const CANCEL_RESULT_CANCELLED: i32 = 1;
const CANCEL_RESULT_NOT_CANCELLABLE: i32 = 3;

fn read_only(what: &str) -> Status {
    Status::invalid_argument(format!(
        "{what} is not possible: meshgate is read-only (queries only); data products are \
         changed by their owners in their own lakes"
    ))
}

fn no_transactions() -> Status {
    Status::unimplemented(
        "meshgate has no transactions: it is read-only, and every query sees the data as it is \
         when it runs; run statements without a transaction",
    )
}

/// The plan a Substrait command carries (a missing one is the client's mistake).
fn substrait(plan: Option<SubstraitPlan>) -> Result<Source, Status> {
    match plan {
        Some(plan) if !plan.plan.is_empty() => Ok(Source::Substrait(plan.plan)),
        _ => Err(invalid(
            "the command carries no Substrait plan: send a serialized substrait.Plan",
        )),
    }
}

/// The Flight SQL service over one gateway.
pub struct MeshFlightService {
    gateway: Gateway,
    auth: Authenticator,
    tickets: TicketSigner,
    running: Arc<Running>,
    drafts: Drafts,
    sql_info: SqlInfoData,
    xdbc: XdbcTypeInfoData,
}

impl MeshFlightService {
    /// A service over `gateway`, authenticating as `config` says.
    pub fn new(gateway: Gateway, config: &FlightConfig) -> Result<Self, String> {
        crate::jwt::check_namespaces(&config.jwt, &gateway.user_names())?;
        let jwt = config
            .jwt
            .iter()
            .cloned()
            .map(JwtVerifier::new)
            .collect::<Result<Vec<_>, _>>()?;
        let sql_info = sql_info(&gateway).map_err(|e| format!("building SqlInfo: {e}"))?;
        let xdbc = xdbc_type_info().map_err(|e| format!("building XDBC type info: {e}"))?;
        let tickets = TicketSigner::with_key(&gateway.signing_key("meshgate flight tickets v1"));
        Ok(Self {
            auth: Authenticator::new(gateway.clone(), jwt, config.token_ttl),
            gateway,
            tickets,
            running: Arc::new(Running::default()),
            drafts: Drafts::default(),
            sql_info,
            xdbc,
        })
    }

    pub(crate) fn gateway(&self) -> &Gateway {
        &self.gateway
    }

    pub(crate) fn running(&self) -> Arc<Running> {
        Arc::clone(&self.running)
    }

    /// Who is calling. Served calls were authenticated before dispatch (see `served.rs`);
    /// anything else is authenticated here.
    async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        if self.running.draining() {
            return Err(draining_status());
        }
        if let Some(caller) = request.extensions().get::<Caller>() {
            return Ok(caller.clone());
        }
        let mut caller = self.auth.caller(request).await?;
        caller.client = request.remote_addr().map(|a| a.to_string());
        Ok(caller)
    }

    /// `request` with its authenticated caller attached; UNAUTHENTICATED otherwise.
    pub(crate) async fn authenticated<T>(
        &self,
        mut request: Request<T>,
    ) -> Result<Request<T>, Status> {
        let caller = self.caller(&request).await?;
        request.extensions_mut().insert(caller);
        Ok(request)
    }

    /// A session for the caller, resolving unqualified names in `schema`.
    fn session(&self, principal: Principal, schema: Option<String>) -> Session {
        self.gateway.session(principal).with_default_schema(schema)
    }

    /// [`Self::session`] recording the caller's address and the Flight method in the audit.
    fn session_for(&self, caller: &Caller, schema: Option<String>, method: &str) -> Session {
        self.session(caller.principal.clone(), schema)
            .with_origin(caller.client.clone(), method)
    }

    /// FlightInfo for a metadata command. Its ticket is the command itself: `DoGet` answers
    /// it for whoever redeems the ticket, never for whoever asked first.
    async fn metadata_info(
        &self,
        request: Request<FlightDescriptor>,
        command: impl ProstMessageExt,
        schema: &SchemaRef,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request).await?;
        let info = flight_info(
            schema,
            command.as_any().encode_to_vec(),
            request.into_inner(),
        )?;
        Ok(Response::new(info))
    }

    /// Run a statement (once per parameter row, or once without parameters) as `principal`
    /// and stream the results. The first statement is planned before the stream starts, so
    /// that refusals come back as the call's status; the rest are planned one after another
    /// as the stream is read.
    async fn run(
        &self,
        caller: Caller,
        ticket: &[u8],
        source: Source,
        schema: Option<String>,
        rows: Vec<Vec<ScalarValue>>,
    ) -> Result<Response<DoGetStream>, Status> {
        let cancel = CancellationToken::new();
        let registration = self
            .running
            .start(ticket, caller.principal.id(), cancel.clone())?;
        let session = self.session_for(&caller, schema, "DoGet");
        // What GetFlightInfo planned of this ticket, if it still applies (the engine checks).
        let draft = self.drafts.take(ticket);
        let mut rows = rows.into_iter();
        let first_row = rows.next();
        let source = Arc::new(source);
        let first = match first_row {
            None => session.query_drafted(source.as_statement(), draft).await,
            Some(row) => {
                session
                    .query_statement(source.as_statement(), Some(&row))
                    .await
            }
        };
        let first = first.map_err(status)?.with_cancel_token(cancel.clone());
        let schema = result_schema(first.columns(), first.warnings());
        let first = first.execute().map_err(status)?;
        let rest = stream::iter(rows)
            .then(move |row| {
                let (session, source, cancel) =
                    (session.clone(), Arc::clone(&source), cancel.clone());
                async move {
                    let query = session
                        .query_statement(source.as_statement(), Some(&row))
                        .await
                        .map_err(status)?
                        .with_cancel_token(cancel);
                    let batches = query.execute().map_err(status)?;
                    Ok::<_, Status>(batches.map_err(execution_status))
                }
            })
            .try_flatten();
        let running = Arc::clone(&self.running);
        let batches = first
            .map_err(execution_status)
            .chain(rest)
            .map_err(move |status| {
                if status.code() == tonic::Code::Cancelled && running.draining() {
                    Status::cancelled(
                        "the gateway is shutting down and stopped the query after its drain period; \
                         run it again (another instance may answer)",
                    )
                } else {
                    status
                }
            });
        Ok(encode(schema, batches, Some(registration)))
    }

    fn verify_prepared(&self, handle: &[u8], principal: &Principal) -> Result<Handle, Status> {
        let fields = self
            .tickets
            .verify(Kind::Prepared, handle, principal.id())?;
        Handle::from_fields(fields)
    }

    fn verify_statement(&self, handle: &[u8], principal: &Principal) -> Result<Handle, Status> {
        let fields = self
            .tickets
            .verify(Kind::Statement, handle, principal.id())?;
        Handle::from_fields(fields)
    }

    fn sign(&self, kind: Kind, principal: &Principal, handle: &Handle) -> Result<Bytes, Status> {
        let schema = handle.schema.as_deref().unwrap_or("");
        let (statement, language): (&[u8], &[u8]) = match &handle.source {
            Source::Sql(sql) => (sql.as_bytes(), b"sql"),
            Source::Substrait(plan) => (plan, b"substrait"),
        };
        let signed = self.tickets.sign(
            kind,
            principal.id(),
            &[statement, schema.as_bytes(), &handle.params, language],
        )?;
        Ok(signed.into())
    }

    /// Cancel what the endpoints of a FlightInfo started, if the caller started it.
    fn cancel_info(&self, caller: &Caller, info: FlightInfo) -> Result<bool, Status> {
        let mut cancelled = false;
        for endpoint in info.endpoint {
            let Some(ticket) = endpoint.ticket else {
                continue;
            };
            let any = Any::decode(ticket.ticket.as_ref())
                .map_err(|_| invalid("the FlightInfo to cancel holds a malformed ticket"))?;
            match Command::try_from(any).map_err(|e| invalid(e.to_string()))? {
                Command::TicketStatementQuery(t) => {
                    self.verify_statement(&t.statement_handle, &caller.principal)?;
                }
                Command::CommandPreparedStatementQuery(p) => {
                    self.verify_prepared(&p.prepared_statement_handle, &caller.principal)?;
                }
                // Metadata answers are computed at once; there is nothing to cancel.
                _ => continue,
            }
            let outcome = self.running.cancel(&ticket.ticket, caller.principal.id());
            tracing::info!(principal = caller.principal.id(), ?outcome, "cancel");
            cancelled |= matches!(outcome, Cancelled::Stopped | Cancelled::Remembered);
        }
        Ok(cancelled)
    }

    /// Plan `source` without values to describe it, as `session` (refused if it has
    /// parameters: without values it cannot run); for a short statement, what was planned is
    /// held for `ticket` (see [`crate::drafts`]).
    async fn describe(
        &self,
        session: &Session,
        source: &Source,
        ticket: &[u8],
    ) -> Result<Prepared, Status> {
        let statement = source.as_statement();
        let (prepared, draft) = if statement.size() > drafts::MAX_STATEMENT_BYTES {
            let prepared = session.prepare_statement(statement, None).await;
            (prepared.map_err(status)?, None)
        } else {
            let (prepared, draft) = session.prepare_draft(statement).await.map_err(status)?;
            (prepared, Some(draft))
        };
        check_parameters(prepared.parameters.fields().len(), None).map_err(status)?;
        if let Some(draft) = draft {
            self.drafts.keep(ticket, draft);
        }
        Ok(prepared)
    }

    /// `GetFlightInfo` for a statement (SQL or Substrait): planning here authorizes the
    /// query and fixes the schema the client is promised; the ticket carries the statement,
    /// signed for the caller, and is checked again when redeemed (what was planned here is
    /// continued from only if it still applies; otherwise the statement is planned again).
    async fn statement_info(
        &self,
        caller: Caller,
        source: Source,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = self.auth.options(&caller).schema;
        let handle = Handle {
            source,
            schema,
            params: Vec::new(),
        };
        let ticket = TicketStatementQuery {
            statement_handle: self.sign(Kind::Statement, &caller.principal, &handle)?,
        }
        .as_any()
        .encode_to_vec();
        let session = self.session_for(&caller, handle.schema.clone(), "GetFlightInfo");
        let prepared = self.describe(&session, &handle.source, &ticket).await?;
        let schema = result_schema(&prepared.columns, &prepared.warnings);
        Ok(Response::new(flight_info(
            &schema,
            ticket,
            request.into_inner(),
        )?))
    }

    /// A prepared statement (SQL or Substrait): its handle, result and parameter schemas.
    async fn create_prepared(
        &self,
        caller: Caller,
        source: Source,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let schema = self.auth.options(&caller).schema;
        let prepared = self
            .session_for(&caller, schema.clone(), "CreatePreparedStatement")
            .prepare_statement(source.as_statement(), None)
            .await
            .map_err(status)?;
        let handle = Handle {
            source,
            schema,
            params: Vec::new(),
        };
        let dataset = result_schema(&prepared.columns, &prepared.warnings);
        let parameter_schema = if prepared.parameters.fields().is_empty() {
            Bytes::new()
        } else {
            params::schema_bytes(&edge_parameters(&prepared.parameters))?
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: self.sign(Kind::Prepared, &caller.principal, &handle)?,
            dataset_schema: params::schema_bytes(&dataset)?,
            parameter_schema,
        })
    }
}

/// A statement as the client sent it: SQL text or a serialized Substrait plan.
enum Source {
    Sql(String),
    Substrait(Bytes),
}

impl Source {
    fn as_statement(&self) -> Statement<'_> {
        match self {
            Self::Sql(sql) => Statement::Sql(sql),
            Self::Substrait(plan) => Statement::Substrait(plan),
        }
    }
}

/// What a statement ticket or prepared statement handle carries (besides its principal).
struct Handle {
    source: Source,
    schema: Option<String>,
    /// Bound parameter rows as Arrow IPC; empty when none are bound.
    params: Vec<u8>,
}

impl Handle {
    fn from_fields(fields: Vec<Vec<u8>>) -> Result<Self, Status> {
        let broken = || invalid("invalid ticket or handle: run the statement again");
        let mut fields = fields.into_iter();
        let statement = fields.next().ok_or_else(broken)?;
        let schema = String::from_utf8(fields.next().ok_or_else(broken)?).map_err(|_| broken())?;
        let params = fields.next().unwrap_or_default();
        // Handles signed before Substrait was accepted carry SQL and no fourth field.
        let source = match fields.next().as_deref() {
            None | Some(b"sql") => Source::Sql(String::from_utf8(statement).map_err(|_| broken())?),
            Some(b"substrait") => Source::Substrait(statement.into()),
            Some(_) => return Err(broken()),
        };
        Ok(Self {
            source,
            schema: (!schema.is_empty()).then_some(schema),
            params,
        })
    }
}

fn execution_status(error: datafusion::error::DataFusionError) -> Status {
    status(GatewayError::from_execution(error))
}

type DoGetStream = <MeshFlightService as FlightService>::DoGetStream;
type DoActionStream = <MeshFlightService as FlightService>::DoActionStream;

/// Stream batches to the client as Flight data in `schema` (the edge schema with column
/// metadata); nothing is buffered whole. `registration` lives as long as the stream.
fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, Status>> + Send + 'static,
    registration: Option<Registration>,
) -> Response<DoGetStream> {
    let converted = {
        let schema = Arc::clone(&schema);
        batches.map(move |batch| {
            let _running = &registration;
            batch
                .and_then(|b| {
                    to_edge(b, &schema).map_err(|e| internal("converting a result batch", e))
                })
                .map_err(|status| FlightError::Tonic(Box::new(status)))
        })
    };
    let flight = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .build(converted)
        .map_err(flight_status);
    Response::new(Box::pin(flight) as DoGetStream)
}

/// A FlightInfo whose single endpoint has no location: clients reuse this connection.
fn flight_info(
    schema: &SchemaRef,
    ticket: Vec<u8>,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| internal("encoding a schema", e))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
        .with_descriptor(descriptor)
        .with_ordered(false);
    Ok(info)
}

fn one_batch(
    batch: Result<RecordBatch, impl std::fmt::Display>,
) -> Result<Response<DoGetStream>, Status> {
    let batch = batch.map_err(|e| internal("building a metadata result", e))?;
    let schema = batch.schema();
    Ok(encode(schema, stream::iter([Ok(batch)]), None))
}

fn action_result(body: Vec<u8>) -> Response<DoActionStream> {
    let result = arrow_flight::Result { body: body.into() };
    Response::new(Box::pin(stream::iter([Ok(result)])) as DoActionStream)
}

/// `CommandGetPrimaryKeys` results.
fn primary_keys_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ]))
}

/// `CommandGetImportedKeys` / `ExportedKeys` / `CrossReference` results.
fn foreign_keys_schema() -> SchemaRef {
    let text = |name: &str, nullable: bool| Field::new(name, DataType::Utf8, nullable);
    Arc::new(Schema::new(vec![
        text("pk_catalog_name", true),
        text("pk_db_schema_name", true),
        text("pk_table_name", false),
        text("pk_column_name", false),
        text("fk_catalog_name", true),
        text("fk_db_schema_name", true),
        text("fk_table_name", false),
        text("fk_column_name", false),
        Field::new("key_sequence", DataType::Int32, false),
        text("fk_key_name", true),
        text("pk_key_name", true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ]))
}

/// Products declare no foreign keys: the answer is an empty result of the right shape.
fn no_foreign_keys() -> Result<RecordBatch, arrow::error::ArrowError> {
    let schema = foreign_keys_schema();
    let columns = schema
        .fields()
        .iter()
        .map(|field| match field.data_type() {
            DataType::Int32 => Arc::new(Int32Builder::new().finish()) as arrow::array::ArrayRef,
            DataType::UInt8 => Arc::new(UInt8Builder::new().finish()),
            _ => Arc::new(StringBuilder::new().finish()),
        })
        .collect();
    RecordBatch::try_new(schema, columns)
}

fn matches(filter: Option<&str>, value: &str) -> bool {
    filter.is_none_or(|f| f == value)
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
        let caller = self.caller(&request).await?;
        tracing::info!(principal = caller.principal.id(), "login");
        let token = self.auth.issue(caller)?;
        let header = MetadataValue::try_from(format!("Bearer {token}"))
            .map_err(|e| internal("issuing a token", e))?;
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

    // Statements

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request).await?;
        if query.transaction_id.is_some() {
            return Err(no_transactions());
        }
        self.statement_info(caller, Source::Sql(query.query), request)
            .await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request).await?;
        let handle = self.verify_statement(&ticket.statement_handle, &caller.principal)?;
        // Planned again as the caller, under the policy version in force now.
        self.run(
            caller,
            &request.get_ref().ticket,
            handle.source,
            handle.schema,
            Vec::new(),
        )
        .await
    }

    // Prepared statements: the handle carries the statement (and, once bound, its
    // parameter values), signed for its principal; the server keeps no state.

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self.caller(&request).await?;
        if query.transaction_id.is_some() {
            return Err(no_transactions());
        }
        self.create_prepared(caller, Source::Sql(query.query)).await
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let caller = self.caller(&request).await?;
        // Nothing is held for a handle; closing checks that it is the caller's.
        self.verify_prepared(&query.prepared_statement_handle, &caller.principal)?;
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let caller = self.caller(&request).await?;
        let mut handle =
            self.verify_prepared(&query.prepared_statement_handle, &caller.principal)?;
        let batches = params::read(request.into_inner()).await?;
        let expected = self
            .session_for(&caller, handle.schema.clone(), "DoPut")
            .prepare_statement(handle.source.as_statement(), None)
            .await
            .map_err(status)?
            .parameters
            .fields()
            .len();
        if let Some(batch) = batches.first() {
            check_parameters(expected, Some(batch.num_columns())).map_err(status)?;
        }
        handle.params = params::encode(&batches)?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(self.sign(
                Kind::Prepared,
                &caller.principal,
                &handle,
            )?),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request).await?;
        let handle = self.verify_prepared(&query.prepared_statement_handle, &caller.principal)?;
        let rows = params::rows(&handle.params)?;
        let session = self.session_for(&caller, handle.schema.clone(), "GetFlightInfo");
        let ticket = query.as_any().encode_to_vec();
        let prepared = match rows.first() {
            None => self.describe(&session, &handle.source, &ticket).await?,
            Some(row) => session
                .prepare_statement(handle.source.as_statement(), Some(row))
                .await
                .map_err(status)?,
        };
        let schema = result_schema(&prepared.columns, &prepared.warnings);
        Ok(Response::new(flight_info(
            &schema,
            ticket,
            request.into_inner(),
        )?))
    }

    async fn do_get_prepared_statement(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request).await?;
        let handle = self.verify_prepared(&query.prepared_statement_handle, &caller.principal)?;
        let rows = params::rows(&handle.params)?;
        self.run(
            caller,
            &request.get_ref().ticket,
            handle.source,
            handle.schema,
            rows,
        )
        .await
    }

    // Metadata

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
        self.caller(&request).await?;
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
        let caller = self.caller(&request).await?;
        let mut builder = query.into_builder();
        for schema in self
            .gateway
            .session(caller.principal)
            .listing()
            .await
            .schemas
        {
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
        let caller = self.caller(&request).await?;
        // The mesh catalog's tables are listed for every caller (their rows are governed).
        // The builder applies the request's filters to them like to any table.
        let listing = self.gateway.session(caller.principal).listing().await;
        let include_schema = query.include_schema;
        let catalog = self.gateway.catalog();
        let mut builder = query.into_builder();
        for table in listing.tables {
            // Columns are described (for JDBC and ODBC) only when the caller asked for the
            // schemas: otherwise the builder drops them, and describing every column of a
            // large mesh would be wasted work.
            let schema = if include_schema {
                table_schema(
                    &table.arrow_schema,
                    &Origin {
                        schema: &table.schema,
                        table: &table.name,
                    },
                    &catalog,
                )
            } else {
                table.arrow_schema
            };
            builder
                .append(
                    &table.catalog,
                    &table.schema,
                    &table.name,
                    table.table_type.as_str(),
                    &schema,
                )
                .map_err(|e| internal("listing tables", e))?;
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.metadata_info(request, query, &schema).await
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request).await?;
        let mut builder = query.into_builder();
        for kind in TableKind::ALL {
            builder.append(kind.as_str());
        }
        one_batch(builder.build())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request, query, &primary_keys_schema())
            .await
    }

    async fn do_get_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let caller = self.caller(&request).await?;
        let tables = self.gateway.session(caller.principal).tables().await;
        let mut catalog = StringBuilder::new();
        let mut schema = StringBuilder::new();
        let mut table_name = StringBuilder::new();
        let mut column = StringBuilder::new();
        let mut key_name = StringBuilder::new();
        let mut sequence = Int32Builder::new();
        for table in tables.iter().filter(|t| {
            matches(query.catalog.as_deref(), &t.catalog)
                && matches(query.db_schema.as_deref(), &t.schema)
                && t.name == query.table
        }) {
            for (position, name) in table.primary_key.iter().enumerate() {
                catalog.append_value(&table.catalog);
                schema.append_value(&table.schema);
                table_name.append_value(&table.name);
                column.append_value(name);
                key_name.append_null();
                sequence.append_value(i32::try_from(position + 1).unwrap_or(i32::MAX));
            }
        }
        one_batch(RecordBatch::try_new(
            primary_keys_schema(),
            vec![
                Arc::new(catalog.finish()),
                Arc::new(schema.finish()),
                Arc::new(table_name.finish()),
                Arc::new(column.finish()),
                Arc::new(key_name.finish()),
                Arc::new(sequence.finish()),
            ],
        ))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request, query, &foreign_keys_schema())
            .await
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request).await?;
        one_batch(no_foreign_keys())
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request, query, &foreign_keys_schema())
            .await
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request).await?;
        one_batch(no_foreign_keys())
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.metadata_info(request, query, &foreign_keys_schema())
            .await
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request).await?;
        one_batch(no_foreign_keys())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&self.xdbc).schema();
        self.metadata_info(request, query, &schema).await
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request).await?;
        one_batch(query.into_builder(&self.xdbc).build())
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
        self.caller(&request).await?;
        one_batch(query.into_builder(&self.sql_info).build())
    }

    // Refused: writes and transactions.

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.caller(&request).await?;
        Err(read_only("an update statement"))
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.caller(&request).await?;
        Err(read_only("an update statement"))
    }

    async fn do_put_statement_ingest(
        &self,
        _ticket: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.caller(&request).await?;
        Err(read_only("bulk ingestion"))
    }

    // Substrait plans: queries planned and enforced exactly as SQL (see the engine's
    // substrait.rs); as updates (DoPut), refused like SQL updates.

    async fn get_flight_info_substrait_plan(
        &self,
        query: CommandStatementSubstraitPlan,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = self.caller(&request).await?;
        if query.transaction_id.is_some() {
            return Err(no_transactions());
        }
        self.statement_info(caller, substrait(query.plan)?, request)
            .await
    }

    async fn do_put_substrait_plan(
        &self,
        _query: CommandStatementSubstraitPlan,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        self.caller(&request).await?;
        Err(read_only("an update plan"))
    }

    async fn do_action_create_prepared_substrait_plan(
        &self,
        query: ActionCreatePreparedSubstraitPlanRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = self.caller(&request).await?;
        if query.transaction_id.is_some() {
            return Err(no_transactions());
        }
        self.create_prepared(caller, substrait(query.plan)?).await
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        self.caller(&request).await?;
        Err(no_transactions())
    }

    async fn do_action_end_transaction(
        &self,
        _query: ActionEndTransactionRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.caller(&request).await?;
        Err(no_transactions())
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        self.caller(&request).await?;
        Err(no_transactions())
    }

    async fn do_action_end_savepoint(
        &self,
        _query: ActionEndSavepointRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        self.caller(&request).await?;
        Err(no_transactions())
    }

    // Cancellation and sessions

    async fn do_action_cancel_query(
        &self,
        query: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let caller = self.caller(&request).await?;
        let info = FlightInfo::decode(query.info.as_ref())
            .map_err(|_| invalid("CancelQuery carries a malformed FlightInfo"))?;
        let result = if self.cancel_info(&caller, info)? {
            CANCEL_RESULT_CANCELLED
        } else {
            CANCEL_RESULT_NOT_CANCELLABLE
        };
        Ok(ActionCancelQueryResult { result })
    }

    // Anything else: authenticate first (an anonymous caller learns nothing about what the
    // server understands), then say what is wrong.

    async fn get_flight_info_fallback(
        &self,
        command: Command,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.caller(&request).await?;
        let kind = command.type_url();
        Err(invalid(if kind.is_empty() {
            "the descriptor carries no Flight SQL command: meshgate answers Flight SQL commands \
             (statements, prepared statements, metadata), not paths"
                .to_string()
        } else {
            format!("`{kind}` is not a Flight SQL command meshgate knows")
        }))
    }

    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        _message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.caller(&request).await?;
        Err(invalid(
            "this ticket was not issued by meshgate: get tickets from GetFlightInfo",
        ))
    }

    async fn do_put_fallback(
        &self,
        request: Request<PeekableFlightDataStream>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        self.caller(&request).await?;
        Err(invalid(format!(
            "`{}` is not a Flight SQL command meshgate accepts in DoPut (only parameter \
             binding for prepared statements)",
            message.type_url
        )))
    }

    async fn do_exchange_fallback(
        &self,
        request: Request<Streaming<arrow_flight::FlightData>>,
    ) -> Result<Response<<Self as FlightService>::DoExchangeStream>, Status> {
        self.caller(&request).await?;
        Err(Status::unimplemented(
            "meshgate does not support DoExchange: use GetFlightInfo and DoGet",
        ))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let caller = self.caller(&request).await?;
        let action = request.get_ref();
        match action.r#type.as_str() {
            CANCEL_FLIGHT_INFO => {
                let info = CancelFlightInfoRequest::decode(action.body.as_ref())
                    .map_err(|_| invalid("CancelFlightInfo carries a malformed request"))?
                    .info
                    .ok_or_else(|| invalid("CancelFlightInfo names no FlightInfo"))?;
                let status = if self.cancel_info(&caller, info)? {
                    CancelStatus::Cancelled
                } else {
                    CancelStatus::NotCancellable
                };
                Ok(action_result(
                    CancelFlightInfoResult {
                        status: status as i32,
                    }
                    .encode_to_vec(),
                ))
            }
            SET_SESSION_OPTIONS => {
                let set = SetSessionOptionsRequest::decode(action.body.as_ref())
                    .map_err(|_| invalid("SetSessionOptions carries a malformed request"))?;
                let schemas = self
                    .gateway
                    .session(caller.principal.clone())
                    .listing()
                    .await
                    .schemas;
                let mut options = self.auth.options(&caller);
                let result = options.apply(&set, &schemas);
                self.auth.set_options(&caller, options)?;
                Ok(action_result(result.encode_to_vec()))
            }
            GET_SESSION_OPTIONS => Ok(action_result(
                self.auth.options(&caller).report().encode_to_vec(),
            )),
            CLOSE_SESSION => {
                let status = if self.auth.close(&caller) {
                    CloseSessionStatus::Closed
                } else {
                    CloseSessionStatus::NotCloseable
                };
                Ok(action_result(
                    CloseSessionResult {
                        status: status as i32,
                    }
                    .encode_to_vec(),
                ))
            }
            name if name.starts_with(crate::access::PREFIX) => Ok(action_result(
                crate::access::run(&self.gateway, &caller.principal, name, &action.body).await?,
            )),
            other => Err(invalid(format!(
                "unknown action `{other}`; ListActions names the actions this server takes"
            ))),
        }
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        let action = |name: &str, description: &str| {
            Ok(ActionType {
                r#type: name.to_string(),
                description: description.to_string(),
            })
        };
        Some(
            vec![
                action(
                    CANCEL_FLIGHT_INFO,
                    "Cancel the queries a FlightInfo's tickets started (CancelFlightInfoRequest)",
                ),
                action(
                    SET_SESSION_OPTIONS,
                    "Set session options: `catalog` (always `mesh`) and `schema`",
                ),
                action(GET_SESSION_OPTIONS, "The session's options"),
                action(
                    CLOSE_SESSION,
                    "End the session: its token stops working and its options are forgotten",
                ),
            ]
            .into_iter()
            .chain(
                meshgate_api::ACTIONS
                    .iter()
                    .map(|(name, description)| action(name, description)),
            )
            .collect(),
        )
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
