//! The product lakes, opened: one store per product, a bounded listing cache, and per-file
//! checks against the manifest.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use datafusion::arrow::datatypes::{DataType, Schema};
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use futures::{StreamExt, TryStreamExt};
use meshgate_catalog::{Catalog, Location, Product, Table};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, ObjectMeta, ObjectStore, RetryConfig};
use serde::Deserialize;

use crate::config::{ProductStorage, StorageConfig, StorageKind, expand_template};
use crate::error::{ProductStorageError, StorageError, find_storage_error};
use crate::io::IoCounters;
use crate::mesh_store::{MeshStore, mesh_path};

/// One product's lake: its bucket and the store that reaches it with its own credentials.
#[derive(Clone)]
pub struct ProductLake {
    pub product: String,
    pub bucket: String,
    /// Where the store is (for logs): an endpoint URL or a directory.
    pub endpoint: String,
    /// The key prefix configured for the product (`prefix` in its storage settings), which
    /// replaces every version's own.
    pub prefix: Option<String>,
    pub(crate) store: Arc<dyn ObjectStore>,
    /// Nearby byte ranges of one read are merged into one request when the gap between them
    /// is at most this: object_store's default for a remote store, where a request costs
    /// more than the bytes between; 0 for a directory, which reads each range as asked
    /// (`LocalFileSystem`'s own `get_ranges`).
    pub(crate) coalesce: u64,
}

impl std::fmt::Debug for ProductLake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProductLake")
            .field("product", &self.product)
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Why a file is left out of a product's scans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileVerdict {
    /// Served; `rows` is the row count its footer declares (`None` if it declares a
    /// negative one).
    Accepted {
        rows: Option<u64>,
    },
    Refused(String),
}

/// A file version as read for one table: two major versions of a product may read the same
/// file against different schemas.
type VerdictKey = (Path, String, Option<String>, u64, i64);

/// A table's file list and when it was taken.
type Listing = (Instant, Arc<Vec<ObjectMeta>>);

/// Every product's lake, opened.
#[derive(Debug, Clone)]
pub struct Lakes {
    lakes: Arc<BTreeMap<String, ProductLake>>,
    listing_ttl: Duration,
    listings: Arc<Mutex<HashMap<Path, Listing>>>,
    verdicts: Arc<Mutex<HashMap<VerdictKey, FileVerdict>>>,
}

/// Bounds the listing cache: the oldest listings are dropped beyond this many tables.
const MAX_CACHED_LISTINGS: usize = 4096;
/// Bounds the file-verdict cache.
const MAX_CACHED_VERDICTS: usize = 1 << 20;

/// A file's stored credentials (`credentials_file`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CredentialsFile {
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
}

impl Lakes {
    /// The URL the mesh store is registered under in DataFusion's runtime.
    pub const URL: &'static str = "meshgate://products";

    /// Open a store for every product of the catalog.
    pub fn open(catalog: &Catalog, config: &StorageConfig) -> Result<Self, StorageError> {
        // Settings for a product the catalog does not have yet are kept for the day it is
        // published (`meshgate check` warns of them, in case of a misspelt id).
        let mut lakes = BTreeMap::new();
        for product in catalog.products() {
            let settings = match config.products.get(&product.id) {
                Some(own) => own.over(&config.default),
                None => config.default.clone(),
            };
            let lake = open_product(product, &settings, config)?;
            lakes.insert(product.id.clone(), lake);
        }
        Ok(Self {
            lakes: Arc::new(lakes),
            listing_ttl: config.listing_ttl,
            listings: Arc::default(),
            verdicts: Arc::default(),
        })
    }

    /// The read-only mesh store; with `io`, every request is counted there.
    pub fn store(&self, io: Option<Arc<IoCounters>>) -> Arc<dyn ObjectStore> {
        Arc::new(MeshStore::new(Arc::clone(&self.lakes), io))
    }

    pub fn product(&self, product: &str) -> Option<&ProductLake> {
        self.lakes.get(product)
    }

    /// Where a table's files are in the mesh store: `<product>/<table prefix>`.
    pub fn table_path(&self, product: &Product, table: &Table) -> Path {
        // Versions of a product share its lake, each under its own prefix unless configured.
        let location = match self.lakes.get(&product.id).and_then(|l| l.prefix.clone()) {
            Some(prefix) => Location {
                prefix,
                ..product.location.clone()
            },
            None => product.location.clone(),
        };
        mesh_path(&product.id, &Path::from(location.table_prefix(table)))
    }

    /// The Parquet files of a table, listed through `store` at most once per listing TTL.
    /// Errors are never cached: a store that comes back is used again at once.
    pub async fn list_table(
        &self,
        store: &dyn ObjectStore,
        product: &Product,
        table: &Table,
    ) -> Result<Arc<Vec<ObjectMeta>>, ProductStorageError> {
        let path = self.table_path(product, table);
        if let Ok(listings) = self.listings.lock()
            && let Some((at, files)) = listings.get(&path)
            && at.elapsed() < self.listing_ttl
        {
            return Ok(Arc::clone(files));
        }
        // object_store prefixes match whole path segments: `data/trades` never lists `data/trades_old`.
        let mut files: Vec<ObjectMeta> = store
            .list(Some(&path))
            .try_filter(|meta| futures::future::ready(meta.location.as_ref().ends_with(".parquet")))
            .try_collect()
            .await
            .map_err(|e| storage_error(&e, product))?;
        files.sort_by(|a, b| a.location.cmp(&b.location));
        let files = Arc::new(files);
        if !self.listing_ttl.is_zero()
            && let Ok(mut listings) = self.listings.lock()
        {
            if listings.len() >= MAX_CACHED_LISTINGS {
                listings.retain(|_, (at, _)| at.elapsed() < self.listing_ttl);
            }
            if listings.len() < MAX_CACHED_LISTINGS {
                listings.insert(path, (Instant::now(), Arc::clone(&files)));
            }
        }
        Ok(files)
    }

    /// Whether a file may be read as part of `table`: its footer must be readable and its
    /// columns must match the manifest. Verdicts are remembered per file version; storage
    /// failures are errors, not verdicts.
    pub async fn check_file(
        &self,
        store: &dyn ObjectStore,
        metadata_cache: Option<Arc<FileMetadataCache>>,
        product: &Product,
        table: &Table,
        file: &ObjectMeta,
    ) -> Result<FileVerdict, ProductStorageError> {
        let key: VerdictKey = (
            file.location.clone(),
            table.sql_name.clone(),
            file.e_tag.clone(),
            file.size,
            file.last_modified.timestamp_millis(),
        );
        if let Some(verdict) = self.verdicts.lock().ok().and_then(|v| v.get(&key).cloned()) {
            return Ok(verdict);
        }
        let fetched = DFParquetMetadata::new(store, file)
            .with_file_metadata_cache(metadata_cache)
            .fetch_metadata()
            .await;
        let verdict = match fetched {
            Ok(metadata) => {
                let file_metadata = metadata.file_metadata();
                match datafusion::parquet::arrow::parquet_to_arrow_schema(
                    file_metadata.schema_descr(),
                    file_metadata.key_value_metadata(),
                ) {
                    Ok(schema) => match matches_manifest(&schema, table) {
                        Ok(()) => FileVerdict::Accepted {
                            rows: u64::try_from(file_metadata.num_rows()).ok(),
                        },
                        Err(reason) => FileVerdict::Refused(reason),
                    },
                    Err(e) => {
                        FileVerdict::Refused(format!("its Parquet schema cannot be read: {e}"))
                    }
                }
            }
            Err(error) => match find_storage_error(&error) {
                Some(storage) => return Err(storage),
                None => FileVerdict::Refused(format!(
                    "it is not readable Parquet ({})",
                    first_line(&error.to_string())
                )),
            },
        };
        if let FileVerdict::Refused(reason) = &verdict {
            tracing::warn!(product = %product.id, table = %table.name, file = %file.location, %reason, "file refused");
        }
        if let Ok(mut verdicts) = self.verdicts.lock() {
            if verdicts.len() >= MAX_CACHED_VERDICTS {
                verdicts.clear();
            }
            verdicts.insert(key, verdict.clone());
        }
        Ok(verdict)
    }

    /// The files a table is served from now: listed (see [`Lakes::list_table`]) and
    /// checked (see [`Lakes::check_file`]), several at a time. Refused files come back with
    /// their reasons.
    pub async fn table_files(
        &self,
        store: &dyn ObjectStore,
        metadata_cache: Option<Arc<FileMetadataCache>>,
        product: &Product,
        table: &Table,
    ) -> Result<TableFiles, ProductStorageError> {
        let files = self.list_table(store, product, table).await?;
        // Owned items: a stream over borrowed ones makes the future not `Send`-general.
        let verdicts: Vec<FileVerdict> = futures::stream::iter(files.iter().cloned())
            .map(|file| {
                let cache = metadata_cache.clone();
                async move { self.check_file(store, cache, product, table, &file).await }
            })
            .buffered(CHECK_CONCURRENCY)
            .try_collect()
            .await?;
        let mut out = TableFiles {
            rows: Some(0),
            ..TableFiles::default()
        };
        for (file, verdict) in files.iter().zip(verdicts) {
            match verdict {
                FileVerdict::Accepted { rows } => {
                    out.accepted.push(file.clone());
                    out.rows = out.rows.zip(rows).map(|(a, b)| a.saturating_add(b));
                }
                FileVerdict::Refused(reason) => out.refused.push((file.clone(), reason)),
            }
        }
        Ok(out)
    }

    /// What each product's lake holds now: files, bytes, freshness, and refused files.
    /// A product whose store fails is reported with its error; the others are unaffected.
    pub async fn status(
        &self,
        catalog: &Catalog,
        metadata_cache: Option<Arc<FileMetadataCache>>,
    ) -> Vec<LakeStatus> {
        let mut out = Vec::new();
        for product in catalog.products() {
            if let Some(status) = self.product_status(product, metadata_cache.clone()).await {
                out.push(status);
            }
        }
        out
    }

    /// [`Lakes::status`] of one product (`None` if its lake is not open here).
    pub async fn product_status(
        &self,
        product: &Product,
        metadata_cache: Option<Arc<FileMetadataCache>>,
    ) -> Option<LakeStatus> {
        let lake = self.lakes.get(&product.id)?;
        let store = self.store(None);
        let mut status = LakeStatus {
            product: product.id.clone(),
            bucket: lake.bucket.clone(),
            files: 0,
            bytes: 0,
            last_modified: None,
            refused_files: Vec::new(),
            error: None,
        };
        for table in product.tables.iter().filter(|t| !t.is_view()) {
            match self
                .table_files(store.as_ref(), metadata_cache.clone(), product, table)
                .await
            {
                Ok(files) => {
                    for file in &files.accepted {
                        status.files += 1;
                        status.bytes += file.size;
                        status.last_modified = status.last_modified.max(Some(file.last_modified));
                    }
                    status.refused_files.extend(
                        files
                            .refused
                            .iter()
                            .map(|(f, why)| (key_of(&f.location), why.clone())),
                    );
                }
                Err(error) => {
                    status.error = Some(error.to_string());
                    break;
                }
            }
        }
        Some(status)
    }
}

/// A table's files: those served, and those refused with why.
#[derive(Debug, Clone, Default)]
pub struct TableFiles {
    pub accepted: Vec<ObjectMeta>,
    pub refused: Vec<(ObjectMeta, String)>,
    /// The accepted files' rows, as their footers declare them (`None`: unknown). For cost
    /// estimates only: a file may change between planning and reading.
    pub rows: Option<u64>,
}

/// How many files' footers are checked at once the first time a table is scanned.
const CHECK_CONCURRENCY: usize = 8;

/// One product's lake as it is now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LakeStatus {
    pub product: String,
    pub bucket: String,
    /// Files served (matching the manifest).
    pub files: usize,
    pub bytes: u64,
    /// The newest served file's modification time: the product's freshness.
    pub last_modified: Option<DateTime<Utc>>,
    /// `(file key, reason)` of files left out of every scan.
    pub refused_files: Vec<(String, String)>,
    /// Why the lake could not be read, if it could not.
    pub error: Option<String>,
}

/// The key inside the product's bucket of a mesh path.
pub fn key_of(location: &Path) -> String {
    location
        .parts()
        .skip(1)
        .map(|p| p.as_ref().to_string())
        .collect::<Vec<_>>()
        .join("/")
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or(text)
}

fn storage_error(error: &object_store::Error, product: &Product) -> ProductStorageError {
    find_storage_error(error).unwrap_or_else(|| ProductStorageError {
        product: product.id.clone(),
        bucket: product.location.bucket.clone(),
        problem: crate::error::Problem::Other,
        object: None,
    })
}

/// Whether a file's columns can serve the manifest's: every manifest column present with a
/// compatible type. Extra columns are ignored.
fn matches_manifest(file: &Schema, table: &Table) -> Result<(), String> {
    for column in &table.columns {
        let field = file.field_with_name(&column.name).map_err(|_| {
            format!(
                "it has no column `{}` (the manifest declares {} {})",
                column.name, column.name, column.physical_type
            )
        })?;
        if !compatible(field.data_type(), &column.data_type) {
            return Err(format!(
                "column `{}` is {} in the file but {} in the manifest",
                column.name,
                field.data_type(),
                column.physical_type
            ));
        }
    }
    Ok(())
}

fn compatible(file: &DataType, manifest: &DataType) -> bool {
    use DataType::*;
    let string = |t: &DataType| matches!(t, Utf8 | LargeUtf8 | Utf8View);
    let binary = |t: &DataType| matches!(t, Binary | LargeBinary | BinaryView);
    match (file, manifest) {
        (Dictionary(_, values), _) => compatible(values, manifest),
        (a, b) if string(a) && string(b) => true,
        (a, b) if binary(a) && binary(b) => true,
        // Any precision of timestamp reads as the manifest's, but zoned and naive do not mix.
        (Timestamp(_, a), Timestamp(_, b)) => a.is_some() == b.is_some(),
        (a, b) => a == b,
    }
}

fn open_product(
    product: &Product,
    settings: &ProductStorage,
    config: &StorageConfig,
) -> Result<ProductLake, StorageError> {
    let err = |message: String| StorageError::Config {
        product: product.id.clone(),
        message,
    };
    let bucket = settings
        .bucket
        .clone()
        .unwrap_or_else(|| product.location.bucket.clone());
    let prefix = settings.prefix.clone();
    let expand = |text: &str| expand_template(text, &product.id, &bucket);
    match settings.kind {
        None => Err(err("no storage configured (set `kind` to \"s3\" or \"local\" in [storage.default] or for the product)".into())),
        Some(StorageKind::Local) => {
            let path = settings.path.as_deref().ok_or_else(|| err("a local lake needs `path`".into()))?;
            let path = std::path::PathBuf::from(expand(path));
            // Never created here: a mistyped path would otherwise serve empty tables.
            if !path.is_dir() {
                return Err(err(format!(
                    "the local lake `{}` does not exist or is not a directory (`path` in [storage]); \
                     create it and put the product's files under it",
                    path.display()
                )));
            }
            let store = LocalFileSystem::new_with_prefix(&path).map_err(|e| err(e.to_string()))?;
            Ok(ProductLake {
                product: product.id.clone(),
                bucket,
                endpoint: path.display().to_string(),
                prefix,
                store: Arc::new(store),
                coalesce: 0,
            })
        }
        Some(StorageKind::S3) => {
            let mut builder = if settings.default_credentials == Some(true) {
                // The AWS default chain: AWS_* variables, web identity, instance profile.
                AmazonS3Builder::from_env()
            } else {
                AmazonS3Builder::new()
            };
            builder = builder
                .with_bucket_name(&bucket)
                .with_region(settings.region.clone().unwrap_or_else(|| "us-east-1".into()))
                .with_virtual_hosted_style_request(!settings.path_style.unwrap_or(false))
                .with_allow_http(settings.allow_http.unwrap_or(false))
                .with_client_options(
                    ClientOptions::new()
                        .with_timeout(config.request_timeout)
                        .with_connect_timeout(config.connect_timeout)
                        .with_allow_http(settings.allow_http.unwrap_or(false)),
                )
                .with_retry(RetryConfig {
                    backoff: BackoffConfig {
                        init_backoff: Duration::from_millis(50),
                        max_backoff: Duration::from_secs(1),
                        base: 2.0,
                    },
                    max_retries: config.max_retries,
                    retry_timeout: config.request_timeout,
                });
            if let Some(endpoint) = &settings.endpoint {
                builder = builder.with_endpoint(expand(endpoint));
            }
            builder = with_credentials(builder, settings, &expand).map_err(err)?;
            let store = builder.build().map_err(|e| err(format!("cannot configure its S3 store: {e}")))?;
            let endpoint = settings.endpoint.as_deref().map(&expand).unwrap_or_else(|| "AWS S3".into());
            Ok(ProductLake {
                product: product.id.clone(),
                bucket,
                endpoint,
                prefix,
                store: Arc::new(store),
                coalesce: object_store::OBJECT_STORE_COALESCE_DEFAULT,
            })
        }
    }
}

/// Exactly one way to get credentials, resolved now; errors name variables and files, never
/// values.
fn with_credentials(
    builder: AmazonS3Builder,
    settings: &ProductStorage,
    expand: &dyn Fn(&str) -> String,
) -> Result<AmazonS3Builder, String> {
    let from_env = settings.access_key_id_env.is_some() || settings.secret_access_key_env.is_some();
    let sources = [
        settings.static_credentials.is_some(),
        from_env,
        settings.credentials_file.is_some(),
        settings.default_credentials == Some(true),
    ];
    match sources.iter().filter(|s| **s).count() {
        0 => {
            return Err(
                "no credentials configured: set access_key_id_env and secret_access_key_env, \
                        credentials_file, or default_credentials = true"
                    .into(),
            );
        }
        1 => {}
        _ => return Err("more than one credential source is configured; choose one".into()),
    }
    if let Some(credentials) = &settings.static_credentials {
        return Ok(builder
            .with_access_key_id(&credentials.access_key_id)
            .with_secret_access_key(&credentials.secret_access_key));
    }
    if from_env {
        let var = |name: &Option<String>, what: &str| -> Result<String, String> {
            let name = name
                .as_deref()
                .map(expand)
                .ok_or_else(|| format!("{what}_env is not set"))?;
            match std::env::var(&name) {
                Ok(value) if !value.is_empty() => Ok(value),
                _ => Err(format!("environment variable `{name}` ({what}) is not set")),
            }
        };
        let mut builder = builder
            .with_access_key_id(var(&settings.access_key_id_env, "access_key_id")?)
            .with_secret_access_key(var(&settings.secret_access_key_env, "secret_access_key")?);
        if settings.session_token_env.is_some() {
            builder = builder.with_token(var(&settings.session_token_env, "session_token")?);
        }
        return Ok(builder);
    }
    if let Some(file) = &settings.credentials_file {
        let file = expand(file);
        let text = std::fs::read_to_string(&file)
            .map_err(|e| format!("cannot read credentials file {file}: {e}"))?;
        let credentials: CredentialsFile = toml::from_str(&text).map_err(|_| {
            format!("credentials file {file} must hold access_key_id, secret_access_key and optionally session_token")
        })?;
        let mut builder = builder
            .with_access_key_id(credentials.access_key_id)
            .with_secret_access_key(credentials.secret_access_key);
        if let Some(token) = credentials.session_token {
            builder = builder.with_token(token);
        }
        return Ok(builder);
    }
    Ok(builder)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_compatibility_ignores_physical_string_and_timestamp_variants() {
        use datafusion::arrow::datatypes::TimeUnit;
        assert!(compatible(&DataType::Utf8View, &DataType::Utf8));
        assert!(compatible(
            &DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
            &DataType::Utf8
        ));
        assert!(compatible(
            &DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        ));
        assert!(!compatible(
            &DataType::Timestamp(TimeUnit::Microsecond, None),
            &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
        ));
        assert!(!compatible(&DataType::Int64, &DataType::Utf8));
        assert!(!compatible(&DataType::Int32, &DataType::Int64));
        assert!(!compatible(
            &DataType::Decimal128(18, 3),
            &DataType::Decimal128(18, 2)
        ));
    }
}
