//! The Flight SQL server's edges: TLS and mutual TLS, signed JWTs from identity providers
//! (HS256, RS256, ES256; per call, in the handshake, and as a password), bad tokens,
//! oversized and malformed requests, query limits, and the drain on shutdown.

use crate::support::flight as support;
use crate::support::pki::{Pki, certificate_authority, issue};

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arrow::array::AsArray;
use arrow::datatypes::Int64Type;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::{Action, FlightDescriptor};
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use meshgate::engine::QueryLimits;
use meshgate::flight::{FlightConfig, JwtConfig, JwtKey, PrincipalNamespace, TlsConfig};
use rcgen::{ExtendedKeyUsagePurpose, KeyPair};
use serde_json::json;
use support::{
    ENDLESS, TestServer, cancel, code, fetch, fetch_in_background, login, message, start,
};
use tonic::Code;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use zeroize::Zeroizing;

type Client = FlightSqlServiceClient<Channel>;

const COUNT_COUNTERPARTIES: &str = "SELECT count(*) FROM reference.counterparties";

/// `count(*)` as the client's principal sees it.
async fn count(client: &mut Client, sql: &str) -> Result<i64, arrow_flight::error::FlightError> {
    let info = client.execute(sql.to_string(), None).await?;
    let (_, batches) = fetch(client, &info).await?;
    let batch = batches.iter().find(|b| b.num_rows() == 1).expect("one row");
    Ok(batch.column(0).as_primitive::<Int64Type>().value(0))
}

// ---------------------------------------------------------------------------------------
// JWT

const HS_SECRET: &[u8] = b"a-shared-secret-of-at-least-32-bytes!";
const RS_PRIVATE: &str = include_str!("fixtures/jwt/rs256-private.pem");
const RS_PUBLIC: &str = include_str!("fixtures/jwt/rs256-public.pem");

pub(crate) struct Idp {
    es_private: String,
    pub(crate) issuers: Vec<JwtConfig>,
}

/// Three identity providers, one per algorithm, each mapping `roles` and `lob` claims.
pub(crate) fn idp() -> Idp {
    let es = KeyPair::generate().unwrap(); // ECDSA P-256
    let issuer = |name: &str, key: JwtKey| JwtConfig {
        issuer: name.to_string(),
        audience: "meshgate".into(),
        key,
        principal_claim: "sub".into(),
        roles_claim: Some("roles".into()),
        attribute_claims: BTreeMap::from([("lob".to_string(), "lob".to_string())]),
        leeway: Duration::from_secs(5),
        // Each issuer asserts only its own principals: `hs.*`, `rs.*`, `es.*`.
        principals: PrincipalNamespace::Prefix(format!(
            "{}.",
            name.trim_start_matches("https://")
                .split('.')
                .next()
                .unwrap()
        )),
        roles: None,
    };
    Idp {
        es_private: es.serialize_pem(),
        issuers: vec![
            issuer(
                "https://hs.idp.test",
                JwtKey::Hs256(Zeroizing::new(HS_SECRET.to_vec())),
            ),
            issuer("https://rs.idp.test", JwtKey::Rs256(RS_PUBLIC.into())),
            issuer("https://es.idp.test", JwtKey::Es256(es.public_key_pem())),
        ],
    }
}

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

pub(crate) fn claims(
    issuer: &str,
    sub: &str,
    roles: &[&str],
    lob: Option<&str>,
    exp: u64,
) -> serde_json::Value {
    let mut claims = json!({
        "iss": issuer, "aud": "meshgate", "sub": sub, "exp": exp, "iat": now(), "roles": roles,
    });
    if let Some(lob) = lob {
        claims["lob"] = lob.into();
    }
    claims
}

fn sign(algorithm: Algorithm, key: &EncodingKey, claims: &serde_json::Value) -> String {
    encode(&Header::new(algorithm), claims, key).unwrap()
}

pub(crate) fn hs256(claims: &serde_json::Value) -> String {
    sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(HS_SECRET),
        claims,
    )
}

fn rs256(claims: &serde_json::Value) -> String {
    let key = EncodingKey::from_rsa_pem(RS_PRIVATE.as_bytes()).unwrap();
    sign(Algorithm::RS256, &key, claims)
}

fn es256(idp: &Idp, claims: &serde_json::Value) -> String {
    let key = EncodingKey::from_ec_pem(idp.es_private.as_bytes()).unwrap();
    sign(Algorithm::ES256, &key, claims)
}

async fn jwt_server(idp: &Idp) -> TestServer {
    let config = FlightConfig {
        jwt: idp.issuers.clone(),
        ..FlightConfig::default()
    };
    start(config, None).await
}

async fn client(server: &TestServer) -> Client {
    FlightSqlServiceClient::new(support::channel(server.addr).await)
}

#[tokio::test]
async fn jwt_claims_become_the_principal_per_call_in_the_handshake_and_as_a_password() {
    let idp = idp();
    let server = jwt_server(&idp).await;
    let hour = now() + 3600;

    // HS256 as `authorization: Bearer <jwt>` on every call (JDBC `token=`), for a principal
    // the users file does not know: its roles and attributes come from the claims alone.
    let awm = hs256(&claims(
        "https://hs.idp.test",
        "hs.awm-analytics@bank.test",
        &["lob-system"],
        Some("AWM"),
        hour,
    ));
    let mut bearer = client(&server).await;
    bearer.set_token(awm);
    assert_eq!(
        count(&mut bearer, COUNT_COUNTERPARTIES).await.unwrap(),
        6_000
    );
    let denied = count(&mut bearer, "SELECT count(*) FROM payments.transactions")
        .await
        .unwrap_err();
    assert_eq!(code(&denied), Code::PermissionDenied);

    // RS256 as the password of user `token` (tools with only a password field).
    let risk = rs256(&claims(
        "https://rs.idp.test",
        "rs.risk-batch",
        &["firmwide-risk"],
        None,
        hour,
    ));
    let mut password = client(&server).await;
    password.handshake("token", &risk).await.unwrap();
    assert_eq!(
        count(&mut password, COUNT_COUNTERPARTIES).await.unwrap(),
        30_000
    );

    // ES256 as the password of the token's own principal.
    let ccb = es256(
        &idp,
        &claims(
            "https://es.idp.test",
            "es.ccb-scoring",
            &["lob-system"],
            Some("CCB"),
            hour,
        ),
    );
    let mut own_name = client(&server).await;
    own_name.handshake("es.ccb-scoring", &ccb).await.unwrap();
    assert_eq!(
        count(&mut own_name, COUNT_COUNTERPARTIES).await.unwrap(),
        9_000
    );

    // A user name that is neither `token` nor the token's principal is refused.
    let mut mismatch = client(&server).await;
    let refused = mismatch.handshake("risk-officer", &ccb).await.unwrap_err();
    assert!(
        refused.to_string().contains("does not match the token"),
        "{refused}"
    );

    // Static users still log in with passwords next to the identity providers.
    let mut cib = login(server.addr, "cib-reporting").await;
    assert_eq!(count(&mut cib, COUNT_COUNTERPARTIES).await.unwrap(), 15_000);
}

/// A ticket is bound to its principal's name; what a principal sees follows the token of the
/// call that redeems it. GetFlightInfo under one token plans the statement, and a DoGet under
/// another token of the same principal (other attributes) must not run that plan.
#[tokio::test]
async fn a_ticket_redeemed_under_another_token_of_its_principal_follows_that_token() {
    let idp = idp();
    let server = jwt_server(&idp).await;
    let hour = now() + 3600;
    let token = |lob: &str| {
        hs256(&claims(
            "https://hs.idp.test",
            "hs.analytics@bank.test",
            &["lob-system"],
            Some(lob),
            hour,
        ))
    };
    let mut client = client(&server).await;
    client.set_token(token("AWM"));
    let info = client
        .execute(COUNT_COUNTERPARTIES.into(), None)
        .await
        .unwrap();
    // The same principal, now with CCB's token (a new token from its identity provider).
    client.set_token(token("CCB"));
    let (_, batches) = fetch(&mut client, &info).await.unwrap();
    let batch = batches.iter().find(|b| b.num_rows() == 1).unwrap();
    assert_eq!(batch.column(0).as_primitive::<Int64Type>().value(0), 9_000);
    let metrics = server.gateway.render_metrics();
    assert!(
        metrics.contains("meshgate_drafts_total{outcome=\"replanned\"} 1"),
        "{metrics}"
    );
    // Under its own token, the ticket runs what GetFlightInfo planned.
    assert_eq!(
        count(&mut client, COUNT_COUNTERPARTIES).await.unwrap(),
        9_000
    );
    let metrics = server.gateway.render_metrics();
    assert!(
        metrics.contains("meshgate_drafts_total{outcome=\"continued\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn expired_forged_and_foreign_tokens_are_unauthenticated() {
    let idp = idp();
    let server = jwt_server(&idp).await;
    let hour = now() + 3600;
    let good = claims(
        "https://hs.idp.test",
        "hs.risk-batch",
        &["firmwide-risk"],
        None,
        hour,
    );

    let refusal = |token: String| {
        let addr = server.addr;
        async move {
            let mut client = FlightSqlServiceClient::new(support::channel(addr).await);
            client.set_token(token);
            count(&mut client, COUNT_COUNTERPARTIES).await.unwrap_err()
        }
    };

    let mut expired = good.clone();
    expired["exp"] = (now() - 600).into();
    let error = refusal(hs256(&expired)).await;
    assert_eq!(code(&error), Code::Unauthenticated);
    assert!(message(&error).contains("expired"), "{}", message(&error));

    let forged = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(b"guessed-secret-guessed-secret-guessed"),
        &good,
    );
    let mut wrong_audience = good.clone();
    wrong_audience["aud"] = "another-service".into();
    let mut unknown_issuer = good.clone();
    unknown_issuer["iss"] = "https://evil.test".into();
    // Algorithm confusion: HMAC keyed with the RSA issuer's public key.
    let mut rs_claims = good.clone();
    rs_claims["iss"] = "https://rs.idp.test".into();
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(RS_PUBLIC.as_bytes()),
        &rs_claims,
    );
    // A genuine RS256 token whose payload was edited afterwards.
    let genuine = rs256(&claims(
        "https://rs.idp.test",
        "rs.cib-bot",
        &["lob-system"],
        Some("CIB"),
        hour,
    ));
    let parts: Vec<&str> = genuine.split('.').collect();
    let edited_payload = {
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let mut payload: serde_json::Value =
            serde_json::from_slice(&engine.decode(parts[1]).unwrap()).unwrap();
        payload["roles"] = json!(["firmwide-risk"]);
        engine.encode(serde_json::to_vec(&payload).unwrap())
    };
    let tampered = format!("{}.{}.{}", parts[0], edited_payload, parts[2]);

    for (what, token) in [
        ("forged", forged),
        ("wrong audience", hs256(&wrong_audience)),
        ("unknown issuer", hs256(&unknown_issuer)),
        ("algorithm confusion", confused),
        ("tampered", tampered),
    ] {
        let error = refusal(token).await;
        assert_eq!(code(&error), Code::Unauthenticated, "{what}");
        assert!(
            message(&error).contains("not accepted"),
            "{what}: {}",
            message(&error)
        );
    }

    // Claims that name no usable principal.
    let mut spaces = good.clone();
    spaces["sub"] = "risk officer".into();
    let error = refusal(hs256(&spaces)).await;
    assert_eq!(code(&error), Code::Unauthenticated);
    assert!(message(&error).contains("claims"), "{}", message(&error));

    // A session opened with a token ends when the token does, not after the session TTL.
    let mut soon = good.clone();
    soon["exp"] = (now() + 2).into();
    let mut short = FlightSqlServiceClient::new(support::channel(server.addr).await);
    short.handshake("token", &hs256(&soon)).await.unwrap();
    assert_eq!(
        count(&mut short, COUNT_COUNTERPARTIES).await.unwrap(),
        30_000
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ended = count(&mut short, COUNT_COUNTERPARTIES).await.unwrap_err();
    assert_eq!(code(&ended), Code::Unauthenticated);
}

/// Issuers do not share one namespace: each asserts only its own principals (here `hs.*`,
/// `rs.*` and `es.*`), never a static user, an owner or another issuer's principal, and a
/// configuration where two could is refused at start.
#[tokio::test]
async fn an_issuer_asserts_only_the_principals_of_its_namespace() {
    let idp = idp();
    let server = jwt_server(&idp).await;
    let hour = now() + 3600;
    for (what, token) in [
        (
            "a static user and owner",
            hs256(&claims("https://hs.idp.test", "ref-owner", &[], None, hour)),
        ),
        (
            "another issuer's principal",
            hs256(&claims(
                "https://hs.idp.test",
                "rs.cib-bot",
                &["lob-system"],
                Some("CIB"),
                hour,
            )),
        ),
        (
            "the bare prefix",
            rs256(&claims("https://rs.idp.test", "rs.", &[], None, hour)),
        ),
    ] {
        let mut bearer = client(&server).await;
        bearer.set_token(token.clone());
        let error = count(&mut bearer, COUNT_COUNTERPARTIES).await.unwrap_err();
        assert_eq!(code(&error), Code::Unauthenticated, "{what}");
        assert!(
            message(&error).contains("namespace"),
            "{what}: {}",
            message(&error)
        );
        let mut password = client(&server).await;
        assert!(password.handshake("token", &token).await.is_err(), "{what}");
    }
    // Its own principals are fine.
    let own = hs256(&claims(
        "https://hs.idp.test",
        "hs.reporting",
        &["lob-system"],
        Some("CIB"),
        hour,
    ));
    let mut bearer = client(&server).await;
    bearer.set_token(own);
    assert_eq!(
        count(&mut bearer, COUNT_COUNTERPARTIES).await.unwrap(),
        15_000
    );

    // Overlapping namespaces do not start.
    let covering_a_user = JwtConfig {
        principals: PrincipalNamespace::Prefix("ref".into()),
        ..idp.issuers[0].clone()
    };
    let overlapping = JwtConfig {
        issuer: "https://other.idp.test".into(),
        principals: PrincipalNamespace::Prefix("hs.batch.".into()),
        ..idp.issuers[1].clone()
    };
    for (what, issuers) in [
        ("a prefix covering a static user", vec![covering_a_user]),
        (
            "two issuers asserting the same principals",
            vec![idp.issuers[0].clone(), overlapping],
        ),
    ] {
        let config = FlightConfig {
            jwt: issuers,
            ..FlightConfig::default()
        };
        let refused = meshgate::flight::MeshFlightService::new(server.gateway.clone(), &config);
        assert!(refused.is_err(), "{what}");
    }
}

#[tokio::test]
async fn without_identity_providers_a_jwt_is_just_an_unknown_token() {
    let server = start(FlightConfig::default(), None).await;
    let token = hs256(&claims(
        "https://hs.idp.test",
        "risk-batch",
        &["firmwide-risk"],
        None,
        now() + 600,
    ));
    let mut client = client(&server).await;
    client.set_token(token.clone());
    let error = count(&mut client, COUNT_COUNTERPARTIES).await.unwrap_err();
    assert_eq!(code(&error), Code::Unauthenticated);
    assert!(message(&error).contains("log in again"));
    assert!(
        client.handshake("token", &token).await.is_err(),
        "not a password of any user"
    );
}

// ---------------------------------------------------------------------------------------
// TLS

async fn tls_server(pki: &Pki, mutual: bool, required: bool) -> TestServer {
    let (cert, key) = issue(
        pki,
        &["localhost", "127.0.0.1"],
        "meshgate",
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let config = FlightConfig {
        tls: Some(TlsConfig {
            cert_pem: cert.into_bytes(),
            key_pem: Zeroizing::new(key.into_bytes()),
            client_ca_pem: mutual.then(|| pki.ca_pem.clone().into_bytes()),
            client_cert_required: required,
        }),
        ..FlightConfig::default()
    };
    start(config, None).await
}

/// A TLS connection that trusts `ca`, presenting `identity` if given.
async fn tls_client(
    server: &TestServer,
    ca: &str,
    identity: Option<&(String, String)>,
) -> Result<Client, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(cert, key));
    }
    let channel = Channel::from_shared(format!("https://localhost:{}", server.addr.port()))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await?;
    Ok(FlightSqlServiceClient::new(channel))
}

fn client_cert(pki: &Pki, name: &str) -> (String, String) {
    issue(pki, &[], name, ExtendedKeyUsagePurpose::ClientAuth)
}

/// Whether a client gets anything at all over this connection (TLS failures surface on the
/// first call, not always at connect).
async fn refused(client: Result<Client, tonic::transport::Error>) -> bool {
    match client {
        Err(_) => true,
        Ok(mut client) => client.get_catalogs().await.is_err(),
    }
}

#[tokio::test]
async fn tls_serves_password_logins_and_a_client_certificate_names_the_principal() {
    let pki = certificate_authority("meshgate test CA");
    let server = tls_server(&pki, true, false).await;

    // TLS without a client certificate: the handshake as usual.
    let mut ccb = tls_client(&server, &pki.ca_pem, None).await.unwrap();
    ccb.handshake("ccb-fraud", "ccb-fraud-pw").await.unwrap();
    assert_eq!(count(&mut ccb, COUNT_COUNTERPARTIES).await.unwrap(), 9_000);

    // ...and without credentials at all: refused, saying how to log in.
    let mut anonymous = tls_client(&server, &pki.ca_pem, None).await.unwrap();
    let error = count(&mut anonymous, COUNT_COUNTERPARTIES)
        .await
        .unwrap_err();
    assert_eq!(code(&error), Code::Unauthenticated);

    // Mutual TLS: the certificate's common name is the principal, no password needed, with
    // that user's roles and attributes.
    let cib = client_cert(&pki, "cib-reporting");
    let mut by_certificate = tls_client(&server, &pki.ca_pem, Some(&cib)).await.unwrap();
    assert_eq!(
        count(&mut by_certificate, COUNT_COUNTERPARTIES)
            .await
            .unwrap(),
        15_000
    );
    let denied = count(
        &mut by_certificate,
        "SELECT count(*) FROM payments.transactions",
    )
    .await
    .unwrap_err();
    assert_eq!(code(&denied), Code::PermissionDenied);

    // A certificate for a name the users file does not know proves nothing about roles.
    let mallory = client_cert(&pki, "mallory");
    let mut unknown = tls_client(&server, &pki.ca_pem, Some(&mallory))
        .await
        .unwrap();
    let error = count(&mut unknown, COUNT_COUNTERPARTIES).await.unwrap_err();
    assert_eq!(code(&error), Code::Unauthenticated);
    assert!(message(&error).contains("`mallory`"), "{}", message(&error));

    // A certificate from another CA does not get a connection.
    let other = certificate_authority("someone else's CA");
    let outsider = client_cert(&other, "risk-officer");
    assert!(refused(tls_client(&server, &pki.ca_pem, Some(&outsider)).await).await);

    // Neither does a client that does not trust the server, nor one speaking plain text.
    assert!(refused(tls_client(&server, &other.ca_pem, None).await).await);
    let plain = support::endpoint(server.addr).connect().await;
    let plain = plain.map(FlightSqlServiceClient::new);
    assert!(refused(plain).await);
}

#[tokio::test]
async fn a_required_client_certificate_refuses_connections_without_one() {
    let pki = certificate_authority("meshgate test CA");
    let server = tls_server(&pki, true, true).await;
    assert!(refused(tls_client(&server, &pki.ca_pem, None).await).await);
    let risk = client_cert(&pki, "risk-officer");
    let mut client = tls_client(&server, &pki.ca_pem, Some(&risk)).await.unwrap();
    assert_eq!(
        count(&mut client, COUNT_COUNTERPARTIES).await.unwrap(),
        30_000
    );
}

// ---------------------------------------------------------------------------------------
// Oversized and malformed requests

/// Before authenticating, a caller learns nothing: not the actions the server takes, not
/// how it decodes a request, not which commands exist. Everything but the handshake is
/// UNAUTHENTICATED.
#[tokio::test]
async fn anonymous_callers_get_unauthenticated_for_everything_but_the_handshake() {
    use arrow_flight::flight_service_client::FlightServiceClient;
    use arrow_flight::{Criteria, Empty, Ticket};
    let server = start(FlightConfig::default(), None).await;
    let mut anonymous = FlightServiceClient::new(support::channel(server.addr).await);
    let codes = [
        (
            "ListActions",
            anonymous
                .list_actions(Empty {})
                .await
                .err()
                .map(|s| s.code()),
        ),
        (
            "ListFlights",
            anonymous
                .list_flights(Criteria::default())
                .await
                .err()
                .map(|s| s.code()),
        ),
        (
            "GetFlightInfo with bytes that do not decode",
            anonymous
                .get_flight_info(FlightDescriptor::new_cmd(vec![0xff, 0x00, 0x13]))
                .await
                .err()
                .map(|s| s.code()),
        ),
        (
            "DoGet with a ticket that does not decode",
            anonymous
                .do_get(Ticket::new(vec![0xff, 0xff]))
                .await
                .err()
                .map(|s| s.code()),
        ),
        (
            "DoAction of a governance action",
            anonymous
                .do_action(Action {
                    r#type: "mesh.list_requests".into(),
                    body: Vec::new().into(),
                })
                .await
                .err()
                .map(|s| s.code()),
        ),
        (
            "GetSchema",
            anonymous
                .get_schema(FlightDescriptor::new_path(vec!["x".into()]))
                .await
                .err()
                .map(|s| s.code()),
        ),
    ];
    for (what, code) in codes {
        assert_eq!(code, Some(Code::Unauthenticated), "{what}");
    }
    // Logged in, the same calls are answered (the actions listed, the bytes refused as
    // malformed).
    let mut risk = login(server.addr, "risk-officer").await;
    let token = risk.token().cloned().unwrap();
    let mut request = tonic::Request::new(Empty {});
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let actions = risk.inner_mut().list_actions(request).await.unwrap();
    use futures::TryStreamExt;
    let actions: Vec<_> = actions.into_inner().try_collect().await.unwrap();
    assert!(actions.iter().any(|a| a.r#type.starts_with("mesh.")));
}

#[tokio::test]
async fn oversized_and_malformed_requests_are_refused_clearly() {
    let config = FlightConfig {
        max_message_bytes: 4 << 20,
        ..FlightConfig::default()
    };
    let server = start(config, None).await;
    let mut risk = login(server.addr, "risk-officer").await;

    // A statement over the engine's 1 MiB limit.
    let long = format!("SELECT 1 /* {} */", "x".repeat(2 << 20));
    let error = risk.execute(long, None).await.unwrap_err();
    assert_eq!(code(&error), Code::InvalidArgument);
    assert!(
        message(&error).contains("limit is 1048576"),
        "{}",
        message(&error)
    );

    // A message over the transport's limit is refused by gRPC itself.
    let huge = format!("SELECT 1 /* {} */", "x".repeat(5 << 20));
    let error = risk.execute(huge, None).await.unwrap_err();
    assert_eq!(code(&error), Code::OutOfRange, "{error:?}");

    // Results larger than tonic's 4 MiB default stream through (in ~2 MiB messages).
    let info = risk
        .execute("SELECT * FROM payments.transactions".into(), None)
        .await
        .unwrap();
    let (_, batches) = fetch(&mut risk, &info).await.unwrap();
    assert_eq!(support::row_count(&batches), 200_000);

    // Bytes that are not a Flight SQL command.
    let token = risk.token().cloned().unwrap();
    let mut request = tonic::Request::new(FlightDescriptor::new_cmd(vec![0xff, 0x00, 0x13, 0x37]));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let error = risk.inner_mut().get_flight_info(request).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");

    // A path descriptor: meshgate serves commands only.
    let mut request = tonic::Request::new(FlightDescriptor::new_path(vec!["reference".into()]));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let error = risk.inner_mut().get_flight_info(request).await.unwrap_err();
    assert_eq!(error.code(), Code::InvalidArgument, "{error:?}");
    assert!(error.message().contains("not paths"), "{}", error.message());

    // An action whose body is not the message it names.
    let error = risk
        .do_action(Action {
            r#type: "CancelFlightInfo".into(),
            body: vec![0xff, 0xff, 0xff].into(),
        })
        .await
        .unwrap_err();
    assert_eq!(code(&error), Code::InvalidArgument, "{error:?}");

    // A Basic header that is not base64, and a header that is not text.
    let mut raw = client(&server).await;
    let mut request = tonic::Request::new(FlightDescriptor::new_cmd(vec![]));
    request
        .metadata_mut()
        .insert("authorization", "Basic !!!not-base64!!!".parse().unwrap());
    let error = raw.inner_mut().get_flight_info(request).await.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated, "{error:?}");
    let mut request = tonic::Request::new(FlightDescriptor::new_cmd(vec![]));
    request
        .metadata_mut()
        .insert("authorization", "Negotiate abc".parse().unwrap());
    let error = raw.inner_mut().get_flight_info(request).await.unwrap_err();
    assert_eq!(error.code(), Code::Unauthenticated);
    assert!(error.message().contains("Basic or Bearer"));

    // The server is still fine.
    assert_eq!(
        count(&mut risk, COUNT_COUNTERPARTIES).await.unwrap(),
        30_000
    );
}

// ---------------------------------------------------------------------------------------
// Limits

#[tokio::test]
async fn a_query_over_its_time_limit_is_deadline_exceeded() {
    let limits = QueryLimits {
        timeout: Some(Duration::from_millis(1500)),
        ..QueryLimits::default()
    };
    let server = start(FlightConfig::default(), Some(limits)).await;
    let mut risk = login(server.addr, "risk-officer").await;
    let info = risk.execute(ENDLESS.into(), None).await.unwrap();
    let started = std::time::Instant::now();
    let error = fetch(&mut risk, &info).await.unwrap_err();
    assert_eq!(code(&error), Code::DeadlineExceeded, "{error:?}");
    assert!(message(&error).contains("1.5s"), "{}", message(&error));
    assert!(started.elapsed() < Duration::from_secs(30));
    // Short queries are unaffected.
    assert_eq!(
        count(&mut risk, COUNT_COUNTERPARTIES).await.unwrap(),
        30_000
    );
}

#[tokio::test]
async fn a_full_gateway_refuses_at_once_and_recovers() {
    let limits = QueryLimits {
        max_concurrent: 1,
        max_queued: 0,
        ..QueryLimits::default()
    };
    let server = start(FlightConfig::default(), Some(limits)).await;
    let mut risk = login(server.addr, "risk-officer").await;
    let mut cib = login(server.addr, "cib-reporting").await;

    let info = risk.execute(ENDLESS.into(), None).await.unwrap();
    let running = fetch_in_background(&risk, &info);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let busy = count(&mut cib, COUNT_COUNTERPARTIES).await.unwrap_err();
    assert_eq!(code(&busy), Code::ResourceExhausted, "{busy:?}");
    assert!(message(&busy).contains("retry"), "{}", message(&busy));

    // Cancelling the long query frees its slot.
    assert_eq!(
        cancel(&mut risk, &info).await.unwrap(),
        arrow_flight::CancelStatus::Cancelled
    );
    let stopped = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(code(&stopped), Code::Cancelled);
    assert_eq!(count(&mut cib, COUNT_COUNTERPARTIES).await.unwrap(), 15_000);
}

#[tokio::test]
async fn a_query_over_its_memory_limit_is_resource_exhausted_and_the_server_lives() {
    let limits = QueryLimits {
        memory: Some(4 << 20),
        ..QueryLimits::default()
    };
    let server = start(FlightConfig::default(), Some(limits)).await;
    let mut risk = login(server.addr, "risk-officer").await;
    // A hash join's build side cannot spill: 200,000 rows do not fit in 4 MiB.
    let join = "SELECT count(*) FROM payments.transactions a \
                JOIN payments.transactions b ON a.card_number = b.card_number";
    let error = count(&mut risk, join).await.unwrap_err();
    assert_eq!(code(&error), Code::ResourceExhausted, "{error:?}");
    assert!(
        message(&error).contains("memory limit of 4 MiB"),
        "{}",
        message(&error)
    );
    // Small queries still run under the same limit.
    assert_eq!(
        count(&mut risk, COUNT_COUNTERPARTIES).await.unwrap(),
        30_000
    );
}

#[tokio::test]
async fn results_far_larger_than_memory_stream_and_a_dropped_stream_frees_its_slot() {
    let limits = QueryLimits {
        memory: Some(16 << 20),
        max_concurrent: 1,
        max_queued: 0,
        ..QueryLimits::default()
    };
    let server = start(FlightConfig::default(), Some(limits)).await;
    let mut risk = login(server.addr, "risk-officer").await;
    // About 2 x 10^10 rows: the server can only ever hold a few batches of it.
    let huge = "SELECT a.txn_id, b.txn_id AS other FROM payments.transactions a \
                JOIN payments.transactions b ON a.amount < b.amount";
    let info = risk.execute(huge.into(), None).await.unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let mut stream = risk.do_get(ticket).await.unwrap();
    let mut rows = 0;
    let mut bytes = 0;
    use futures::TryStreamExt;
    while rows < 2_000_000 {
        let batch = stream.try_next().await.unwrap().expect("more rows");
        rows += batch.num_rows();
        bytes += batch.get_array_memory_size();
    }
    assert!(
        bytes > 16 << 20,
        "received {bytes} bytes, more than the memory limit"
    );
    drop(stream);

    // The only running slot comes back once the server sees the stream closed.
    let mut cib = login(server.addr, "cib-reporting").await;
    let mut answer = Err(None);
    for _ in 0..50 {
        match count(&mut cib, COUNT_COUNTERPARTIES).await {
            Ok(n) => {
                answer = Ok(n);
                break;
            }
            Err(e) if code(&e) == Code::ResourceExhausted => {
                answer = Err(Some(e));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("{e:?}"),
        }
    }
    assert_eq!(answer.map_err(|e| format!("{e:?}")), Ok(15_000));
}

// ---------------------------------------------------------------------------------------
// Shutdown

#[tokio::test]
async fn shutdown_lets_running_queries_finish_and_refuses_new_ones() {
    let config = FlightConfig {
        drain_timeout: Duration::from_secs(20),
        ..FlightConfig::default()
    };
    // A store of its own, so that the audit read at the end holds this test's queries alone.
    let (mut server, _state) = support::own_state_server(config, |_| {}).await;
    let mut risk = login(server.addr, "risk-officer").await;
    let info = risk
        .execute(COUNT_COUNTERPARTIES.into(), None)
        .await
        .unwrap();
    // Hold the query at the store, so that it is surely running when shutdown begins.
    server.lake.set_stalled(true);
    let running = fetch_in_background(&risk, &info);
    tokio::time::sleep(Duration::from_millis(300)).await;
    server.begin_shutdown();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // New work is refused: on the open connection, and on new ones.
    // (The server's GOAWAY reaches the client as a closed connection, or the call arrives
    // first and meshgate refuses it.)
    let error = risk.get_catalogs().await.unwrap_err();
    assert!(
        matches!(code(&error), Code::Unavailable | Code::Cancelled),
        "{error:?}"
    );
    let fresh = support::endpoint(server.addr).connect().await;
    if let Ok(channel) = fresh {
        let mut client = FlightSqlServiceClient::new(channel);
        assert!(
            client
                .handshake("risk-officer", "risk-officer-pw")
                .await
                .is_err()
        );
    }

    // The running query completes with its full answer.
    server.lake.set_stalled(false);
    let (_, batches) = tokio::time::timeout(Duration::from_secs(20), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let total = batches
        .iter()
        .find(|b| b.num_rows() == 1)
        .unwrap()
        .column(0)
        .as_primitive::<Int64Type>()
        .value(0);
    assert_eq!(total, 30_000);
    tokio::time::timeout(Duration::from_secs(20), server.stopped())
        .await
        .unwrap()
        .unwrap();
    // Its outcome is in the audit once the server has stopped: the store holds outcomes back
    // a moment (to commit them with other writes), and stopping writes them first.
    let audit = server
        .gateway
        .governance()
        .audit(&Default::default())
        .await
        .unwrap();
    let ran: Vec<_> = audit
        .iter()
        .filter(|a| a.record.method == "DoGet" && a.record.principal == "risk-officer")
        .map(|a| a.status.as_str())
        .collect();
    assert_eq!(ran, ["ok"]);
}

#[tokio::test]
async fn queries_still_running_after_the_drain_timeout_are_cancelled() {
    let config = FlightConfig {
        drain_timeout: Duration::from_millis(500),
        ..FlightConfig::default()
    };
    let mut server = start(config, None).await;
    let mut risk = login(server.addr, "risk-officer").await;
    let info = risk.execute(ENDLESS.into(), None).await.unwrap();
    let running = fetch_in_background(&risk, &info);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let began = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(20), server.shutdown())
        .await
        .expect("the server stops")
        .unwrap();
    assert!(began.elapsed() < Duration::from_secs(10));
    let error = tokio::time::timeout(Duration::from_secs(10), running)
        .await
        .unwrap()
        .unwrap()
        .unwrap_err();
    assert_eq!(code(&error), Code::Cancelled, "{error:?}");
    assert!(message(&error).contains("shut"), "{}", message(&error));
}
