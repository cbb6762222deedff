//! The raw scan of one product table, straight from its lake.
//!
//! Not a `TableProvider` and registered nowhere: only a `ProtectedTable` calls it, inside
//! the seal. It lists the table's files (through the storage crate's bounded listing cache),
//! leaves out every file that does not match the manifest, splits the rest into file groups
//! for parallelism and plans a Parquet scan, all through the query's own counting view of
//! the mesh store, so every request is attributed to the query that made it.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::{
    FileGroup, FileGroupPartitioner, FileScanConfigBuilder,
};
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::object_store::{ObjectStoreRegistry, ObjectStoreUrl};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use meshgate_catalog::{Product, Table};
use meshgate_storage::{IoCounters, Lakes, key_of};
use object_store::ObjectStore;
use url::Url;

/// The raw scan of each product table, by (domain, table).
pub(crate) type RawTables = std::collections::HashMap<(String, String), Arc<LakeTable>>;

#[derive(Debug)]
pub(crate) struct LakeTable {
    product: Arc<Product>,
    table: Table,
    schema: SchemaRef,
    format: Arc<ParquetFormat>,
}

impl LakeTable {
    pub(crate) fn new(
        product: Arc<Product>,
        table: Table,
        view_types: bool,
        format: ParquetFormat,
    ) -> Self {
        let schema = scan_schema(&table, view_types);
        Self {
            product,
            table,
            schema,
            format: Arc::new(format),
        }
    }

    /// The schema the table is scanned with (all columns, unprotected).
    pub(crate) fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Plan a scan of `projection` (indices into [`Self::schema`]). The plan carries no
    /// statistics; the files' total row count, as their footers declare it, comes beside it.
    pub(crate) async fn scan(
        &self,
        state: &dyn Session,
        lakes: &Lakes,
        io: &IoCounters,
        projection: &[usize],
    ) -> Result<RawScan> {
        let url = ObjectStoreUrl::parse(Lakes::URL)?;
        let store = state.runtime_env().object_store(&url)?;
        let cache = Some(state.runtime_env().cache_manager.get_file_metadata_cache());
        let files = lakes
            .table_files(store.as_ref(), cache, &self.product, &self.table)
            .await
            .map_err(external)?;
        for (file, reason) in &files.refused {
            io.refuse_file(&self.product.id, &key_of(&file.location), reason);
        }
        let rows = files.rows;
        let accepted: Vec<PartitionedFile> = files
            .accepted
            .into_iter()
            .map(PartitionedFile::from)
            .collect();
        let projected = Arc::new(self.schema.project(projection)?);
        if accepted.is_empty() {
            return Ok(RawScan {
                plan: Arc::new(EmptyExec::new(projected)),
                rows,
            });
        }

        // Whole files spread over the target partitions, then large files split by byte
        // range (what DataFusion's optimizer would do, but it cannot reach inside the seal).
        let config = state.config_options();
        let partitions = config.execution.target_partitions.max(1);
        let mut groups: Vec<Vec<PartitionedFile>> =
            vec![Vec::new(); partitions.min(accepted.len())];
        for (i, file) in accepted.into_iter().enumerate() {
            let n = groups.len();
            groups[i % n].push(file);
        }
        let mut groups: Vec<FileGroup> = groups.into_iter().map(FileGroup::new).collect();
        if config.optimizer.repartition_file_scans
            && let Some(split) = FileGroupPartitioner::new()
                .with_target_partitions(partitions)
                .with_repartition_file_min_size(config.optimizer.repartition_file_min_size)
                .repartition_file_groups(&groups)
        {
            groups = split;
        }

        let source = self
            .format
            .file_source(TableSchema::from(Arc::clone(&self.schema)));
        let scan = FileScanConfigBuilder::new(url, source)
            .with_file_groups(groups)
            .with_projection_indices(Some(projection.to_vec()))?
            .build();
        Ok(RawScan {
            plan: self.format.create_physical_plan(state, scan).await?,
            rows,
        })
    }
}

/// A planned raw scan and the row count of the files it reads.
pub(crate) struct RawScan {
    pub(crate) plan: Arc<dyn ExecutionPlan>,
    /// `None` when some footer did not declare a usable count.
    pub(crate) rows: Option<u64>,
}

fn external(error: meshgate_storage::ProductStorageError) -> DataFusionError {
    DataFusionError::External(Box::new(error))
}

/// The schema a table is scanned with: the manifest's types, with strings and binaries as
/// Arrow view types when DataFusion reads Parquet that way (its default, and its fastest).
fn scan_schema(table: &Table, view_types: bool) -> SchemaRef {
    let fields: Vec<Field> = table
        .columns
        .iter()
        .map(|c| {
            let data_type = match (&c.data_type, view_types) {
                (DataType::Utf8, true) => DataType::Utf8View,
                (DataType::Binary, true) => DataType::BinaryView,
                (other, _) => other.clone(),
            };
            Field::new(&c.name, data_type, c.nullable)
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// A query's (or a worker's sealed scan's) object stores: the mesh store, and nothing else
/// (no URL a query names can reach any other store). [`MeshStores::none`] reaches no store
/// at all: a worker's sessions, which read only through a sealed scan.
#[derive(Debug)]
pub(crate) struct MeshStores {
    mesh: Option<Arc<dyn ObjectStore>>,
}

impl MeshStores {
    pub(crate) fn new(mesh: Arc<dyn ObjectStore>) -> Self {
        Self { mesh: Some(mesh) }
    }

    pub(crate) fn none() -> Self {
        Self { mesh: None }
    }
}

impl ObjectStoreRegistry for MeshStores {
    fn register_store(
        &self,
        _url: &Url,
        _store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        None
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        match &self.mesh {
            Some(mesh) if url.scheme() == "meshgate" && url.host_str() == Some("products") => {
                Ok(Arc::clone(mesh))
            }
            _ => Err(DataFusionError::Plan(format!(
                "no storage is reachable at {url}"
            ))),
        }
    }
}
