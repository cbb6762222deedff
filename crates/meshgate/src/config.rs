//! `meshgate.toml`: how `meshgate serve` finds its products, policies, users, storage and
//! master key. Relative paths are relative to the file.
//!
//! ```toml
//! listen = "127.0.0.1:50051"
//! products = "products"              # directory of product manifests (ODCS YAML)
//! policies = "policies"              # access.conf, access.csv, products/*.toml
//! users = "policies/users.toml"      # optional: static users for password logins
//! master_key_file = "secrets/master.key"  # optional: else $MESHGATE_MASTER_KEY
//!
//! [storage.buckets.reference-counterparties]
//! kind = "local"
//! path = "lake/reference-counterparties"
//! ```

use std::path::{Path, PathBuf};

use meshgate_catalog::Catalog;
use meshgate_engine::GatewayConfig;
use meshgate_policy::{PolicySources, UserDirectory};
use meshgate_protect::MasterKey;
use meshgate_storage::{BucketConfig, StorageConfig};
use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    listen: Option<String>,
    products: PathBuf,
    policies: PathBuf,
    #[serde(default)]
    users: Option<PathBuf>,
    #[serde(default)]
    master_key_file: Option<PathBuf>,
    #[serde(default)]
    storage: StorageConfig,
    #[serde(default)]
    target_partitions: Option<usize>,
}

/// A loaded configuration file.
#[derive(Debug)]
pub struct ServeConfig {
    pub listen: Option<String>,
    pub gateway: GatewayConfig,
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub message: String,
}

impl ServeConfig {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let file = path.display().to_string();
        let err = |message: String| ConfigError {
            file: file.clone(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
        let parsed: FileConfig = toml::from_str(&text).map_err(|e| err(e.to_string()))?;
        let base = path.parent().unwrap_or(Path::new("."));
        let resolve = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };

        let catalog =
            Catalog::load_dir(&resolve(&parsed.products)).map_err(|e| err(e.to_string()))?;
        let policies =
            PolicySources::from_dir(&resolve(&parsed.policies)).map_err(|e| err(e.to_string()))?;
        let users = match &parsed.users {
            Some(p) => {
                let p = resolve(p);
                let text = std::fs::read_to_string(&p)
                    .map_err(|e| err(format!("{}: {e}", p.display())))?;
                Some(
                    UserDirectory::parse(&p.display().to_string(), &text)
                        .map_err(|e| err(e.to_string()))?,
                )
            }
            None => None,
        };
        let master_key = match &parsed.master_key_file {
            Some(p) => MasterKey::from_file(&resolve(p)).map_err(|e| err(e.to_string()))?,
            None => MasterKey::from_env()
                .map_err(|e| err(e.to_string()))?
                .ok_or_else(|| err(meshgate_protect::KeyError::Missing.to_string()))?,
        };
        let mut storage = parsed.storage;
        for bucket in storage.buckets.values_mut() {
            let BucketConfig::Local { path } = bucket;
            *path = resolve(path);
        }
        Ok(Self {
            listen: parsed.listen,
            gateway: GatewayConfig {
                catalog,
                policies,
                users,
                storage,
                master_key,
                target_partitions: parsed.target_partitions,
            },
        })
    }
}
