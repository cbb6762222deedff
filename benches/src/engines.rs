//! One way to run a query: in process (DataFusion or a meshgate session) or over Flight SQL
//! with the same client for every server.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use datafusion::prelude::SessionContext;
use futures::TryStreamExt;
use meshgate::Session;
use meshgate::storage::io::ProductIo;
use tonic::transport::{Channel, Endpoint};

use crate::BenchError;

/// The largest message the benchmark client accepts (the gateway's default, too).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// A query's answer and what it cost.
pub struct Outcome {
    pub batches: Vec<RecordBatch>,
    pub elapsed: Duration,
    /// Storage requests (meshgate in process only: it counts them per query).
    pub io: Option<ProductIo>,
}

impl Outcome {
    /// Arrow bytes of the answer (see [`arrow_bytes`]).
    pub fn bytes(&self) -> usize {
        self.batches.iter().map(arrow_bytes).sum()
    }
}

#[derive(Clone)]
pub enum Engine {
    DataFusion(SessionContext),
    Meshgate(Session),
    Flight(FlightSqlServiceClient<Channel>),
    /// A plain Flight server streaming batches it holds in memory (see
    /// `limits::transport`): the transfer alone, through the same encoder and client.
    Transport(FlightServiceClient<Channel>),
}

impl Engine {
    /// Run `sql` to the last batch; the clock covers planning, execution and transfer.
    pub async fn run(&self, sql: &str) -> Result<Outcome, BenchError> {
        let started = Instant::now();
        let (batches, io) = match self {
            Engine::DataFusion(ctx) => {
                let frame = ctx.sql(sql).await.map_err(query_error)?;
                (frame.collect().await.map_err(query_error)?, None)
            }
            Engine::Meshgate(session) => {
                let query = session.query(sql).await.map_err(query_error)?;
                let batches = query.collect().await.map_err(query_error)?;
                (batches, Some(query.io_report().total()))
            }
            Engine::Flight(client) => (flight_query(client.clone(), sql).await?, None),
            Engine::Transport(client) => (do_get_all(client.clone()).await?, None),
        };
        Ok(Outcome {
            batches,
            elapsed: started.elapsed(),
            io,
        })
    }
}

/// The bytes a batch's values occupy, counted the same way whether the batch was built in
/// memory or decoded from Flight (where every array slices one shared message buffer, so
/// `get_array_memory_size` would count that buffer once per column).
pub fn arrow_bytes(batch: &RecordBatch) -> usize {
    batch
        .columns()
        .iter()
        .map(|c| c.to_data().get_slice_memory_size().unwrap_or(0))
        .sum()
}

fn query_error(e: impl std::fmt::Display) -> BenchError {
    BenchError::Query(e.to_string())
}

/// A Flight SQL client as drivers configure one: large messages accepted, optionally
/// logged in with a password.
pub async fn flight_client(
    addr: SocketAddr,
    login: Option<(&str, &str)>,
) -> Result<FlightSqlServiceClient<Channel>, BenchError> {
    let mut client = FlightSqlServiceClient::new_from_inner(flight_service_client(addr).await?);
    if let Some((user, password)) = login {
        client
            .handshake(user, password)
            .await
            .map_err(|e| BenchError::setup("Flight login")(e.to_string()))?;
    }
    Ok(client)
}

/// A plain Flight client accepting large messages.
pub async fn flight_service_client(
    addr: SocketAddr,
) -> Result<FlightServiceClient<Channel>, BenchError> {
    let channel = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|e| BenchError::setup("Flight client")(e.to_string()))?
        .tcp_nodelay(true)
        .connect()
        .await
        .map_err(|e| BenchError::setup("Flight client")(e.to_string()))?;
    Ok(FlightServiceClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// One `DoGet` with an empty ticket, decoded to batches.
async fn do_get_all(
    mut client: FlightServiceClient<Channel>,
) -> Result<Vec<RecordBatch>, BenchError> {
    let response = client
        .do_get(arrow_flight::Ticket::default())
        .await
        .map_err(query_error)?;
    let stream = response
        .into_inner()
        .map_err(arrow_flight::error::FlightError::from);
    arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(stream)
        .try_collect()
        .await
        .map_err(query_error)
}

/// `GetFlightInfo` for the statement, then `DoGet` of every endpoint's ticket.
async fn flight_query(
    mut client: FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Vec<RecordBatch>, BenchError> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(query_error)?;
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let Some(ticket) = endpoint.ticket else {
            return Err(BenchError::Query("an endpoint without a ticket".into()));
        };
        let mut stream = client.do_get(ticket).await.map_err(query_error)?;
        while let Some(batch) = stream.try_next().await.map_err(query_error)? {
            batches.push(batch);
        }
    }
    Ok(batches)
}
