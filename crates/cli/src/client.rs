//! The CLI's Flight SQL client: how `meshgate products`, `access`, `flows` and `sql` talk to a
//! running gateway as a logged-in principal. Everything goes through the same Flight calls
//! any client can make (SQL, `mesh_catalog`, the `mesh.*` actions), so the CLI sees exactly
//! what that principal may see. Errors are the server's own message
//! ([`tonic::Status::message`]), never tonic's debug rendering of it.

use std::path::PathBuf;

use arrow::array::RecordBatch;
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{CommandStatementQuery, ProstMessageExt};
use arrow_flight::{Action, FlightDescriptor, HandshakeRequest, Ticket};
use futures::{StreamExt, TryStreamExt};
use meshgate::api::MeshAction;
use prost::Message;
use tonic::metadata::MetadataValue;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};
use tonic::{Request, Status};

/// Where the gateway is and how to reach it.
#[derive(Debug, Clone)]
pub struct Target {
    pub server: String,
    /// TLS even if the address does not say so (`--tls`).
    pub tls: bool,
    /// Trust this CA (PEM) instead of the system's roots.
    pub ca: Option<PathBuf>,
    /// A client certificate and its key (PEM), for mutual TLS.
    pub identity: Option<(PathBuf, PathBuf)>,
}

/// Who the client acts as.
#[derive(Debug, Clone)]
pub enum Credentials {
    Password {
        user: String,
        password: String,
    },
    /// A bearer token: an identity provider's JWT, or a session token.
    Token(String),
    /// The client certificate names the principal (mutual TLS).
    Certificate,
}

/// `server` as a URI tonic can dial, and whether it asks for TLS: `host:port`,
/// `http(s)://host:port`, and the Flight URIs `grpc://`, `grpc+tcp://`, `grpc+tls://`.
pub fn endpoint_uri(server: &str, tls: bool) -> Result<(String, bool), String> {
    let (rest, scheme_tls) = match server.split_once("://") {
        None => (server, false),
        Some(("http" | "grpc" | "grpc+tcp", rest)) => (rest, false),
        Some(("https" | "grpc+tls", rest)) => (rest, true),
        Some((scheme, _)) => {
            return Err(format!(
                "`{server}`: unknown scheme `{scheme}`; use host:port, grpc://, grpc+tls://, http:// or https://"
            ));
        }
    };
    let rest = rest.trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') {
        return Err(format!("`{server}` is not an address: give host:port"));
    }
    let tls = tls || scheme_tls;
    Ok((
        format!("{}://{rest}", if tls { "https" } else { "http" }),
        tls,
    ))
}

/// A logged-in connection to a gateway.
pub struct Client {
    inner: FlightServiceClient<Channel>,
    token: Option<String>,
    tls: bool,
}

impl Client {
    /// A failed call's text. A status the server sent has no source; one made here from a
    /// connection that broke does: it gets its causes, and, on a plain connection, the hint
    /// that the gateway may serve TLS (a plain HTTP/2 client reads a TLS server's reply as a
    /// malformed frame).
    fn failed(&self, status: &Status) -> String {
        let Some(source) = std::error::Error::source(status) else {
            return status_text(status);
        };
        let hint = if self.tls {
            ""
        } else {
            " (if the gateway serves TLS, add --tls or use a grpc+tls:// address)"
        };
        format!(
            "the connection to the gateway failed: {}{hint}",
            transport_text(source)
        )
    }
}

/// The text of a server's refusal: its message, or its code when it gave none.
pub fn status_text(status: &Status) -> String {
    let message = status.message().trim();
    if message.is_empty() {
        format!("{:?}", status.code())
    } else {
        message.to_string()
    }
}

fn flight_text(error: FlightError) -> String {
    match error {
        FlightError::Tonic(status) => status_text(&status),
        other => other.to_string(),
    }
}

/// A transport error with its causes ("connection refused", "invalid peer certificate"):
/// tonic's own text is only "transport error".
fn transport_text(error: &(dyn std::error::Error + 'static)) -> String {
    let mut parts = vec![error.to_string()];
    let mut source = error.source();
    while let Some(e) = source {
        let text = e.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = e.source();
    }
    parts.join(": ")
}

fn read(path: &PathBuf, what: &str) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {what} {}: {e}", path.display()))
}

impl Client {
    /// Connect to `target` and log in with `credentials`.
    pub async fn connect(target: &Target, credentials: &Credentials) -> Result<Self, String> {
        let (uri, tls) = endpoint_uri(&target.server, target.tls)?;
        let mut endpoint = Endpoint::from_shared(uri.clone())
            .map_err(|e| format!("bad server address `{}`: {e}", target.server))?;
        if tls {
            let mut config = ClientTlsConfig::new();
            config = match &target.ca {
                Some(ca) => {
                    config.ca_certificate(Certificate::from_pem(read(ca, "the CA certificate")?))
                }
                None => config.with_native_roots(),
            };
            if let Some((cert, key)) = &target.identity {
                config = config.identity(Identity::from_pem(
                    read(cert, "the client certificate")?,
                    read(key, "the client key")?,
                ));
            }
            endpoint = endpoint
                .tls_config(config)
                .map_err(|e| format!("TLS settings: {}", transport_text(&e)))?;
        } else if target.ca.is_some() || target.identity.is_some() {
            return Err(format!(
                "`--ca` and `--cert` need TLS: use `--tls` or a grpc+tls:// address (not {uri})"
            ));
        }
        // A refused or unreachable connection is not about TLS: a plain client reaching a
        // TLS port connects, and its first call fails (see `failed`).
        let channel = endpoint.connect().await.map_err(|e| {
            format!(
                "cannot reach the gateway at {}: {}",
                target.server,
                transport_text(&e)
            )
        })?;
        let mut client = Self {
            inner: FlightServiceClient::new(channel),
            token: None,
            tls,
        };
        match credentials {
            Credentials::Password { user, password } => client.handshake(user, password).await?,
            Credentials::Token(token) => client.token = Some(token.clone()),
            Credentials::Certificate => {}
        }
        Ok(client)
    }

    /// Is a gateway answering at `target`? One Flight call without credentials: any answer
    /// the server itself gives (a refusal included) means it serves; a broken or refused
    /// connection means it does not. For health checks (the Dockerfile's HEALTHCHECK).
    pub async fn probe(target: &Target) -> Result<(), String> {
        let mut client = Self::connect(target, &Credentials::Certificate).await?;
        let request = client.request(arrow_flight::Criteria::default())?;
        match client.inner.list_flights(request).await {
            Ok(_) => Ok(()),
            Err(status) if std::error::Error::source(&status).is_none() => Ok(()),
            Err(status) => Err(client.failed(&status)),
        }
    }

    /// Basic credentials in, a session token out (Flight SQL's handshake).
    async fn handshake(&mut self, user: &str, password: &str) -> Result<(), String> {
        use base64::Engine;
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut request = Request::new(futures::stream::iter([HandshakeRequest::default()]));
        let value = MetadataValue::try_from(format!("Basic {basic}"))
            .map_err(|_| "the user name or password cannot be sent in a header".to_string())?;
        request.metadata_mut().insert("authorization", value);
        let response = self
            .inner
            .handshake(request)
            .await
            .map_err(|s| format!("cannot log in as `{user}`: {}", self.failed(&s)))?;
        let token = response
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string)
            .ok_or_else(|| "the gateway's handshake returned no session token".to_string())?;
        self.token = Some(token);
        Ok(())
    }

    fn request<T>(&self, message: T) -> Result<Request<T>, String> {
        let mut request = Request::new(message);
        if let Some(token) = &self.token {
            let value = MetadataValue::try_from(format!("Bearer {token}"))
                .map_err(|_| "the token cannot be sent in a header".to_string())?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }

    /// Run a `mesh.*` action of the API contract; its typed reply.
    pub async fn action<A: MeshAction>(&mut self, body: &A) -> Result<A::Reply, String> {
        let action = Action {
            r#type: A::NAME.to_string(),
            body: body.encode().map_err(|e| e.to_string())?.into(),
        };
        let request = self.request(action)?;
        let results: Vec<_> = self
            .inner
            .do_action(request)
            .await
            .map_err(|s| self.failed(&s))?
            .into_inner()
            .try_collect()
            .await
            .map_err(|s| self.failed(&s))?;
        let first = results
            .first()
            .ok_or_else(|| format!("`{}` returned nothing", A::NAME))?;
        A::decode_reply(&first.body).map_err(|e| e.to_string())
    }

    /// Run a query; every batch of every endpoint.
    pub async fn query(&mut self, sql: &str) -> Result<Vec<RecordBatch>, String> {
        let command = CommandStatementQuery {
            query: sql.to_string(),
            transaction_id: None,
        };
        let descriptor = FlightDescriptor::new_cmd(command.as_any().encode_to_vec());
        let request = self.request(descriptor)?;
        let info = self
            .inner
            .get_flight_info(request)
            .await
            .map_err(|s| self.failed(&s))?
            .into_inner();
        let mut batches = Vec::new();
        for endpoint in info.endpoint {
            let ticket: Ticket = endpoint
                .ticket
                .ok_or_else(|| "the gateway returned an endpoint without a ticket".to_string())?;
            let request = self.request(ticket)?;
            let stream = self
                .inner
                .do_get(request)
                .await
                .map_err(|s| self.failed(&s))?
                .into_inner()
                .map(|r| r.map_err(FlightError::from));
            let mut part: Vec<RecordBatch> = FlightRecordBatchStream::new_from_flight_data(stream)
                .try_collect()
                .await
                .map_err(flight_text)?;
            batches.append(&mut part);
        }
        Ok(batches)
    }
}

/// A SQL string literal.
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_take_every_form_people_write() {
        let uri = |s: &str, tls: bool| endpoint_uri(s, tls).unwrap();
        assert_eq!(
            uri("127.0.0.1:50051", false),
            ("http://127.0.0.1:50051".into(), false)
        );
        assert_eq!(
            uri("gw.example:443", true),
            ("https://gw.example:443".into(), true)
        );
        assert_eq!(uri("grpc://h:1", false), ("http://h:1".into(), false));
        assert_eq!(uri("grpc+tcp://h:1/", false), ("http://h:1".into(), false));
        assert_eq!(uri("grpc+tls://h:1", false), ("https://h:1".into(), true));
        assert_eq!(uri("https://h:1", false), ("https://h:1".into(), true));
        assert!(
            endpoint_uri("ftp://h:1", false)
                .unwrap_err()
                .contains("unknown scheme")
        );
        assert!(endpoint_uri("http://h:1/path", false).is_err());
    }

    #[test]
    fn a_refusal_reads_as_the_servers_message() {
        let status =
            Status::permission_denied("permission denied: `x` may not read \"y\"\nsecond line");
        assert_eq!(
            status_text(&status),
            "permission denied: `x` may not read \"y\"\nsecond line"
        );
        assert_eq!(status_text(&Status::unavailable("")), "Unavailable");
    }
}
