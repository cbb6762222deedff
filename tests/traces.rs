//! OpenTelemetry traces: `meshgate --otlp-endpoint` sends a span per RPC that continues the
//! caller's W3C `traceparent`, with the query's planning, audit write and execution as
//! children, to a real OTLP/gRPC receiver (the collector's own protocol, served here). Then
//! the attack suite's statements run against the same process as several principals, and
//! its three operational sinks (the spans, the JSON log, `/metrics`) are grepped: none holds
//! a value a query returned, a clear value the attacks probe for (they are the statements'
//! literals too) or key material.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arrow_flight::sql::client::FlightSqlServiceClient;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;

use crate::support::flight::fetch;

/// Every span exported to it.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

const LITERAL: &str = "zz-trace-literal-41c7";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_continue_the_callers_trace_and_no_sink_holds_a_value_under_attack() {
    let receiver = Receiver::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let collector = listener.local_addr().unwrap();
    let serving = receiver.clone();
    tokio::spawn(async move {
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(serving))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
            .await
    });

    let logs = tempfile::NamedTempFile::new().unwrap();
    let mut gateway = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .arg("--otlp-endpoint")
        .arg(format!("http://{collector}"))
        .args(["--log-format", "json", "demo", "--listen", "127.0.0.1:0"])
        .args(["--http", "127.0.0.1:0", "--data-dir"])
        .arg(crate::support::truth::data_dir())
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env(
            "RUST_LOG",
            "debug,sqlparser=debug,datafusion_optimizer=trace,h2=warn,hyper=warn,tower=warn,sqlx=warn",
        )
        .stdout(Stdio::piped())
        .stderr(logs.reopen().unwrap())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(gateway.stdout.take().unwrap()).lines();
    let mut ops = None;
    let addr = loop {
        let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line())
            .await
            .expect("the demo starts")
            .unwrap()
            .expect("the demo prints its address");
        if let Some(rest) = line.strip_prefix("operations on http://") {
            ops = rest.split_whitespace().next().map(str::to_string);
        }
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.to_string();
        }
    };
    let ops = ops.expect("the operations listener");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = FlightSqlServiceClient::new(channel);
    client
        .handshake("cib-reporting", "cib-reporting-pw")
        .await
        .unwrap();
    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    client.set_header("traceparent", format!("00-{trace_id}-{caller_span}-01"));
    let info = client
        .execute(
            format!(
                "SELECT legal_name, contact_email FROM reference.counterparties \
                 WHERE legal_name <> '{LITERAL}' ORDER BY counterparty_id LIMIT 5"
            ),
            None,
        )
        .await
        .unwrap();
    let (_, batches) = fetch(&mut client, &info).await.unwrap();
    let shown = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    let values: Vec<String> = shown
        .lines()
        .filter(|l| l.starts_with("| "))
        .skip(1)
        .flat_map(|l| {
            l.split('|')
                .map(|c| c.trim().to_string())
                .collect::<Vec<_>>()
        })
        .filter(|v| v.len() > 3)
        .collect();
    assert!(!values.is_empty(), "{shown}");

    // The spans of this trace, once exported (batches go every 100 ms here).
    let trace = hex::decode(trace_id).unwrap();
    let wanted = [
        "GetFlightInfo",
        "DoGet",
        "query",
        "plan",
        "audit",
        "execute",
    ];
    let deadline = Instant::now() + Duration::from_secs(20);
    let spans = loop {
        let spans: Vec<Span> = receiver
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.trace_id == trace)
            .cloned()
            .collect();
        if wanted
            .iter()
            .all(|name| spans.iter().any(|s| s.name == *name))
        {
            break spans;
        }
        assert!(
            Instant::now() < deadline,
            "spans of the trace: {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let named = |name: &str| spans.iter().find(|s| s.name == name).unwrap();
    let caller = hex::decode(caller_span).unwrap();
    for rpc in ["GetFlightInfo", "DoGet"] {
        assert_eq!(
            named(rpc).parent_span_id,
            caller,
            "{rpc} continues the caller's span"
        );
    }
    // GetFlightInfo plans the statement (to fix its schema); DoGet runs it as a query,
    // planned again under the policy in force then, with its audit write and execution.
    let child_of = |parent: &Span, name: &str| {
        spans
            .iter()
            .any(|s| s.name == name && s.parent_span_id == parent.span_id)
    };
    let tree: Vec<_> = spans
        .iter()
        .map(|s| {
            (
                &s.name,
                hex::encode(&s.span_id),
                hex::encode(&s.parent_span_id),
            )
        })
        .collect();
    assert!(child_of(named("GetFlightInfo"), "plan"), "{tree:?}");
    assert!(child_of(named("DoGet"), "query"), "{tree:?}");
    let query = spans
        .iter()
        .find(|s| s.name == "query" && s.parent_span_id == named("DoGet").span_id)
        .unwrap();
    assert!(
        child_of(query, "plan") && child_of(query, "audit"),
        "{tree:?}"
    );
    assert!(
        spans
            .iter()
            .any(|s| s.name == "execute" && s.parent_span_id == named("DoGet").span_id),
        "the execution runs under DoGet"
    );

    // The attack suite's statements, as principals who may see some, all or none of it.
    let targets = crate::attacks::targets().await;
    let attacks = crate::attacks::attacks(&targets);
    for user in ["intern", "cib-reporting", "risk-officer"] {
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut client = FlightSqlServiceClient::new(channel);
        client.handshake(user, &format!("{user}-pw")).await.unwrap();
        for attack in &attacks {
            // Refused or answered, it does not matter here: only what reaches the sinks.
            if let Ok(info) = client.execute(attack.sql.clone(), None).await {
                let _ = fetch(&mut client, &info).await;
            }
        }
    }
    // Let the last spans be exported and the last outcomes logged.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let metrics = {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(ops.as_str()).await.unwrap();
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    };
    assert!(metrics.contains("meshgate_denials_total"), "{metrics}");
    let log = std::fs::read_to_string(logs.path()).unwrap();
    assert!(log.lines().count() > 10, "the debug log was written");
    for line in log.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line}"));
    }
    let spans = format!("{:?}", receiver.0.lock().unwrap());
    let secrets = [
        LITERAL,
        &targets.cib_tax,
        &targets.cib_email,
        &targets.card,
        &targets.trader,
        "meshgate demo master key",
    ];
    for (sink, content) in [
        ("a span", &spans),
        ("the log", &log),
        ("/metrics", &metrics),
    ] {
        for secret in secrets
            .iter()
            .copied()
            .chain(values.iter().map(String::as_str))
        {
            assert!(!content.contains(secret), "`{secret}` reached {sink}");
        }
    }
    gateway.kill().await.unwrap();
}
