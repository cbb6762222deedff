//! Product lakes on S3: physical separation of buckets, new files, files that do not match
//! their manifest, every fault the gateway must survive (wrong key, missing bucket,
//! unreachable or slow endpoint, an outage mid-query, a corrupt or vanished file), request
//! accounting and the shared footer cache, spill cleanup, and proof that queries never write.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, AsArray, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use futures::StreamExt;
use meshgate::storage::{Problem, ProductStorageError, StaticCredentials};
use meshgate::{Gateway, GatewayConfig, GatewayError, Principal};
use meshgate_lake_server::{KeyGrant, LakeServer};
use meshgate_reference::{self as reference, Demo};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;

fn shared_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reference-mesh")
}

/// The reference mesh on this process's own S3 server over the shared data directory.
async fn shared() -> Demo {
    reference::demo(&shared_dir()).await.unwrap()
}

/// The reference mesh in a data directory of its own, for tests that change the lakes.
async fn fresh() -> (tempfile::TempDir, Demo) {
    let dir = tempfile::tempdir().unwrap();
    let demo = reference::demo(dir.path()).await.unwrap();
    (dir, demo)
}

fn risk() -> Principal {
    Principal::new("risk-officer").with_role("firmwide-risk")
}

async fn run(gateway: &Gateway, sql: &str) -> Result<Vec<RecordBatch>, GatewayError> {
    gateway.session(risk()).collect(sql).await
}

fn count_of(batches: &[RecordBatch]) -> i64 {
    batches[0]
        .column(0)
        .as_primitive::<arrow::datatypes::Int64Type>()
        .value(0)
}

async fn count(gateway: &Gateway, table: &str) -> i64 {
    count_of(
        &run(gateway, &format!("SELECT count(*) FROM {table}"))
            .await
            .unwrap(),
    )
}

fn credentials(config: &GatewayConfig, product: &str) -> StaticCredentials {
    config.storage.products[product]
        .static_credentials
        .clone()
        .unwrap()
}

fn storage_error(result: Result<Vec<RecordBatch>, GatewayError>) -> ProductStorageError {
    match result {
        Err(GatewayError::Storage(error)) => error,
        other => panic!("expected a storage error, got {other:?}"),
    }
}

fn parquet(batch: &RecordBatch) -> Vec<u8> {
    let mut out = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    out
}

async fn put(store: &Arc<dyn ObjectStore>, key: &str, bytes: Vec<u8>) {
    store
        .put(&ObjectPath::from(key), PutPayload::from(bytes))
        .await
        .unwrap();
}

async fn get(store: &Arc<dyn ObjectStore>, key: &str) -> Vec<u8> {
    store
        .get(&ObjectPath::from(key))
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap()
        .to_vec()
}

// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn each_products_key_reaches_only_its_own_bucket() {
    let demo = shared().await;
    let products = [
        "reference.counterparties",
        "payments.transactions",
        "markets.trades",
    ];
    let bucket_of = |p: &str| {
        demo.config
            .catalog
            .product(p)
            .unwrap()
            .location
            .bucket
            .clone()
    };
    for a in products {
        let key = credentials(&demo.config, a);
        for b in products {
            let store = reference::s3_store(
                &demo.lake.endpoint(),
                &bucket_of(b),
                &key.access_key_id,
                &key.secret_access_key,
            )
            .unwrap();
            let listed: Result<Vec<_>, _> = store
                .list(Some(&ObjectPath::from("data")))
                .collect::<Vec<_>>()
                .await
                .into_iter()
                .collect();
            if a == b {
                assert!(
                    !listed.unwrap().is_empty(),
                    "{a}'s key reads its own bucket"
                );
                // ...but cannot write it: the gateway's keys are read-only.
                let write = store
                    .put(
                        &ObjectPath::from("data/x.parquet"),
                        PutPayload::from_static(b"x"),
                    )
                    .await;
                assert!(
                    matches!(write, Err(object_store::Error::PermissionDenied { .. })),
                    "{write:?}"
                );
            } else {
                let error = listed.unwrap_err().to_string();
                assert!(
                    error.contains("403 Forbidden") && error.contains("AccessDenied"),
                    "{a} on {b}: {error}"
                );
            }
        }
    }
    // The refusals are the server's: real 403s for real, signed requests.
    let denied: Vec<_> = demo
        .lake
        .requests()
        .into_iter()
        .filter(|r| !r.allowed)
        .collect();
    assert_eq!(denied.len(), 3 * 2 + 3, "{denied:?}");
    assert!(denied.iter().all(|r| {
        r.access_key
            .as_deref()
            .is_some_and(|k| k.starts_with("reader-"))
    }));
}

#[tokio::test]
async fn a_new_file_is_served_by_the_next_query() {
    let (_dir, mut demo) = fresh().await;
    demo.config.storage.listing_ttl = Duration::ZERO;
    let writer = demo.writer("markets-trades").unwrap();
    let gateway = Gateway::open(demo.config).await.unwrap();
    assert_eq!(count(&gateway, "markets.trades").await, 50_000);
    let before = gateway
        .lake_status()
        .await
        .into_iter()
        .find(|s| s.product == "markets.trades")
        .unwrap();

    tokio::time::sleep(Duration::from_millis(1100)).await; // a visibly newer modification time
    let first_file = get(&writer, "data/trades/part-00000.parquet").await;
    put(&writer, "data/trades/part-00009.parquet", first_file).await;
    assert_eq!(
        count(&gateway, "markets.trades").await,
        75_000,
        "no restart, no waiting"
    );

    let after = gateway
        .lake_status()
        .await
        .into_iter()
        .find(|s| s.product == "markets.trades")
        .unwrap();
    assert_eq!((before.files, after.files), (2, 3));
    assert!(after.bytes > before.bytes);
    assert!(
        after.last_modified > before.last_modified,
        "freshness moves with the lake"
    );
}

#[tokio::test]
async fn with_a_listing_cache_new_files_appear_within_its_ttl() {
    let (_dir, mut demo) = fresh().await;
    demo.config.storage.listing_ttl = Duration::from_millis(300);
    let writer = demo.writer("markets-trades").unwrap();
    let gateway = Gateway::open(demo.config).await.unwrap();
    assert_eq!(count(&gateway, "markets.trades").await, 50_000);
    let first_file = get(&writer, "data/trades/part-00000.parquet").await;
    put(&writer, "data/trades/part-00009.parquet", first_file).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(count(&gateway, "markets.trades").await, 75_000);
}

#[tokio::test]
async fn files_that_do_not_match_the_manifest_are_refused_by_name() {
    let (_dir, demo) = fresh().await;
    let writer = demo.writer("markets-trades").unwrap();
    let gateway = Gateway::open(demo.config).await.unwrap();

    // trade_id as text, a file without trader_id, and half a file.
    let wrong_type = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new(
            "trade_id",
            DataType::Utf8,
            false,
        )])),
        vec![Arc::new(StringArray::from(vec!["x"])) as ArrayRef],
    )
    .unwrap();
    let full = get(&writer, "data/trades/part-00000.parquet").await;
    let mut reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(
        bytes::Bytes::from(full.clone()),
    )
    .unwrap()
    .build()
    .unwrap();
    let trades = reader.next().unwrap().unwrap();
    let without_trader = trades.project(&[0, 1, 2, 3, 4, 6]).unwrap();
    assert!(
        without_trader
            .schema()
            .field_with_name("trader_id")
            .is_err()
    );
    put(
        &writer,
        "data/trades/bad-type.parquet",
        parquet(&wrong_type),
    )
    .await;
    put(
        &writer,
        "data/trades/no-trader.parquet",
        parquet(&without_trader),
    )
    .await;
    put(
        &writer,
        "data/trades/truncated.parquet",
        full[..full.len() / 2].to_vec(),
    )
    .await;

    // The rest of the product keeps serving.
    let planned = gateway
        .session(risk())
        .query("SELECT count(*) FROM markets.trades")
        .await
        .unwrap();
    assert_eq!(count_of(&planned.collect().await.unwrap()), 50_000);
    let refused: BTreeMap<String, String> = planned
        .io_report()
        .refused_files
        .into_iter()
        .map(|(p, file, why)| (format!("{p}:{file}"), why))
        .collect();
    assert_eq!(refused.len(), 3, "{refused:?}");
    assert!(
        refused["markets.trades:data/trades/bad-type.parquet"]
            .contains("column `trade_id` is Utf8"),
        "{refused:?}"
    );
    assert!(
        refused["markets.trades:data/trades/no-trader.parquet"].contains("no column `trader_id`"),
        "{refused:?}"
    );
    assert!(
        refused["markets.trades:data/trades/truncated.parquet"].contains("not readable Parquet"),
        "{refused:?}"
    );

    let status = gateway
        .lake_status()
        .await
        .into_iter()
        .find(|s| s.product == "markets.trades")
        .unwrap();
    assert_eq!(status.files, 2);
    let named: Vec<&str> = status
        .refused_files
        .iter()
        .map(|(f, _)| f.as_str())
        .collect();
    assert_eq!(
        named,
        [
            "data/trades/bad-type.parquet",
            "data/trades/no-trader.parquet",
            "data/trades/truncated.parquet"
        ]
    );
    assert!(status.error.is_none());
}

#[tokio::test]
async fn a_corrupt_file_fails_the_query_naming_the_product() {
    let (_dir, demo) = fresh().await;
    let writer = demo.writer("markets-trades").unwrap();
    let gateway = Gateway::open(demo.config).await.unwrap();
    // Destroy the first row group's pages but keep the page index and footer at the end of
    // the file, so the file passes its check and fails only when its data is read.
    let mut bytes = get(&writer, "data/trades/part-00001.parquet").await;
    let half = bytes.len() / 2;
    for byte in &mut bytes[4..half] {
        *byte = 0xA5;
    }
    put(&writer, "data/trades/part-00001.parquet", bytes).await;
    match run(
        &gateway,
        "SELECT sum(notional), max(trader_id) FROM markets.trades",
    )
    .await
    {
        Err(GatewayError::Execution { message, .. }) => {
            assert!(message.contains("product `markets.trades`"), "{message}")
        }
        other => panic!("expected the query to fail naming the product, got {other:?}"),
    }
    // Other products are not affected, and neither is the gateway.
    assert_eq!(count(&gateway, "reference.counterparties").await, 30_000);
}

#[tokio::test]
async fn a_file_that_vanishes_after_listing_fails_the_query_naming_product_and_file() {
    let (dir, mut demo) = fresh().await;
    // Listings are reused for a minute: the next query plans with a file that is then gone.
    demo.config.storage.listing_ttl = Duration::from_secs(60);
    let writer = demo.writer("payments-transactions").unwrap();
    let gateway = Gateway::open(demo.config).await.unwrap();
    let read_all = "SELECT count(*), max(card_number) FROM payments.transactions";
    assert_eq!(count_of(&run(&gateway, read_all).await.unwrap()), 200_000);
    writer
        .delete(&ObjectPath::from("data/transactions/part-00001.parquet"))
        .await
        .unwrap();
    let error = storage_error(run(&gateway, read_all).await);
    assert_eq!(
        (error.product.as_str(), error.problem),
        ("payments.transactions", Problem::ObjectMissing)
    );
    assert!(
        error
            .to_string()
            .contains("data/transactions/part-00001.parquet"),
        "{error}"
    );
    // A gateway that lists again serves what is left.
    let mut config = reference::demo(dir.path()).await.unwrap();
    config.config.storage.listing_ttl = Duration::ZERO;
    let relisting = Gateway::open(config.config).await.unwrap();
    assert_eq!(count_of(&run(&relisting, read_all).await.unwrap()), 100_000);
}

#[tokio::test]
async fn wrong_credentials_are_named_without_revealing_them_and_others_keep_working() {
    let demo = shared().await;
    let mut config = demo.config;
    let real = credentials(&config, "payments.transactions");
    let wrong_secret = "not-the-secret-0123456789";
    config
        .storage
        .products
        .get_mut("payments.transactions")
        .unwrap()
        .static_credentials = Some(StaticCredentials {
        access_key_id: real.access_key_id.clone(),
        secret_access_key: wrong_secret.into(),
    });
    let gateway = Gateway::open(config).await.unwrap();
    let error = storage_error(run(&gateway, "SELECT count(*) FROM payments.transactions").await);
    assert_eq!(
        (error.product.as_str(), error.problem),
        ("payments.transactions", Problem::AccessDenied)
    );
    let message = error.to_string();
    assert!(
        message.contains("payments.transactions") && message.contains("credentials"),
        "{message}"
    );
    for secret in [wrong_secret, real.secret_access_key.as_str()] {
        assert!(!message.contains(secret));
    }
    assert_eq!(count(&gateway, "reference.counterparties").await, 30_000);
    let status = gateway.lake_status().await;
    let broken: Vec<_> = status
        .iter()
        .filter(|s| s.error.is_some())
        .map(|s| s.product.as_str())
        .collect();
    assert_eq!(broken, ["payments.transactions"]);
}

#[tokio::test]
async fn a_missing_bucket_is_named() {
    let demo = shared().await;
    // A second server where the key is allowed on a bucket that does not exist.
    let root = tempfile::tempdir().unwrap();
    let grant = KeyGrant {
        access_key: "ghost-reader".into(),
        secret_key: "ghost-secret".into(),
        buckets: vec!["ghost-bucket".into()],
        write: false,
    };
    let ghost = LakeServer::start(
        root.path().to_path_buf(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        vec![grant],
    )
    .await
    .unwrap();
    let mut config = demo.config;
    let trades = config.storage.products.get_mut("markets.trades").unwrap();
    trades.endpoint = Some(ghost.endpoint());
    trades.bucket = Some("ghost-bucket".into());
    trades.static_credentials = Some(StaticCredentials {
        access_key_id: "ghost-reader".into(),
        secret_access_key: "ghost-secret".into(),
    });
    let gateway = Gateway::open(config).await.unwrap();
    let error = storage_error(run(&gateway, "SELECT count(*) FROM markets.trades").await);
    assert_eq!(
        (error.product.as_str(), error.bucket.as_str(), error.problem),
        ("markets.trades", "ghost-bucket", Problem::NoSuchBucket)
    );
    assert!(
        error.to_string().contains("`ghost-bucket` does not exist"),
        "{error}"
    );
    assert_eq!(count(&gateway, "payments.transactions").await, 200_000);
}

#[tokio::test]
async fn an_unreachable_endpoint_fails_within_the_timeout() {
    let demo = shared().await;
    let mut config = demo.config;
    config.storage.connect_timeout = Duration::from_millis(500);
    config.storage.max_retries = 1;
    // Nothing listens on the discard port.
    config
        .storage
        .products
        .get_mut("payments.transactions")
        .unwrap()
        .endpoint = Some("http://127.0.0.1:9".into());
    let gateway = Gateway::open(config).await.unwrap();
    let started = Instant::now();
    let error = storage_error(run(&gateway, "SELECT count(*) FROM payments.transactions").await);
    assert_eq!(
        (error.product.as_str(), error.problem),
        ("payments.transactions", Problem::Unreachable)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    assert_eq!(count(&gateway, "markets.trades").await, 50_000);
}

#[tokio::test]
async fn a_slow_endpoint_times_out_and_the_gateway_recovers() {
    let demo = shared().await;
    let mut config = demo.config;
    config.storage.request_timeout = Duration::from_millis(400);
    config.storage.max_retries = 1;
    config.storage.listing_ttl = Duration::ZERO;
    let gateway = Gateway::open(config).await.unwrap();
    assert_eq!(count(&gateway, "markets.trades").await, 50_000);
    demo.lake.set_stalled(true);
    let started = Instant::now();
    let error = storage_error(run(&gateway, "SELECT count(*) FROM markets.trades").await);
    assert_eq!(
        (error.product.as_str(), error.problem),
        ("markets.trades", Problem::Timeout)
    );
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    demo.lake.set_stalled(false);
    assert_eq!(count(&gateway, "markets.trades").await, 50_000);
}

#[tokio::test]
async fn an_outage_mid_query_fails_it_and_the_store_coming_back_serves_again() {
    let mut demo = shared().await;
    demo.config.target_partitions = Some(1);
    demo.config.storage.listing_ttl = Duration::ZERO;
    demo.config.storage.connect_timeout = Duration::from_millis(500);
    demo.config.storage.max_retries = 1;
    let gateway = Gateway::open(demo.config).await.unwrap();
    let mut stream = gateway
        .session(risk())
        .sql("SELECT * FROM payments.transactions")
        .await
        .unwrap();
    assert!(stream.next().await.unwrap().is_ok());
    demo.lake.stop();
    let mut failure = None;
    while let Some(batch) = stream.next().await {
        if let Err(error) = batch {
            failure = Some(GatewayError::from_execution(error));
            break;
        }
    }
    match failure {
        Some(GatewayError::Storage(error)) => {
            assert_eq!(error.product, "payments.transactions");
            assert!(error.is_transient(), "{error:?}");
        }
        other => panic!("expected an outage to fail the query, got {other:?}"),
    }
    assert!(matches!(
        run(&gateway, "SELECT count(*) FROM markets.trades").await,
        Err(GatewayError::Storage(_))
    ));
    demo.lake.restart().await.unwrap();
    assert_eq!(count(&gateway, "payments.transactions").await, 200_000);
}

/// Every file under the lake's root: path -> (size, modified, content hash).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, (u64, std::time::SystemTime, u64)> {
    use std::hash::{Hash, Hasher};
    walk(root)
        .into_iter()
        .map(|path| {
            let meta = path.metadata().unwrap();
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            std::fs::read(&path).unwrap().hash(&mut hasher);
            (
                path,
                (meta.len(), meta.modified().unwrap(), hasher.finish()),
            )
        })
        .collect()
}

#[tokio::test]
async fn queries_never_write_to_any_product_bucket() {
    let demo = shared().await;
    let root = shared_dir().join("s3");
    let before = snapshot(&root);
    demo.lake.clear_requests();
    let gateway = Gateway::open(demo.config).await.unwrap();
    for user in reference::PRINCIPALS {
        let session = gateway.session(gateway.authenticate(user, &format!("{user}-pw")).unwrap());
        for sql in [
            "SELECT * FROM reference.counterparties",
            "SELECT lob, count(*), sum(amount) FROM payments.transactions GROUP BY lob",
            "SELECT t.*, c.legal_name FROM markets.trades t JOIN reference.counterparties c USING (counterparty_id)",
            "EXPLAIN SELECT * FROM markets.trades",
            "SELECT * FROM information_schema.columns",
            "COPY (SELECT * FROM reference.counterparties) TO 's3://reference-counterparties/stolen.parquet'",
            "INSERT INTO markets.trades (trade_id) VALUES (1)",
        ] {
            // Denials and refusals are expected for some principals; none may write.
            if let Ok(query) = session.query(sql).await {
                let _ = query.collect().await;
                assert_eq!(query.io_report().total().writes_refused, 0, "{user}: {sql}");
            }
        }
    }
    let _ = gateway.lake_status().await;
    let requests = demo.lake.requests();
    assert!(
        requests.len() > 20,
        "the queries did reach the lakes: {}",
        requests.len()
    );
    let writes: Vec<_> = requests.iter().filter(|r| !r.is_read()).collect();
    assert!(writes.is_empty(), "write requests: {writes:?}");
    assert!(
        requests.iter().all(|r| r.allowed),
        "every request was allowed for its own bucket"
    );
    assert_eq!(snapshot(&root), before, "no byte of any bucket changed");
}

#[tokio::test]
async fn footers_are_read_once_for_every_session() {
    let demo = shared().await;
    let gateway = Gateway::open(demo.config).await.unwrap();
    let sql = "SELECT max(legal_name) FROM reference.counterparties";
    let io_of = |principal: Principal| {
        let gateway = gateway.clone();
        async move {
            let query = gateway.session(principal).query(sql).await.unwrap();
            query.collect().await.unwrap();
            query.io_report().products["reference.counterparties"]
        }
    };
    let first = io_of(risk()).await;
    let second = io_of(Principal::new("ref-owner")).await;
    // The first query read each of the 3 footers; the second, another principal in another
    // session, found them in the shared cache.
    assert!(
        first.gets >= second.gets + 3,
        "first {first:?}, second {second:?}"
    );
    assert!(
        first.bytes > second.bytes && second.gets > 0,
        "first {first:?}, second {second:?}"
    );
}

#[tokio::test]
async fn spill_files_are_removed_after_the_query() {
    let demo = shared().await;
    let spill = tempfile::tempdir().unwrap();
    let mut config = demo.config;
    config.memory_limit = Some(24 << 20);
    config.spill_dir = Some(spill.path().to_path_buf());
    config.target_partitions = Some(1);
    let gateway = Gateway::open(config).await.unwrap();
    let query = gateway
        .session(risk())
        .query("SELECT * FROM payments.transactions ORDER BY amount, card_number")
        .await
        .unwrap();
    let batches = query.collect().await.unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 200_000);
    assert!(
        query.spill_count() > 0,
        "the sort had to spill under an 8 MiB limit"
    );
    let left: Vec<_> = walk(spill.path());
    assert!(left.is_empty(), "spill files left behind: {left:?}");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        if entry.path().is_dir() {
            out.extend(walk(&entry.path()));
        } else {
            out.push(entry.path());
        }
    }
    out
}

#[tokio::test]
async fn lake_status_reports_files_bytes_and_freshness() {
    let demo = shared().await;
    let gateway = Gateway::open(demo.config).await.unwrap();
    let status = gateway.lake_status().await;
    let summary: Vec<(String, usize)> = status
        .iter()
        .map(|s| (s.product.clone(), s.files))
        .collect();
    assert_eq!(
        summary,
        [
            ("markets.trades".into(), 2),
            ("payments.transactions".into(), 2),
            ("reference.counterparties".into(), 3)
        ]
    );
    for s in &status {
        let on_disk: u64 = walk(&shared_dir().join("s3").join(&s.bucket).join("data"))
            .iter()
            .map(|p| p.metadata().unwrap().len())
            .sum();
        assert_eq!(s.bytes, on_disk, "{}", s.product);
        assert!(s.last_modified.is_some() && s.refused_files.is_empty() && s.error.is_none());
    }
}
