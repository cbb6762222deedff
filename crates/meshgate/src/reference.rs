//! The reference mesh of `shared/reference-mesh.md`: three products in three buckets, six
//! principals, and deterministic data (same bytes on every machine).
//!
//! The manifests and policies are the repository's own files (`products/`, `policies/`),
//! compiled into the binary so that `meshgate demo` works from any directory. The data is
//! generated into `<data dir>/lake/<bucket>/...` on first use and reused afterwards.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{
    ArrayRef, Date32Array, Decimal128Array, Float64Array, Int64Array, RecordBatch, StringArray,
    TimestampMicrosecondArray,
};
use arrow::datatypes::Schema;
use meshgate_catalog::Catalog;
use meshgate_engine::GatewayConfig;
use meshgate_policy::{PolicySources, Source, UserDirectory};
use meshgate_protect::MasterKey;
use meshgate_storage::StorageConfig;
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;

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

/// What [`generate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Generated {
    Created,
    Reused,
}

/// Write the reference data under `<data_dir>/lake` unless a complete copy of this version
/// is already there. Writes to a temporary directory and renames, so an interrupted run
/// never leaves half a mesh behind.
pub fn generate(data_dir: &Path) -> Result<Generated, ReferenceError> {
    let lake = data_dir.join("lake");
    let marker = lake.join(".meshgate-reference");
    let complete = || fs::read_to_string(&marker).is_ok_and(|v| v.trim() == DATA_VERSION);
    if complete() {
        return Ok(Generated::Reused);
    }
    fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    // A staging directory per process: several processes (parallel tests) may generate at
    // once; the first to finish wins and the others reuse its copy.
    let staging = data_dir.join(format!(".lake-staging-{}", std::process::id()));
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io(&staging))?;
    }
    let catalog = catalog()?;
    for (domain, table, batches, rows_per_file, rows_per_group) in [
        (
            "reference",
            "counterparties",
            counterparties()?,
            10_000,
            4_000,
        ),
        ("payments", "transactions", transactions()?, 100_000, 20_000),
        ("markets", "trades", trades()?, 25_000, 10_000),
    ] {
        let (product, table_def) = catalog
            .table(domain, table)
            .ok_or_else(|| ReferenceError::Invalid(format!("{domain}.{table}")))?;
        let dir = staging
            .join(&product.location.bucket)
            .join(product.location.table_prefix(table_def));
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        write_files(&dir, &batches, rows_per_file, rows_per_group)?;
    }
    fs::write(staging.join(".meshgate-reference"), DATA_VERSION).map_err(io(&staging))?;
    if lake.exists() && !complete() {
        // An older version's data: replace it.
        fs::remove_dir_all(&lake).map_err(io(&lake))?;
    }
    if fs::rename(&staging, &lake).is_err() && complete() {
        // Another process finished first; use its copy.
        fs::remove_dir_all(&staging).map_err(io(&staging))?;
        return Ok(Generated::Reused);
    }
    if !complete() {
        return Err(ReferenceError::Io {
            path: lake.display().to_string(),
            message: "could not put the generated data in place".into(),
        });
    }
    Ok(Generated::Created)
}

/// A gateway configuration serving the reference mesh from `<data_dir>/lake`, generating
/// the data first if needed. Tokenizes with the public demo key.
pub fn gateway_config(data_dir: &Path) -> Result<(GatewayConfig, Generated), ReferenceError> {
    let generated = generate(data_dir)?;
    let catalog = catalog()?;
    let storage = StorageConfig::local_root(&catalog, &data_dir.join("lake"));
    Ok((
        GatewayConfig {
            catalog,
            policies: policy_sources(),
            users: Some(users()?),
            storage,
            master_key: MasterKey::demo(),
            target_partitions: None,
        },
        generated,
    ))
}

fn write_files(
    dir: &Path,
    batch: &RecordBatch,
    rows_per_file: usize,
    rows_per_group: usize,
) -> Result<(), ReferenceError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(rows_per_group))
        .set_created_by("meshgate reference-mesh generator".to_string())
        .build();
    for (index, start) in (0..batch.num_rows()).step_by(rows_per_file).enumerate() {
        let length = rows_per_file.min(batch.num_rows() - start);
        let path = dir.join(format!("part-{index:05}.parquet"));
        let file = fs::File::create(&path).map_err(io(&path))?;
        let invalid = |e: parquet::errors::ParquetError| ReferenceError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        };
        let mut writer =
            ArrowWriter::try_new(file, batch.schema(), Some(props.clone())).map_err(invalid)?;
        writer.write(&batch.slice(start, length)).map_err(invalid)?;
        writer.close().map_err(invalid)?;
    }
    Ok(())
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
