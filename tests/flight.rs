//! The Flight SQL server over real gRPC: authentication, status codes, ticket binding, and
//! schema agreement between GetFlightInfo and DoGet. (The Python tests drive the same server
//! with the ADBC driver; these check protocol details a driver hides.)

use crate::support::flight as support;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Schema};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::{
    Any, CommandGetDbSchemas, CommandGetTables, CommandStatementQuery, ProstMessageExt,
    TicketStatementQuery,
};
use arrow_flight::{FlightDescriptor, FlightInfo, HandshakeRequest, Ticket};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use futures::{StreamExt, TryStreamExt};
use meshgate::engine::QueryLimits;
use meshgate::flight::FlightConfig;
use prost::Message;
use support::TestServer;
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

struct Server {
    client: FlightServiceClient<Channel>,
    inner: TestServer,
}

async fn server() -> Server {
    server_with(FlightConfig::default(), None).await
}

async fn server_with(config: FlightConfig, limits: Option<QueryLimits>) -> Server {
    let max = config.max_message_bytes;
    let inner = support::start(config, limits).await;
    let client = FlightServiceClient::new(support::channel(inner.addr).await)
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    Server { client, inner }
}

fn with_auth<T>(message: T, authorization: &str) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", authorization.parse().unwrap());
    request
}

/// Handshake with Basic credentials; the Bearer token from the response headers.
async fn login(server: &mut Server, basic: &str) -> Result<String, Status> {
    let request = with_auth(
        futures::stream::iter([HandshakeRequest::default()]),
        &format!("Basic {basic}"),
    );
    let response = server.client.handshake(request).await?;
    let header = response
        .metadata()
        .get("authorization")
        .expect("Bearer header")
        .to_str()
        .unwrap()
        .to_string();
    let mut replies = response.into_inner();
    while replies.next().await.transpose()?.is_some() {}
    Ok(header
        .strip_prefix("Bearer ")
        .expect("Bearer scheme")
        .to_string())
}

async fn token(server: &mut Server, user: &str) -> String {
    login(server, &STANDARD.encode(format!("{user}:{user}-pw")))
        .await
        .unwrap()
}

fn descriptor(command: impl ProstMessageExt) -> FlightDescriptor {
    FlightDescriptor::new_cmd(command.as_any().encode_to_vec())
}

fn statement(sql: &str) -> FlightDescriptor {
    descriptor(CommandStatementQuery {
        query: sql.to_string(),
        transaction_id: None,
    })
}

async fn get_info(
    server: &mut Server,
    token: &str,
    descriptor: FlightDescriptor,
) -> Result<FlightInfo, Status> {
    Ok(server
        .client
        .get_flight_info(with_auth(descriptor, &format!("Bearer {token}")))
        .await?
        .into_inner())
}

async fn fetch(
    server: &mut Server,
    token: &str,
    ticket: Ticket,
) -> Result<(Option<std::sync::Arc<Schema>>, Vec<RecordBatch>), Status> {
    let stream = server
        .client
        .do_get(with_auth(ticket, &format!("Bearer {token}")))
        .await?
        .into_inner();
    let mut batches =
        FlightRecordBatchStream::new_from_flight_data(stream.map_err(FlightError::from));
    let mut out = Vec::new();
    while let Some(batch) = batches.next().await {
        out.push(batch.map_err(|e| match e {
            FlightError::Tonic(status) => *status,
            other => Status::internal(other.to_string()),
        })?);
    }
    Ok((batches.schema().cloned(), out))
}

fn ticket_of(info: &FlightInfo) -> Ticket {
    assert_eq!(info.endpoint.len(), 1);
    assert!(
        info.endpoint[0].location.is_empty(),
        "endpoints carry no location: clients reuse the connection"
    );
    info.endpoint[0].ticket.clone().unwrap()
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

#[tokio::test]
async fn handshake_returns_a_bearer_token_and_refuses_bad_credentials() {
    let mut server = server().await;
    // ADBC's Go driver sends base64 without padding.
    let unpadded = STANDARD_NO_PAD.encode("cib-reporting:cib-reporting-pw");
    assert!(!login(&mut server, &unpadded).await.unwrap().is_empty());

    let wrong = login(&mut server, &STANDARD.encode("cib-reporting:nope"))
        .await
        .unwrap_err();
    assert_eq!(wrong.code(), Code::Unauthenticated);
    assert!(!wrong.message().contains("nope"));
    let unknown = login(&mut server, &STANDARD.encode("nobody:nobody-pw"))
        .await
        .unwrap_err();
    assert_eq!(
        (unknown.code(), unknown.message()),
        (wrong.code(), wrong.message()),
        "unknown users look like wrong passwords"
    );
    assert_eq!(
        login(&mut server, "%%%").await.unwrap_err().code(),
        Code::Unauthenticated
    );

    let missing = server
        .client
        .get_flight_info(Request::new(statement("SELECT 1")))
        .await
        .unwrap_err();
    assert_eq!(missing.code(), Code::Unauthenticated);
    let forged = server
        .client
        .get_flight_info(with_auth(statement("SELECT 1"), "Bearer forged"))
        .await
        .unwrap_err();
    assert_eq!(forged.code(), Code::Unauthenticated);
}

#[tokio::test]
async fn a_statement_streams_the_callers_view_with_the_announced_schema() {
    let mut server = server().await;
    let cib = token(&mut server, "cib-reporting").await;
    let info = get_info(
        &mut server,
        &cib,
        statement("SELECT * FROM reference.counterparties"),
    )
    .await
    .unwrap();
    let announced = info.clone().try_decode_schema().unwrap();
    let (streamed, batches) = fetch(&mut server, &cib, ticket_of(&info)).await.unwrap();
    assert_eq!(
        streamed.as_deref(),
        Some(&announced),
        "GetFlightInfo and DoGet agree on the schema"
    );
    assert_eq!(
        announced.field_with_name("legal_name").unwrap().data_type(),
        &DataType::Utf8,
        "no view types leave"
    );
    assert!(announced.field_with_name("internal_rating").is_err());
    assert_eq!(rows(&batches), 15_000);
    for batch in &batches {
        let lob = batch.column_by_name("lob").unwrap().as_string::<i32>();
        assert!(lob.iter().all(|v| v == Some("CIB")));
    }

    // An empty result still carries its schema.
    let info = get_info(
        &mut server,
        &cib,
        statement("SELECT * FROM markets.trades WHERE false"),
    )
    .await
    .unwrap();
    let (schema, batches) = fetch(&mut server, &cib, ticket_of(&info)).await.unwrap();
    assert_eq!(rows(&batches), 0);
    assert_eq!(schema.unwrap().fields().len(), 7);
}

/// `now()` and `current_date` (which BI tools put in their filters) are the instant the
/// query runs: fixed for the whole query, taken when its ticket is redeemed, not when it
/// was described.
#[tokio::test]
async fn now_and_current_date_are_when_the_query_runs() {
    let mut server = server().await;
    let cib = token(&mut server, "cib-reporting").await;
    let sql = "SELECT now() AS a, now() AS b, current_date AS today, \
               (SELECT count(*) FROM reference.counterparties WHERE onboarded_on <= current_date) AS n";
    let info = get_info(&mut server, &cib, statement(sql)).await.unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let micros = || {
        let since = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap();
        i64::try_from(since.as_micros()).unwrap()
    };
    let redeemed = micros();
    let (_, batches) = fetch(&mut server, &cib, ticket_of(&info)).await.unwrap();
    let finished = micros();
    let batch = &batches[0];
    let instant = |name: &str| {
        let column = batch.column_by_name(name).unwrap();
        let cast = arrow::compute::cast(
            column,
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None),
        )
        .unwrap();
        cast.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
            .value(0)
    };
    let (a, b) = (instant("a"), instant("b"));
    assert_eq!(a, b, "one instant for the whole query");
    assert!(
        (redeemed..=finished).contains(&a),
        "now() is when the ticket was redeemed: {a} not in {redeemed}..{finished}"
    );
    let today = batch
        .column_by_name("today")
        .unwrap()
        .as_primitive::<arrow::datatypes::Date32Type>()
        .value(0);
    let days = |micros: i64| i32::try_from(micros.div_euclid(86_400_000_000)).unwrap();
    assert!((days(redeemed)..=days(finished)).contains(&today));
    let n = batch
        .column_by_name("n")
        .unwrap()
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0);
    assert_eq!(n, 15_000, "every counterparty was onboarded before today");
}

#[tokio::test]
async fn tickets_are_bound_to_their_principal_and_cannot_be_forged() {
    let mut server = server().await;
    let cib = token(&mut server, "cib-reporting").await;
    let risk = token(&mut server, "risk-officer").await;
    let info = get_info(
        &mut server,
        &risk,
        statement("SELECT * FROM payments.transactions"),
    )
    .await
    .unwrap();
    let ticket = ticket_of(&info);

    let stolen = fetch(&mut server, &cib, ticket.clone()).await.unwrap_err();
    assert_eq!(stolen.code(), Code::PermissionDenied, "{stolen:?}");
    assert!(
        !stolen.message().contains("payments"),
        "no hint of the other principal's query: {}",
        stolen.message()
    );
    assert_eq!(
        rows(&fetch(&mut server, &risk, ticket).await.unwrap().1),
        200_000
    );

    // A ticket for a statement the caller never planned, or tampered with, is refused.
    let handle = b"\x01\x00\x0dcib-reportingSELECT * FROM payments.transactions".to_vec();
    let forged = Ticket::new(
        TicketStatementQuery {
            statement_handle: handle.into(),
        }
        .as_any()
        .encode_to_vec(),
    );
    assert_eq!(
        fetch(&mut server, &cib, forged).await.unwrap_err().code(),
        Code::InvalidArgument
    );
    let garbage = Ticket::new(
        Any {
            type_url: "type.googleapis.com/x".into(),
            value: vec![1, 2, 3].into(),
        }
        .encode_to_vec(),
    );
    assert!(fetch(&mut server, &cib, garbage).await.is_err());
}

#[tokio::test]
async fn errors_map_to_status_codes_a_person_can_act_on() {
    let mut server = server().await;
    let cib = token(&mut server, "cib-reporting").await;
    let denied = get_info(
        &mut server,
        &cib,
        statement("SELECT * FROM payments.transactions"),
    )
    .await
    .unwrap_err();
    assert_eq!(denied.code(), Code::PermissionDenied);
    assert!(
        denied.message().contains("`payments.transactions`")
            && denied.message().contains("Request access"),
        "{}",
        denied.message()
    );

    let bad = get_info(&mut server, &cib, statement("SELEC 1"))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    let hidden = get_info(
        &mut server,
        &cib,
        statement("SELECT internal_rating FROM reference.counterparties"),
    )
    .await
    .unwrap_err();
    assert_eq!(hidden.code(), Code::InvalidArgument);
    let write = get_info(
        &mut server,
        &cib,
        statement("DROP TABLE reference.counterparties"),
    )
    .await
    .unwrap_err();
    assert_eq!(write.code(), Code::InvalidArgument);
    assert!(write.message().contains("read-only"), "{}", write.message());
}

#[tokio::test]
async fn metadata_is_computed_for_the_caller() {
    let mut server = server().await;
    // Product tables only (the mesh catalog's own tables are type `SYSTEM TABLE`, listed
    // for everyone, below).
    let tables = |user_token: String| {
        let command = CommandGetTables {
            catalog: None,
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec!["TABLE".into(), "VIEW".into()],
            include_schema: true,
        };
        (user_token, command)
    };
    let mut listing = Vec::new();
    for user in ["ccb-fraud", "intern"] {
        let (user_token, command) = tables(token(&mut server, user).await);
        let info = get_info(&mut server, &user_token, descriptor(command))
            .await
            .unwrap();
        let (_, batches) = fetch(&mut server, &user_token, ticket_of(&info))
            .await
            .unwrap();
        let names: Vec<String> = support::table_schemas(&batches)
            .into_iter()
            .map(|(table, schema)| {
                let has_rating = schema.field_with_name("internal_rating").is_ok();
                format!("{table} rating={has_rating}")
            })
            .collect();
        listing.push(names);
    }
    assert_eq!(
        listing,
        vec![
            vec![
                "payments.transactions rating=false".to_string(),
                "reference.counterparties rating=false".to_string()
            ],
            Vec::<String>::new(),
        ]
    );
    let intern = token(&mut server, "intern").await;
    let command = CommandGetTables {
        catalog: None,
        db_schema_filter_pattern: Some("mesh%".into()),
        table_name_filter_pattern: Some("%flows".into()),
        table_types: vec!["SYSTEM TABLE".into()],
        include_schema: true,
    };
    let info = get_info(&mut server, &intern, descriptor(command))
        .await
        .unwrap();
    let (_, batches) = fetch(&mut server, &intern, ticket_of(&info)).await.unwrap();
    let system: Vec<String> = support::table_schemas(&batches)
        .into_iter()
        .map(|(table, _)| table)
        .collect();
    assert_eq!(system, ["mesh_catalog.flows"]);

    // A ticket for metadata is answered for whoever redeems it, never for who asked first.
    let ccb = token(&mut server, "ccb-fraud").await;
    let intern = token(&mut server, "intern").await;
    let command = CommandGetDbSchemas {
        catalog: None,
        db_schema_filter_pattern: None,
    };
    let info = get_info(&mut server, &ccb, descriptor(command))
        .await
        .unwrap();
    let (_, as_ccb) = fetch(&mut server, &ccb, ticket_of(&info)).await.unwrap();
    let (_, as_intern) = fetch(&mut server, &intern, ticket_of(&info)).await.unwrap();
    assert_eq!(rows(&as_ccb), 3);
    assert_eq!(
        rows(&as_intern),
        1,
        "the mesh catalog's schema, for everyone"
    );
    let names = as_ccb[0]
        .column_by_name("db_schema_name")
        .unwrap()
        .as_string::<i32>()
        .iter()
        .flatten()
        .map(str::to_string)
        .collect::<Vec<_>>();
    assert_eq!(names, ["mesh_catalog", "payments", "reference"]);
    assert!(as_ccb[0].column(0).null_count() == 0);
}

#[tokio::test]
async fn a_storage_outage_is_unavailable_and_the_server_recovers() {
    let mut server = server().await;
    let risk = token(&mut server, "risk-officer").await;
    let sql = "SELECT max(card_number) FROM payments.transactions";
    server.inner.lake.stop();
    // Past the listing cache, so that the query has to reach the store. GetFlightInfo only
    // plans (the ticket is cheap); DoGet reads, and reports the outage.
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    let info = get_info(&mut server, &risk, statement(sql)).await.unwrap();
    let down = fetch(&mut server, &risk, ticket_of(&info))
        .await
        .unwrap_err();
    assert_eq!(down.code(), Code::Unavailable, "{down:?}");
    assert!(
        down.message().contains("`payments.transactions`") && down.message().contains("retry"),
        "{}",
        down.message()
    );
    // The gateway stayed up; when the store comes back, so do the answers.
    server.inner.lake.restart().await.unwrap();
    let info = get_info(&mut server, &risk, statement(sql)).await.unwrap();
    let (_, batches) = fetch(&mut server, &risk, ticket_of(&info)).await.unwrap();
    assert_eq!(rows(&batches), 1);
}
