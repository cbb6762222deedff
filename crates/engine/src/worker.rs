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
use meshgate_protect::MasterKey;
use meshgate_storage::{Lakes, StorageConfig};

use crate::config::GatewayConfig;
use crate::error::GatewayError;
use crate::lake_table::MeshStores;
use crate::shared::seal_codec;
use crate::wire::SealCodec;

/// One worker's engine.
#[derive(Debug)]
pub struct WorkerNode {
    /// The mesh version this worker holds; publishing replaces it whole.
    mesh: ArcSwap<WorkerMesh>,
    /// Where products' lakes are opened from, on publish.
    storage: StorageConfig,
    master_key: MasterKey,
    runtime: Arc<RuntimeEnv>,
}

/// A worker's mesh version: its policies (checked against its catalog) and the seal codec
/// reading through its lakes under them.
#[derive(Debug)]
struct WorkerMesh {
    policies: Arc<ArcSwap<PolicySet>>,
    codec: SealCodec,
}

impl WorkerMesh {
    async fn build(
        catalog: Catalog,
        sources: &PolicySources,
        storage: &StorageConfig,
        master_key: &MasterKey,
    ) -> Result<Self, GatewayError> {
        let policies = PolicySet::load(&catalog, sources).await?;
        let lakes =
            Lakes::open(&catalog, storage).map_err(|e| GatewayError::Config(e.to_string()))?;
        let policies = Arc::new(ArcSwap::from_pointee(policies));
        let codec = seal_codec(&lakes, master_key, &policies);
        Ok(Self { policies, codec })
    }
}

impl WorkerNode {
    /// Open the catalog, the policies and every product's lake as `config` says (its
    /// governance, users and lineage are a gateway's business and are not opened).
    pub async fn open(config: GatewayConfig) -> Result<Self, GatewayError> {
        let mesh = WorkerMesh::build(
            config.catalog,
            &config.policies,
            &config.storage,
            &config.master_key,
        )
        .await?;
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
        Ok(Self {
            mesh: ArcSwap::from_pointee(mesh),
            storage: config.storage,
            master_key: config.master_key,
            runtime,
        })
    }

    /// Decodes the sealed scans of the stages this worker is sent, under the mesh version
    /// it holds now (a stage holds the codec it started with).
    pub fn seal_codec(&self) -> SealCodec {
        self.mesh.load().codec.clone()
    }

    /// The runtime every stage runs in (memory pool; no object store).
    pub fn runtime(&self) -> Arc<RuntimeEnv> {
        Arc::clone(&self.runtime)
    }

    /// The policy version this worker holds (the policy files' and contracts' fingerprint).
    pub fn policy_version(&self) -> String {
        self.mesh.load().policies.load().fingerprint().to_string()
    }

    /// Publish a new mesh version, as a gateway does ([`crate::Gateway::publish`]): the
    /// catalog with the policies of `sources` and every product's lake, checked whole, then
    /// swapped in; stages running now finish on the version they started with. On error the
    /// previous version stays. Returns the new policy version, which its gateways' must match
    /// for this worker to run their stages.
    pub async fn publish(
        &self,
        catalog: Catalog,
        sources: &PolicySources,
    ) -> Result<String, GatewayError> {
        let mesh = WorkerMesh::build(catalog, sources, &self.storage, &self.master_key).await?;
        let version = mesh.policies.load().fingerprint().to_string();
        self.mesh.store(Arc::new(mesh));
        Ok(version)
    }
}
