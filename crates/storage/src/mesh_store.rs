//! `MeshStore`: every product lake behind one read-only object store.
//!
//! Paths are `<product id>/<key in that product's bucket>`. The first segment picks the
//! product's own store (its bucket, endpoint and credentials); the rest is the object key.
//! Putting the product in the path also makes every path unique across products, which
//! matters because DataFusion's Parquet metadata cache is keyed by path alone.
//!
//! Every request passes here, so this is where requests are counted (per query), errors are
//! labelled with the product, and writes are refused: the gateway never writes to a product
//! bucket, whatever a bug elsewhere might try.

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

use crate::error::{Problem, ProductStorageError, classify};
use crate::io::{IoCounters, Request};
use crate::lake::ProductLake;

/// The mesh of product stores, optionally counting for one query.
#[derive(Clone)]
pub struct MeshStore {
    lakes: Arc<std::collections::BTreeMap<String, ProductLake>>,
    io: Option<Arc<IoCounters>>,
}

impl fmt::Debug for MeshStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MeshStore")
            .field("products", &self.lakes.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl fmt::Display for MeshStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MeshStore(product lakes)")
    }
}

impl MeshStore {
    pub(crate) fn new(
        lakes: Arc<std::collections::BTreeMap<String, ProductLake>>,
        io: Option<Arc<IoCounters>>,
    ) -> Self {
        Self { lakes, io }
    }

    /// The product a path belongs to, and the key inside its bucket.
    fn route(&self, location: &Path) -> Result<(&ProductLake, Path)> {
        let mut parts = location.parts();
        let product = parts
            .next()
            .map(|p| p.as_ref().to_string())
            .unwrap_or_default();
        let lake = self
            .lakes
            .get(&product)
            .ok_or_else(|| object_store::Error::NotFound {
                path: location.to_string(),
                source: format!("no product `{product}` in this gateway").into(),
            })?;
        Ok((lake, Path::from_iter(parts)))
    }

    fn record(&self, product: &str, request: Request) {
        if let Some(io) = &self.io {
            io.record(product, request);
        }
    }

    /// The product's error, labelled; the raw error goes to the log for operators.
    fn label(lake: &ProductLake, key: &Path, error: object_store::Error) -> object_store::Error {
        let problem = classify(&error);
        tracing::warn!(product = %lake.product, bucket = %lake.bucket, endpoint = %lake.endpoint, key = %key, %error, "storage request failed");
        let object = (!key.as_ref().is_empty() && problem == Problem::ObjectMissing)
            .then(|| key.to_string());
        object_store::Error::Generic {
            store: "meshgate",
            source: Box::new(ProductStorageError {
                product: lake.product.clone(),
                bucket: lake.bucket.clone(),
                problem,
                object,
            }),
        }
    }

    fn refuse_write(&self, location: &Path) -> object_store::Error {
        let (product, bucket) = match self.route(location) {
            Ok((lake, _)) => (lake.product.clone(), lake.bucket.clone()),
            Err(_) => (
                location
                    .parts()
                    .next()
                    .map(|p| p.as_ref().to_string())
                    .unwrap_or_default(),
                String::new(),
            ),
        };
        self.record(&product, Request::WriteRefused);
        tracing::error!(%product, path = %location, "refused a write to product storage");
        object_store::Error::Generic {
            store: "meshgate",
            source: Box::new(ProductStorageError {
                product,
                bucket,
                problem: Problem::WriteRefused,
                object: None,
            }),
        }
    }

    /// Map a product store's listing back into mesh paths.
    fn listing(
        &self,
        lake: &ProductLake,
        stream: BoxStream<'static, Result<ObjectMeta>>,
    ) -> BoxStream<'static, Result<ObjectMeta>> {
        let product = lake.product.clone();
        let lake = lake.clone();
        stream
            .map(move |item| match item {
                Ok(mut meta) => {
                    meta.location = mesh_path(&product, &meta.location);
                    Ok(meta)
                }
                Err(error) => Err(Self::label(&lake, &Path::default(), error)),
            })
            .boxed()
    }
}

/// `<product>/<key>`.
pub(crate) fn mesh_path(product: &str, key: &Path) -> Path {
    Path::from_iter(std::iter::once(object_store::path::PathPart::from(product)).chain(key.parts()))
}

#[async_trait]
impl ObjectStore for MeshStore {
    async fn put_opts(
        &self,
        location: &Path,
        _payload: PutPayload,
        _opts: PutOptions,
    ) -> Result<PutResult> {
        Err(self.refuse_write(location))
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        _opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        Err(self.refuse_write(location))
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let (lake, key) = self.route(location)?;
        let head = options.head;
        let mut result = lake
            .store
            .get_opts(&key, options)
            .await
            .map_err(|e| Self::label(lake, &key, e))?;
        if head {
            self.record(&lake.product, Request::Head);
        } else {
            self.record(
                &lake.product,
                Request::Get(result.range.end.saturating_sub(result.range.start)),
            );
        }
        result.meta.location = location.clone();
        Ok(result)
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> Result<Vec<Bytes>> {
        let (lake, key) = self.route(location)?;
        if lake.coalesce == 0 {
            // A directory reads each range as asked, all in one blocking task.
            let bytes = lake
                .store
                .get_ranges(&key, ranges)
                .await
                .map_err(|e| Self::label(lake, &key, e))?;
            for range in &bytes {
                self.record(&lake.product, Request::Get(range.len() as u64));
            }
            return Ok(bytes);
        }
        // Coalesced here (not in the product's store) so that each request made is counted.
        object_store::coalesce_ranges(
            ranges,
            |range| async move {
                let options = GetOptions {
                    range: Some(range.into()),
                    ..GetOptions::default()
                };
                self.get_opts(location, options).await?.bytes().await
            },
            lake.coalesce,
        )
        .await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        let this = self.clone();
        locations
            .map(move |location| match location {
                Ok(location) => Err(this.refuse_write(&location)),
                Err(error) => Err(error),
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        let Some(prefix) = prefix else {
            return futures::stream::once(async {
                Err(object_store::Error::NotSupported {
                    source: "listing across products".into(),
                })
            })
            .boxed();
        };
        match self.route(prefix) {
            Ok((lake, key)) => {
                self.record(&lake.product, Request::List);
                self.listing(lake, lake.store.list(Some(&key)))
            }
            Err(error) => futures::stream::once(async move { Err(error) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let prefix = prefix.ok_or_else(|| object_store::Error::NotSupported {
            source: "listing across products".into(),
        })?;
        let (lake, key) = self.route(prefix)?;
        self.record(&lake.product, Request::List);
        let mut result = lake
            .store
            .list_with_delimiter(Some(&key))
            .await
            .map_err(|e| Self::label(lake, &key, e))?;
        for meta in &mut result.objects {
            meta.location = mesh_path(&lake.product, &meta.location);
        }
        result.common_prefixes = result
            .common_prefixes
            .iter()
            .map(|p| mesh_path(&lake.product, p))
            .collect();
        Ok(result)
    }

    async fn copy_opts(&self, _from: &Path, to: &Path, _options: CopyOptions) -> Result<()> {
        Err(self.refuse_write(to))
    }

    async fn rename_opts(
        &self,
        _from: &Path,
        to: &Path,
        _options: object_store::RenameOptions,
    ) -> Result<()> {
        Err(self.refuse_write(to))
    }
}
