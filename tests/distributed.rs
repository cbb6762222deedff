//! Distributed execution on real `meshgate worker` processes: the same answers as in one
//! process for every principal, stages that really ran on the workers, and workers that run
//! nothing a gateway did not sign, nothing planned under another policy version, and never
//! see a credential or a key in what they are sent.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};
use hkdf::Hkdf;
use http_body_util::BodyExt;
use meshgate::Gateway;
use meshgate::distributed::Network;
use meshgate::distributed::guard::SET_PLAN_PATH;
use meshgate::distributed::signing::{EXPIRES_HEADER, SIGNATURE_HEADER};
use meshgate::engine::OnWorkerDown;
use meshgate_lake_server::LakeServer;
use sha2::{Digest, Sha256};

use crate::support::cluster::{self, Cluster};
use crate::support::truth::data_dir;
use crate::support::views::{local_gateway, principals, run_gateway, sorted};

/// Queries that read every product, join, aggregate, sort and window: what a stage boundary
/// can cut.
const QUERIES: &[&str] = &[
    "SELECT * FROM reference.counterparties",
    "SELECT count(*), sum(amount) FROM payments.transactions",
    "SELECT currency, count(*) AS n, min(amount), max(amount) FROM payments.transactions \
     GROUP BY currency ORDER BY currency",
    "SELECT c.lob, count(*) FROM payments.transactions t JOIN reference.counterparties c \
     ON t.counterparty_id = c.counterparty_id GROUP BY c.lob ORDER BY c.lob",
    "SELECT * FROM markets.trades ORDER BY trade_id LIMIT 50",
    "SELECT counterparty_id, row_number() OVER (PARTITION BY lob ORDER BY counterparty_id) \
     FROM reference.counterparties",
    "SELECT DISTINCT country FROM reference.counterparties ORDER BY country",
];

async fn gateways(cluster: &Cluster) -> (Gateway, Gateway, impl Sized) {
    let (local, lake_a) = local_gateway(|_| {}).await;
    let distribution = cluster.distribution().await;
    let (distributed, lake_b) = gateway_on(distribution, |_| {}).await;
    (local, distributed, (lake_a, lake_b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_principal_gets_the_same_answers_from_workers_as_in_process() {
    let cluster = Cluster::start(3).await;
    let (local, distributed, _lakes) = gateways(&cluster).await;
    let mut failures = Vec::new();
    for principal in principals() {
        let as_local = local.session(
            local
                .authenticate(principal.name, &format!("{}-pw", principal.name))
                .unwrap(),
        );
        let as_distributed = distributed.session(
            distributed
                .authenticate(principal.name, &format!("{}-pw", principal.name))
                .unwrap(),
        );
        for sql in QUERIES {
            let expected = run_gateway(&as_local, sql).await;
            let actual = run_gateway(&as_distributed, sql).await;
            let same = match (&expected, &actual) {
                (Ok(e), Ok(a)) => sorted(e) == sorted(a),
                (Err(_), Err(_)) => true,
                _ => false,
            };
            if !same {
                failures.push(format!(
                    "{} / {sql}:\n  in process {:?}\n  on workers {:?}",
                    principal.name,
                    expected.as_ref().map(|r| r.len()),
                    actual
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // EXPLAIN shows the stages and tasks, each sealed scan as opaque as in one process.
    let cib = distributed.session(
        distributed
            .authenticate("cib-reporting", "cib-reporting-pw")
            .unwrap(),
    );
    let mut plans = String::new();
    for sql in [
        "EXPLAIN SELECT * FROM reference.counterparties WHERE country = 'US'",
        "EXPLAIN VERBOSE SELECT tax_id, count(*) FROM reference.counterparties GROUP BY tax_id",
        "EXPLAIN SELECT a.lob, count(*) FROM reference.counterparties a \
         JOIN reference.counterparties b ON a.counterparty_id = b.counterparty_id GROUP BY a.lob",
    ] {
        for row in run_gateway(&cib, sql).await.unwrap() {
            plans.push_str(row[1].as_deref().unwrap_or(""));
            plans.push('\n');
        }
    }
    for shown in [
        "DistributedExec",
        "Stage 1",
        "tasks",
        "ProtectedScanExec: table=reference.counterparties, policy=reference.counterparties@v1",
    ] {
        assert!(plans.contains(shown), "EXPLAIN lacks `{shown}`:\n{plans}");
    }
    for secret in ["'CIB'", "lob =", "mask_", "tokenize", &cluster::key_hex()] {
        assert!(
            !plans.contains(secret),
            "EXPLAIN shows `{secret}`:\n{plans}"
        );
    }

    // The queries really ran on the workers: the audit names them.
    let auditor = distributed.session(distributed.authenticate("auditor", "auditor-pw").unwrap());
    let rows = run_gateway(
        &auditor,
        "SELECT workers FROM mesh_catalog.audit WHERE status = 'ok' AND workers IS NOT NULL",
    )
    .await
    .unwrap();
    let used: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r[0].clone())
        .flat_map(|w| w.split(", ").map(str::to_string).collect::<Vec<_>>())
        .collect();
    assert!(!rows.is_empty(), "no query ran on a worker");
    // (The audit is shared with other tests' gateways, whose workers it names too.)
    for worker in cluster.urls() {
        assert!(used.contains(worker.as_str()), "{worker} ran no stage");
    }
}

/// A fake worker that keeps what a gateway sends it: the headers and the first message of
/// every stage (the signed plan), and answers UNAVAILABLE. What it keeps is exactly what a
/// network attacker between a gateway and its workers sees.
#[derive(Clone, Default)]
struct Recorder {
    stages: Arc<Mutex<Vec<Recorded>>>,
}

#[derive(Clone, Debug)]
struct Recorded {
    expires: Option<String>,
    signature: Option<String>,
    /// The first gRPC message as sent (5-byte prefix included).
    message: Bytes,
}

impl tonic::server::NamedService for Recorder {
    const NAME: &'static str = "worker.WorkerService";
}

impl tower::Service<http::Request<tonic::body::Body>> for Recorder {
    type Response = http::Response<tonic::body::Body>;
    type Error = std::convert::Infallible;
    type Future = futures::future::BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<tonic::body::Body>) -> Self::Future {
        let stages = Arc::clone(&self.stages);
        Box::pin(async move {
            let (parts, mut body) = request.into_parts();
            let header = |name: &str| {
                parts
                    .headers
                    .get(name)
                    .map(|v| v.to_str().unwrap().to_string())
            };
            let mut read = BytesMut::new();
            loop {
                if read.len() >= 5 {
                    let len = u32::from_be_bytes([read[1], read[2], read[3], read[4]]) as usize;
                    if read.len() >= 5 + len {
                        read.truncate(5 + len);
                        break;
                    }
                }
                match body.frame().await {
                    Some(Ok(frame)) => {
                        if let Ok(data) = frame.into_data() {
                            read.extend_from_slice(&data);
                        }
                    }
                    _ => break,
                }
            }
            if parts.uri.path() == SET_PLAN_PATH {
                stages.lock().unwrap().push(Recorded {
                    expires: header(EXPIRES_HEADER),
                    signature: header(SIGNATURE_HEADER),
                    message: read.freeze(),
                });
            }
            Ok(tonic::Status::unavailable("recorded").into_http())
        })
    }
}

impl Recorder {
    async fn start() -> (Self, url::Url) {
        let recorder = Self::default();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = url::Url::parse(&format!("http://{}", listener.local_addr().unwrap())).unwrap();
        // Known under two names: to DataFusion Distributed, two workers (with one it would
        // not cut the plan at all).
        let service = recorder.clone();
        tokio::spawn(
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
        (recorder, url)
    }

    /// A gateway (the reference mesh, on its S3 lakes with their credentials) whose every
    /// query goes to this recorder; `edit` adjusts its configuration.
    async fn gateway(
        url: &url::Url,
        edit: impl FnOnce(&mut meshgate::GatewayConfig),
    ) -> (Gateway, LakeServer, meshgate::storage::StorageConfig) {
        let mut demo = meshgate_reference::demo(&data_dir()).await.unwrap();
        demo.config.master_key = cluster::master_key();
        edit(&mut demo.config);
        let storage = demo.config.storage.clone();
        let mut other = url.clone();
        other.set_host(Some("localhost")).unwrap();
        let network = Network::new(vec![url.clone(), other], cluster::signer(), None);
        demo.config.distribution = Some(cluster::distribution(network, OnWorkerDown::Skip));
        (
            Gateway::open(demo.config).await.unwrap(),
            demo.lake,
            storage,
        )
    }

    /// Run `sql` as `user` and keep the stages it sends (the query fails: nobody runs them).
    async fn capture(&self, gateway: &Gateway, user: &str, sql: &str) -> Vec<Recorded> {
        self.stages.lock().unwrap().clear();
        let session = gateway.session(gateway.authenticate(user, &format!("{user}-pw")).unwrap());
        assert!(
            run_gateway(&session, sql).await.is_err(),
            "nobody ran the stages"
        );
        let stages = self.stages.lock().unwrap().clone();
        assert!(!stages.is_empty(), "the gateway sent stages");
        stages
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// The bytes of a gRPC message without its prefix.
fn body(message: &Bytes) -> Bytes {
    message.slice(5..)
}

/// Send `message` to a worker as the first message of a stage, with `headers`: the worker's
/// answer (its status when it refuses).
async fn send_stage(
    worker: &url::Url,
    message: Bytes,
    headers: &[(&'static str, String)],
) -> Result<Vec<Bytes>, tonic::Status> {
    let channel = tonic::transport::Channel::from_shared(worker.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let mut request = tonic::Request::new(futures::stream::iter(vec![message]));
    for (name, value) in headers {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    let response = grpc
        .streaming(
            request,
            http::uri::PathAndQuery::from_static(SET_PLAN_PATH),
            RawCodec,
        )
        .await?;
    let mut stream = response.into_inner();
    let mut out = Vec::new();
    while let Some(message) = stream.message().await? {
        out.push(message);
    }
    Ok(out)
}

/// Messages as bytes, unchanged.
#[derive(Default)]
struct RawCodec;

struct Raw;

impl tonic::codec::Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = Raw;
    type Decoder = Raw;

    fn encoder(&mut self) -> Raw {
        Raw
    }

    fn decoder(&mut self) -> Raw {
        Raw
    }
}

impl tonic::codec::Encoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: Bytes,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        bytes::BufMut::put(dst, item);
        Ok(())
    }
}

impl tonic::codec::Decoder for Raw {
    type Item = Bytes;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<Bytes>, tonic::Status> {
        let n = bytes::Buf::remaining(src);
        Ok(Some(bytes::Buf::copy_to_bytes(src, n)))
    }
}

/// The signature headers the test (holding the mesh's key, as a gateway does) puts on
/// `message`, valid until `expires`.
fn signed(message: &Bytes, expires: u64) -> Vec<(&'static str, String)> {
    let (expires, signature) = cluster::signer().sign_until(SET_PLAN_PATH, message, expires);
    vec![(EXPIRES_HEADER, expires), (SIGNATURE_HEADER, signature)]
}

fn recorded_headers(stage: &Recorded) -> Vec<(&'static str, String)> {
    vec![
        (EXPIRES_HEADER, stage.expires.clone().unwrap()),
        (SIGNATURE_HEADER, stage.signature.clone().unwrap()),
    ]
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A gateway of the reference mesh that hands its queries to workers as `distribution` says
/// (holding the mesh's key), its configuration adjusted by `edit` first.
async fn gateway_on(
    distribution: meshgate::engine::Distribution,
    edit: impl FnOnce(&mut meshgate::GatewayConfig),
) -> (Gateway, LakeServer) {
    local_gateway(move |config| {
        edit(config);
        config.master_key = cluster::master_key();
        config.distribution = Some(distribution);
    })
    .await
}

/// The query whose stages the refusal tests replay: cib-reporting sees its own line of
/// business only, risk-officer every row.
const FILTERED: &str = "SELECT lob, count(*) FROM reference.counterparties GROUP BY lob";

/// A contract change reaches a gateway and its workers separately. A worker that does not
/// hold it yet refuses the gateway's stages (its mesh version differs: it would read the
/// product as its own contract says), and once it has published its changed directory
/// (watched like a gateway's), it runs them again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_publishes_a_changed_contract_and_runs_the_gateways_stages_again() {
    let cluster = Cluster::start(2).await;
    let describe = |text: &str| {
        let changed = text.replacen(
            "One row per counterparty;",
            "One row per counterparty (republished);",
            1,
        );
        assert_ne!(changed, text);
        changed
    };
    let distribution = cluster.distribution().await;
    let (gateway, _lake) = gateway_on(distribution, |config| {
        let manifests = meshgate_reference::MANIFESTS.iter().map(|(name, text)| {
            let text = if name.ends_with("reference.counterparties.yaml") {
                describe(text)
            } else {
                text.to_string()
            };
            (*name, text)
        });
        config.catalog = meshgate::catalog::Catalog::from_sources(manifests).unwrap();
    })
    .await;
    let session = gateway.session(
        gateway
            .authenticate("risk-officer", "risk-officer-pw")
            .unwrap(),
    );
    let error = run_gateway(&session, FILTERED).await.unwrap_err();
    assert!(error.contains("policy version"), "{error}");

    for worker in &cluster.workers {
        let contract = worker.products.join("reference.counterparties.yaml");
        let text = std::fs::read_to_string(&contract).unwrap();
        std::fs::write(&contract, describe(&text)).unwrap();
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        match run_gateway(&session, FILTERED).await {
            Ok(rows) => {
                assert_eq!(rows.len(), 3, "{rows:?}");
                break;
            }
            Err(error) => {
                assert!(error.contains("policy version"), "{error}");
                assert!(
                    std::time::Instant::now() < deadline,
                    "the worker did not publish its change: {error}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_refuse_unsigned_forged_replayed_and_expired_plans() {
    let cluster = Cluster::start(1).await;
    let worker = cluster.urls()[0].clone();
    let (recorder, url) = Recorder::start().await;
    let (gateway, _lake, _) = Recorder::gateway(&url, |_| {}).await;
    let filtered = recorder.capture(&gateway, "cib-reporting", FILTERED).await;
    let unfiltered = recorder.capture(&gateway, "risk-officer", FILTERED).await;
    let stage = &filtered[0];
    assert!(stage.signature.is_some(), "the gateway signs every stage");
    let refused = |result: Result<Vec<Bytes>, tonic::Status>, what: &str| match result {
        Err(status) => {
            assert_eq!(
                status.code(),
                tonic::Code::PermissionDenied,
                "{what}: {status:?}"
            );
            status.message().to_string()
        }
        Ok(rows) => panic!("{what} was accepted ({} messages back)", rows.len()),
    };

    // Unsigned.
    let why = refused(
        send_stage(&worker, body(&stage.message), &[]).await,
        "an unsigned plan",
    );
    assert!(why.contains("not signed"), "{why}");

    // The policy filter removed: the same stage as planned for a reader no filter applies to,
    // under the filtered stage's signature.
    let without_filter = unfiltered
        .iter()
        .find(|s| s.message.len() != stage.message.len() || s.message != stage.message)
        .expect("the stages differ");
    let why = refused(
        send_stage(
            &worker,
            body(&without_filter.message),
            &recorded_headers(stage),
        )
        .await,
        "a plan with its filter removed",
    );
    assert!(why.contains("does not verify"), "{why}");

    // One byte changed anywhere in the plan.
    for at in [6, stage.message.len() / 2, stage.message.len() - 1] {
        let mut tampered = stage.message.to_vec();
        tampered[at] ^= 0x01;
        refused(
            send_stage(
                &worker,
                body(&Bytes::from(tampered)),
                &recorded_headers(stage),
            )
            .await,
            &format!("a plan altered at byte {at}"),
        );
    }

    // Expired: signed by the mesh's key, but no longer valid.
    let why = refused(
        send_stage(
            &worker,
            body(&stage.message),
            &signed(&stage.message, now() - 1),
        )
        .await,
        "an expired plan",
    );
    assert!(why.contains("expired"), "{why}");

    // Replayed: the same signed plan twice; the worker takes it once.
    let headers = signed(&stage.message, now() + 30);
    let first = send_stage(&worker, body(&stage.message), &headers).await;
    assert!(
        first.is_ok(),
        "a plan signed by the mesh's key runs: {first:?}"
    );
    let why = refused(
        send_stage(&worker, body(&stage.message), &headers).await,
        "a replayed plan",
    );
    assert!(why.contains("replayed"), "{why}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plan_for_a_policy_version_the_worker_does_not_hold_is_refused() {
    let cluster = Cluster::start(2).await;
    let worker = cluster.urls()[0].clone();
    let changed = |config: &mut meshgate::GatewayConfig| {
        config.policies.products[0]
            .text
            .push_str("\n# a change the workers have not received\n");
    };
    // Signed by the mesh's key, so only the version check stands in the way.
    let (recorder, url) = Recorder::start().await;
    let (gateway, _lake, _) = Recorder::gateway(&url, changed).await;
    // The stage that reads the table (the others read from stages). The gateway sends its
    // stages at once and the recorder's first refusal ends the query, so a stage still
    // being sent may be cancelled before it is recorded: ask again until it was.
    let mut scanning = None;
    for _ in 0..5 {
        scanning = recorder
            .capture(&gateway, "risk-officer", FILTERED)
            .await
            .into_iter()
            .find(|s| contains(&s.message, b"reference.counterparties"));
        if scanning.is_some() {
            break;
        }
    }
    let stage = scanning.expect("a stage scans the table");
    match send_stage(
        &worker,
        body(&stage.message),
        &signed(&stage.message, now() + 30),
    )
    .await
    {
        // DataFusion Distributed carries the worker's error in the status details.
        Err(status) => assert!(
            contains(status.details(), b"policy version")
                || status.message().contains("policy version"),
            "{status:?}"
        ),
        Ok(rows) => panic!("the worker accepted a stale plan ({} messages)", rows.len()),
    }

    // Through a gateway: the query is refused, saying why, and returns no row.
    let distribution = cluster.distribution().await;
    let (gateway, _lake) = gateway_on(distribution, changed).await;
    let session = gateway.session(
        gateway
            .authenticate("risk-officer", "risk-officer-pw")
            .unwrap(),
    );
    let error = run_gateway(&session, FILTERED).await.unwrap_err();
    assert!(error.contains("policy version"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_stage_carries_a_credential_or_a_key() {
    let (recorder, url) = Recorder::start().await;
    let (gateway, _lake, storage) = Recorder::gateway(&url, |_| {}).await;
    // Every table, as readers who get masks and tokens.
    let mut sent = Vec::new();
    for user in ["cib-reporting", "ccb-fraud", "risk-officer", "ref-owner"] {
        for sql in [
            "SELECT * FROM reference.counterparties",
            "SELECT * FROM payments.transactions",
            "SELECT * FROM markets.trades",
        ] {
            let session =
                gateway.session(gateway.authenticate(user, &format!("{user}-pw")).unwrap());
            recorder.stages.lock().unwrap().clear();
            if run_gateway(&session, sql).await.is_ok() {
                continue; // denied before planning: nothing sent
            }
            sent.extend(
                recorder
                    .stages
                    .lock()
                    .unwrap()
                    .iter()
                    .map(|s| s.message.clone()),
            );
        }
    }
    assert!(sent.len() >= 6, "stages were sent: {}", sent.len());
    let all: Vec<u8> = sent.iter().flat_map(|m| m.iter().copied()).collect();

    // What a stage must not carry: each lake's credentials, the master key, every token
    // domain's key and the stage signing key, raw and hex.
    let master = Sha256::digest(b"meshgate demo master key - public, never use for real data");
    let derive = |salt: &[u8], info: &[u8]| {
        let mut key = [0u8; 32];
        Hkdf::<Sha256>::new(Some(salt), &master)
            .expand(info, &mut key)
            .unwrap();
        key.to_vec()
    };
    let mut secrets: Vec<(String, Vec<u8>)> = vec![("the master key".into(), master.to_vec())];
    for domain in ["reference", "payments", "markets"] {
        secrets.push((
            format!("the `{domain}` token key"),
            derive(
                b"meshgate.tokenize.v1",
                format!("token-domain:{domain}").as_bytes(),
            ),
        ));
    }
    secrets.push((
        "the stage signing key".into(),
        derive(b"meshgate.signing.v1", b"distributed-stages"),
    ));
    let mut credentials = 0;
    for (product, storage) in &storage.products {
        if let Some(c) = &storage.static_credentials {
            credentials += 1;
            secrets.push((
                format!("{product}'s access key id"),
                c.access_key_id.as_bytes().to_vec(),
            ));
            secrets.push((
                format!("{product}'s secret key"),
                c.secret_access_key.as_bytes().to_vec(),
            ));
        }
    }
    assert_eq!(credentials, 3, "the lakes have credentials to leak");
    for (what, secret) in &secrets {
        for form in [secret.clone(), hex::encode(secret).into_bytes()] {
            assert!(!contains(&all, &form), "a stage carries {what}");
        }
    }
    // The check can see what is there: the seal names its product, policy and token domain.
    for present in [
        "reference.counterparties",
        "reference.counterparties@v",
        "reference",
    ] {
        assert!(
            contains(&all, present.as_bytes()),
            "a stage names {present}"
        );
    }
}

/// A query that keeps every worker busy until it is stopped (a self-join on inequality).
const LONG: &str = "SELECT count(*) FROM payments.transactions a \
                    JOIN payments.transactions b ON a.amount < b.amount";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_mid_query_fails_that_query_clearly_and_the_rest_go_on() {
    let mut cluster = Cluster::start(3).await;
    let network = cluster.network().await;
    let distribution = cluster::distribution(Arc::clone(&network), OnWorkerDown::Skip);
    let (gateway, _lake) = gateway_on(distribution, |_| {}).await;
    let (local, _lake_b) = local_gateway(|_| {}).await;
    let user = "risk-officer";
    let session = gateway.session(gateway.authenticate(user, "risk-officer-pw").unwrap());
    let running = {
        let session = session.clone();
        tokio::spawn(async move { session.collect(LONG).await })
    };
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    assert!(!running.is_finished(), "the query is still running");
    let killed = cluster.workers[1].url();
    cluster.workers[1].child.start_kill().unwrap();
    let error = tokio::time::timeout(std::time::Duration::from_secs(60), running)
        .await
        .expect("the query ends once its worker is gone")
        .unwrap()
        .expect_err("the query cannot complete without its worker");
    assert_eq!(error.code(), "unavailable", "{error}");
    assert!(
        error.to_string().contains(killed.as_str()),
        "the error names the worker that went away: {error}"
    );

    // The gateway goes on: the worker that went away is left out at once (no probe has run
    // since), and the next query runs on the workers that answer.
    let live = meshgate::engine::WorkerNetwork::live(network.as_ref());
    assert!(
        !live.contains(&killed),
        "{killed} is still planned on: {live:?}"
    );
    let sql = "SELECT currency, count(*), sum(amount) FROM payments.transactions GROUP BY currency";
    let expected = run_gateway(
        &local.session(local.authenticate(user, "risk-officer-pw").unwrap()),
        sql,
    )
    .await
    .unwrap();
    let actual = run_gateway(&session, sql).await.unwrap();
    assert_eq!(sorted(&actual), sorted(&expected));
}

/// A worker that saw its peer go away reports it to the gateway as text (DataFusion
/// Distributed passes errors between workers as strings), so the gateway asks the query's
/// workers again when a distributed query fails with an error it does not recognize
/// (`meshgate-engine`'s `distribute::Recheck`, unit-tested there). This is the network's half,
/// on real workers: the one killed since the last probe is found, reported and left out at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recheck_after_a_failure_finds_the_worker_gone_since_the_last_probe() {
    use meshgate::engine::WorkerNetwork;
    let mut cluster = Cluster::start(3).await;
    let network = Network::new(cluster.urls(), cluster::signer(), None);
    network.probe().await;
    assert_eq!(network.live().len(), 3, "every worker answers at first");
    assert!(network.recheck(&cluster.urls()).await.is_empty());
    let gone = cluster.workers[1].url();
    cluster.workers[1].child.kill().await.unwrap();
    assert!(
        network.live().contains(&gone),
        "no probe has run since the kill"
    );
    let down = network.recheck(&cluster.urls()).await;
    assert_eq!(down, vec![gone.clone()]);
    let live = network.live();
    assert!(
        !live.contains(&gone),
        "{gone} is still planned on: {live:?}"
    );
    assert_eq!(live.len(), 2, "the workers that answer stay: {live:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_down_at_planning_time_is_skipped_or_the_query_runs_in_process() {
    let mut cluster = Cluster::start(3).await;
    let down = cluster.workers[2].url();
    cluster.workers[2].child.kill().await.unwrap();
    let sql = "SELECT lob, count(*) FROM reference.counterparties GROUP BY lob";
    for (setting, expect_workers) in [(OnWorkerDown::Skip, true), (OnWorkerDown::Local, false)] {
        let network = Network::new(cluster.urls(), cluster::signer(), None);
        network.probe().await;
        let distribution = cluster::distribution(network, setting);
        let (gateway, _lake) = gateway_on(distribution, |_| {}).await;
        let session = gateway.session(
            gateway
                .authenticate("risk-officer", "risk-officer-pw")
                .unwrap(),
        );
        let query = session.query(sql).await.unwrap();
        let rows = query.collect().await.unwrap();
        assert!(!rows.is_empty());
        drop(query);
        // The record of that query names the workers its stages ran on, never the one down.
        let auditor = gateway.session(gateway.authenticate("auditor", "auditor-pw").unwrap());
        // (The outcome is written as the stream ends, a moment later.)
        let (mut workers, mut status) = (None, None);
        for _ in 0..50 {
            let last = run_gateway(
                &auditor,
                "SELECT status, workers FROM mesh_catalog.audit \
                 WHERE principal = 'risk-officer' ORDER BY started_at DESC LIMIT 1",
            )
            .await
            .unwrap();
            status = last[0][0].clone();
            if status.as_deref() == Some("ok") {
                workers = last[0][1].clone();
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        match expect_workers {
            true => {
                // Which case, if it fails: the record still unfinished after 5 s, or a query
                // that ran in process (the probe found no live worker).
                let workers = workers.unwrap_or_else(|| {
                    panic!("the stages ran on workers; the record's status: {status:?}")
                });
                assert!(!workers.contains(down.as_str()), "{workers}");
            }
            false => assert_eq!(workers, None, "{setting:?}: the query ran in process"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_mutual_tls_only_nodes_with_the_meshs_certificate_reach_a_worker() {
    use crate::support::pki;
    use rcgen::ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let ca = pki::certificate_authority("mesh CA");
    // A worker serves with its certificate and presents it to its peers.
    let (cert, key) = pki::issue_for(&ca, &["localhost"], "worker", vec![ServerAuth, ClientAuth]);
    let cluster = Cluster::start_with(2, Some((&ca.ca_pem, &cert, &key))).await;
    let (gateway_cert, gateway_key) = pki::issue(&ca, &["gateway"], "gateway", ClientAuth);
    let tls = |identity: Option<(Vec<u8>, Vec<u8>)>| meshgate::distributed::ClientTls {
        ca_pem: ca.ca_pem.clone().into_bytes(),
        identity,
        domain: Some("localhost".into()),
    };

    // Without a certificate the TLS handshake fails: the worker answers nothing.
    let anonymous = Network::new(cluster.urls(), cluster::signer(), Some(tls(None)));
    anonymous.probe().await;
    assert!(
        meshgate::engine::WorkerNetwork::live(anonymous.as_ref()).is_empty(),
        "a client without the mesh's certificate reaches no worker"
    );
    // Another CA's certificate does no better.
    let other = pki::certificate_authority("another CA");
    let (foreign_cert, foreign_key) = pki::issue(&other, &["gateway"], "gateway", ClientAuth);
    let foreign = Network::new(
        cluster.urls(),
        cluster::signer(),
        Some(tls(Some((
            foreign_cert.into_bytes(),
            foreign_key.into_bytes(),
        )))),
    );
    foreign.probe().await;
    assert!(meshgate::engine::WorkerNetwork::live(foreign.as_ref()).is_empty());

    // With the mesh's certificate, queries run on the workers (shuffles between them too).
    let network = Network::new(
        cluster.urls(),
        cluster::signer(),
        Some(tls(Some((
            gateway_cert.into_bytes(),
            gateway_key.into_bytes(),
        )))),
    );
    network.probe().await;
    assert_eq!(
        meshgate::engine::WorkerNetwork::live(network.as_ref()).len(),
        2
    );
    let distribution = cluster::distribution(network, OnWorkerDown::Skip);
    let (gateway, _lake) = gateway_on(distribution, |_| {}).await;
    let (local, _lake_b) = local_gateway(|_| {}).await;
    let sql = "SELECT c.lob, count(*) FROM payments.transactions t JOIN reference.counterparties c \
               ON t.counterparty_id = c.counterparty_id GROUP BY c.lob";
    let on_workers = gateway.session(
        gateway
            .authenticate("risk-officer", "risk-officer-pw")
            .unwrap(),
    );
    let in_process = local.session(
        local
            .authenticate("risk-officer", "risk-officer-pw")
            .unwrap(),
    );
    assert_eq!(
        sorted(&run_gateway(&on_workers, sql).await.unwrap()),
        sorted(&run_gateway(&in_process, sql).await.unwrap())
    );
    let explain = run_gateway(&on_workers, &format!("EXPLAIN {sql}"))
        .await
        .unwrap();
    assert!(
        explain
            .iter()
            .flatten()
            .flatten()
            .any(|t| t.contains("Stage 1")),
        "the query was cut into stages"
    );
}
