//! Three `meshgate serve` processes on one PostgreSQL store are one gateway: what one issues
//! (a session token, a prepared handle) works on the others, a decision taken through one
//! applies on all by their next query, every answered query is in the one audit with the
//! replica that answered it, a killed replica loses no record, and a store that goes away
//! refuses every query (UNAVAILABLE, naming the store) until it is back, without a restart.
//!
//! Real parts throughout: a PostgreSQL server of the test's own, the `meshgate` binary, the
//! reference mesh's files, Flight SQL clients over loopback.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandPreparedStatementQuery, ProstMessageExt};
use arrow_flight::{Action, FlightDescriptor};
use futures::TryStreamExt;
use prost::Message;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Child;
use tonic::Code;
use tonic::transport::Channel;

use crate::support::flight::{fetch, row_count};
use crate::support::postgres::{self, Postgres};

const DATABASE: &str = "meshgate";
const PASSWORD_ENV: &str = "MESHGATE_TEST_STORE_PASSWORD";

fn repo() -> PathBuf {
    crate::support::manifest_dir()
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// One `meshgate serve` process.
struct Replica {
    name: String,
    config: PathBuf,
    child: Child,
    flight: SocketAddr,
    ops: SocketAddr,
}

impl Replica {
    /// Start a replica named `name` on the shared store, with its own copy of the policy
    /// files (`<dir>/policies-<name>`), as each machine of a deployment has.
    async fn start(dir: &Path, pg: &Postgres, name: &str) -> Self {
        let config = dir.join(format!("meshgate-{name}.toml"));
        let repo = repo();
        let data = crate::support::truth::data_dir();
        let policies = dir.join(format!("policies-{name}"));
        crate::cli::copy_dir(&repo.join("policies"), &policies);
        std::fs::write(
            &config,
            format!(
                "products = \"{repo}/products\"\npolicies = \"{policies}\"\n\
                 users = \"{repo}/policies/users.toml\"\nmaster_key_file = \"master.key\"\n\
                 state = \"postgres://{user}@127.0.0.1:{port}/{DATABASE}\"\nreplica = \"{name}\"\n\
                 [store]\npassword_env = \"{PASSWORD_ENV}\"\nacquire_timeout = \"2s\"\n\
                 [storage.default]\nkind = \"local\"\npath = \"{data}/s3/{{bucket}}\"\n",
                repo = repo.display(),
                policies = policies.display(),
                user = postgres::USER,
                port = pg.port(),
                data = data.display(),
            ),
        )
        .unwrap();
        Self::spawn(name, config).await
    }

    async fn spawn(name: &str, config: PathBuf) -> Self {
        let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshgate"))
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--config",
            ])
            .arg(&config)
            .env(PASSWORD_ENV, postgres::PASSWORD)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let (mut flight, mut ops) = (None, None);
        while flight.is_none() {
            let line = tokio::time::timeout(Duration::from_secs(60), lines.next_line())
                .await
                .expect("the replica starts within a minute")
                .unwrap()
                .expect("the replica prints its addresses");
            if let Some(rest) = line.strip_prefix("operations on http://") {
                ops = rest.split_whitespace().next().map(|a| a.parse().unwrap());
            }
            if let Some(addr) = line.strip_prefix("listening on ") {
                flight = Some(addr.parse().unwrap());
            }
        }
        // Keep reading stdout so the replica never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            name: name.to_string(),
            config,
            child,
            flight: flight.unwrap(),
            ops: ops.expect("the operations listener"),
        }
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(format!("http://{}", self.flight))
            .unwrap()
            .connect()
            .await
            .unwrap()
    }

    /// A client that presents `token` (a session token from any replica).
    async fn with_token(&self, token: &str) -> FlightSqlServiceClient<Channel> {
        let mut client = FlightSqlServiceClient::new(self.channel().await);
        client.set_token(token.to_string());
        client
    }

    async fn login(&self, user: &str) -> (FlightSqlServiceClient<Channel>, String) {
        let mut client = FlightSqlServiceClient::new(self.channel().await);
        client.handshake(user, &format!("{user}-pw")).await.unwrap();
        let token = client.token().cloned().expect("a session token");
        (client, token)
    }

    /// `GET path` on the operations listener: (status, body).
    async fn http(&self, path: &str) -> (u16, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(self.ops).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = response
            .split_once("\r\n\r\n")
            .map(|(_, b)| b.to_string())
            .unwrap_or_default();
        (status, body)
    }

    /// Send SIGHUP: the replica reloads its policy files.
    fn hang_up(&self) {
        let pid = self.child.id().expect("running").to_string();
        let sent = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(sent.success());
    }

    async fn kill(&mut self) {
        self.child.kill().await.unwrap();
    }

    async fn restart(&mut self) {
        let _ = self.child.kill().await;
        *self = Self::spawn(&self.name.clone(), self.config.clone()).await;
    }
}

/// A PostgreSQL server, three replicas on it, and the reference mesh's data.
struct Cluster {
    pg: Postgres,
    dir: tempfile::TempDir,
    replicas: Vec<Replica>,
}

async fn cluster() -> Cluster {
    // The reference data in place (generated once per target directory).
    let _demo = meshgate_reference::demo(&crate::support::truth::data_dir())
        .await
        .unwrap();
    let pg = Postgres::start();
    pg.database(DATABASE);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("master.key"), "ab".repeat(32)).unwrap();
    let mut replicas = Vec::new();
    for name in ["a", "b", "c"] {
        replicas.push(Replica::start(dir.path(), &pg, name).await);
    }
    Cluster { pg, dir, replicas }
}

/// The gRPC code of a client error; a broken connection (a replica killed under the call)
/// is not a status from the server, and counts as UNAVAILABLE.
fn code(error: &arrow_flight::error::FlightError) -> Code {
    match error {
        arrow_flight::error::FlightError::Tonic(status) => status.code(),
        _ => Code::Unavailable,
    }
}

/// Run `sql` as the client's principal: the rows, or the status code and message.
async fn run(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<usize, (Code, String)> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| (code(&e), e.to_string()))?;
    let (_, batches) = fetch(client, &info)
        .await
        .map_err(|e| (code(&e), e.to_string()))?;
    Ok(row_count(&batches))
}

/// Call a `mesh.*` action: its JSON answer.
async fn act(
    client: &mut FlightSqlServiceClient<Channel>,
    action: &str,
    body: serde_json::Value,
) -> serde_json::Value {
    let mut results = client
        .do_action(Action {
            r#type: action.into(),
            body: body.to_string().into(),
        })
        .await
        .unwrap_or_else(|e| panic!("{action}: {e}"));
    let result = results.try_next().await.unwrap().expect("one result");
    serde_json::from_slice(&result.body).unwrap()
}

/// Run a prepared statement's handle on `channel` (any replica) as the token's principal.
async fn run_prepared(
    channel: Channel,
    token: &str,
    handle: &[u8],
) -> Result<usize, (Code, String)> {
    let mut raw = FlightServiceClient::new(channel.clone());
    let command = CommandPreparedStatementQuery {
        prepared_statement_handle: handle.to_vec().into(),
    };
    let mut request =
        tonic::Request::new(FlightDescriptor::new_cmd(command.as_any().encode_to_vec()));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let info = raw
        .get_flight_info(request)
        .await
        .map_err(|s| (s.code(), s.message().to_string()))?
        .into_inner();
    let mut client = FlightSqlServiceClient::new(channel);
    client.set_token(token.to_string());
    let (_, batches) = fetch(&mut client, &info)
        .await
        .map_err(|e| (code(&e), e.to_string()))?;
    Ok(row_count(&batches))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_handles_and_decisions_travel_between_replicas() {
    let cluster = cluster().await;
    let [a, b, c] = &cluster.replicas[..] else {
        unreachable!()
    };
    let counterparties = "SELECT * FROM reference.counterparties";

    // A session token from A works on B and C, with A's principal and policy.
    let (_, token) = a.login("cib-reporting").await;
    for replica in [a, b, c] {
        let rows = run(&mut replica.with_token(&token).await, counterparties).await;
        assert_eq!(rows, Ok(15000), "replica {}", replica.name);
    }
    // A statement ticket from A's GetFlightInfo is redeemed on C, as a load balancer that
    // spreads calls sends it.
    let info = a
        .with_token(&token)
        .await
        .execute(counterparties.into(), None)
        .await
        .unwrap();
    let (_, batches) = fetch(&mut c.with_token(&token).await, &info).await.unwrap();
    assert_eq!(row_count(&batches), 15000);
    // A forged token (another key) is refused everywhere.
    // (The last character replaced by another one, whatever it was.)
    let last = if token.ends_with('x') { "y" } else { "x" };
    let forged = format!("{}{last}", &token[..token.len() - 1]);
    let refused = run(&mut b.with_token(&forged).await, counterparties).await;
    assert_eq!(refused.unwrap_err().0, Code::Unauthenticated);

    // intern is refused everywhere, asks on A, ref-owner approves on A: C admits them by the
    // next query.
    let (mut intern_a, intern_token) = a.login("intern").await;
    let mut intern_c = c.with_token(&intern_token).await;
    assert_eq!(
        run(&mut intern_c, counterparties).await.unwrap_err().0,
        Code::PermissionDenied
    );
    let request = act(
        &mut intern_a,
        "mesh.request_access",
        serde_json::json!({"product": "reference.counterparties", "purpose": "replica test"}),
    )
    .await;
    let (mut owner_a, owner_token) = a.login("ref-owner").await;
    let approved = act(
        &mut owner_a,
        "mesh.approve_request",
        serde_json::json!({"request_id": request["id"]}),
    )
    .await;
    let grant_id = approved["grant"]["id"].as_str().unwrap().to_string();
    let admitted = run(&mut intern_c, counterparties).await;
    assert!(
        admitted.as_ref().is_ok_and(|n| *n > 0),
        "the grant approved on A admits on C at once: {admitted:?}"
    );

    // A prepared handle made on A runs on B (its principal's token from A)...
    let handle = crate::support::flight::prepared_handle(&mut intern_a, counterparties)
        .await
        .to_vec();
    assert!(
        run_prepared(b.channel().await, &intern_token, &handle)
            .await
            .is_ok()
    );
    // ...is another principal's on C...
    let stolen = run_prepared(c.channel().await, &owner_token, &handle).await;
    assert_eq!(stolen.unwrap_err().0, Code::PermissionDenied);
    // ...and once the grant is revoked on B, A's handle is refused on C.
    act(
        &mut b.with_token(&owner_token).await,
        "mesh.revoke_grant",
        serde_json::json!({"grant_id": grant_id, "reason": "replica test over"}),
    )
    .await;
    let revoked = run_prepared(c.channel().await, &intern_token, &handle).await;
    assert_eq!(
        revoked.as_ref().map_err(|e| e.0),
        Err(Code::PermissionDenied),
        "{revoked:?}"
    );

    // The one audit holds every replica's records, with the replica that answered; the
    // auditor reads them on any replica.
    let (mut auditor, _) = c.login("auditor").await;
    let info = auditor
        .execute(
            "SELECT replica, count(*) AS n FROM mesh_catalog.audit GROUP BY replica ORDER BY replica"
                .into(),
            None,
        )
        .await
        .unwrap();
    let (_, batches) = fetch(&mut auditor, &info).await.unwrap();
    let shown = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    for name in ["a", "b", "c"] {
        assert!(shown.contains(&format!("| {name} ")), "{shown}");
    }
}

/// One query of the load: a statement no other query sends, so its audit record is found
/// by the statement's hash.
fn load_statement(worker: usize, n: usize) -> String {
    format!(
        "SELECT count(*) AS n FROM reference.counterparties WHERE counterparty_id <> -{}",
        worker * 1_000_000 + n
    )
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

/// What the load saw: statements answered (with the replica), and failures by code.
#[derive(Debug, Default)]
struct Seen {
    answered: Vec<(String, String)>,
    failed: Vec<(String, Code, String)>,
}

/// `workers` clients, each sending queries to the replicas in turn until `stop`.
fn load(
    cluster: &Cluster,
    workers: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Seen>> {
    let targets: Vec<(String, SocketAddr)> = cluster
        .replicas
        .iter()
        .map(|r| (r.name.clone(), r.flight))
        .collect();
    (0..workers)
        .map(|worker| {
            let targets = targets.clone();
            let stop = Arc::clone(&stop);
            tokio::spawn(async move {
                let mut seen = Seen::default();
                let mut n = 0;
                while !stop.load(Ordering::SeqCst) {
                    n += 1;
                    let (name, addr) = &targets[(worker + n) % targets.len()];
                    let sql = load_statement(worker, n);
                    let outcome = async {
                        let channel = Channel::from_shared(format!("http://{addr}"))
                            .unwrap()
                            .connect_timeout(Duration::from_secs(2))
                            .connect()
                            .await
                            .map_err(|e| (Code::Unavailable, e.to_string()))?;
                        let mut client = FlightSqlServiceClient::new(channel);
                        client
                            .handshake("cib-reporting", "cib-reporting-pw")
                            .await
                            .map_err(|e| (code(&e), e.to_string()))?;
                        run(&mut client, &sql).await
                    };
                    match tokio::time::timeout(Duration::from_secs(20), outcome).await {
                        Ok(Ok(_)) => seen.answered.push((sql, name.clone())),
                        Ok(Err((code, message))) => seen.failed.push((name.clone(), code, message)),
                        Err(_) => {
                            seen.failed
                                .push((name.clone(), Code::DeadlineExceeded, "hung".into()))
                        }
                    }
                }
                seen
            })
        })
        .collect()
}

async fn collect(handles: Vec<tokio::task::JoinHandle<Seen>>) -> Seen {
    let mut all = Seen::default();
    for handle in handles {
        let seen = handle.await.unwrap();
        all.answered.extend(seen.answered);
        all.failed.extend(seen.failed);
    }
    all
}

/// Every answered statement has its audit record in PostgreSQL, written by the replica that
/// answered it.
fn assert_audited(pg: &Postgres, answered: &[(String, String)]) {
    let stored: std::collections::BTreeMap<String, String> = pg
        .query(DATABASE, "SELECT statement_sha256, replica FROM audit")
        .into_iter()
        .filter_map(|line| {
            line.split_once('|')
                .map(|(h, r)| (h.to_string(), r.to_string()))
        })
        .collect();
    for (sql, replica) in answered {
        assert_eq!(
            stored.get(&sha256(sql)),
            Some(replica),
            "`{sql}` was answered by {replica} but its audit record is not in the store"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_replica_loses_no_audit_record_and_the_others_keep_answering() {
    let mut cluster = cluster().await;
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&cluster, 6, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_secs(3)).await;
    cluster.replicas[1].kill().await;
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = collect(workers).await;

    let answered_by = |name: &str| seen.answered.iter().filter(|(_, r)| r == name).count();
    assert!(answered_by("b") > 0, "b answered before it was killed");
    assert!(
        answered_by("a") > 5 && answered_by("c") > 5,
        "the others kept answering: {:?}",
        seen.answered.len()
    );
    // Only b's queries failed, and only as a replica that went away fails.
    for (replica, code, message) in &seen.failed {
        assert_eq!(replica, "b", "{code:?}: {message}");
        assert!(
            matches!(
                code,
                Code::Unavailable | Code::Unknown | Code::Cancelled | Code::Internal
            ),
            "{code:?}: {message}"
        );
    }
    assert_audited(&cluster.pg, &seen.answered);
    // After the kill, b answered nothing (a process that is gone answers no one).
    assert!(killed_at.elapsed() > Duration::from_secs(2));

    // Restarted, b rejoins: it answers, and its records land in the one audit.
    cluster.replicas[1].restart().await;
    let (mut client, _) = cluster.replicas[1].login("cib-reporting").await;
    let sql = load_statement(99, 1);
    assert_eq!(run(&mut client, &sql).await, Ok(1));
    assert_audited(&cluster.pg, &[(sql, "b".to_string())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_store_that_goes_away_refuses_every_query_until_it_is_back() {
    let cluster = cluster().await;
    let stop = Arc::new(AtomicBool::new(false));
    let workers = load(&cluster, 3, Arc::clone(&stop));
    tokio::time::sleep(Duration::from_secs(2)).await;
    for replica in &cluster.replicas {
        assert_eq!(replica.http("/readyz").await.0, 200);
    }
    cluster.pg.stop();
    tokio::time::sleep(Duration::from_secs(4)).await;
    // While it is down, every replica is unready and says why.
    for replica in &cluster.replicas {
        let (status, body) = replica.http("/readyz").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("governance store"), "{body}");
    }
    cluster.pg.start_again();
    tokio::time::sleep(Duration::from_secs(4)).await;
    stop.store(true, Ordering::SeqCst);
    let seen = collect(workers).await;

    // Refusals while it was down: UNAVAILABLE, naming the store, never a bare error.
    assert!(
        !seen.failed.is_empty(),
        "queries ran while the store was down"
    );
    for (_, code, message) in &seen.failed {
        assert_eq!(*code, Code::Unavailable, "{message}");
        assert!(message.contains("governance store"), "{message}");
    }
    // Nothing was answered unaudited, and service resumed without a restart.
    assert_audited(&cluster.pg, &seen.answered);
    for (i, replica) in cluster.replicas.iter().enumerate() {
        let (mut client, _) = replica.login("cib-reporting").await;
        let sql = load_statement(100, i);
        assert_eq!(
            run(&mut client, &sql).await,
            Ok(1),
            "{} after the store came back",
            replica.name
        );
        assert_eq!(replica.http("/readyz").await.0, 200);
    }
}

/// The policy version of each audit record, oldest first, as `(replica, version)`.
fn versions(pg: &Postgres) -> Vec<(String, String)> {
    pg.query(
        DATABASE,
        "SELECT replica, policy_version FROM audit ORDER BY seq",
    )
    .into_iter()
    .filter_map(|l| {
        l.split_once('|')
            .map(|(r, v)| (r.to_string(), v.to_string()))
    })
    .collect()
}

/// A rolling policy change: one replica reloads new files (SIGHUP) while the others still
/// serve the old ones, and the audit says which version answered each query.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn during_a_rolling_policy_change_the_audit_names_the_version_that_answered() {
    let cluster = cluster().await;
    let [a, b, _] = &cluster.replicas[..] else {
        unreachable!()
    };
    let (mut on_a, token) = a.login("cib-reporting").await;
    let mut on_b = b.with_token(&token).await;
    run(&mut on_a, &load_statement(1, 1)).await.unwrap();
    run(&mut on_b, &load_statement(1, 2)).await.unwrap();
    let before = versions(&cluster.pg);
    let old = before[0].1.clone();
    assert!(before.iter().all(|(_, v)| *v == old), "{before:?}");

    // New files on a only (a comment is enough to make a new version), then SIGHUP.
    let policy = cluster
        .dir
        .path()
        .join("policies-a/products/reference.counterparties.toml");
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str("\n# rolled out to replica a first\n");
    std::fs::write(&policy, text).unwrap();
    a.hang_up();
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut n = 10;
    let new = loop {
        n += 1;
        run(&mut on_a, &load_statement(2, n)).await.unwrap();
        let latest = versions(&cluster.pg).pop().unwrap();
        if latest.1 != old {
            assert_eq!(latest.0, "a");
            break latest.1;
        }
        assert!(Instant::now() < deadline, "replica a did not reload");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    // b still answers with the old version, and its record says so.
    run(&mut on_b, &load_statement(3, 1)).await.unwrap();
    let latest = versions(&cluster.pg).pop().unwrap();
    assert_eq!(latest, ("b".to_string(), old));
    assert_ne!(new, latest.1);
}
