//! Serve Flight SQL from your own application, over TLS, to callers who bring a JWT from
//! your identity provider. The example makes a throwaway certificate authority and server
//! certificate (rcgen) and an HS256 issuer, serves the reference mesh on a free port, and
//! queries it as a service whose token the issuer signed: the gateway maps the token's
//! `sub` to the principal `cib-reporting` and its `lob` claim to the attribute row filters
//! use, so the service sees its own line of business only. A token signed with another
//! secret is refused.
//!
//! ```text
//! cargo run -p meshgate --example serve_tls_jwt
//! ```
//!
//! `meshgate serve --config meshgate.toml` does the same from `[tls]` and `[[auth.jwt]]`.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use jsonwebtoken::{EncodingKey, Header};
use meshgate::Gateway;
use meshgate::flight::{FlightConfig, JwtConfig, JwtKey, PrincipalNamespace, TlsConfig};
use meshgate_reference as reference;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
};
use tonic::transport::{Certificate, Channel, ClientTlsConfig};

type Error = Box<dyn std::error::Error>;

/// The secret shared with the identity provider. Never in the source of a real deployment:
/// `[[auth.jwt]] secret_env` names the variable that holds it.
const SECRET: &[u8] = b"an example secret shared with the identity provider";

const ISSUER: &str = "https://idp.example";

#[tokio::main]
async fn main() -> Result<(), Error> {
    let (ca_pem, cert_pem, key_pem) = certificates()?;
    let config = FlightConfig {
        tls: Some(TlsConfig {
            cert_pem: cert_pem.into_bytes(),
            key_pem: key_pem.into_bytes().into(),
            client_ca_pem: None,
            client_cert_required: false,
        }),
        jwt: vec![JwtConfig {
            issuer: ISSUER.into(),
            audience: "meshgate".into(),
            key: JwtKey::Hs256(SECRET.to_vec().into()),
            principal_claim: "sub".into(),
            roles_claim: None,
            attribute_claims: BTreeMap::from([("lob".to_string(), "lob".to_string())]),
            leeway: Duration::from_secs(30),
            // The issuer may assert exactly this principal: its service account.
            principals: PrincipalNamespace::Mapping(BTreeMap::from([(
                "svc-cib-report".to_string(),
                "cib-reporting".to_string(),
            )])),
            roles: Some(Default::default()),
        }],
        ..FlightConfig::default()
    };

    let demo = reference::demo(&reference::default_data_dir()).await?;
    let gateway = Gateway::open(demo.config).await?;
    let listener = meshgate::flight::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(meshgate::flight::serve(gateway, listener, config, async {
        let _ = stopped.await;
    }));
    println!("serving Flight SQL over TLS on localhost:{port}");

    let sql = "SELECT lob, count(*) AS n FROM reference.counterparties GROUP BY lob";
    let batches = query(port, &ca_pem, &token(SECRET)?, sql).await?;
    println!("svc-cib-report:\n{}", pretty_format_batches(&batches)?);
    let lobs = pretty_format_batches(&batches)?.to_string();
    if !lobs.contains("CIB") || lobs.contains("CCB") || lobs.contains("AWM") {
        return Err("the token's lob claim did not limit the rows to CIB".into());
    }
    match query(port, &ca_pem, &token(b"a guessed secret")?, sql).await {
        Ok(_) => return Err("a token signed with another secret was accepted".into()),
        Err(e) => println!("forged token: {e}"),
    }

    let _ = stop.send(());
    server.await??;
    Ok(())
}

/// A certificate authority, and a server certificate for `localhost` it signed (PEM).
fn certificates() -> Result<(String, String, String), Error> {
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "example CA");
    let ca_key = KeyPair::generate()?;
    let ca_pem = ca.self_signed(&ca_key)?.pem();
    let issuer = Issuer::new(ca, ca_key);
    let mut server = CertificateParams::new(vec!["localhost".to_string()])?;
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = server.signed_by(&key, &issuer)?;
    Ok((ca_pem, cert.pem(), key.serialize_pem()))
}

/// The token the identity provider would issue to the service, valid for five minutes.
fn token(secret: &[u8]) -> Result<String, Error> {
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let claims = serde_json::json!({
        "iss": ISSUER, "aud": "meshgate", "sub": "svc-cib-report", "lob": "CIB",
        "iat": now, "exp": now + 300,
    });
    Ok(jsonwebtoken::encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(secret),
    )?)
}

/// Run `sql` over TLS (trusting `ca_pem`) with `token` as the bearer credential.
async fn query(port: u16, ca_pem: &str, token: &str, sql: &str) -> Result<Vec<RecordBatch>, Error> {
    let tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca_pem))
        .domain_name("localhost");
    let channel = Channel::from_shared(format!("https://localhost:{port}"))?
        .tls_config(tls)?
        .connect()
        .await?;
    let mut client = FlightSqlServiceClient::new(channel);
    client.set_token(token.to_string());
    let info = client.execute(sql.to_string(), None).await?;
    let mut batches = Vec::new();
    for endpoint in info.endpoint {
        let ticket = endpoint.ticket.ok_or("an endpoint without a ticket")?;
        let mut part: Vec<RecordBatch> = client.do_get(ticket).await?.try_collect().await?;
        batches.append(&mut part);
    }
    Ok(batches)
}
