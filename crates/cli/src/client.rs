//! The CLI's Flight SQL client: how `meshgate products`, `meshgate access` and
//! `meshgate flows` talk to a running gateway as a logged-in principal. Everything goes
//! through the same Flight calls any client can make (SQL on `mesh_catalog`, the
//! `mesh.*` actions), so the CLI sees exactly what that principal may see.

use arrow::array::RecordBatch;
use arrow_flight::Action;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use meshgate::api::MeshAction;
use tonic::transport::{Channel, Endpoint};

/// A logged-in connection to a gateway.
pub struct Client {
    inner: FlightSqlServiceClient<Channel>,
}

fn flight_error(e: impl std::fmt::Display) -> String {
    let text = e.to_string();
    // tonic's status text carries the server's message after `message: "..."`.
    match text.split_once("message: \"") {
        Some((_, rest)) => rest
            .split("\", details")
            .next()
            .unwrap_or(rest)
            .replace("\\\"", "\""),
        None => text,
    }
}

impl Client {
    /// Connect to `server` (e.g. `http://127.0.0.1:50051`) and log in.
    pub async fn connect(server: &str, user: &str, password: &str) -> Result<Self, String> {
        let channel = Endpoint::from_shared(server.to_string())
            .map_err(|e| format!("bad server address `{server}`: {e}"))?
            .connect()
            .await
            .map_err(|e| format!("cannot reach the gateway at {server}: {e}"))?;
        let mut inner = FlightSqlServiceClient::new(channel);
        inner
            .handshake(user, password)
            .await
            .map_err(|e| format!("cannot log in as `{user}`: {}", flight_error(e)))?;
        Ok(Self { inner })
    }

    /// Run a `mesh.*` action of the API contract; its typed reply.
    pub async fn action<A: MeshAction>(&mut self, body: &A) -> Result<A::Reply, String> {
        let action = Action {
            r#type: A::NAME.to_string(),
            body: body.encode().map_err(|e| e.to_string())?.into(),
        };
        let results: Vec<_> = self
            .inner
            .do_action(action)
            .await
            .map_err(flight_error)?
            .try_collect()
            .await
            .map_err(flight_error)?;
        let first = results
            .first()
            .ok_or_else(|| format!("`{}` returned nothing", A::NAME))?;
        A::decode_reply(&first.body).map_err(|e| e.to_string())
    }

    /// Run a query; every batch of every endpoint.
    pub async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>, String> {
        let info = self
            .inner
            .execute(sql.to_string(), None)
            .await
            .map_err(flight_error)?;
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let ticket = endpoint
                .ticket
                .ok_or_else(|| "the gateway returned an endpoint without a ticket".to_string())?;
            let stream = self.inner.do_get(ticket).await.map_err(flight_error)?;
            let mut part: Vec<RecordBatch> = stream.try_collect().await.map_err(flight_error)?;
            batches.append(&mut part);
        }
        Ok(batches)
    }
}

/// A SQL string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
