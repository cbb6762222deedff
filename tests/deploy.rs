//! docker-compose.yml, checked without a Docker engine: it parses, its services and their
//! dependencies are what the deployment needs, its environment provides every variable the
//! image's configuration (deploy/meshgate.toml) needs, and the MinIO setup matches the
//! manifests. Then the same topology runs for real, minus Docker: an S3 server with the
//! users lake-setup.sh creates, the `seed` service's command, and the `gateway` service's
//! command with its configuration and environment, queried over Flight SQL.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use meshgate_lake_server::{KeyGrant, LakeServer};
use meshgate_reference as reference;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn compose() -> serde_yaml::Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let mut value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    value.apply_merge().unwrap();
    value
}

fn service<'a>(compose: &'a serde_yaml::Value, name: &str) -> &'a serde_yaml::Value {
    compose["services"]
        .get(name)
        .unwrap_or_else(|| panic!("service {name}"))
}

fn environment(compose: &serde_yaml::Value, name: &str) -> BTreeMap<String, String> {
    let env = service(compose, name)["environment"]
        .as_mapping()
        .unwrap_or_else(|| panic!("{name} has an environment"));
    env.iter()
        .map(|(k, v)| {
            (
                k.as_str().unwrap().to_string(),
                v.as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn strings(value: &serde_yaml::Value) -> Vec<String> {
    value
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_string())
        .collect()
}

/// `(product id, bucket)` of every product, from the repository's manifests.
fn products() -> Vec<(String, String)> {
    let catalog = reference::catalog().unwrap();
    catalog
        .products()
        .map(|p| (p.id.clone(), p.location.bucket.clone()))
        .collect()
}

fn upper_snake(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect()
}

#[test]
fn compose_services_build_the_image_and_run_in_order() {
    let compose = compose();
    let names: Vec<&str> = compose["services"]
        .as_mapping()
        .unwrap()
        .keys()
        .map(|k| k.as_str().unwrap())
        .collect();
    assert_eq!(names, ["minio", "lake-setup", "seed", "gateway"]);
    // Built once, by the gateway; the seed job reuses that image and never pulls one.
    assert_eq!(
        service(&compose, "gateway")["build"].as_str(),
        Some("."),
        "the gateway is built from ./Dockerfile"
    );
    assert!(service(&compose, "seed")["build"].is_null(), "built once");
    assert_eq!(
        service(&compose, "seed")["image"],
        service(&compose, "gateway")["image"]
    );
    assert_eq!(
        service(&compose, "seed")["pull_policy"].as_str(),
        Some("never")
    );
    let depends = |name: &str, on: &str| {
        service(&compose, name)["depends_on"][on]["condition"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(depends("lake-setup", "minio"), "service_healthy");
    assert_eq!(
        depends("seed", "lake-setup"),
        "service_completed_successfully"
    );
    assert_eq!(depends("gateway", "seed"), "service_completed_successfully");
    assert_eq!(
        strings(&service(&compose, "gateway")["ports"]),
        ["50051:50051"]
    );

    // The gateway runs the configuration the image carries, with the repository's products
    // and policies where that configuration expects them.
    let command = strings(&service(&compose, "gateway")["command"]);
    assert_eq!(
        command,
        ["serve", "--config", "/etc/meshgate/meshgate.toml"]
    );
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    // Dependencies cached between builds, never root, and a health check the binary answers
    // (`meshgate health`, tested in cli.rs).
    assert!(dockerfile.contains("--mount=type=cache,target=/usr/local/cargo/registry"));
    assert!(dockerfile.contains("--mount=type=cache,target=/src/target"));
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER line");
    assert!(user != "root" && user != "0", "runs as {user}");
    assert!(
        dockerfile.contains("HEALTHCHECK") && dockerfile.contains("CMD [\"meshgate\", \"health\""),
        "{dockerfile}"
    );
    for copy in [
        "COPY deploy/meshgate.toml /etc/meshgate/meshgate.toml",
        "COPY products /usr/share/meshgate/products",
        "COPY policies /usr/share/meshgate/policies",
    ] {
        assert!(dockerfile.contains(copy), "Dockerfile lacks `{copy}`");
    }
    let config = std::fs::read_to_string(repo().join("deploy/meshgate.toml")).unwrap();
    for path in [
        "/usr/share/meshgate/products",
        "/usr/share/meshgate/policies",
        "/usr/share/meshgate/policies/users.toml",
    ] {
        assert!(
            config.contains(&format!("\"{path}\"")),
            "deploy/meshgate.toml should use {path}"
        );
    }
    assert_eq!(
        strings(&service(&compose, "seed")["command"])[0],
        "seed-reference"
    );
}

#[test]
fn compose_environment_matches_the_gateways_configuration_and_the_lake_setup() {
    let compose = compose();
    let gateway = environment(&compose, "gateway");
    let setup = environment(&compose, "lake-setup");
    let seed = environment(&compose, "seed");
    let config = std::fs::read_to_string(repo().join("deploy/meshgate.toml")).unwrap();

    // Every variable the configuration needs is set for the gateway...
    let required = meshgate::config::required_environment(&config, &products()).unwrap();
    assert!(
        required.contains("MESHGATE_S3_ENDPOINT") && required.contains("MESHGATE_MASTER_KEY"),
        "{required:?}"
    );
    let missing: Vec<_> = required
        .iter()
        .filter(|name| !gateway.contains_key(*name))
        .collect();
    assert!(missing.is_empty(), "the gateway service lacks {missing:?}");
    let key = hex::decode(&gateway["MESHGATE_MASTER_KEY"]).unwrap();
    assert!(key.len() >= 32);

    // ...and the lake setup creates exactly the manifests' buckets, with the very keys the
    // gateway will use for each (lake-setup.sh derives the variable names from the bucket).
    let mut buckets: Vec<String> = setup["MESHGATE_BUCKETS"]
        .split_whitespace()
        .map(str::to_string)
        .collect();
    buckets.sort();
    let mut expected: Vec<String> = products().into_iter().map(|(_, bucket)| bucket).collect();
    expected.sort();
    assert_eq!(buckets, expected);
    for (product, bucket) in products() {
        assert_eq!(
            upper_snake(&product),
            upper_snake(&bucket),
            "lake-setup.sh names {bucket}'s keys after the product"
        );
        for suffix in ["ACCESS_KEY_ID", "SECRET_ACCESS_KEY"] {
            let name = format!("MESHGATE_S3_{}_{suffix}", upper_snake(&product));
            assert_eq!(setup.get(&name), gateway.get(&name), "{name}");
        }
    }
    for name in [
        "MESHGATE_SEED_ACCESS_KEY_ID",
        "MESHGATE_SEED_SECRET_ACCESS_KEY",
    ] {
        assert_eq!(setup.get(name), seed.get(name), "{name}");
        assert!(
            !gateway.contains_key(name),
            "the gateway never gets the key that writes"
        );
    }

    // The setup script is valid shell and uses those names.
    let script = repo().join("deploy/lake-setup.sh");
    let syntax = std::process::Command::new("sh")
        .arg("-n")
        .arg(&script)
        .status()
        .unwrap();
    assert!(syntax.success());
    let script = std::fs::read_to_string(script).unwrap();
    assert!(
        script.contains("$MESHGATE_BUCKETS")
            && script.contains("_ACCESS_KEY_ID")
            && script.contains("s3:GetObject")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_compose_topology_serves_the_reference_mesh() {
    let compose = compose();
    let setup = environment(&compose, "lake-setup");

    // minio + lake-setup: the buckets, one read-only user per bucket, one writing user.
    let root = tempfile::tempdir().unwrap();
    let mut grants = Vec::new();
    for bucket in setup["MESHGATE_BUCKETS"].split_whitespace() {
        std::fs::create_dir_all(root.path().join(bucket)).unwrap();
        let name = upper_snake(bucket);
        grants.push(KeyGrant {
            access_key: setup[&format!("MESHGATE_S3_{name}_ACCESS_KEY_ID")].clone(),
            secret_key: setup[&format!("MESHGATE_S3_{name}_SECRET_ACCESS_KEY")].clone(),
            buckets: vec![bucket.to_string()],
            write: false,
        });
    }
    grants.push(KeyGrant {
        access_key: setup["MESHGATE_SEED_ACCESS_KEY_ID"].clone(),
        secret_key: setup["MESHGATE_SEED_SECRET_ACCESS_KEY"].clone(),
        buckets: setup["MESHGATE_BUCKETS"]
            .split_whitespace()
            .map(str::to_string)
            .collect(),
        write: true,
    });
    let lake = LakeServer::start(
        root.path().to_path_buf(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        grants,
    )
    .await
    .unwrap();
    let endpoint = lake.endpoint();

    // seed: the service's command and environment.
    let mut seed = strings(&service(&compose, "seed")["command"]);
    seed.iter_mut()
        .for_each(|arg| *arg = arg.replace("http://minio:9000", &endpoint));
    let seeded = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .args(&seed)
        .env_clear()
        .envs(environment(&compose, "seed"))
        .output()
        .await
        .unwrap();
    assert!(
        seeded.status.success(),
        "{}",
        String::from_utf8_lossy(&seeded.stderr)
    );

    // gateway: the image's configuration (its files where the image has them), the
    // service's environment, the lake's address for `minio`.
    let config_dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(repo().join("deploy/meshgate.toml"))
        .unwrap()
        .replace("/usr/share/meshgate", &repo().display().to_string())
        .replace("/data/", &format!("{}/", config_dir.path().display()))
        .replace("0.0.0.0:50051", "127.0.0.1:0");
    std::fs::write(config_dir.path().join("meshgate.toml"), config).unwrap();
    let mut env = environment(&compose, "gateway");
    env.insert("MESHGATE_S3_ENDPOINT".into(), endpoint.clone());
    let mut gateway = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .args(["serve", "--config"])
        .arg(config_dir.path().join("meshgate.toml"))
        .env_clear()
        .envs(&env)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(gateway.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
            .await
            .expect("the gateway starts")
            .unwrap()
            .expect("the gateway prints its address");
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.to_string();
        }
    };

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
    let info = client
        .execute(
            "SELECT count(*) AS n, min(lob) AS lo, max(lob) AS hi FROM reference.counterparties"
                .into(),
            None,
        )
        .await
        .unwrap();
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let batches: Vec<_> = client
        .do_get(ticket)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let row = arrow::util::pretty::pretty_format_batches(&batches)
        .unwrap()
        .to_string();
    assert!(row.contains("| 15000 | CIB | CIB |"), "{row}");
    // The gateway read each product with that product's own key, and only read.
    let requests = lake.requests();
    let reads: Vec<_> = requests
        .iter()
        .filter(|r| {
            r.access_key
                .as_deref()
                .is_some_and(|k| k.starts_with("reader-"))
        })
        .collect();
    assert!(!reads.is_empty() && reads.iter().all(|r| r.is_read() && r.allowed));
    gateway.kill().await.unwrap();
}
