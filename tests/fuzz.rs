//! Fuzzing the gateway (a proptest harness; no nightly toolchain needed): arbitrary SQL as
//! every reference principal through the library, and arbitrary Flight SQL request bytes to
//! the real server, authenticated or not. Nothing may panic, hang or leak: every case ends
//! within its deadline, in an answer or a clear error; no answer or error contains a clear
//! value the principal may not see; the server answers a known query after every request.
//!
//! Deterministic by default. `MESHGATE_FUZZ_CASES` (default 300 per target) and
//! `MESHGATE_FUZZ_SEED` run longer or elsewhere; see the README.

use crate::support::flight;
use crate::support::views;

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::{Action, FlightData, FlightDescriptor, HandshakeRequest, Ticket};
use futures::TryStreamExt;
use meshgate::engine::QueryLimits;
use meshgate::flight::FlightConfig;
use meshgate_reference as reference;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestRng, TestRunner};
use prost::Message;
use tonic::Code;
use tonic::transport::Channel;
use views::{forbidden_values, local_gateway, principals, rows, words};

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The gateway's own limits end expensive cases; the harness's deadline catches hangs.
fn limits() -> QueryLimits {
    QueryLimits {
        timeout: Some(Duration::from_secs(5)),
        memory: Some(256 << 20),
        ..QueryLimits::default()
    }
}

fn runner() -> TestRunner {
    let seed = setting("MESHGATE_FUZZ_SEED", 0x6675_7a7a);
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    TestRunner::new_with_rng(
        Config {
            cases: setting("MESHGATE_FUZZ_CASES", 300) as u32,
            failure_persistence: None,
            // Shrinking re-runs queries; a failing case is printed whole instead.
            max_shrink_iters: 0,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &bytes),
    )
}

/// Clear values each principal may never see.
async fn forbidden() -> HashMap<&'static str, HashSet<String>> {
    let mut out = HashMap::new();
    for principal in principals() {
        out.insert(principal.name, forbidden_values(&principal).await);
    }
    out
}

// ---------------------------------------------------------------------------------------
// Arbitrary SQL

const WORDS: &[&str] = &[
    "SELECT",
    "FROM",
    "WHERE",
    "GROUP BY",
    "ORDER BY",
    "LIMIT",
    "JOIN",
    "LEFT JOIN",
    "ON",
    "USING",
    "UNION ALL",
    "WITH",
    "RECURSIVE",
    "AS",
    "AND",
    "OR",
    "NOT",
    "IN",
    "EXISTS",
    "BETWEEN",
    "LIKE",
    "IS NULL",
    "CASE",
    "WHEN",
    "THEN",
    "ELSE",
    "END",
    "OVER",
    "PARTITION BY",
    "(",
    ")",
    ",",
    "*",
    "=",
    "<>",
    "<",
    ">",
    "+",
    "-",
    "/",
    "%",
    "||",
    "::",
    ".",
    ";",
    "'",
    "\"",
    "reference.counterparties",
    "payments.transactions",
    "markets.trades",
    "information_schema.columns",
    "counterparty_id",
    "tax_id",
    "contact_email",
    "internal_rating",
    "lob",
    "country",
    "legal_name",
    "card_number",
    "amount",
    "txn_id",
    "trader_id",
    "notional",
    "trade_id",
    "booked_at",
    "count(*)",
    "min",
    "max",
    "sum",
    "lag",
    "first_value",
    "ntile",
    "row_number()",
    "CAST",
    "TRY_CAST",
    "arrow_cast",
    "regexp_like",
    "substr",
    "length",
    "upper",
    "md5",
    "EXPLAIN",
    "EXPLAIN VERBOSE",
    "DESCRIBE",
    "SHOW COLUMNS",
    "SHOW TABLES",
    "SET",
    "COPY",
    "TO",
    "CREATE",
    "EXTERNAL TABLE",
    "VIEW",
    "INSERT INTO",
    "read_parquet",
    "'s3://reference-counterparties/data/counterparties/part-00000.parquet'",
    "$1",
    "?",
    "NULL",
    "true",
    "0",
    "1",
    "19",
    "'CIB'",
    "'AWM'",
    "'x'",
    "'%'",
    "1e308",
    "9223372036854775807",
    "'('",
    "INTERVAL '1 day'",
    "DATE '2024-01-01'",
];

/// Well-formed queries the mutator starts from.
const SEEDS: &[&str] = &[
    "SELECT lob, count(*) FROM reference.counterparties GROUP BY lob",
    "SELECT tax_id, contact_email FROM reference.counterparties WHERE counterparty_id < 30",
    "SELECT card_number, amount FROM payments.transactions ORDER BY amount DESC LIMIT 5",
    "SELECT c.tax_id, t.trader_id FROM reference.counterparties c JOIN markets.trades t ON t.counterparty_id = c.counterparty_id LIMIT 5",
    "SELECT count(*) FROM reference.counterparties WHERE 1 / (CASE WHEN lob = 'AWM' THEN 0 ELSE 1 END) = 1",
    "WITH x AS (SELECT * FROM payments.transactions) SELECT lag(card_number) OVER (ORDER BY txn_id) FROM x LIMIT 3",
    "SELECT * FROM information_schema.columns WHERE table_schema = 'reference'",
    "EXPLAIN SELECT internal_rating FROM reference.counterparties",
];

fn token() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => select(WORDS).prop_map(String::from),
        1 => "[a-z_]{1,8}",
        1 => any::<i64>().prop_map(|n| n.to_string()),
        1 => "'[^']{0,12}'",
    ]
}

fn sql() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => prop::collection::vec(token(), 1..30).prop_map(|t| t.join(" ")),
        3 => (select(SEEDS), prop::collection::vec((any::<prop::sample::Index>(), token(), any::<bool>()), 0..3))
            .prop_map(|(seed, edits)| {
                let mut words: Vec<String> = seed.split(' ').map(String::from).collect();
                for (at, token, replace) in edits {
                    let i = at.index(words.len());
                    if replace {
                        words[i] = token;
                    } else {
                        words.insert(i, token);
                    }
                }
                words.join(" ")
            }),
        1 => "\\PC{0,120}",
        1 => prop::collection::vec(any::<u8>(), 0..120)
            .prop_map(|b| String::from_utf8_lossy(&b).into_owned()),
    ]
}

#[test]
fn arbitrary_sql_never_panics_hangs_or_leaks() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (gateway, _lake, forbidden) = runtime.block_on(async {
        let (gateway, lake) = local_gateway(|config| config.limits = limits()).await;
        (gateway, lake, forbidden().await)
    });
    let answered = std::cell::Cell::new(0usize);
    let result = runner().run(&(select(reference::PRINCIPALS), sql()), |(user, sql)| {
        let session = gateway.session(gateway.authenticate(user, &format!("{user}-pw")).unwrap());
        let outcome = runtime.block_on(async {
            tokio::time::timeout(Duration::from_secs(30), session.collect(&sql)).await
        });
        let forbidden = &forbidden[user];
        match outcome {
            Err(_) => Err(TestCaseError::fail(format!("{user}: hung: {sql}"))),
            Ok(Ok(batches)) => {
                answered.set(answered.get() + 1);
                match rows(&batches)
                    .into_iter()
                    .flatten()
                    .flatten()
                    .find(|v| forbidden.contains(v))
                {
                    Some(v) => Err(TestCaseError::fail(format!("{user}: LEAKED {v:?}: {sql}"))),
                    None => Ok(()),
                }
            }
            Ok(Err(error)) => {
                let text = error.to_string();
                if text.contains("panicked") || text.to_lowercase().contains("internal error") {
                    return Err(TestCaseError::fail(format!("{user}: {text}: {sql}")));
                }
                match words(&text).find(|w| forbidden.contains(*w)) {
                    Some(w) => Err(TestCaseError::fail(format!(
                        "{user}: the error names {w:?}: {sql}: {text}"
                    ))),
                    None => Ok(()),
                }
            }
        }
    });
    eprintln!(
        "{} generated statements answered; the rest refused",
        answered.get()
    );
    result.unwrap();
}

// ---------------------------------------------------------------------------------------
// Arbitrary Flight SQL requests

/// Message types a Flight SQL server decodes from `Any`.
const COMMANDS: &[&str] = &[
    "CommandStatementQuery",
    "CommandStatementSubstraitPlan",
    "CommandPreparedStatementQuery",
    "CommandGetCatalogs",
    "CommandGetDbSchemas",
    "CommandGetTables",
    "CommandGetTableTypes",
    "CommandGetSqlInfo",
    "CommandGetPrimaryKeys",
    "CommandGetExportedKeys",
    "CommandGetImportedKeys",
    "CommandGetCrossReference",
    "CommandGetXdbcTypeInfo",
    "CommandStatementUpdate",
    "CommandPreparedStatementUpdate",
    "CommandStatementIngest",
    "TicketStatementQuery",
    "ActionCreatePreparedStatementRequest",
    "ActionClosePreparedStatementRequest",
    "ActionBeginTransactionRequest",
    "ActionCancelQueryRequest",
];

const ACTIONS: &[&str] = &[
    "CreatePreparedStatement",
    "ClosePreparedStatement",
    "CancelFlightInfo",
    "CancelQuery",
    "SetSessionOptions",
    "GetSessionOptions",
    "CloseSession",
    "BeginTransaction",
    "EndTransaction",
    "CreatePreparedSubstraitPlan",
    "RenewFlightEndpoint",
    "nonsense",
];

#[derive(Debug, Clone)]
enum Call {
    DoGet(Vec<u8>),
    GetFlightInfo(Vec<u8>),
    GetSchema(Vec<u8>),
    DoAction(String, Vec<u8>),
    DoPut(Vec<u8>, Vec<u8>),
    Handshake(Vec<u8>),
}

fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..200),
        // A well-formed Any of a known type with arbitrary content reaches each decoder.
        3 => (select(COMMANDS), prop::collection::vec(any::<u8>(), 0..120)).prop_map(|(name, value)| {
            arrow_flight::sql::Any {
                type_url: format!("type.googleapis.com/arrow.flight.protocol.sql.{name}"),
                value: value.into(),
            }
            .encode_to_vec()
        }),
        // A statement with arbitrary SQL, as a descriptor or a ticket.
        2 => sql().prop_map(|query| {
            arrow_flight::sql::ProstMessageExt::as_any(&arrow_flight::sql::CommandStatementQuery {
                query,
                transaction_id: None,
            })
            .encode_to_vec()
        }),
    ]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        payload().prop_map(Call::DoGet),
        payload().prop_map(Call::GetFlightInfo),
        payload().prop_map(Call::GetSchema),
        (select(ACTIONS).prop_map(String::from), payload()).prop_map(|(a, b)| Call::DoAction(a, b)),
        (payload(), prop::collection::vec(any::<u8>(), 0..100))
            .prop_map(|(c, b)| Call::DoPut(c, b)),
        prop::collection::vec(any::<u8>(), 0..100).prop_map(Call::Handshake),
    ]
}

fn with_token<T>(message: T, token: Option<&str>) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

/// Send one call; the text of what came back (batches as rows, or the error).
async fn send(
    client: &mut FlightServiceClient<Channel>,
    call: Call,
    token: Option<&str>,
) -> Result<String, tonic::Status> {
    match call {
        Call::DoGet(ticket) => {
            let stream = client
                .do_get(with_token(Ticket::new(ticket), token))
                .await?
                .into_inner();
            let data: Vec<FlightData> = stream.try_collect().await?;
            let batches = arrow_flight::utils::flight_data_to_batches(&data).unwrap_or_default();
            Ok(format!("{:?}", rows(&batches)))
        }
        Call::GetFlightInfo(cmd) => {
            let info = client
                .get_flight_info(with_token(FlightDescriptor::new_cmd(cmd), token))
                .await?
                .into_inner();
            Ok(format!("{info:?}"))
        }
        Call::GetSchema(cmd) => {
            let schema = client
                .get_schema(with_token(FlightDescriptor::new_cmd(cmd), token))
                .await?
                .into_inner();
            Ok(format!("{schema:?}"))
        }
        Call::DoAction(kind, body) => {
            let action = Action {
                r#type: kind,
                body: body.into(),
            };
            let results: Vec<_> = client
                .do_action(with_token(action, token))
                .await?
                .into_inner()
                .try_collect()
                .await?;
            Ok(format!("{results:?}"))
        }
        Call::DoPut(cmd, body) => {
            let first = FlightData {
                flight_descriptor: Some(FlightDescriptor::new_cmd(cmd)),
                data_body: body.into(),
                ..FlightData::default()
            };
            let stream = futures::stream::iter(vec![first]);
            let results: Vec<_> = client
                .do_put(with_token(stream, token))
                .await?
                .into_inner()
                .try_collect()
                .await?;
            Ok(format!("{results:?}"))
        }
        Call::Handshake(payload) => {
            let request = HandshakeRequest {
                protocol_version: 0,
                payload: payload.into(),
            };
            let stream = futures::stream::iter(vec![request]);
            let results: Vec<_> = client
                .handshake(with_token(stream, token))
                .await?
                .into_inner()
                .try_collect()
                .await?;
            Ok(format!("{results:?}"))
        }
    }
}

#[test]
fn arbitrary_flight_sql_requests_never_panic_hang_or_leak() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (server, tokens, forbidden) = runtime.block_on(async {
        let server = flight::start(FlightConfig::default(), Some(limits())).await;
        let mut tokens = HashMap::new();
        for user in reference::PRINCIPALS {
            let client = flight::login(server.addr, user).await;
            tokens.insert(*user, client.token().cloned().unwrap());
        }
        (server, tokens, forbidden().await)
    });
    let channel = runtime.block_on(flight::channel(server.addr));
    let client = FlightServiceClient::new(channel).max_decoding_message_size(64 << 20);
    let codes: std::cell::RefCell<HashMap<Code, usize>> = Default::default();
    let caller = prop_oneof![Just(None), select(reference::PRINCIPALS).prop_map(Some)];
    let result = runner().run(&(caller, call()), |(user, call)| {
        let token = user.map(|u| tokens[u].as_str());
        let outcome = runtime.block_on(async {
            let mut client = client.clone();
            tokio::time::timeout(
                Duration::from_secs(30),
                send(&mut client, call.clone(), token),
            )
            .await
        });
        let text = match outcome {
            Err(_) => return Err(TestCaseError::fail(format!("hung: {user:?} {call:?}"))),
            Ok(Ok(text)) => {
                *codes.borrow_mut().entry(Code::Ok).or_default() += 1;
                text
            }
            Ok(Err(status)) => {
                *codes.borrow_mut().entry(status.code()).or_default() += 1;
                // A panicking handler resets the stream: Unknown or a transport error.
                if matches!(status.code(), Code::Unknown | Code::Internal) {
                    return Err(TestCaseError::fail(format!(
                        "{status:?}: {user:?} {call:?}"
                    )));
                }
                status.message().to_string()
            }
        };
        let forbidden = forbidden.get(user.unwrap_or("intern")).unwrap();
        if let Some(w) = words(&text).find(|w| forbidden.contains(*w)) {
            return Err(TestCaseError::fail(format!(
                "LEAKED {w:?} to {user:?}: {call:?}"
            )));
        }
        Ok(())
    });
    eprintln!("status codes: {:?}", codes.borrow());
    result.unwrap();
    // The server is alive and still enforcing.
    runtime.block_on(async {
        let mut cib = flight::login(server.addr, "cib-reporting").await;
        let info = cib
            .execute("SELECT count(*) FROM reference.counterparties".into(), None)
            .await
            .unwrap();
        let (_, batches) = flight::fetch(&mut cib, &info).await.unwrap();
        assert_eq!(rows(&batches), vec![vec![Some("15000".to_string())]]);
    });
}

// ---------------------------------------------------------------------------------------
// Resource exhaustion: one statement must not take the gateway down

/// A shape's name, the size up to which it must be answered, and its statement of size `n`.
type Shape = (&'static str, usize, fn(usize) -> String);

/// Statements of every shape that can grow without bound, `n` elements long or deep, and
/// the size up to which meshgate must answer them: the parser's recursion limit (50) for
/// nesting, meshgate's depth limit for chains, its relation limit for shapes that read a
/// table per element. Each reads a product column where the shape allows, so that
/// execution runs on product data.
fn shapes() -> Vec<Shape> {
    use meshgate::engine::{MAX_EXPRESSION_DEPTH as DEPTH, MAX_RELATIONS as RELATIONS};
    const NESTING: usize = 50;
    fn repeat(n: usize, f: impl Fn(usize) -> String, sep: &str) -> String {
        (0..n).map(f).collect::<Vec<_>>().join(sep)
    }
    vec![
        ("arithmetic", DEPTH, |n| {
            format!(
                "SELECT count(*) FROM reference.counterparties WHERE counterparty_id{} > 0",
                " + 1".repeat(n)
            )
        }),
        ("concatenation", DEPTH, |n| {
            format!(
                "SELECT lob{} FROM reference.counterparties LIMIT 3",
                " || lob".repeat(n)
            )
        }),
        ("boolean", DEPTH, |n| {
            format!(
                "SELECT count(*) FROM reference.counterparties WHERE {}",
                repeat(n, |i| format!("counterparty_id = {i}"), " OR ")
            )
        }),
        ("nested calls", NESTING, |n| {
            format!(
                "SELECT {}counterparty_id{} FROM reference.counterparties LIMIT 1",
                "abs(".repeat(n),
                ")".repeat(n)
            )
        }),
        ("nested parentheses", NESTING, |n| {
            format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n))
        }),
        ("prefix operators", NESTING, |n| {
            format!("SELECT {}true", "NOT ".repeat(n))
        }),
        ("cast chain", DEPTH, |n| {
            format!("SELECT 1{}", "::BIGINT".repeat(n))
        }),
        ("postfix chain", DEPTH, |n| {
            format!("SELECT true{}", " IS NOT NULL".repeat(n))
        }),
        ("wide CASE", DEPTH, |n| {
            format!(
                "SELECT CASE {} END FROM reference.counterparties LIMIT 5",
                repeat(n, |i| format!("WHEN counterparty_id = {i} THEN {i}"), " ")
            )
        }),
        ("nested CASE", NESTING, |n| {
            format!(
                "SELECT {}0{} FROM reference.counterparties LIMIT 1",
                "CASE WHEN counterparty_id > 0 THEN ".repeat(n),
                " END".repeat(n)
            )
        }),
        ("IN list", DEPTH, |n| {
            format!(
                "SELECT count(*) FROM reference.counterparties WHERE counterparty_id IN ({})",
                repeat(n.max(1), |i| i.to_string(), ", ")
            )
        }),
        ("set operations", RELATIONS, |n| {
            repeat(
                n + 1,
                |_| {
                    "SELECT lob FROM reference.counterparties WHERE counterparty_id = 1".to_string()
                },
                " UNION ALL ",
            )
        }),
        ("nested subqueries", NESTING, |n| {
            format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n))
        }),
        ("scalar subqueries side by side", RELATIONS, |n| {
            format!(
                "SELECT {}",
                repeat(
                    n.max(1),
                    |i| format!(
                        "(SELECT count(*) FROM reference.counterparties WHERE counterparty_id = {i})"
                    ),
                    " + "
                )
            )
        }),
        ("join chain", RELATIONS, |n| {
            format!(
                "SELECT count(*) FROM reference.counterparties t0 {}",
                repeat(
                    n,
                    |i| format!(
                        "JOIN reference.counterparties t{} ON t{}.counterparty_id = t{i}.counterparty_id",
                        i + 1,
                        i + 1
                    ),
                    " "
                )
            )
        }),
        ("comma joins", RELATIONS, |n| {
            format!(
                "SELECT 1 FROM {} LIMIT 1",
                repeat(n.max(1), |i| format!("(SELECT 1 AS x{i})"), ", ")
            )
        }),
    ]
}

/// Every shape at sizes within and far beyond meshgate's statement limits, through the real
/// Flight SQL server as a principal who reads everything and as one who reads nothing: each
/// is answered or refused with a clear error, never an abort, and the server answers the
/// next query. Before the limits, a few hundred `+` overflowed a worker's stack and killed
/// the process (and this test binary with it).
#[test]
fn no_statement_exhausts_the_gateway() {
    use meshgate::engine::{MAX_EXPRESSION_DEPTH, MAX_RELATIONS, MAX_STATEMENT_BYTES};
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime.block_on(flight::start(FlightConfig::default(), Some(limits())));
    let sizes = [
        8,
        MAX_RELATIONS - 4,
        MAX_EXPRESSION_DEPTH - 16,
        MAX_EXPRESSION_DEPTH + 8,
        5_000,
        60_000,
    ];
    runtime.block_on(async {
        let mut risk = flight::login(server.addr, "risk-officer").await;
        let mut intern = flight::login(server.addr, "intern").await;
        for (shape, limit, sql) in shapes() {
            for n in sizes {
                let sql = sql(n);
                if sql.len() > MAX_STATEMENT_BYTES {
                    continue;
                }
                for (who, client) in [("risk-officer", &mut risk), ("intern", &mut intern)] {
                    let outcome = tokio::time::timeout(Duration::from_secs(120), async {
                        let info = client.execute(sql.clone(), None).await?;
                        flight::fetch(client, &info).await
                    })
                    .await
                    .unwrap_or_else(|_| panic!("{shape} x {n} as {who}: hung"));
                    if let Err(error) = outcome {
                        let code = flight::code(&error);
                        assert!(
                            matches!(
                                code,
                                Code::InvalidArgument
                                    | Code::PermissionDenied
                                    | Code::ResourceExhausted
                                    | Code::DeadlineExceeded
                            ),
                            "{shape} x {n} as {who}: {error:?}"
                        );
                        // The reader of everything is refused only for being over a limit
                        // (its time and memory limits apply as to any query).
                        let within = n + 2 < limit;
                        if who == "risk-officer" && within && code == Code::InvalidArgument {
                            panic!("{shape} x {n} is within the limits: {error:?}");
                        }
                    }
                }
            }
            // Still up, still enforcing.
            alive(server.addr, shape).await;
        }
        // The deepest chain a statement of the longest accepted length can hold.
        let longest = format!("SELECT 1{}", "+1".repeat((MAX_STATEMENT_BYTES - 8) / 2));
        let info = risk.execute(longest, None).await.unwrap_err();
        assert_eq!(flight::code(&info), Code::InvalidArgument, "{info:?}");
        alive(server.addr, "the longest chain").await;
    });
}

async fn alive(addr: std::net::SocketAddr, after: &str) {
    let mut cib = flight::login(addr, "cib-reporting").await;
    let info = cib
        .execute("SELECT count(*) FROM reference.counterparties".into(), None)
        .await
        .unwrap();
    let (_, batches) = flight::fetch(&mut cib, &info).await.unwrap();
    assert_eq!(
        rows(&batches),
        vec![vec![Some("15000".to_string())]],
        "after {after}"
    );
}
