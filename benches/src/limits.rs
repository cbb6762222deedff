//! The physical limits the scan and transfer figures are given as fractions of: reading
//! the files' bytes (local disk through `object_store`, and the in-process S3 server), and
//! a Flight `DoGet` of batches already in memory (transport alone: no planning, no scan).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::{
    Action, ActionType, Criteria, Empty, FlightData, FlightDescriptor, FlightInfo,
    HandshakeRequest, HandshakeResponse, PollInfo, PutResult, SchemaResult, Ticket,
};
use futures::{Stream, TryStreamExt};
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use tonic::{Request, Response, Status, Streaming};

use crate::BenchError;
use crate::engines::{Engine, MAX_MESSAGE_BYTES};
use crate::tpch::{BUCKET, TABLES, TpchData};

/// Read every table's file in full through `store` (keys relative to the bucket);
/// returns bytes and elapsed time.
pub async fn read_all(store: &dyn ObjectStore) -> Result<(u64, Duration), BenchError> {
    let started = Instant::now();
    let mut bytes = 0u64;
    for table in TABLES {
        let key = ObjectPath::from(format!("data/{table}/part-00000.parquet"));
        let body = store
            .get(&key)
            .await
            .map_err(|e| BenchError::Query(format!("GET {key}: {e}")))?
            .bytes()
            .await
            .map_err(|e| BenchError::Query(format!("GET {key}: {e}")))?;
        bytes += body.len() as u64;
    }
    Ok((bytes, started.elapsed()))
}

/// The bucket directory as a local object store.
pub fn local_store(data: &TpchData) -> Result<LocalFileSystem, BenchError> {
    LocalFileSystem::new_with_prefix(data.lake.join(BUCKET))
        .map_err(|e| BenchError::setup("local store")(e.to_string()))
}

/// The bucket through the S3 server, with the gateway's read-only key.
pub fn s3_store(endpoint: &str) -> Result<Arc<dyn ObjectStore>, BenchError> {
    meshgate_reference::s3_store(
        endpoint,
        BUCKET,
        crate::mesh::READER_KEY,
        crate::mesh::READER_SECRET,
    )
    .map_err(|e| BenchError::setup("S3 store")(e.to_string()))
}

/// A Flight server whose every `DoGet` streams the same batches from memory, encoded the
/// way arrow-flight encodes (the gateway's encoder and message size).
struct Transport {
    batches: Arc<Vec<RecordBatch>>,
}

type Boxed<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

fn unused<T>() -> Result<T, Status> {
    Err(Status::unimplemented("transport benchmark: DoGet only"))
}

#[tonic::async_trait]
impl FlightService for Transport {
    type HandshakeStream = Boxed<HandshakeResponse>;
    type ListFlightsStream = Boxed<FlightInfo>;
    type DoGetStream = Boxed<FlightData>;
    type DoPutStream = Boxed<PutResult>;
    type DoExchangeStream = Boxed<FlightData>;
    type DoActionStream = Boxed<arrow_flight::Result>;
    type ListActionsStream = Boxed<ActionType>;

    async fn handshake(
        &self,
        _: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        unused()
    }
    async fn list_flights(
        &self,
        _: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        unused()
    }
    async fn get_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        unused()
    }
    async fn poll_flight_info(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        unused()
    }
    async fn get_schema(
        &self,
        _: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        unused()
    }
    async fn do_get(&self, _: Request<Ticket>) -> Result<Response<Self::DoGetStream>, Status> {
        let batches = Arc::clone(&self.batches);
        let input = futures::stream::iter((0..batches.len()).map(move |i| Ok(batches[i].clone())));
        let stream = FlightDataEncoderBuilder::new()
            .build(input)
            .map_err(|e| Status::internal(e.to_string()));
        Ok(Response::new(Box::pin(stream)))
    }
    async fn do_put(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        unused()
    }
    async fn do_exchange(
        &self,
        _: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        unused()
    }
    async fn do_action(
        &self,
        _: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        unused()
    }
    async fn list_actions(
        &self,
        _: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        unused()
    }
}

/// Serve `batches` for the transport limit, and a client of it: each run is one `DoGet` of
/// them all over the same connection, decoded (see [`Engine::Transport`]).
pub async fn transport(batches: Vec<RecordBatch>) -> Result<Engine, BenchError> {
    let addr = serve_transport(batches).await?;
    Ok(Engine::Transport(
        crate::engines::flight_service_client(addr).await?,
    ))
}

async fn serve_transport(batches: Vec<RecordBatch>) -> Result<SocketAddr, BenchError> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| BenchError::setup("transport server")(e.to_string()))?;
    let addr = listener
        .local_addr()
        .map_err(|e| BenchError::setup("transport server")(e.to_string()))?;
    let service = FlightServiceServer::new(Transport {
        batches: Arc::new(batches),
    })
    .max_encoding_message_size(MAX_MESSAGE_BYTES)
    .max_decoding_message_size(MAX_MESSAGE_BYTES);
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    tokio::spawn(async move {
        if let Err(e) = tonic::transport::Server::builder()
            .add_service(service)
            .serve_with_incoming(incoming)
            .await
        {
            eprintln!("transport server stopped: {e}");
        }
    });
    Ok(addr)
}
