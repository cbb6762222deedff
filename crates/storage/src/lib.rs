//! # meshgate-storage
//!
//! Each data product lives in its own lake: its own bucket, its own credentials, possibly its
//! own endpoint. This crate turns the gateway's storage configuration into one
//! [`ObjectStore`] per bucket and registers each under `s3://<bucket>` in DataFusion's
//! runtime, so a product's table can only resolve to its own bucket and consumers never see
//! a credential or a path. (This first version serves buckets from local directories; the
//! S3 issue adds real S3-compatible endpoints behind the same seam.)

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;
use meshgate_catalog::Catalog;
use object_store::ObjectStore;
use object_store::local::LocalFileSystem;
use serde::Deserialize;
use url::Url;

/// How to reach one bucket.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase", deny_unknown_fields)]
pub enum BucketConfig {
    /// A directory standing in for the bucket: object keys are paths below it.
    Local { path: PathBuf },
}

/// Storage configuration: bucket name -> how to reach it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    #[serde(default)]
    pub buckets: BTreeMap<String, BucketConfig>,
}

impl StorageConfig {
    /// Every bucket of the catalog as a directory `<root>/<bucket>`.
    pub fn local_root(catalog: &Catalog, root: &std::path::Path) -> Self {
        let buckets = catalog
            .products()
            .map(|p| {
                (
                    p.location.bucket.clone(),
                    BucketConfig::Local {
                        path: root.join(&p.location.bucket),
                    },
                )
            })
            .collect();
        Self { buckets }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("product `{product}`: its bucket `{bucket}` has no storage configuration")]
    Unconfigured { product: String, bucket: String },
    #[error("bucket `{bucket}`: {message}")]
    Open { bucket: String, message: String },
}

/// The opened product lakes, one object store per bucket.
#[derive(Debug, Clone, Default)]
pub struct Lakes {
    stores: BTreeMap<String, Arc<dyn ObjectStore>>,
}

impl Lakes {
    /// Open a store for every bucket the catalog's products use.
    pub fn open(catalog: &Catalog, config: &StorageConfig) -> Result<Self, StorageError> {
        let mut stores = BTreeMap::new();
        for product in catalog.products() {
            let bucket = &product.location.bucket;
            let bucket_config =
                config
                    .buckets
                    .get(bucket)
                    .ok_or_else(|| StorageError::Unconfigured {
                        product: product.id.clone(),
                        bucket: bucket.clone(),
                    })?;
            let store: Arc<dyn ObjectStore> = match bucket_config {
                BucketConfig::Local { path } => {
                    std::fs::create_dir_all(path).map_err(|e| StorageError::Open {
                        bucket: bucket.clone(),
                        message: format!("cannot create {}: {e}", path.display()),
                    })?;
                    Arc::new(LocalFileSystem::new_with_prefix(path).map_err(|e| {
                        StorageError::Open {
                            bucket: bucket.clone(),
                            message: e.to_string(),
                        }
                    })?)
                }
            };
            stores.insert(bucket.clone(), store);
        }
        Ok(Self { stores })
    }

    /// Register every bucket's store under `s3://<bucket>` in a runtime.
    pub fn register(&self, runtime: &RuntimeEnv) -> Result<(), StorageError> {
        for (bucket, store) in &self.stores {
            let url = bucket_url(bucket)?;
            runtime.register_object_store(&url, Arc::clone(store));
        }
        Ok(())
    }

    pub fn store(&self, bucket: &str) -> Option<&Arc<dyn ObjectStore>> {
        self.stores.get(bucket)
    }
}

/// `s3://<bucket>`: the URL DataFusion uses to find a bucket's store.
pub fn bucket_url(bucket: &str) -> Result<Url, StorageError> {
    Url::parse(&format!("s3://{bucket}")).map_err(|e| StorageError::Open {
        bucket: bucket.to_string(),
        message: e.to_string(),
    })
}
