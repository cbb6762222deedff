//! The deployments, checked without a Docker engine or a Kubernetes cluster.
//!
//! docker-compose.yml: it parses, its services and their dependencies are what the
//! deployment needs, its environment provides every variable the image's configuration
//! (deploy/meshgate.toml) needs, the MinIO setup matches the manifests, and nginx balances
//! over both replicas. deploy/kubernetes: replicas with readiness on `/readyz`, secrets by
//! reference only, a disruption budget that matches the pods. Then the compose topology runs
//! for real, minus Docker: an S3 server with the users lake-setup.sh creates, a PostgreSQL
//! server, the `seed` service's command, both gateway replicas with their configuration and
//! environment, and one address in front of them, queried over Flight SQL.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;

use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use meshgate_lake_server::{KeyGrant, LakeServer};
use meshgate_reference as reference;
use tokio::io::{AsyncBufReadExt, BufReader};
use tonic::transport::Channel;

use crate::support::postgres::{self, Postgres};

fn repo() -> PathBuf {
    crate::support::manifest_dir()
        .join("../..")
        .canonicalize()
        .unwrap()
}

fn compose() -> serde_yaml::Value {
    let text = std::fs::read_to_string(repo().join("docker-compose.yml")).unwrap();
    let mut value: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    // A merge can bring in a mapping that merges another (the replicas' shared environment
    // merges the reader keys): merge until none is left.
    for _ in 0..4 {
        value.apply_merge().unwrap();
    }
    assert!(!serde_yaml::to_string(&value).unwrap().contains("<<"));
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
    assert_eq!(
        names,
        [
            "minio",
            "lake-setup",
            "seed",
            "postgres",
            "gateway-a",
            "gateway-b",
            "worker-1",
            "worker-2",
            "gateway"
        ]
    );
    // Built once, by gateway-a; the seed job and gateway-b reuse that image, never pull one.
    assert_eq!(
        service(&compose, "gateway-a")["build"].as_str(),
        Some("."),
        "the gateway is built from ./Dockerfile"
    );
    for reuses in ["seed", "gateway-b", "worker-1", "worker-2"] {
        assert!(service(&compose, reuses)["build"].is_null(), "built once");
        assert_eq!(
            service(&compose, reuses)["image"],
            service(&compose, "gateway-a")["image"]
        );
        assert_eq!(
            service(&compose, reuses)["pull_policy"].as_str(),
            Some("never")
        );
    }
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
    for replica in ["gateway-a", "gateway-b"] {
        assert_eq!(depends(replica, "seed"), "service_completed_successfully");
        assert_eq!(depends(replica, "postgres"), "service_healthy");
        assert_eq!(depends("gateway", replica), "service_healthy");
        // Each runs the configuration the image carries, with the repository's products and
        // policies where that configuration expects them.
        assert_eq!(
            strings(&service(&compose, replica)["command"]),
            ["serve", "--config", "/etc/meshgate/meshgate.toml"]
        );
    }
    // Workers run the same file in worker mode, with the lakes' keys and the master key but
    // never the store's password; the gateways list them.
    let gateway_env = environment(&compose, "gateway-a");
    for worker in ["worker-1", "worker-2"] {
        assert_eq!(depends(worker, "seed"), "service_completed_successfully");
        assert_eq!(
            strings(&service(&compose, worker)["command"]),
            ["worker", "--config", "/etc/meshgate/meshgate.toml"]
        );
        let env = environment(&compose, worker);
        assert!(
            !env.contains_key("MESHGATE_STORE_PASSWORD"),
            "{worker} holds the store password"
        );
        assert_eq!(
            env["MESHGATE_MASTER_KEY"],
            gateway_env["MESHGATE_MASTER_KEY"]
        );
        assert!(
            [
                &gateway_env["MESHGATE_WORKER_1"],
                &gateway_env["MESHGATE_WORKER_2"]
            ]
            .contains(&&format!("http://{worker}:50061")),
            "the gateways list {worker}"
        );
    }
    // One address: nginx, balancing gRPC calls over both replicas.
    assert_eq!(
        strings(&service(&compose, "gateway")["ports"]),
        ["50051:50051"]
    );
    assert_eq!(
        strings(&service(&compose, "gateway")["volumes"]),
        ["./deploy/nginx.conf:/etc/nginx/nginx.conf:ro"]
    );
    let nginx = std::fs::read_to_string(repo().join("deploy/nginx.conf")).unwrap();
    for line in [
        "server gateway-a:50051;",
        "server gateway-b:50051;",
        "listen 50051 http2;",
        "grpc_pass grpc://gateways;",
    ] {
        assert!(nginx.contains(line), "deploy/nginx.conf lacks `{line}`");
    }
    let dockerfile = std::fs::read_to_string(repo().join("Dockerfile")).unwrap();
    // Dependencies cached between builds, never root, and a health check the binary answers
    // (`meshgate health`, tested in cli.rs).
    assert!(dockerfile.contains("--mount=type=cache,target=/usr/local/cargo/registry"));
    assert!(dockerfile.contains("--mount=type=cache,target=/src/target"));
    // The Substrait crate's build script runs protoc.
    assert!(
        dockerfile.contains("protobuf-compiler"),
        "the build stage installs protoc"
    );
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
    let gateway = environment(&compose, "gateway-a");
    let other = environment(&compose, "gateway-b");
    let setup = environment(&compose, "lake-setup");
    let seed = environment(&compose, "seed");
    let postgres = environment(&compose, "postgres");
    let config = std::fs::read_to_string(repo().join("deploy/meshgate.toml")).unwrap();

    // Every variable the configuration needs is set for each replica...
    let required = meshgate::config::required_environment(&config, &products()).unwrap();
    for name in [
        "MESHGATE_S3_ENDPOINT",
        "MESHGATE_MASTER_KEY",
        "MESHGATE_STORE_PASSWORD",
        "MESHGATE_STORE_HOST",
        "MESHGATE_REPLICA",
    ] {
        assert!(required.contains(name), "{name}: {required:?}");
    }
    for replica in [&gateway, &other] {
        let missing: Vec<_> = required
            .iter()
            .filter(|name| !replica.contains_key(*name))
            .collect();
        assert!(missing.is_empty(), "a gateway replica lacks {missing:?}");
    }
    let key = hex::decode(&gateway["MESHGATE_MASTER_KEY"]).unwrap();
    assert!(key.len() >= 32);
    // ...the same for both but their names: one master key (what one signs, the other
    // accepts), one store.
    for (name, value) in &gateway {
        if name == "MESHGATE_REPLICA" {
            assert_ne!(Some(value), other.get(name));
        } else {
            assert_eq!(Some(value), other.get(name), "{name}");
        }
    }
    assert_eq!(
        postgres.get("POSTGRES_PASSWORD"),
        gateway.get("MESHGATE_STORE_PASSWORD")
    );
    assert!(config.contains("postgres://meshgate@${MESHGATE_STORE_HOST}:5432/meshgate"));
    assert_eq!(postgres["POSTGRES_USER"], "meshgate");
    assert_eq!(postgres["POSTGRES_DB"], "meshgate");

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

    // postgres: a server of the test's own, with the compose service's user and database.
    let pg = Postgres::start();
    pg.database("meshgate");

    // gateway-a and gateway-b: the image's configuration (its files where the image has
    // them), each service's environment, the test's servers for `minio` and `postgres`.
    let config_dir = tempfile::tempdir().unwrap();
    let config = std::fs::read_to_string(repo().join("deploy/meshgate.toml"))
        .unwrap()
        .replace("/usr/share/meshgate", &repo().display().to_string())
        .replace("0.0.0.0:50051", "127.0.0.1:0")
        .replace("0.0.0.0:9464", "127.0.0.1:0")
        .replace(":5432/", &format!(":{}/", pg.port()));
    std::fs::write(config_dir.path().join("meshgate.toml"), config).unwrap();
    // worker-1 and worker-2: the same file in worker mode, each service's environment.
    let config = std::fs::read_to_string(config_dir.path().join("meshgate.toml"))
        .unwrap()
        .replace("0.0.0.0:50061", "127.0.0.1:0")
        // Small tasks, so that the small reference mesh is cut into stages at all.
        .replace(
            "[distributed]\n",
            "[distributed]\nbytes_per_partition = \"64KiB\"\n",
        );
    std::fs::write(config_dir.path().join("meshgate.toml"), config).unwrap();
    let mut workers = Vec::new();
    for name in ["worker-1", "worker-2"] {
        let mut env = environment(&compose, name);
        env.insert("MESHGATE_S3_ENDPOINT".into(), endpoint.clone());
        let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshgate"))
            .args(["worker", "--config"])
            .arg(config_dir.path().join("meshgate.toml"))
            .env_clear()
            .envs(&env)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let addr = crate::support::cluster::listening_address(&mut worker).await;
        workers.push((worker, addr));
    }

    let mut replicas = Vec::new();
    for name in ["gateway-a", "gateway-b"] {
        let mut env = environment(&compose, name);
        env.insert("MESHGATE_S3_ENDPOINT".into(), endpoint.clone());
        for (i, (_, addr)) in workers.iter().enumerate() {
            env.insert(
                format!("MESHGATE_WORKER_{}", i + 1),
                format!("http://{addr}"),
            );
        }
        env.insert("MESHGATE_STORE_HOST".into(), "127.0.0.1".into());
        env.insert("MESHGATE_STORE_PASSWORD".into(), postgres::PASSWORD.into());
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
        let mut ops = None;
        let addr: SocketAddr = loop {
            let line = tokio::time::timeout(std::time::Duration::from_secs(60), lines.next_line())
                .await
                .expect("the gateway starts")
                .unwrap()
                .expect("the gateway prints its address");
            if let Some(rest) = line.strip_prefix("operations on http://") {
                ops = rest.split_whitespace().next().map(str::to_string);
            }
            if let Some(addr) = line.strip_prefix("listening on ") {
                break addr.parse().unwrap();
            }
        };
        replicas.push((gateway, addr, ops.expect("the operations listener is on")));
    }

    // gateway: one address in front of both. nginx balances calls; this stand-in balances
    // connections, which is enough to land a client's calls on either replica.
    let front = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let front_addr = front.local_addr().unwrap();
    let backends: Vec<SocketAddr> = replicas.iter().map(|(_, addr, _)| *addr).collect();
    tokio::spawn(async move {
        for turn in 0.. {
            let Ok((mut inbound, _)) = front.accept().await else {
                return;
            };
            let backend = backends[turn % backends.len()];
            tokio::spawn(async move {
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(backend).await {
                    let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                }
            });
        }
    });

    // A client logs in through the one address (landing on one replica) and queries through
    // it again on a new connection (landing on the other) with its session token.
    let sql = "SELECT count(*) AS n, min(lob) AS lo, max(lob) AS hi FROM reference.counterparties";
    let connect = async || {
        Channel::from_shared(format!("http://{front_addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap()
    };
    let mut first = FlightSqlServiceClient::new(connect().await);
    first
        .handshake("cib-reporting", "cib-reporting-pw")
        .await
        .unwrap();
    let token = first.token().cloned().unwrap();
    let mut second = FlightSqlServiceClient::new(connect().await);
    second.set_token(token);
    for client in [&mut first, &mut second] {
        let info = client.execute(sql.into(), None).await.unwrap();
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
    }
    // Both replicas answered, into the one audit in PostgreSQL, and their stages ran on
    // the workers.
    let replicas_in_audit = pg.query("meshgate", "SELECT DISTINCT replica FROM audit ORDER BY 1");
    assert_eq!(replicas_in_audit, ["gateway-a", "gateway-b"]);
    // (An outcome is written as the stream ends, a moment after the client has its rows.)
    let mut distributed = Vec::new();
    for _ in 0..50 {
        distributed = pg.query(
            "meshgate",
            "SELECT count(*) FROM audit WHERE workers IS NOT NULL AND status = 'ok'",
        );
        if distributed == ["2"] {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(distributed, ["2"], "both queries ran on the workers");
    // Each is ready by its probe.
    for (_, _, ops) in &replicas {
        let mut stream = tokio::net::TcpStream::connect(ops.as_str()).await.unwrap();
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        stream
            .write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }
    // Each replica read each product with that product's own key, and only read.
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
    for (mut gateway, _, _) in replicas {
        gateway.kill().await.unwrap();
    }
    for (mut worker, _) in workers {
        worker.kill().await.unwrap();
    }
}

#[test]
fn kubernetes_replicas_are_probed_budgeted_and_take_secrets_by_reference() {
    let text = std::fs::read_to_string(repo().join("deploy/kubernetes/meshgate.yaml")).unwrap();
    let docs: Vec<serde_yaml::Value> = text
        .split("\n---\n")
        .map(|d| serde_yaml::from_str(d).unwrap())
        .collect();
    let kind = |k: &str| {
        docs.iter()
            .find(|d| d["kind"].as_str() == Some(k))
            .unwrap_or_else(|| panic!("a {k}"))
    };
    let deployment = kind("Deployment");
    let labels = &deployment["spec"]["selector"]["matchLabels"];
    assert_eq!(
        &deployment["spec"]["template"]["metadata"]["labels"],
        labels
    );
    assert_eq!(&kind("Service")["spec"]["selector"], labels);
    let budget = kind("PodDisruptionBudget");
    assert_eq!(&budget["spec"]["selector"]["matchLabels"], labels);
    let replicas = deployment["spec"]["replicas"].as_i64().unwrap();
    let min_available = budget["spec"]["minAvailable"].as_i64().unwrap();
    assert!(replicas >= 2 && min_available >= 1 && min_available < replicas);

    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        strings(&container["args"])[..3],
        ["serve", "--config", "/etc/meshgate/meshgate.toml"]
    );
    // Probes on the operations listener the image's configuration opens.
    let config = std::fs::read_to_string(repo().join("deploy/meshgate.toml")).unwrap();
    assert!(config.contains("listen = \"0.0.0.0:9464\""));
    let metrics_port = container["ports"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|p| p["name"].as_str() == Some("metrics"))
        .unwrap()["containerPort"]
        .as_i64();
    assert_eq!(metrics_port, Some(9464));
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    // Longer than the drain, so running queries finish before the pod is killed.
    assert!(
        deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
            .as_i64()
            .unwrap()
            > 30
    );

    // Every variable the configuration needs is set; every secret only by reference.
    let env: BTreeMap<String, &serde_yaml::Value> = container["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e))
        .collect();
    let required = meshgate::config::required_environment(&config, &products()).unwrap();
    let missing: Vec<_> = required.iter().filter(|n| !env.contains_key(*n)).collect();
    assert!(missing.is_empty(), "the Deployment lacks {missing:?}");
    for (name, entry) in &env {
        let secret = ["KEY", "PASSWORD", "SECRET"]
            .iter()
            .any(|word| name.contains(word));
        if secret {
            assert!(
                entry["value"].is_null(),
                "{name} is written in the manifest"
            );
            assert!(
                !entry["valueFrom"]["secretKeyRef"]["name"].is_null(),
                "{name} comes from a Secret"
            );
        }
    }
    assert_eq!(
        env["MESHGATE_REPLICA"]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name",
        "each pod names itself on its audit records"
    );

    // The workers: the same file in worker mode, every variable it needs but the store's
    // password, secrets by reference, each by the stable name the gateways list.
    let workers = kind("StatefulSet");
    let worker = &workers["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        strings(&worker["args"])[..3],
        ["worker", "--config", "/etc/meshgate/meshgate.toml"]
    );
    let worker_env: BTreeMap<String, &serde_yaml::Value> = worker["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|e| (e["name"].as_str().unwrap().to_string(), e))
        .collect();
    let missing: Vec<_> = required
        .iter()
        .filter(|n| *n != "MESHGATE_STORE_PASSWORD" && !worker_env.contains_key(*n))
        .collect();
    assert!(missing.is_empty(), "the workers lack {missing:?}");
    assert!(!worker_env.contains_key("MESHGATE_STORE_PASSWORD"));
    for (name, entry) in &worker_env {
        if ["KEY", "PASSWORD", "SECRET"]
            .iter()
            .any(|w| name.contains(w))
        {
            assert!(
                entry["value"].is_null(),
                "{name} is written in the manifest"
            );
        }
    }
    let service_name = workers["spec"]["serviceName"].as_str().unwrap();
    let headless = docs
        .iter()
        .find(|d| d["kind"] == "Service" && d["metadata"]["name"].as_str() == Some(service_name))
        .expect("the workers' headless service");
    assert_eq!(headless["spec"]["clusterIP"].as_str(), Some("None"));
    let replicas = workers["spec"]["replicas"].as_i64().unwrap();
    for i in 0..replicas {
        let url = format!(
            "http://{}-{i}.{service_name}:50061",
            workers["metadata"]["name"].as_str().unwrap()
        );
        let listed = [&env["MESHGATE_WORKER_1"], &env["MESHGATE_WORKER_2"]]
            .iter()
            .any(|e| e["value"].as_str() == Some(url.as_str()));
        assert!(listed, "the gateways list {url}");
    }
}
