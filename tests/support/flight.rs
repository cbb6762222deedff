//! A Flight SQL server over the reference mesh for integration tests: real gRPC on a free
//! port, a real S3 server behind it, and clients as drivers use them.

#![allow(dead_code)] // each test binary uses a different part

use std::net::SocketAddr;
use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow_flight::error::FlightError;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightInfo,
};
use futures::TryStreamExt;
use meshgate::Gateway;
use meshgate::engine::QueryLimits;
use meshgate::flight::{FlightConfig, ServeError};
use meshgate_lake_server::LakeServer;
use meshgate_reference as reference;
use prost::Message;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tonic::Code;
use tonic::transport::{Channel, Endpoint};

/// A query that runs until it is stopped (a self-join of 200,000 rows on inequality).
pub const ENDLESS: &str = "SELECT count(*) FROM payments.transactions a \
                           JOIN payments.transactions b ON a.amount < b.amount";

pub struct TestServer {
    pub addr: SocketAddr,
    pub lake: LakeServer,
    /// The gateway the server serves (a clone shares its state: reload policies here).
    pub gateway: Gateway,
    stop: Option<oneshot::Sender<()>>,
    done: Option<JoinHandle<Result<(), ServeError>>>,
}

impl TestServer {
    /// Ask the server to shut down and wait until it has.
    pub async fn shutdown(&mut self) -> Result<(), ServeError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        match self.done.take() {
            Some(done) => done.await.expect("server task"),
            None => Ok(()),
        }
    }

    /// Start shutting down without waiting.
    pub fn begin_shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }

    /// Wait for a shutdown begun earlier.
    pub async fn stopped(&mut self) -> Result<(), ServeError> {
        match self.done.take() {
            Some(done) => done.await.expect("server task"),
            None => Ok(()),
        }
    }
}

/// The reference mesh over Flight SQL, with `flight` settings and optional query limits.
pub async fn start(flight: FlightConfig, limits: Option<QueryLimits>) -> TestServer {
    start_with(flight, |config| {
        if let Some(limits) = limits {
            config.limits = limits;
        }
    })
    .await
}

/// A Flight SQL server over the reference mesh with a governance store of its own (and the
/// directory holding it), so that grants and audit records are this test's alone.
pub async fn own_state_server(
    flight: FlightConfig,
    edit: impl FnOnce(&mut meshgate::GatewayConfig),
) -> (TestServer, tempfile::TempDir) {
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("meshgate.db");
    let server = start_with(flight, |config| {
        config.governance = meshgate::Governance::Sqlite(db);
        edit(config);
    })
    .await;
    (server, state)
}

/// [`start`] with the gateway's configuration adjusted by `edit` first (its own governance
/// store, lineage, limits...).
pub async fn start_with(
    flight: FlightConfig,
    edit: impl FnOnce(&mut meshgate::GatewayConfig),
) -> TestServer {
    let data = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reference-mesh");
    let mut demo = reference::demo(&data).await.unwrap();
    edit(&mut demo.config);
    let gateway = Gateway::open(demo.config).await.unwrap();
    let listener = meshgate::flight::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let done = tokio::spawn(meshgate::flight::serve(
        gateway.clone(),
        listener,
        flight,
        async {
            let _ = stopped.await;
        },
    ));
    TestServer {
        addr,
        lake: demo.lake,
        gateway,
        stop: Some(stop),
        done: Some(done),
    }
}

/// The default server.
pub async fn default_server() -> TestServer {
    start(FlightConfig::default(), None).await
}

pub fn endpoint(addr: SocketAddr) -> Endpoint {
    Channel::from_shared(format!("http://{addr}")).unwrap()
}

pub async fn channel(addr: SocketAddr) -> Channel {
    endpoint(addr).connect().await.unwrap()
}

/// A Flight SQL client logged in as `user` (demo password `<user>-pw`).
pub async fn login(addr: SocketAddr, user: &str) -> FlightSqlServiceClient<Channel> {
    let mut client = FlightSqlServiceClient::new(channel(addr).await);
    client.handshake(user, &format!("{user}-pw")).await.unwrap();
    client
}

/// Redeem a FlightInfo's single ticket: the streamed schema and batches.
pub async fn fetch(
    client: &mut FlightSqlServiceClient<Channel>,
    info: &FlightInfo,
) -> Result<(SchemaRef, Vec<RecordBatch>), FlightError> {
    assert_eq!(info.endpoint.len(), 1);
    assert!(
        info.endpoint[0].location.is_empty(),
        "no locations: reuse the connection"
    );
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = client.do_get(ticket).await?;
    let mut batches = Vec::new();
    while let Some(batch) = stream.try_next().await? {
        batches.push(batch);
    }
    let schema = stream.schema().cloned().expect("a schema message");
    Ok((schema, batches))
}

/// Redeem a FlightInfo's ticket in the background, as a client that keeps reading.
pub fn fetch_in_background(
    client: &FlightSqlServiceClient<Channel>,
    info: &FlightInfo,
) -> JoinHandle<Result<(SchemaRef, Vec<RecordBatch>), FlightError>> {
    let (mut client, info) = (client.clone(), info.clone());
    tokio::spawn(async move { fetch(&mut client, &info).await })
}

/// The CancelFlightInfo action for `info`.
pub async fn cancel(
    client: &mut FlightSqlServiceClient<Channel>,
    info: &FlightInfo,
) -> Result<CancelStatus, FlightError> {
    let request = CancelFlightInfoRequest {
        info: Some(info.clone()),
    };
    let mut results = client
        .do_action(Action {
            r#type: "CancelFlightInfo".into(),
            body: request.encode_to_vec().into(),
        })
        .await?;
    let result = results.try_next().await?.expect("one result");
    let result =
        CancelFlightInfoResult::decode(result.body.as_ref()).expect("a CancelFlightInfoResult");
    Ok(CancelStatus::try_from(result.status).expect("a known status"))
}

/// The handle of a prepared statement as a client sees it on the wire (the
/// CreatePreparedStatement action's answer), to replay it elsewhere.
pub async fn prepared_handle(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> bytes::Bytes {
    use arrow_flight::sql::ProstMessageExt;
    let create = client
        .do_action(Action {
            r#type: "CreatePreparedStatement".into(),
            body: arrow_flight::sql::ActionCreatePreparedStatementRequest {
                query: sql.into(),
                transaction_id: None,
            }
            .as_any()
            .encode_to_vec()
            .into(),
        })
        .await
        .unwrap()
        .try_next()
        .await
        .unwrap()
        .unwrap();
    let result: arrow_flight::sql::ActionCreatePreparedStatementResult =
        arrow_flight::sql::Any::decode(create.body.as_ref())
            .unwrap()
            .unpack()
            .unwrap()
            .unwrap();
    result.prepared_statement_handle
}

pub fn row_count(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

/// A GetTables answer with `include_schema`: `schema.table` and its decoded Arrow schema,
/// per row.
pub fn table_schemas(batches: &[RecordBatch]) -> Vec<(String, arrow::datatypes::Schema)> {
    use arrow::array::AsArray;
    let mut out = Vec::new();
    for batch in batches {
        let column = |name: &str| batch.column_by_name(name).expect(name);
        let schemas = column("db_schema_name").as_string::<i32>();
        let tables = column("table_name").as_string::<i32>();
        let encoded = column("table_schema").as_binary::<i32>();
        for row in 0..batch.num_rows() {
            let schema =
                arrow::ipc::convert::try_schema_from_ipc_buffer(encoded.value(row)).unwrap();
            out.push((
                format!("{}.{}", schemas.value(row), tables.value(row)),
                schema,
            ));
        }
    }
    out
}

/// The gRPC status code behind a client error.
pub fn code(error: &FlightError) -> Code {
    match error {
        FlightError::Tonic(status) => status.code(),
        other => panic!("not a gRPC status: {other:?}"),
    }
}

/// The message of the gRPC status behind a client error.
pub fn message(error: &FlightError) -> String {
    match error {
        FlightError::Tonic(status) => status.message().to_string(),
        other => other.to_string(),
    }
}
