//! The sealed scan on the wire: how a [`ProtectedScanExec`] travels to a worker inside a
//! stage plan, and how its files are split across a stage's tasks.
//!
//! What travels is what the gateway resolved and compiled: the table, the policy version
//! (`<product>@v<version>` and the policy files' fingerprint), the sealed subplan (Parquet
//! source with its file groups, the row filter, the masks and tokens, the projection) and the
//! master key's public id. What never travels: a credential (each node opens the product
//! lakes from its own configuration) and a key (a tokenize function travels as its domain,
//! and the worker derives the key from its own master key). A worker refuses a seal planned
//! under policy files or a master key other than its own, so it never applies a policy the
//! gateway did not resolve, nor a stale one.
//!
//! The encoded stage is not secret-free by accident only: `meshgate-distributed` signs every
//! stage plan, so a seal whose filter was removed on the way is refused before it is decoded.

use std::sync::Arc;

use arc_swap::ArcSwap;
use datafusion::arrow::datatypes::Schema;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result, internal_err};
use datafusion::datasource::physical_plan::{FileGroup, FileGroupPartitioner, FileScanConfig};
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreRegistry;
use datafusion::logical_expr::ScalarUDF;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::{
    DesiredTaskCountEvent, DesiredTaskCountEventResponse, DistributedConfig, DistributedLeafExec,
    ScaleUpLeafNodeEvent, ScaleUpLeafNodeEventResponse,
};
use datafusion_proto::bytes::{
    physical_plan_from_bytes_with_extension_codec, physical_plan_to_bytes_with_extension_codec,
};
use datafusion_proto::physical_plan::{PhysicalExtensionCodec, PhysicalProtoConverterExtension};
use datafusion_proto::protobuf;
use meshgate_policy::PolicySet;
use meshgate_protect::{MaskKind, MaskUdf, MasterKey, TokenizeUdf};
use prost::Message;

use crate::lake_table::with_stores;
use crate::protected::{ProtectedScanExec, SealIdent};

/// A sealed scan as encoded in a stage plan.
#[derive(Clone, PartialEq, prost::Message)]
struct SealedScanWire {
    #[prost(string, tag = "1")]
    product: String,
    #[prost(string, tag = "2")]
    domain: String,
    #[prost(string, tag = "3")]
    table: String,
    #[prost(string, tag = "4")]
    policy_id: String,
    #[prost(string, tag = "5")]
    fingerprint: String,
    /// The public id of the master key the gateway tokenizes with.
    #[prost(string, tag = "6")]
    key_id: String,
    #[prost(message, optional, tag = "7")]
    schema: Option<protobuf::Schema>,
    /// The sealed subplan, encoded with this codec (so its protection functions travel by
    /// name, mask kind and token domain).
    #[prost(bytes = "vec", tag = "8")]
    inner: Vec<u8>,
    #[prost(uint64, optional, tag = "9")]
    rows: Option<u64>,
}

/// A protection function as encoded in a sealed subplan: a mask kind, or a token domain and
/// the master key's public id. Never key bytes.
#[derive(Clone, PartialEq, prost::Message)]
struct ProtectionWire {
    #[prost(string, optional, tag = "1")]
    mask: Option<String>,
    #[prost(string, optional, tag = "2")]
    mask_argument: Option<String>,
    #[prost(string, optional, tag = "3")]
    token_domain: Option<String>,
    #[prost(string, tag = "4")]
    key_id: String,
}

/// Why a node refuses a sealed scan it was sent.
#[derive(Debug, thiserror::Error)]
pub enum SealRefusal {
    #[error(
        "this node holds policy version {held}, but the sealed scan of {table} was planned under \
         {planned}: refusing (reload the policies on every gateway and worker)"
    )]
    PolicyVersion {
        table: String,
        held: String,
        planned: String,
    },
    #[error(
        "this node's master key (id {held}) is not the one the sealed scan of {table} was \
         planned with (id {planned}): refusing (give gateways and workers the same key)"
    )]
    MasterKey {
        table: String,
        held: String,
        planned: String,
    },
    #[error("malformed sealed scan: {0}")]
    Malformed(String),
}

fn refuse(refusal: SealRefusal) -> DataFusionError {
    DataFusionError::External(Box::new(refusal))
}

/// What a node (gateway or worker) needs to run a sealed scan it was sent: its own product
/// stores, master key and policy version in force.
pub struct SealHost {
    stores: Arc<dyn ObjectStoreRegistry>,
    master_key: MasterKey,
    key_id: String,
    policies: Arc<ArcSwap<PolicySet>>,
}

impl std::fmt::Debug for SealHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SealHost")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl SealHost {
    pub(crate) fn new(
        stores: Arc<dyn ObjectStoreRegistry>,
        master_key: MasterKey,
        policies: Arc<ArcSwap<PolicySet>>,
    ) -> Self {
        let key_id = master_key.key_id();
        Self {
            stores,
            master_key,
            key_id,
            policies,
        }
    }
}

/// Encodes and decodes sealed scans and the protection functions inside them. Registered on
/// the gateway's distributed sessions and on every worker.
#[derive(Debug, Clone)]
pub struct SealCodec {
    host: Arc<SealHost>,
}

impl SealCodec {
    pub(crate) fn new(host: Arc<SealHost>) -> Self {
        Self { host }
    }
}

impl PhysicalExtensionCodec for SealCodec {
    fn try_decode(
        &self,
        buf: &[u8],
        inputs: &[Arc<dyn ExecutionPlan>],
        ctx: &TaskContext,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if !inputs.is_empty() {
            return Err(refuse(SealRefusal::Malformed(
                "a sealed scan has no children".into(),
            )));
        }
        let wire = SealedScanWire::decode(buf)
            .map_err(|e| refuse(SealRefusal::Malformed(e.to_string())))?;
        let table = format!("{}.{}", wire.domain, wire.table);
        let held = self.host.policies.load().fingerprint().to_string();
        if wire.fingerprint != held {
            return Err(refuse(SealRefusal::PolicyVersion {
                table,
                held,
                planned: wire.fingerprint,
            }));
        }
        if wire.key_id != self.host.key_id {
            return Err(refuse(SealRefusal::MasterKey {
                table,
                held: self.host.key_id.clone(),
                planned: wire.key_id,
            }));
        }
        let schema: Schema = wire
            .schema
            .as_ref()
            .ok_or_else(|| refuse(SealRefusal::Malformed("no schema".into())))?
            .try_into()?;
        // Decoded as it will run: through this node's own stores only.
        let sealed = with_stores(ctx, Arc::clone(&self.host.stores));
        let inner = physical_plan_from_bytes_with_extension_codec(&wire.inner, &sealed, self)?;
        if inner.schema().fields() != schema.fields() {
            return Err(refuse(SealRefusal::Malformed(format!(
                "the sealed plan of {table} does not produce its declared columns"
            ))));
        }
        let ident = Arc::new(SealIdent {
            product: wire.product,
            domain: wire.domain,
            table: wire.table,
            policy_id: wire.policy_id,
            fingerprint: wire.fingerprint,
        });
        let rows = wire.rows.and_then(|r| usize::try_from(r).ok());
        let mut scan = ProtectedScanExec::new(ident, None, Arc::new(schema), inner, vec![], rows);
        scan.stores = Some(Arc::clone(&self.host.stores));
        Ok(Arc::new(scan))
    }

    fn try_encode(
        &self,
        node: Arc<dyn ExecutionPlan>,
        buf: &mut Vec<u8>,
        _proto_converter: &dyn PhysicalProtoConverterExtension,
    ) -> Result<()> {
        let Some(scan) = node.downcast_ref::<ProtectedScanExec>() else {
            return internal_err!("{} is not a sealed scan", node.name());
        };
        let inner =
            physical_plan_to_bytes_with_extension_codec(Arc::clone(&scan.inner), self)?.to_vec();
        let wire = SealedScanWire {
            product: scan.ident.product.clone(),
            domain: scan.ident.domain.clone(),
            table: scan.ident.table.clone(),
            policy_id: scan.ident.policy_id.clone(),
            fingerprint: scan.ident.fingerprint.clone(),
            key_id: self.host.key_id.clone(),
            schema: Some(scan.schema().as_ref().try_into()?),
            inner,
            rows: scan.rows.map(|r| r as u64),
        };
        wire.encode(buf)
            .map_err(|e| DataFusionError::Internal(format!("encoding a sealed scan: {e}")))
    }

    fn try_decode_udf(&self, name: &str, buf: &[u8]) -> Result<Arc<ScalarUDF>> {
        let wire = ProtectionWire::decode(buf)
            .map_err(|e| refuse(SealRefusal::Malformed(format!("function {name}: {e}"))))?;
        if wire.key_id != self.host.key_id {
            return Err(refuse(SealRefusal::MasterKey {
                table: format!("(function {name})"),
                held: self.host.key_id.clone(),
                planned: wire.key_id,
            }));
        }
        match (wire.mask, wire.token_domain) {
            (Some(mask), None) => {
                let kind = MaskKind::parse(&mask, wire.mask_argument.as_deref())
                    .map_err(|m| refuse(SealRefusal::Malformed(m)))?;
                Ok(MaskUdf::udf(kind))
            }
            (None, Some(domain)) => Ok(TokenizeUdf::udf(self.host.master_key.token_key(&domain))),
            _ => Err(refuse(SealRefusal::Malformed(format!(
                "function {name} is neither a mask nor a tokenizer"
            )))),
        }
    }

    fn try_encode_udf(&self, node: &ScalarUDF, buf: &mut Vec<u8>) -> Result<()> {
        let function: &dyn std::any::Any = node.inner().as_ref();
        let wire = if let Some(mask) = function.downcast_ref::<MaskUdf>() {
            let argument = match mask.kind() {
                MaskKind::Redact(text) => Some(text.clone()),
                _ => None,
            };
            ProtectionWire {
                mask: Some(mask.kind().name().to_string()),
                mask_argument: argument,
                token_domain: None,
                key_id: self.host.key_id.clone(),
            }
        } else if let Some(tokenize) = function.downcast_ref::<TokenizeUdf>() {
            ProtectionWire {
                mask: None,
                mask_argument: None,
                token_domain: Some(tokenize.domain().to_string()),
                key_id: self.host.key_id.clone(),
            }
        } else {
            // A built-in function: it travels by name and is found in the worker's registry.
            return Ok(());
        };
        wire.encode(buf)
            .map_err(|e| DataFusionError::Internal(format!("encoding a protection: {e}")))
    }
}

/// The Parquet source inside a sealed scan, with its file scan configuration.
fn parquet_source(plan: &Arc<dyn ExecutionPlan>) -> Option<&FileScanConfig> {
    if let Some(source) = plan.downcast_ref::<DataSourceExec>() {
        return source.data_source().downcast_ref::<FileScanConfig>();
    }
    plan.children().into_iter().find_map(parquet_source)
}

/// Bytes of Parquet a sealed subplan reads.
pub(crate) fn files_bytes(inner: &Arc<dyn ExecutionPlan>) -> u64 {
    parquet_source(inner).map_or(0, |files| {
        files
            .file_groups
            .iter()
            .flat_map(|group| group.files())
            .map(|file| file.effective_size())
            .sum()
    })
}

/// How many tasks a sealed scan's stage wants: its files' bytes over the bytes a partition
/// should read, spread over each task's partitions (as DataFusion Distributed sizes a plain
/// Parquet scan).
pub(crate) fn desired_task_count(
    ev: DesiredTaskCountEvent,
) -> Option<Result<DesiredTaskCountEventResponse>> {
    let scan = ev.plan.downcast_ref::<ProtectedScanExec>()?;
    parquet_source(&scan.inner)?;
    let config = DistributedConfig::from_session_config(ev.session_config).ok()?;
    let bytes = usize::try_from(files_bytes(&scan.inner)).unwrap_or(usize::MAX);
    let per_partition = config.file_scan_config_bytes_per_partition.max(1);
    let tasks = bytes
        .div_ceil(per_partition)
        .div_ceil(ev.session_config.target_partitions().max(1));
    Some(Ok(DesiredTaskCountEventResponse::desired(tasks.max(1))))
}

/// One sealed scan per task, each over its share of the files, behind the library's leaf
/// that picks the variant of the task it runs in. The seal itself is unchanged: each variant
/// carries the same policy, filter and protections.
pub(crate) fn scale_up(ev: ScaleUpLeafNodeEvent) -> Option<Result<ScaleUpLeafNodeEventResponse>> {
    let scan = ev.plan.downcast_ref::<ProtectedScanExec>()?;
    let files = parquet_source(&scan.inner)?;
    Some(split(scan, files, ev.task_count).map(ScaleUpLeafNodeEventResponse::new))
}

fn split(
    scan: &ProtectedScanExec,
    files: &FileScanConfig,
    tasks: usize,
) -> Result<Arc<dyn ExecutionPlan>> {
    let tasks = tasks.max(1);
    let partitions = scan.properties().partitioning.partition_count().max(1);
    let groups: Vec<FileGroup> = FileGroupPartitioner::new()
        .with_target_partitions(partitions * tasks)
        .with_repartition_file_min_size(0)
        .with_preserve_order_within_groups(!files.output_ordering.is_empty())
        .repartition_file_groups(&files.file_groups)
        .unwrap_or_else(|| files.file_groups.clone());
    let mut template = files.clone();
    template.file_groups.clear();
    let mut per_task = vec![template; tasks];
    for (i, group) in groups.into_iter().enumerate() {
        per_task[i % tasks].file_groups.push(group);
    }
    let mut variants: Vec<Arc<dyn ExecutionPlan>> = Vec::with_capacity(tasks);
    for config in per_task {
        let source: Arc<dyn ExecutionPlan> = DataSourceExec::from_data_source(config);
        let inner = Arc::clone(&scan.inner)
            .transform_up(|node| {
                Ok(if node.downcast_ref::<DataSourceExec>().is_some() {
                    Transformed::yes(Arc::clone(&source))
                } else {
                    Transformed::no(node)
                })
            })?
            .data;
        variants.push(Arc::new(scan.with_inner(inner)));
    }
    let original: Arc<dyn ExecutionPlan> = Arc::new(scan.with_inner(Arc::clone(&scan.inner)));
    Ok(Arc::new(DistributedLeafExec::try_new(original, variants)?))
}
