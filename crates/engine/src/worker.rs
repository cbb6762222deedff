//! A worker's side of distributed execution: what a worker holds itself (the catalog, the
//! policy version, each product's lake with its own credentials, the master key), so that a
//! sealed scan it is sent reads with its own credentials and key, and only under the policy
//! version it holds. It has no sessions, no governance store and no consumers: it runs the
//! stages its gateways send it (served by `meshgate-distributed`).

use std::sync::Arc;

use arc_swap::ArcSwap;
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use meshgate_catalog::Catalog;
use meshgate_policy::{PolicySet, PolicySources};
use meshgate_storage::Lakes;

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::lake_table::MeshStores;
use crate::shared::seal_codec;
use crate::wire::SealCodec;

/// One worker's engine.
#[derive(Debug)]
pub struct WorkerNode {
    catalog: Arc<Catalog>,
    policies: Arc<ArcSwap<PolicySet>>,
    runtime: Arc<RuntimeEnv>,
    codec: SealCodec,
}

impl WorkerNode {
    /// Open the catalog, the policies and every product's lake as `config` says (its
    /// governance, users and lineage are a gateway's business and are not opened).
    pub async fn open(config: GatewayConfig) -> Result<Self, GatewayError> {
        let catalog = Arc::new(config.catalog);
        let policies = PolicySet::load(&catalog, &config.policies).await?;
        let lakes = Lakes::open(&catalog, &config.storage)
            .map_err(|e| GatewayError::Config(e.to_string()))?;
        // The worker's sessions reach no store at all: only a sealed scan reads, through the
        // stores the seal codec gives it.
        let mut runtime =
            RuntimeEnvBuilder::new().with_object_store_registry(Arc::new(MeshStores::none()));
        if let Some(limit) = config.memory_limit {
            runtime = runtime.with_memory_pool(Arc::new(FairSpillPool::new(limit)));
        }
        let runtime = runtime
            .build_arc()
            .map_err(|e| GatewayError::Config(e.to_string()))?;
        let policies = Arc::new(ArcSwap::from_pointee(policies));
        let codec = seal_codec(&lakes, &config.master_key, &policies);
        Ok(Self {
            catalog,
            policies,
            runtime,
            codec,
        })
    }

    /// Decodes the sealed scans of the stages this worker is sent.
    pub fn seal_codec(&self) -> SealCodec {
        self.codec.clone()
    }

    /// The runtime every stage runs in (memory pool; no object store).
    pub fn runtime(&self) -> Arc<RuntimeEnv> {
        Arc::clone(&self.runtime)
    }

    /// The policy version this worker holds (the policy files' fingerprint).
    pub fn policy_version(&self) -> String {
        self.policies.load().fingerprint().to_string()
    }

    /// Load `sources` and make them the version in force; on error the previous stays.
    pub async fn reload_policies(&self, sources: &PolicySources) -> Result<String, GatewayError> {
        let policies = PolicySet::load(&self.catalog, sources).await?;
        let fingerprint = policies.fingerprint().to_string();
        self.policies.store(Arc::new(policies));
        Ok(fingerprint)
    }
}
