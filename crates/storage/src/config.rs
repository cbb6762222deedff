//! Storage configuration: how the gateway reaches each product's bucket.
//!
//! ```toml
//! [storage]
//! listing_ttl = "1s"          # how long a table's file list is reused (0s: list every query)
//! request_timeout = "10s"     # per request; a slow store fails within this (times retries)
//! connect_timeout = "2s"
//! max_retries = 2
//!
//! [storage.default]           # applies to every product, under any per-product settings
//! kind = "s3"
//! endpoint = "http://minio:9000"
//! region = "us-east-1"
//! path_style = true
//! allow_http = true
//! access_key_id_env = "MESHGATE_S3_{PRODUCT}_ACCESS_KEY_ID"
//! secret_access_key_env = "MESHGATE_S3_{PRODUCT}_SECRET_ACCESS_KEY"
//!
//! [storage.products."markets.trades"]
//! endpoint = "https://s3.eu-west-1.amazonaws.com"
//! region = "eu-west-1"
//! bucket = "acme-markets-trades"          # overrides the manifest's bucket
//! credentials_file = "/run/secrets/markets-trades.toml"
//! ```
//!
//! Credentials are only ever named here (environment variable names, a secrets file, or the
//! AWS default chain), never written into this file, a manifest or a policy. In names and
//! paths, `{PRODUCT}` becomes the product id in upper snake case (`MARKETS_TRADES`),
//! `{product}` the product id and `{bucket}` the bucket.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use serde::Deserialize;

/// Storage settings for the whole gateway.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Settings shared by every product.
    #[serde(default)]
    pub default: ProductStorage,
    /// Settings per product id, over `default`.
    #[serde(default)]
    pub products: BTreeMap<String, ProductStorage>,
    /// How long a table's file listing is reused before the bucket is listed again.
    #[serde(
        default = "defaults::listing_ttl",
        deserialize_with = "crate::units::duration"
    )]
    pub listing_ttl: Duration,
    /// Timeout of one storage request.
    #[serde(
        default = "defaults::request_timeout",
        deserialize_with = "crate::units::duration"
    )]
    pub request_timeout: Duration,
    #[serde(
        default = "defaults::connect_timeout",
        deserialize_with = "crate::units::duration"
    )]
    pub connect_timeout: Duration,
    /// Retries of a failed request (transient errors only).
    #[serde(default = "defaults::max_retries")]
    pub max_retries: usize,
}

mod defaults {
    use std::time::Duration;
    pub fn listing_ttl() -> Duration {
        Duration::from_secs(1)
    }
    pub fn request_timeout() -> Duration {
        Duration::from_secs(10)
    }
    pub fn connect_timeout() -> Duration {
        Duration::from_secs(2)
    }
    pub fn max_retries() -> usize {
        2
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        Self {
            default: ProductStorage::default(),
            products: BTreeMap::new(),
            listing_ttl: defaults::listing_ttl(),
            request_timeout: defaults::request_timeout(),
            connect_timeout: defaults::connect_timeout(),
            max_retries: defaults::max_retries(),
        }
    }
}

/// Where a product's bucket is and how to authenticate to it. Every field is optional here;
/// a product's settings are its own fields over the `default` ones.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductStorage {
    pub kind: Option<StorageKind>,
    /// `kind = "local"`: the directory standing in for the bucket.
    pub path: Option<String>,
    /// S3 endpoint; AWS when absent.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    /// The physical bucket, when it differs from the manifest's.
    pub bucket: Option<String>,
    /// The key prefix, when it differs from the manifest's (may contain `{model}`).
    pub prefix: Option<String>,
    /// Path-style requests (`endpoint/bucket/key`), as MinIO and most S3-compatible servers
    /// expect; AWS uses virtual-hosted style (`bucket.endpoint/key`).
    pub path_style: Option<bool>,
    /// Allow plain `http://` endpoints (local servers only).
    pub allow_http: Option<bool>,
    pub access_key_id_env: Option<String>,
    pub secret_access_key_env: Option<String>,
    pub session_token_env: Option<String>,
    /// A TOML file with `access_key_id`, `secret_access_key` and optionally `session_token`.
    pub credentials_file: Option<String>,
    /// Use the AWS default credential chain (environment, web identity, instance profile).
    pub default_credentials: Option<bool>,
    /// Credentials given in code (the embedded demo); never read from a file.
    #[serde(skip)]
    pub static_credentials: Option<StaticCredentials>,
}

impl fmt::Debug for ProductStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProductStorage")
            .field("kind", &self.kind)
            .field("path", &self.path)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("path_style", &self.path_style)
            .field("access_key_id_env", &self.access_key_id_env)
            .field("secret_access_key_env", &self.secret_access_key_env)
            .field("credentials_file", &self.credentials_file)
            .field("default_credentials", &self.default_credentials)
            .field(
                "static_credentials",
                &self.static_credentials.as_ref().map(|_| "<set in code>"),
            )
            .finish()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageKind {
    S3,
    Local,
}

/// Credentials handed over in code. Their `Debug` shows the key id only.
#[derive(Clone)]
pub struct StaticCredentials {
    pub access_key_id: String,
    pub secret_access_key: String,
}

impl fmt::Debug for StaticCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticCredentials")
            .field("access_key_id", &self.access_key_id)
            .finish_non_exhaustive()
    }
}

impl ProductStorage {
    /// This product's settings over `base`.
    pub fn over(&self, base: &ProductStorage) -> ProductStorage {
        macro_rules! pick {
            ($($field:ident),*) => { ProductStorage { $($field: self.$field.clone().or_else(|| base.$field.clone())),* } };
        }
        pick!(
            kind,
            path,
            endpoint,
            region,
            bucket,
            prefix,
            path_style,
            allow_http,
            access_key_id_env,
            secret_access_key_env,
            session_token_env,
            credentials_file,
            default_credentials,
            static_credentials
        )
    }
}

impl StorageConfig {
    /// Every product as a local directory `<root>/<bucket>`.
    pub fn local(root: &std::path::Path) -> Self {
        Self {
            default: ProductStorage {
                kind: Some(StorageKind::Local),
                path: Some(format!("{}/{{bucket}}", root.display())),
                ..ProductStorage::default()
            },
            ..Self::default()
        }
    }

    /// Every product in a bucket of the S3-compatible server at `endpoint` (path-style
    /// requests, plain HTTP allowed: a local or in-process server). Credentials are per
    /// product, set in [`StorageConfig::products`].
    pub fn s3_endpoint(endpoint: &str) -> Self {
        Self {
            default: ProductStorage {
                kind: Some(StorageKind::S3),
                endpoint: Some(endpoint.to_string()),
                region: Some("us-east-1".into()),
                path_style: Some(true),
                allow_http: Some(true),
                ..ProductStorage::default()
            },
            ..Self::default()
        }
    }
}

/// `{PRODUCT}`, `{product}` and `{bucket}` in a name or path.
pub fn expand_template(text: &str, product: &str, bucket: &str) -> String {
    let upper: String = product
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    text.replace("{PRODUCT}", &upper)
        .replace("{product}", product)
        .replace("{bucket}", bucket)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn product_settings_override_the_default() {
        let config: StorageConfig = toml::from_str(
            r#"
listing_ttl = "0s"
[default]
kind = "s3"
endpoint = "http://minio:9000"
access_key_id_env = "MESHGATE_S3_{PRODUCT}_ACCESS_KEY_ID"
[products."markets.trades"]
endpoint = "https://s3.eu-west-1.amazonaws.com"
bucket = "acme-trades"
"#,
        )
        .unwrap();
        assert_eq!(config.listing_ttl, Duration::ZERO);
        let merged = config.products["markets.trades"].over(&config.default);
        assert_eq!(merged.kind, Some(StorageKind::S3));
        assert_eq!(
            merged.endpoint.as_deref(),
            Some("https://s3.eu-west-1.amazonaws.com")
        );
        assert_eq!(merged.bucket.as_deref(), Some("acme-trades"));
        assert_eq!(
            expand_template(
                merged.access_key_id_env.as_deref().unwrap(),
                "markets.trades",
                "acme-trades"
            ),
            "MESHGATE_S3_MARKETS_TRADES_ACCESS_KEY_ID"
        );
        assert!(
            toml::from_str::<StorageConfig>("[default]\naccess_key_id = \"AKIA...\"\n").is_err(),
            "no inline secrets"
        );
    }
}
