//! The reference mesh of `docs/reference-mesh.md`: three products in three buckets, six
//! principals, and deterministic data (same bytes on every machine).
//!
//! The manifests and policies are the repository's own files (`products/`, `policies/`),
//! compiled into the binary so that `meshgate demo` works from any directory. The data is
//! generated in memory and uploaded through the S3 API into the demo's in-process S3 server
//! (whose files live under `<data dir>/s3/<bucket>/...`) on first use, and reused afterwards.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::Schema;
use bytes::Bytes;
use meshgate_catalog::Catalog;
use meshgate_engine::{GatewayConfig, Governance};
use meshgate_lake_server::{KeyGrant, LakeServer};
use meshgate_policy::{PolicySources, Source, UserDirectory};
use meshgate_protect::MasterKey;
use meshgate_storage::{ProductStorage, StaticCredentials, StorageConfig};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use rand::RngCore;

/// Product manifests, as `(file name, text)`.
pub const MANIFESTS: &[(&str, &str)] = &[
    (
        "products/reference.counterparties.yaml",
        include_str!("../../../products/reference.counterparties.yaml"),
    ),
    (
        "products/payments.transactions.yaml",
        include_str!("../../../products/payments.transactions.yaml"),
    ),
    (
        "products/markets.trades.yaml",
        include_str!("../../../products/markets.trades.yaml"),
    ),
];

const ACCESS_MODEL: (&str, &str) = (
    "policies/access.conf",
    include_str!("../../../policies/access.conf"),
);
const ACCESS_RULES: (&str, &str) = (
    "policies/access.csv",
    include_str!("../../../policies/access.csv"),
);
const PRODUCT_POLICIES: &[(&str, &str)] = &[
    (
        "policies/products/reference.counterparties.toml",
        include_str!("../../../policies/products/reference.counterparties.toml"),
    ),
    (
        "policies/products/payments.transactions.toml",
        include_str!("../../../policies/products/payments.transactions.toml"),
    ),
    (
        "policies/products/markets.trades.toml",
        include_str!("../../../policies/products/markets.trades.toml"),
    ),
];
const GLOBAL_RULES: (&str, &str) = (
    "policies/global.toml",
    include_str!("../../../policies/global.toml"),
);
const USERS: (&str, &str) = (
    "policies/users.toml",
    include_str!("../../../policies/users.toml"),
);

/// Bumped whenever the generated data changes, so old data dirs are regenerated.
const DATA_VERSION: &str = "reference-mesh-data-v1";

/// Rows per product, as the reference mesh defines them.
pub const COUNTERPARTIES: i64 = 30_000;
pub const TRANSACTIONS: i64 = 200_000;
pub const TRADES: i64 = 50_000;

/// The demo users' passwords are `<user>-pw`.
pub const PRINCIPALS: &[&str] = &[
    "cib-reporting",
    "ccb-fraud",
    "risk-officer",
    "ref-owner",
    "auditor",
    "intern",
];

#[derive(Debug, thiserror::Error)]
pub enum ReferenceError {
    #[error("cannot upload the reference data to bucket `{bucket}`: {message}")]
    Upload { bucket: String, message: String },
    #[error("cannot write the reference mesh under {path}: {message}")]
    Io { path: String, message: String },
    #[error("the embedded reference mesh is invalid (a build bug): {0}")]
    Invalid(String),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> ReferenceError + '_ {
    move |e| ReferenceError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

/// The reference catalog.
pub fn catalog() -> Result<Catalog, ReferenceError> {
    Catalog::from_sources(MANIFESTS.iter().copied())
        .map_err(|e| ReferenceError::Invalid(e.to_string()))
}

/// The reference policies.
pub fn policy_sources() -> PolicySources {
    PolicySources {
        access_model: Source::new(ACCESS_MODEL.0, ACCESS_MODEL.1),
        access_rules: Source::new(ACCESS_RULES.0, ACCESS_RULES.1),
        products: PRODUCT_POLICIES
            .iter()
            .map(|(name, text)| Source::new(*name, *text))
            .collect(),
        global: Some(Source::new(GLOBAL_RULES.0, GLOBAL_RULES.1)),
    }
}

/// The demo users.
pub fn users() -> Result<UserDirectory, ReferenceError> {
    UserDirectory::parse(USERS.0, USERS.1).map_err(|e| ReferenceError::Invalid(e.to_string()))
}

/// Where the demo keeps its data when no `--data-dir` is given: `$MESHGATE_DATA_DIR`, else
/// `$XDG_DATA_HOME/meshgate/reference-mesh`, else `~/.local/share/meshgate/reference-mesh`.
/// Independent of the current directory.
pub fn default_data_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("MESHGATE_DATA_DIR") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("meshgate/reference-mesh")
}

/// Whether [`demo`] had to upload the data or found it in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Generated {
    Created,
    Reused,
}

/// One generated Parquet file: its product, bucket, key and bytes.
#[derive(Clone)]
pub struct DataFile {
    pub product: String,
    pub bucket: String,
    pub key: String,
    pub bytes: Bytes,
}

impl std::fmt::Debug for DataFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataFile")
            .field("bucket", &self.bucket)
            .field("key", &self.key)
            .field("bytes", &self.bytes.len())
            .finish()
    }
}

/// The reference data: every Parquet file of every product, generated deterministically
/// (the same bytes on every machine).
pub fn data_files() -> Result<Vec<DataFile>, ReferenceError> {
    data_files_with(&|_| {})
}

/// What a long step reports as it goes (`generating markets.trades`): the demo prints it.
pub type Progress<'a> = &'a (dyn Fn(&str) + Sync);

/// [`data_files`], reporting each table as it is generated.
pub fn data_files_with(progress: Progress<'_>) -> Result<Vec<DataFile>, ReferenceError> {
    type Generate = fn() -> Result<RecordBatch, ReferenceError>;
    let catalog = catalog()?;
    let mut out = Vec::new();
    let tables: [(&str, &str, Generate, usize, usize); 3] = [
        ("reference", "counterparties", counterparties, 10_000, 4_000),
        ("payments", "transactions", transactions, 100_000, 20_000),
        ("markets", "trades", trades, 25_000, 10_000),
    ];
    for (domain, table, generate, rows_per_file, rows_per_group) in tables {
        progress(&format!("generating {domain}.{table}"));
        let batch = generate()?;
        let (product, table_def) = catalog
            .table(domain, table)
            .ok_or_else(|| ReferenceError::Invalid(format!("{domain}.{table}")))?;
        let prefix = product.location.table_prefix(table_def);
        for (index, bytes) in parquet_files(&batch, rows_per_file, rows_per_group)?
            .into_iter()
            .enumerate()
        {
            out.push(DataFile {
                product: product.id.clone(),
                bucket: product.location.bucket.clone(),
                key: format!("{prefix}part-{index:05}.parquet"),
                bytes,
            });
        }
    }
    Ok(out)
}

/// The object in each bucket that says which version of the data it holds.
const MARKER: &str = ".meshgate-reference";

/// Upload the reference data into its buckets unless every bucket already holds this
/// version. `store_for` gives a store able to write each bucket.
pub async fn upload(
    store_for: impl Fn(&str) -> Result<Arc<dyn ObjectStore>, ReferenceError>,
) -> Result<Generated, ReferenceError> {
    upload_with(store_for, &|_| {}).await
}

/// [`upload`], reporting its steps.
pub async fn upload_with(
    store_for: impl Fn(&str) -> Result<Arc<dyn ObjectStore>, ReferenceError>,
    progress: Progress<'_>,
) -> Result<Generated, ReferenceError> {
    let catalog = catalog()?;
    let upload_error = |bucket: &str, e: object_store::Error| ReferenceError::Upload {
        bucket: bucket.to_string(),
        message: e.to_string(),
    };
    let mut complete = true;
    for product in catalog.products() {
        let bucket = &product.location.bucket;
        let marker = store_for(bucket)?.get(&ObjectPath::from(MARKER)).await;
        let current = match marker {
            Ok(found) => found
                .bytes()
                .await
                .is_ok_and(|b| b.as_ref() == DATA_VERSION.as_bytes()),
            Err(object_store::Error::NotFound { .. }) => false,
            Err(e) => return Err(upload_error(bucket, e)),
        };
        complete &= current;
    }
    if complete {
        return Ok(Generated::Reused);
    }
    let files = data_files_with(progress)?;
    let (count, total) = (
        files.len(),
        files.iter().map(|f| f.bytes.len()).sum::<usize>(),
    );
    progress(&format!(
        "uploading {count} files ({:.1} MB)",
        total as f64 / 1e6
    ));
    for file in files {
        store_for(&file.bucket)?
            .put(
                &ObjectPath::from(file.key.as_str()),
                PutPayload::from_bytes(file.bytes),
            )
            .await
            .map_err(|e| upload_error(&file.bucket, e))?;
    }
    // Markers last: a bucket is only "current" once all of its files are in.
    for product in catalog.products() {
        let bucket = &product.location.bucket;
        store_for(bucket)?
            .put(
                &ObjectPath::from(MARKER),
                PutPayload::from_static(DATA_VERSION.as_bytes()),
            )
            .await
            .map_err(|e| upload_error(bucket, e))?;
    }
    Ok(Generated::Created)
}

/// The reference mesh, served the way a deployment serves it: from an in-process
/// S3-compatible server with one bucket per product and one read-only access key per bucket.
pub struct Demo {
    /// The running S3 server (keep it alive as long as the gateway).
    pub lake: LakeServer,
    pub config: GatewayConfig,
    pub generated: Generated,
    /// The key that uploads the data: the only one allowed to write.
    uploader: KeyGrant,
}

impl Demo {
    /// A store that can write `bucket`, as a product's own pipeline would (the gateway's
    /// keys cannot): for uploading new files in tests and examples.
    pub fn writer(&self, bucket: &str) -> Result<Arc<dyn ObjectStore>, ReferenceError> {
        s3_store(
            &self.lake.endpoint(),
            bucket,
            &self.uploader.access_key,
            &self.uploader.secret_key,
        )
    }
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("lake", &self.lake)
            .field("generated", &self.generated)
            .finish_non_exhaustive()
    }
}

/// The S3 access key the gateway uses for a product's bucket in the demo. Each bucket has
/// its own key, allowed to read that bucket only.
pub fn reader_key(bucket: &str) -> String {
    format!("reader-{bucket}")
}

/// Start the demo's S3 server over `<data_dir>/s3`, upload the reference data into it if
/// it is not there yet, and configure a gateway to read it over HTTP with one key per
/// bucket. Secret keys are random for each start and never written anywhere.
pub async fn demo(data_dir: &Path) -> Result<Demo, ReferenceError> {
    demo_with(data_dir, &|_| {}).await
}

/// [`demo`], reporting the first run's generation and upload as it goes.
pub async fn demo_with(data_dir: &Path, progress: Progress<'_>) -> Result<Demo, ReferenceError> {
    let catalog = catalog()?;
    let root = data_dir.join("s3");
    let buckets: Vec<String> = catalog
        .products()
        .map(|p| p.location.bucket.clone())
        .collect();
    for bucket in &buckets {
        let dir = root.join(bucket);
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    }
    let mut grants: Vec<KeyGrant> = buckets
        .iter()
        .map(|bucket| KeyGrant {
            access_key: reader_key(bucket),
            secret_key: random_secret(),
            buckets: vec![bucket.clone()],
            write: false,
        })
        .collect();
    let seeder = KeyGrant {
        access_key: "reference-seeder".into(),
        secret_key: random_secret(),
        buckets: buckets.clone(),
        write: true,
    };
    grants.push(seeder.clone());
    let lake = LakeServer::start(
        root.clone(),
        SocketAddr::from(([127, 0, 0, 1], 0)),
        grants.clone(),
    )
    .await
    .map_err(|e| ReferenceError::Io {
        path: root.display().to_string(),
        message: e.to_string(),
    })?;
    let endpoint = lake.endpoint();

    // Several processes (parallel tests) may share a data directory: one uploads, the others
    // wait for it and then find the data in place.
    let lock_path = data_dir.join(".upload.lock");
    let lock = tokio::task::spawn_blocking(move || -> std::io::Result<std::fs::File> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        file.lock()?;
        Ok(file)
    })
    .await
    .map_err(|e| ReferenceError::Io {
        path: data_dir.display().to_string(),
        message: e.to_string(),
    })?
    .map_err(io(data_dir))?;
    let generated = upload_with(
        |bucket| s3_store(&endpoint, bucket, &seeder.access_key, &seeder.secret_key),
        progress,
    )
    .await;
    drop(lock);
    let generated = generated?;

    let mut storage = StorageConfig::s3_endpoint(&endpoint);
    for grant in grants.iter().filter(|g| !g.write) {
        let bucket = &grant.buckets[0];
        let product = catalog
            .products()
            .find(|p| &p.location.bucket == bucket)
            .ok_or_else(|| ReferenceError::Invalid(format!("no product for bucket {bucket}")))?;
        storage.products.insert(
            product.id.clone(),
            ProductStorage {
                static_credentials: Some(StaticCredentials {
                    access_key_id: grant.access_key.clone(),
                    secret_access_key: grant.secret_key.clone(),
                }),
                ..ProductStorage::default()
            },
        );
    }
    let config = GatewayConfig {
        catalog,
        policies: policy_sources(),
        users: Some(users()?),
        storage,
        master_key: MasterKey::demo(),
        target_partitions: None,
        memory_limit: None,
        spill_dir: None,
        limits: meshgate_engine::QueryLimits::default(),
        parquet_pushdown: false,
        statistics_behind_row_filters: true,
        governance: Governance::Sqlite(data_dir.join("state").join("meshgate.db")),
        audit: meshgate_engine::AuditSettings::default(),
        replica: None,
        lineage: meshgate_engine::LineageConfig::default(),
        distribution: None,
    };
    Ok(Demo {
        lake,
        config,
        generated,
        uploader: seeder,
    })
}

/// An S3 store for one bucket with explicit credentials (path-style, plain HTTP allowed:
/// for the demo's local server and for seeding local test servers).
pub fn s3_store(
    endpoint: &str,
    bucket: &str,
    access_key: &str,
    secret_key: &str,
) -> Result<Arc<dyn ObjectStore>, ReferenceError> {
    object_store::aws::AmazonS3Builder::new()
        .with_endpoint(endpoint)
        .with_bucket_name(bucket)
        .with_region("us-east-1")
        .with_access_key_id(access_key)
        .with_secret_access_key(secret_key)
        .with_allow_http(true)
        .with_virtual_hosted_style_request(false)
        .build()
        .map(|s| Arc::new(s) as Arc<dyn ObjectStore>)
        .map_err(|e| ReferenceError::Upload {
            bucket: bucket.to_string(),
            message: e.to_string(),
        })
}

fn random_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parquet_files(
    batch: &RecordBatch,
    rows_per_file: usize,
    rows_per_group: usize,
) -> Result<Vec<Bytes>, ReferenceError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(rows_per_group))
        .set_created_by("meshgate reference-mesh generator".to_string())
        .build();
    let mut files = Vec::new();
    for start in (0..batch.num_rows()).step_by(rows_per_file) {
        let length = rows_per_file.min(batch.num_rows() - start);
        let invalid = |e: parquet::errors::ParquetError| {
            ReferenceError::Invalid(format!("writing Parquet: {e}"))
        };
        let mut buffer = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut buffer, batch.schema(), Some(props.clone()))
            .map_err(invalid)?;
        writer.write(&batch.slice(start, length)).map_err(invalid)?;
        writer.close().map_err(invalid)?;
        files.push(Bytes::from(buffer));
    }
    Ok(files)
}

/// The LOB of a counterparty, by the reference mesh's rule.
pub fn lob_of(counterparty_id: i64) -> &'static str {
    match counterparty_id % 10 {
        0..=4 => "CIB",
        5..=7 => "CCB",
        _ => "AWM",
    }
}

/// SplitMix64: tiny, fast and fully specified, so the data is the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len() as u64) as usize]
    }
    fn digits(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| char::from(b'0' + self.below(10) as u8))
            .collect()
    }
}

/// A batch with exactly the manifest's schema: the data is written the way it is declared.
fn batch(domain: &str, table: &str, columns: Vec<ArrayRef>) -> Result<RecordBatch, ReferenceError> {
    let catalog = catalog()?;
    let schema: Arc<Schema> = catalog
        .table(domain, table)
        .map(|(_, t)| t.arrow_schema())
        .ok_or_else(|| ReferenceError::Invalid(format!("no table {domain}.{table}")))?;
    RecordBatch::try_new(schema, columns)
        .map_err(|e| ReferenceError::Invalid(format!("{domain}.{table}: {e}")))
}

const NAME_A: &[&str] = &[
    "Northwind",
    "Contoso",
    "Fabrikam",
    "Tailspin",
    "Woodgrove",
    "Litware",
    "Adatum",
    "Proseware",
    "Wingtip",
    "Alpine",
    "Coho",
    "Lucerne",
    "Trey",
    "Humongous",
    "Relecloud",
    "Datum",
];
const NAME_B: &[&str] = &[
    "Holdings",
    "Capital",
    "Partners",
    "Trading",
    "Industries",
    "Logistics",
    "Energy",
    "Foods",
    "Insurance",
    "Shipping",
];
const ENTITY: &[&str] = &["Ltd", "LLC", "AG", "SA", "plc", "Inc", "GmbH", "NV"];
const FIRST: &[&str] = &[
    "ana", "ben", "chloe", "dev", "emma", "farid", "grace", "hiro", "ines", "jon", "kai", "lena",
];
const LAST: &[&str] = &[
    "smith", "garcia", "mueller", "dubois", "rossi", "tanaka", "kowalski", "okafor", "silva",
    "berg",
];
const COUNTRIES: &[&str] = &[
    "US", "GB", "DE", "FR", "JP", "CH", "NL", "SG", "HK", "CA", "AU", "IE", "LU", "ES", "IT", "SE",
];
const RATINGS: &[&str] = &["AAA", "AA", "A", "BBB", "BB", "B", "CCC"];
const CURRENCIES: &[&str] = &["USD", "EUR", "GBP", "JPY", "CHF"];
const INSTRUMENTS: &[&str] = &[
    "UST 10Y",
    "UST 2Y",
    "Bund 10Y",
    "Gilt 10Y",
    "EURUSD",
    "USDJPY",
    "GBPUSD",
    "SPX Future",
    "Brent Future",
    "Gold Spot",
    "CDX IG",
    "CDX HY",
];

/// Days from 1970-01-01 to 2010-01-01, 2026-01-01 and 2026-06-30.
const DAY_2010_01_01: i32 = 14_610;
const DAY_2026_01_01: i32 = 20_454;
const DAY_2026_06_30: i32 = 20_634;

struct Counterparty {
    id: i64,
    legal_name: String,
    lob: &'static str,
    country: &'static str,
    tax_id: String,
    email: String,
    rating: &'static str,
    onboarded_on: i32,
}

fn counterparties() -> Result<RecordBatch, ReferenceError> {
    let mut rng = Rng(0x5EED_0001);
    let mut rows: Vec<Counterparty> = (1..=COUNTERPARTIES)
        .map(|id| {
            let (a, b) = (rng.pick(NAME_A), rng.pick(NAME_B));
            let legal_name = format!("{a} {b} {}", rng.pick(ENTITY));
            let email = format!(
                "{}.{}{}@{}-{}.example",
                rng.pick(FIRST),
                rng.pick(LAST),
                id,
                a.to_lowercase(),
                b.to_lowercase()
            );
            let tax_id = format!("{}-{}", rng.digits(2), rng.digits(7));
            let onboarded_on = DAY_2010_01_01 + rng.below(5_844) as i32; // to 2025-12-31
            Counterparty {
                id,
                legal_name,
                lob: lob_of(id),
                country: rng.pick(COUNTRIES),
                tax_id,
                email,
                rating: rng.pick(RATINGS),
                onboarded_on,
            }
        })
        .collect();
    // Sorted by lob so that a filter on lob prunes row groups.
    rows.sort_by(|x, y| (x.lob, x.id).cmp(&(y.lob, y.id)));
    batch(
        "reference",
        "counterparties",
        vec![
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.id))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.legal_name.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.lob))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.country),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.tax_id.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.email.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.rating))),
            Arc::new(Date32Array::from_iter_values(
                rows.iter().map(|r| r.onboarded_on),
            )),
        ],
    )
}

fn transactions() -> Result<RecordBatch, ReferenceError> {
    let mut rng = Rng(0x5EED_0002);
    let start = i64::from(DAY_2026_01_01) * 86_400_000_000;
    let span = i64::from(DAY_2026_06_30 - DAY_2026_01_01 + 1) * 86_400_000_000;
    let mut rows: Vec<(i64, i64, &str, i128, &str, String)> = (0..TRANSACTIONS)
        .map(|_| {
            let booked_at = start + rng.below(span as u64) as i64;
            let counterparty = 1 + rng.below(COUNTERPARTIES as u64) as i64;
            let cents = 100 + rng.below(5_000_000) as i128;
            let card = format!("4{}", rng.digits(15));
            (
                booked_at,
                counterparty,
                lob_of(counterparty),
                cents,
                rng.pick(CURRENCIES),
                card,
            )
        })
        .collect();
    // Sorted by booking time, so lob values are spread over every row group.
    rows.sort_by_key(|r| r.0);
    let amounts = Decimal128Array::from_iter_values(rows.iter().map(|r| r.3))
        .with_precision_and_scale(18, 2)
        .map_err(|e| ReferenceError::Invalid(format!("decimal(18,2): {e}")))?;
    batch(
        "payments",
        "transactions",
        vec![
            Arc::new(Int64Array::from_iter_values(1..=TRANSACTIONS)),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(amounts),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.4))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.5.as_str()),
            )),
            Arc::new(
                TimestampMicrosecondArray::from_iter_values(rows.iter().map(|r| r.0))
                    .with_timezone("UTC"),
            ),
        ],
    )
}

fn trades() -> Result<RecordBatch, ReferenceError> {
    let mut rng = Rng(0x5EED_0003);
    let rows: Vec<(i64, &str, &str, f64, String, i32)> = (0..TRADES)
        .map(|_| {
            let counterparty = 1 + rng.below(COUNTERPARTIES as u64) as i64;
            let notional = (100 + rng.below(50_000)) as f64 * 1_000.0;
            let trader = format!("T{}", rng.digits(5));
            let day =
                DAY_2026_01_01 + rng.below((DAY_2026_06_30 - DAY_2026_01_01 + 1) as u64) as i32;
            (
                counterparty,
                lob_of(counterparty),
                rng.pick(INSTRUMENTS),
                notional,
                trader,
                day,
            )
        })
        .collect();
    batch(
        "markets",
        "trades",
        vec![
            Arc::new(Int64Array::from_iter_values(1..=TRADES)),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.2))),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.3))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.4.as_str()),
            )),
            Arc::new(Date32Array::from_iter_values(rows.iter().map(|r| r.5))),
        ],
    )
}
