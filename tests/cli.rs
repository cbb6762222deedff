//! The `meshgate` command itself: password hashing for users files, key generation,
//! `check` (every state that would start silently), clear failures for configurations that
//! cannot work, the client reaching a TLS gateway with a token, listings that parse as JSON,
//! errors without stray quoting, and output that is safe for a terminal. (`meshgate demo`
//! and the walkthrough are exercised by the Python tests.)

use crate::support::flight;
use crate::support::pki::{certificate_authority, issue};

use std::io::Write;
use std::process::{Command, Stdio};

use meshgate::policy::UserDirectory;

fn meshgate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_meshgate"))
}

#[test]
fn hash_password_writes_a_hash_the_users_file_accepts() {
    let mut child = meshgate()
        .arg("hash-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"correct horse\n")
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success());
    let hash = String::from_utf8(output.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("correct horse"));
    let users = UserDirectory::parse(
        "users.toml",
        &format!("[[user]]\nname = \"ann\"\npassword = \"{hash}\"\n"),
    )
    .unwrap();
    assert!(users.authenticate("ann", "correct horse").is_ok());
    assert!(users.authenticate("ann", "correct horse\n").is_err());
}

#[test]
fn serve_names_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("meshgate.toml");
    std::fs::write(
        &config,
        "products = \"products\"\npolicies = \"policies\"\nlisten_on = \"x\"\n",
    )
    .unwrap();
    let output = meshgate()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(
        stderr.contains("meshgate.toml") && stderr.contains("listen_on"),
        "{stderr}"
    );

    std::fs::write(&config, "products = \"nowhere\"\npolicies = \"policies\"\n").unwrap();
    let output = meshgate()
        .args(["serve", "--config"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8(output.stderr).unwrap();
    assert!(stderr.contains("nowhere"), "{stderr}");
}

/// A request's purpose is the requester's text, shown to the owner who decides: an escape
/// sequence in it (clear the screen, move the cursor, rewrite the line being read) is shown
/// as text, never obeyed, in the table `meshgate access list` prints.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn access_list_shows_other_peoples_text_without_obeying_it() {
    use meshgate::governance::NewRequest;
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("meshgate.db");
    let server = flight::start_with(Default::default(), |config| {
        config.governance = meshgate::Governance::Sqlite(db);
    })
    .await;
    let purpose = "quarterly review\u{1b}[2J\u{1b}[1;1HAPPROVED BY CFO\u{9b}31m\r\u{7}";
    server
        .gateway
        .workflow()
        .request(
            "intern",
            NewRequest {
                product: "reference.counterparties".into(),
                columns: Vec::new(),
                purpose: purpose.into(),
                valid_days: Some(7),
            },
        )
        .await
        .unwrap();
    let address = format!("http://{}", server.addr);
    let output = tokio::task::spawn_blocking(move || {
        meshgate()
            .args([
                "access",
                "list",
                "--server",
                &address,
                "--user",
                "ref-owner",
            ])
            .env("MESHGATE_PASSWORD", "ref-owner-pw")
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("quarterly review"), "{stdout}");
    let obeyed: Vec<char> = stdout
        .chars()
        .filter(|c| c.is_control() && *c != '\n')
        .collect();
    assert!(
        obeyed.is_empty(),
        "control characters reach the terminal: {obeyed:?}"
    );
    assert!(stdout.contains("\\u{1b}[2J"), "{stdout}");
}

// ---------------------------------------------------------------------------------------
// keygen and check

#[test]
fn keygen_writes_a_private_key_file_and_never_overwrites_one_silently() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secrets/master.key");
    let output = meshgate()
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let key = std::fs::read_to_string(&path).unwrap();
    assert_eq!(key.trim().len(), 64);
    assert!(key.trim().chars().all(|c| c.is_ascii_hexdigit()));
    assert!(meshgate::protect::MasterKey::from_file(&path).is_ok());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "readable by its owner only: {mode:o}");
    }
    let again = meshgate()
        .args(["keygen", "--out"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    assert_eq!(std::fs::read_to_string(&path).unwrap(), key);
    let printed = meshgate().arg("keygen").output().unwrap();
    let printed = String::from_utf8(printed.stdout).unwrap();
    assert_eq!(printed.trim().len(), 64);
    assert_ne!(printed.trim(), key.trim());
}

/// `examples/own-mesh` copied into a scratch directory, with a key and its one Parquet file.
fn own_mesh() -> tempfile::TempDir {
    let source = crate::support::manifest_dir().join("../../examples/own-mesh");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&source, dir.path());
    std::fs::write(dir.path().join("master.key"), "42".repeat(32)).unwrap();
    let lake = dir.path().join("lakes/shop-orders/data/orders");
    std::fs::create_dir_all(&lake).unwrap();
    use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
    let batch = RecordBatch::try_from_iter([
        (
            "order_id",
            std::sync::Arc::new(Int64Array::from(vec![1, 2])) as _,
        ),
        (
            "region",
            std::sync::Arc::new(StringArray::from(vec!["EMEA", "AMER"])) as _,
        ),
        (
            "amount",
            std::sync::Arc::new(Float64Array::from(vec![1.0, 2.0])) as _,
        ),
        (
            "customer_email",
            std::sync::Arc::new(StringArray::from(vec!["a@x.test", "b@x.test"])) as _,
        ),
    ])
    .unwrap();
    let file = std::fs::File::create(lake.join("part-0.parquet")).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
    dir
}

pub(crate) fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// `meshgate <args>`: (exit status, stdout, stderr).
pub(crate) fn run<S: AsRef<std::ffi::OsStr>>(
    args: impl IntoIterator<Item = S>,
) -> (std::process::ExitStatus, String, String) {
    let output = meshgate().args(args).output().unwrap();
    (
        output.status,
        String::from_utf8(output.stdout).unwrap(),
        String::from_utf8(output.stderr).unwrap(),
    )
}

/// `meshgate check <dir>/meshgate.toml [extra]`: (success, stdout, stderr).
fn check(dir: &std::path::Path, extra: &[&str]) -> (bool, String, String) {
    let config = dir.join("meshgate.toml");
    let (status, stdout, stderr) = run([std::ffi::OsStr::new("check"), config.as_os_str()]
        .into_iter()
        .chain(extra.iter().map(std::ffi::OsStr::new)));
    (status.success(), stdout, stderr)
}

#[test]
fn check_passes_a_sound_mesh_and_leaves_no_state_behind() {
    let dir = own_mesh();
    let (ok, stdout, stderr) = check(dir.path(), &["--strict"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(
        stdout.contains("1 products, 1 with a product policy"),
        "{stdout}"
    );
    assert!(stdout.contains("0 warning(s)"), "{stdout}");
    assert!(
        !dir.path().join("state").exists(),
        "check creates no governance store"
    );
}

/// Each state that would start but serve less than meant: check passes with a warning
/// naming it (and `--strict` fails).
#[test]
fn check_warns_of_each_silent_start() {
    let remove_policy = |dir: &std::path::Path| {
        std::fs::remove_file(dir.join("policies/products/shop.orders.toml")).unwrap();
    };
    // `region` loses its classification: no rule names it, so nobody would see it.
    let unclassify = |dir: &std::path::Path| {
        let manifest = dir.join("products/shop.orders.yaml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        let changed = text.replacen(
            "physicalType: VARCHAR\n        required: true\n        classification: internal\n",
            "physicalType: VARCHAR\n        required: true\n",
            1,
        );
        assert_ne!(changed, text);
        std::fs::write(&manifest, changed).unwrap();
    };
    let empty_lake = |dir: &std::path::Path| {
        std::fs::remove_dir_all(dir.join("lakes/shop-orders/data")).unwrap();
    };
    // A worker nobody runs (the discard port refuses connections).
    let worker_down = |dir: &std::path::Path| {
        let config = dir.join("meshgate.toml");
        let mut text = std::fs::read_to_string(&config).unwrap();
        text.push_str("\n[distributed]\nworkers = [\"http://127.0.0.1:9\"]\n");
        std::fs::write(&config, text).unwrap();
    };
    type BreakIt<'a> = &'a dyn Fn(&std::path::Path);
    let cases: [(BreakIt, &str); 4] = [
        (
            &remove_policy,
            "warning: shop.orders: no product policy (policies/products/shop.orders.toml): every query of it is denied",
        ),
        (
            &unclassify,
            "warning: shop.orders: column `orders.region` has no classification and no rule",
        ),
        (
            &empty_lake,
            "warning: shop.orders: no data files in bucket `shop-orders`",
        ),
        (
            &worker_down,
            "warning: worker http://127.0.0.1:9/: does not answer (is `meshgate worker` running there",
        ),
    ];
    for (break_it, warning) in cases {
        let dir = own_mesh();
        break_it(dir.path());
        let (ok, _, stderr) = check(dir.path(), &[]);
        assert!(ok, "a warning, not an error: {stderr}");
        assert!(
            stderr.contains(warning),
            "expected `{warning}` in: {stderr}"
        );
        let (strict, _, _) = check(dir.path(), &["--strict"]);
        assert!(!strict, "--strict fails on `{warning}`");
    }
}

#[test]
fn check_and_serve_refuse_a_lake_directory_that_does_not_exist() {
    let dir = own_mesh();
    std::fs::remove_dir_all(dir.path().join("lakes")).unwrap();
    let (ok, _, stderr) = check(dir.path(), &[]);
    assert!(!ok);
    assert!(
        stderr.contains("shop.orders") && stderr.contains("does not exist"),
        "{stderr}"
    );
    assert!(!dir.path().join("lakes").exists(), "nothing was created");
    let serve = meshgate()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.path().join("meshgate.toml"))
        .output()
        .unwrap();
    assert!(!serve.status.success());
    assert!(String::from_utf8_lossy(&serve.stderr).contains("does not exist"));
}

/// What `serve` starts with passes the same check a later publish does: a mesh that
/// `meshgate lint` refuses is not served, and the error says which finding.
#[test]
fn serve_refuses_a_mesh_that_does_not_pass_lint() {
    let dir = own_mesh();
    crate::golden::edit(
        &dir.path().join("products/shop.orders.yaml"),
        "version: 1.0.0",
        "version: \"1.0\"",
    );
    let serve = meshgate()
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(dir.path().join("meshgate.toml"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&serve.stderr);
    assert!(!serve.status.success(), "{stderr}");
    assert!(
        stderr.contains("does not pass lint") && stderr.contains("error[semver]"),
        "{stderr}"
    );
}

#[test]
fn configuration_errors_name_file_line_and_column() {
    let dir = own_mesh();
    let config = dir.path().join("meshgate.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let broken = format!("{text}\n[limits]\nmax_concurrent = \"eight\"\n");
    let line = broken
        .lines()
        .position(|l| l.starts_with("max_concurrent"))
        .unwrap()
        + 1;
    std::fs::write(&config, broken).unwrap();
    let (ok, _, stderr) = check(dir.path(), &[]);
    assert!(!ok);
    assert!(
        stderr.contains(&format!("meshgate.toml:{line}:18: ")),
        "{stderr}"
    );
    assert!(
        stderr.contains("max_concurrent = \"eight\""),
        "the line as written: {stderr}"
    );

    std::fs::write(
        &config,
        text.replace(
            "\"lakes/{bucket}\"",
            "\"${MESHGATE_TEST_SURELY_UNSET}/{bucket}\"",
        ),
    )
    .unwrap();
    let (ok, _, stderr) = check(dir.path(), &[]);
    assert!(!ok);
    let line = text
        .lines()
        .position(|l| l.contains("lakes/{bucket}"))
        .unwrap()
        + 1;
    assert!(
        stderr.contains(&format!(
            "meshgate.toml:{line}:8: environment variable `MESHGATE_TEST_SURELY_UNSET` is not set"
        )),
        "{stderr}"
    );
}

/// A port in use fails the demo at once, before any data is generated.
#[test]
fn demo_on_a_port_in_use_fails_before_generating_anything() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let data = tempfile::tempdir().unwrap();
    let output = meshgate()
        .args([
            "demo",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--data-dir",
        ])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&port.to_string()), "{stderr}");
    assert!(
        std::fs::read_dir(data.path()).unwrap().next().is_none(),
        "nothing generated into the data directory"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_answers_for_a_serving_gateway_only() {
    let server = flight::default_server().await;
    let address = server.addr.to_string();
    let (ok, stdout, stderr) = cli(vec!["health".into(), "--server".into(), address], vec![]).await;
    assert!(ok, "{stdout}{stderr}");
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let nobody = closed.local_addr().unwrap().to_string();
    drop(closed);
    let (ok, _, stderr) = cli(vec!["health".into(), "--server".into(), nobody], vec![]).await;
    assert!(
        !ok && stderr.contains("cannot reach the gateway"),
        "{stderr}"
    );
}

#[test]
fn completions_and_man_pages_come_from_the_command_definition() {
    let output = meshgate().args(["completions", "bash"]).output().unwrap();
    let script = String::from_utf8(output.stdout).unwrap();
    assert!(output.status.success() && script.contains("keygen") && script.contains("--output"));
    let dir = tempfile::tempdir().unwrap();
    let output = meshgate()
        .args(["man", "--out"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let page = std::fs::read_to_string(dir.path().join("meshgate-access-approve.1")).unwrap();
    assert!(page.contains("request"), "{page}");
    assert!(dir.path().join("meshgate.1").exists());
}

// ---------------------------------------------------------------------------------------
// The client against a TLS gateway with an identity provider's token

const HS_SECRET: &[u8] = b"the cli test's shared secret, 32+ bytes";

fn token(sub: &str, roles: &[&str]) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let claims = serde_json::json!({
        "iss": "https://idp.test", "aud": "meshgate", "sub": sub, "roles": roles,
        "iat": now, "exp": now + 600,
    });
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(HS_SECRET),
    )
    .unwrap()
}

struct TlsGateway {
    server: flight::TestServer,
    ca_file: tempfile::NamedTempFile,
}

async fn tls_gateway() -> TlsGateway {
    use meshgate::flight::{FlightConfig, JwtConfig, JwtKey, PrincipalNamespace, TlsConfig};
    let pki = certificate_authority("cli test CA");
    let (cert, key) = issue(
        &pki,
        &["localhost", "127.0.0.1"],
        "meshgate",
        rcgen::ExtendedKeyUsagePurpose::ServerAuth,
    );
    let config = FlightConfig {
        tls: Some(TlsConfig {
            cert_pem: cert.into_bytes(),
            key_pem: zeroize::Zeroizing::new(key.into_bytes()),
            client_ca_pem: None,
            client_cert_required: false,
        }),
        jwt: vec![JwtConfig {
            issuer: "https://idp.test".into(),
            audience: "meshgate".into(),
            key: JwtKey::Hs256(zeroize::Zeroizing::new(HS_SECRET.to_vec())),
            principal_claim: "sub".into(),
            roles_claim: Some("roles".into()),
            attribute_claims: Default::default(),
            leeway: std::time::Duration::from_secs(5),
            principals: PrincipalNamespace::Prefix("idp.".into()),
            roles: None,
        }],
        ..FlightConfig::default()
    };
    let state = tempfile::tempdir().unwrap().keep();
    let server = flight::start_with(config, |gateway| {
        gateway.governance = meshgate::Governance::Sqlite(state.join("meshgate.db"));
    })
    .await;
    let mut ca_file = tempfile::NamedTempFile::new().unwrap();
    ca_file.write_all(pki.ca_pem.as_bytes()).unwrap();
    TlsGateway { server, ca_file }
}

/// Run the CLI with `args` (in a blocking task: the gateway shares this runtime).
async fn cli(args: Vec<String>, env: Vec<(&'static str, String)>) -> (bool, String, String) {
    tokio::task::spawn_blocking(move || {
        let mut command = meshgate();
        command.args(&args);
        for var in [
            "MESHGATE_SERVER",
            "MESHGATE_USER",
            "MESHGATE_PASSWORD",
            "MESHGATE_TOKEN",
            "MESHGATE_CA",
        ] {
            command.env_remove(var);
        }
        command.envs(env);
        let output = command.output().unwrap();
        (
            output.status.success(),
            String::from_utf8(output.stdout).unwrap(),
            String::from_utf8(output.stderr).unwrap(),
        )
    })
    .await
    .unwrap()
}

/// A refusal as a person should read it: the server's own words, not tonic's rendering.
fn assert_clean(error: &str) {
    for stray in [
        "\\\"",
        "\\n",
        "Status {",
        "message:",
        "details:",
        "metadata:",
        "Tonic error",
    ] {
        assert!(!error.contains(stray), "`{stray}` in: {error}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_reaches_a_tls_gateway_with_a_token_and_every_listing_parses_as_json() {
    let gateway = tls_gateway().await;
    let port = gateway.server.addr.port();
    let ca = gateway.ca_file.path().display().to_string();
    let risk = token("idp.risk-batch", &["firmwide-risk"]);
    let tls = |args: &[&str]| {
        let mut all: Vec<String> = args.iter().map(|a| a.to_string()).collect();
        all.extend([
            "--server".into(),
            format!("localhost:{port}"),
            "--tls".into(),
            "--ca".into(),
            ca.clone(),
        ]);
        all
    };
    let with_token = vec![("MESHGATE_TOKEN", risk.clone())];

    // An ad-hoc query as the token's principal, as JSON and as CSV.
    let (ok, stdout, stderr) = cli(
        tls(&[
            "sql",
            "SELECT count(*) AS n FROM reference.counterparties",
            "--output",
            "json",
        ]),
        with_token.clone(),
    )
    .await;
    assert!(ok, "{stderr}");
    let rows: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(rows[0]["n"], 30_000);
    let (ok, stdout, stderr) = cli(
        tls(&[
            "sql",
            "SELECT lob, count(*) AS n FROM reference.counterparties GROUP BY lob ORDER BY lob",
            "-o",
            "csv",
        ]),
        with_token.clone(),
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), "lob,n\nAWM,6000\nCCB,9000\nCIB,15000");

    // The token on the command line and a grpc+tls:// address work the same way.
    let (ok, stdout, stderr) = cli(
        vec![
            "sql".into(),
            "SELECT 1 AS one".into(),
            "--output".into(),
            "json".into(),
            "--server".into(),
            format!("grpc+tls://localhost:{port}"),
            "--ca".into(),
            ca.clone(),
            "--token".into(),
            risk.clone(),
        ],
        vec![],
    )
    .await;
    assert!(ok, "{stderr}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&stdout).unwrap()[0]["one"],
        1
    );

    // Every listing, as JSON, parses; times are ISO 8601.
    for args in [
        vec!["products", "search", "counterpart"],
        vec!["products", "show", "reference.counterparties"],
        vec!["access", "list"],
        vec!["flows"],
    ] {
        let mut args = args.clone();
        args.extend(["--output", "json"]);
        let (ok, stdout, stderr) = cli(tls(&args), with_token.clone()).await;
        assert!(ok, "{args:?}: {stderr}");
        let parsed: serde_json::Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("{args:?} does not print JSON ({e}): {stdout}"));
        assert!(
            parsed.is_array() || parsed.is_object(),
            "{args:?}: {stdout}"
        );
    }
    let (_, shown, _) = cli(
        tls(&["products", "show", "reference.counterparties", "-o", "json"]),
        with_token.clone(),
    )
    .await;
    let shown: serde_json::Value = serde_json::from_str(&shown).unwrap();
    let modified = shown["product"][0]["last_modified"].as_str().unwrap();
    assert!(
        modified.len() >= 20 && modified.as_bytes()[10] == b'T',
        "{modified}"
    );
    // Without --output, a product shows one field per line.
    let (ok, stdout, _) = cli(
        tls(&["products", "show", "reference.counterparties"]),
        with_token.clone(),
    )
    .await;
    assert!(
        ok && stdout
            .lines()
            .any(|l| l.starts_with("product_id ") && l.ends_with("| reference.counterparties")),
        "{stdout}"
    );

    // A request as JSON: ISO times, and the request's own fields.
    let intern = vec![
        ("MESHGATE_USER", "intern".to_string()),
        ("MESHGATE_PASSWORD", "intern-pw".to_string()),
    ];
    let (ok, stdout, stderr) = cli(
        tls(&[
            "access",
            "request",
            "markets.trades",
            "--purpose",
            "a \"quoted\" look",
            "-o",
            "json",
        ]),
        intern.clone(),
    )
    .await;
    assert!(ok, "{stderr}");
    let request: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(request["purpose"], "a \"quoted\" look");
    assert!(
        request["created_at"].as_str().unwrap().ends_with('Z'),
        "{stdout}"
    );

    // Refusals read as the server wrote them.
    let (ok, _, stderr) = cli(
        tls(&["sql", "SELECT * FROM payments.transactions"]),
        intern.clone(),
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.starts_with(
            "error: permission denied: `intern` may not read product `payments.transactions`"
        ),
        "{stderr}"
    );
    assert!(
        stderr.contains("meshgate access request payments.transactions"),
        "{stderr}"
    );
    assert_clean(&stderr);
    // An auditor (a deny rule) is refused up front, with that reason.
    let auditor = vec![
        ("MESHGATE_USER", "auditor".to_string()),
        ("MESHGATE_PASSWORD", "auditor-pw".to_string()),
    ];
    let (ok, _, stderr) = cli(
        tls(&[
            "access",
            "request",
            "markets.trades",
            "--purpose",
            "sampling",
        ]),
        auditor,
    )
    .await;
    assert!(!ok);
    assert!(
        stderr.contains("deny rule") && !stderr.contains("Request access"),
        "{stderr}"
    );
    assert_clean(&stderr);
    // A token outside the issuer's namespace, a wrong password, a plain connection to a TLS
    // port, and an untrusted certificate: each says what is wrong.
    let (ok, _, stderr) = cli(
        tls(&["sql", "SELECT 1"]),
        vec![("MESHGATE_TOKEN", token("cib-reporting", &[]))],
    )
    .await;
    assert!(!ok && stderr.contains("error: "), "{stderr}");
    assert_clean(&stderr);
    let (ok, _, stderr) = cli(
        tls(&["sql", "SELECT 1"]),
        vec![
            ("MESHGATE_USER", "intern".into()),
            ("MESHGATE_PASSWORD", "nope".into()),
        ],
    )
    .await;
    assert!(
        !ok && stderr.contains("cannot log in as `intern`"),
        "{stderr}"
    );
    assert_clean(&stderr);
    let (ok, _, stderr) = cli(
        vec![
            "sql".into(),
            "SELECT 1".into(),
            "--server".into(),
            format!("127.0.0.1:{port}"),
        ],
        with_token.clone(),
    )
    .await;
    assert!(!ok && stderr.contains("--tls"), "{stderr}");
    let (ok, _, stderr) = cli(
        vec![
            "sql".into(),
            "SELECT 1".into(),
            "--server".into(),
            format!("localhost:{port}"),
            "--tls".into(),
        ],
        with_token.clone(),
    )
    .await;
    assert!(
        !ok && stderr.contains("cannot reach the gateway"),
        "{stderr}"
    );
    assert!(
        !stderr.trim_end().ends_with("transport error"),
        "the cause is named: {stderr}"
    );
}
