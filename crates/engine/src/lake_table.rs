//! The raw scan of one product table, straight from its lake.
//!
//! Not a `TableProvider` and registered nowhere: only a `ProtectedTable` calls it, inside
//! the seal. It lists the table's files (through the storage crate's bounded listing cache),
//! leaves out every file that does not match the manifest, splits the rest into file groups
//! for parallelism and plans a Parquet scan, all through the query's own counting view of
//! the mesh store, so every request is attributed to the query that made it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::config::ConfigOptions;
use datafusion::common::stats::Precision;
use datafusion::common::{DFSchema, DataFusionError, Result, Statistics};
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::physical_plan::parquet::CachedParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::metadata::DFParquetMetadata;
use datafusion::datasource::physical_plan::{
    FileGroup, FileGroupPartitioner, FileScanConfigBuilder, ParquetSource,
};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::table_schema::TableSchema;
use datafusion::execution::TaskContext;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::execution::object_store::{ObjectStoreRegistry, ObjectStoreUrl};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_optimizer::PhysicalOptimizerRule;
use datafusion::physical_optimizer::filter_pushdown::FilterPushdown;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::empty::EmptyExec;
use datafusion::physical_plan::filter::FilterExec;
use meshgate_catalog::{Product, Table};
use meshgate_storage::{IoCounters, Lakes, key_of};
use object_store::{ObjectMeta, ObjectStore};
use url::Url;

use crate::visible::{FileVersion, Lookup, VisibleStatistics};

/// The raw scan of each product table, by (domain, table).
pub(crate) type RawTables = std::collections::HashMap<(String, String), Arc<LakeTable>>;

#[derive(Debug)]
pub(crate) struct LakeTable {
    product: Arc<Product>,
    table: Table,
    schema: SchemaRef,
    format: Arc<ParquetFormat>,
    /// Each file version's statistics over [`Self::schema`], from its footer, computed once.
    statistics: Mutex<HashMap<FileVersion, Arc<Statistics>>>,
    /// `<product>@<version>/<table>(<columns>)`, naming this table's entries among the
    /// visible rows' statistics.
    name: Arc<str>,
    /// The statistics of the rows row filters admit (shared by the mesh version's tables).
    visible: Arc<VisibleStatistics>,
}

/// What a scan may carry of its files' statistics (the sealed scan decides what of them
/// crosses the seal).
pub(crate) enum Known<'a> {
    Nothing,
    /// The footers' (for a caller who sees every row).
    Footers,
    /// Those of the rows this row filter (at query time) admits, once computed (see
    /// [`crate::visible`]).
    Visible(&'a Expr),
}

/// Statistics kept per table at most; the cache starts over beyond (footers stay cached in
/// the runtime's metadata cache, so recomputing is cheap).
const MAX_CACHED_STATISTICS: usize = 4096;

impl LakeTable {
    pub(crate) fn new(
        product: Arc<Product>,
        table: Table,
        view_types: bool,
        format: ParquetFormat,
        visible: Arc<VisibleStatistics>,
    ) -> Self {
        let schema = scan_schema(&table, view_types);
        // The product's version and the scan's schema too: entries outlive a publish.
        let columns: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| format!("{} {}", f.name(), f.data_type()))
            .collect();
        let name = format!(
            "{}@{}/{}({})",
            product.id,
            product.version,
            table.sql_name,
            columns.join(", ")
        )
        .into();
        Self {
            product,
            table,
            schema,
            format: Arc::new(format),
            statistics: Mutex::default(),
            name,
            visible,
        }
    }

    /// The schema the table is scanned with (all columns, unprotected).
    pub(crate) fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    /// Plan a scan of `projection` (indices into [`Self::schema`]). The files' total row
    /// count, as their footers declare it, comes beside it, and the `known` statistics of
    /// the projected columns when available (raw values: the caller of this decides what of
    /// them may cross the seal), which the plan then carries too.
    pub(crate) async fn scan(
        self: &Arc<Self>,
        state: &dyn Session,
        lakes: &Lakes,
        io: &Arc<IoCounters>,
        projection: &[usize],
        known: Known<'_>,
    ) -> Result<RawScan> {
        let url = ObjectStoreUrl::parse(Lakes::URL)?;
        // The query's own counting view of the lakes: the planning state has no store.
        let store = lakes.store(Some(Arc::clone(io)));
        let cache = state.runtime_env().cache_manager.get_file_metadata_cache();
        let files = lakes
            .table_files(
                store.as_ref(),
                Some(Arc::clone(&cache)),
                &self.product,
                &self.table,
            )
            .await
            .map_err(external)?;
        for (file, reason) in &files.refused {
            io.refuse_file(&self.product.id, &key_of(&file.location), reason);
        }
        let rows = files.rows;
        let table_statistics = match known {
            Known::Footers => {
                self.files_statistics(store.as_ref(), Arc::clone(&cache), &files.accepted)
                    .await
            }
            Known::Visible(filter) => {
                self.visible_statistics(state, lakes, Arc::clone(&cache), &files.accepted, filter)
            }
            Known::Nothing => None,
        };
        let statistics = table_statistics
            .clone()
            .map(|s| s.project(Some(&projection)));
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
                statistics,
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

        // What `ParquetFormat::create_physical_plan` builds, except that the files are read
        // through this query's counting store (which the planning state does not hold)
        // and their footers through the shared metadata cache.
        let source = self.parquet_source(store, cache);
        let mut scan = FileScanConfigBuilder::new(url, Arc::new(source))
            .with_file_groups(groups)
            .with_projection_indices(Some(projection.to_vec()))?;
        // Inside the seal only, so that a filter over this scan estimates its selectivity.
        if let Some(table_statistics) = table_statistics {
            scan = scan.with_statistics(table_statistics);
        }
        let scan = scan.build();
        Ok(RawScan {
            plan: DataSourceExec::from_data_source(scan),
            rows,
            statistics,
        })
    }

    /// What `ParquetFormat` would read the table's files with, except that they are read
    /// through `store` and their footers through the shared metadata cache.
    fn parquet_source(
        &self,
        store: Arc<dyn ObjectStore>,
        cache: Arc<FileMetadataCache>,
    ) -> ParquetSource {
        let source = ParquetSource::new(TableSchema::from(Arc::clone(&self.schema)))
            .with_table_parquet_options(self.format.options().clone())
            .with_parquet_file_reader_factory(Arc::new(CachedParquetFileReaderFactory::new(
                store, cache,
            )));
        match self.format.metadata_size_hint() {
            Some(hint) => source.with_metadata_size_hint(hint),
            None => source,
        }
    }

    /// The statistics of the rows `filter` admits in `files`, merged over the whole table
    /// schema, when every file's are known; otherwise `None`, and the missing ones are
    /// computed in the background (see [`crate::visible`]).
    fn visible_statistics(
        self: &Arc<Self>,
        state: &dyn Session,
        lakes: &Lakes,
        cache: Arc<FileMetadataCache>,
        files: &[ObjectMeta],
        filter: &Expr,
    ) -> Option<Statistics> {
        let versions: Vec<FileVersion> = files.iter().map(version_of).collect();
        match self.visible.lookup(&self.name, &versions, filter) {
            Lookup::Known(each) if each.is_empty() => Some(Statistics::new_unknown(&self.schema)),
            Lookup::Known(each) => {
                // A file none of whose rows the filter admits has no minimum or maximum,
                // which would leave the merged ones unknown: it adds nothing.
                let some: Vec<&Statistics> = each
                    .iter()
                    .map(|s| s.as_ref())
                    .filter(|s| s.num_rows != Precision::Exact(0))
                    .collect();
                match some.is_empty() {
                    true => each.first().map(|s| s.as_ref().clone()),
                    false => Statistics::try_merge_iter(some, &self.schema).ok(),
                }
            }
            Lookup::Pending | Lookup::Off => None,
            Lookup::Missing(missing) => {
                let schema = DFSchema::try_from(Arc::clone(&self.schema)).ok()?;
                let predicate = state.create_physical_expr(filter.clone(), &schema).ok()?;
                let (files, versions): (Vec<ObjectMeta>, Vec<FileVersion>) = missing
                    .iter()
                    .filter_map(|at| Some((files.get(*at)?.clone(), versions.get(*at)?.clone())))
                    .unzip();
                // Read by the gateway, for no query: counted in none, but in the metrics.
                let lakes = lakes.clone();
                let context = Arc::new(with_stores(
                    &state.task_ctx(),
                    Arc::new(MeshStores::new(lakes.store(None))),
                ));
                let options = state.config_options().clone();
                let this = Arc::clone(self);
                self.visible.schedule(
                    Arc::clone(&self.name),
                    versions,
                    filter.clone(),
                    Arc::clone(&self.schema),
                    context,
                    move |at, io| {
                        let file = files.get(at).cloned().ok_or_else(|| {
                            DataFusionError::Internal(format!("no file {at} to summarize"))
                        })?;
                        this.filtered_file_scan(
                            file,
                            lakes.store(Some(io)),
                            Arc::clone(&cache),
                            Arc::clone(&predicate),
                            &options,
                        )
                    },
                );
                None
            }
        }
    }

    /// One file, every column, under `predicate` (pushed into the Parquet source, so that
    /// the row groups it rejects are not read).
    fn filtered_file_scan(
        &self,
        file: ObjectMeta,
        store: Arc<dyn ObjectStore>,
        cache: Arc<FileMetadataCache>,
        predicate: Arc<dyn PhysicalExpr>,
        options: &ConfigOptions,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let url = ObjectStoreUrl::parse(Lakes::URL)?;
        let scan = FileScanConfigBuilder::new(url, Arc::new(self.parquet_source(store, cache)))
            .with_file_groups(vec![FileGroup::new(vec![PartitionedFile::from(file)])])
            .build();
        let plan: Arc<dyn ExecutionPlan> = Arc::new(FilterExec::try_new(
            predicate,
            DataSourceExec::from_data_source(scan),
        )?);
        FilterPushdown::new().optimize(plan, options)
    }

    /// The accepted files' statistics over the whole table schema, merged, from their
    /// footers (read through the metadata cache, as the acceptance check left them). `None`
    /// when a footer cannot be read now: the scan then goes on without statistics.
    async fn files_statistics(
        &self,
        store: &dyn ObjectStore,
        cache: Arc<FileMetadataCache>,
        files: &[ObjectMeta],
    ) -> Option<Statistics> {
        let mut each = Vec::with_capacity(files.len());
        for file in files {
            let version = version_of(file);
            let known = self
                .statistics
                .lock()
                .ok()
                .and_then(|s| s.get(&version).cloned());
            let statistics = match known {
                Some(statistics) => statistics,
                None => {
                    let statistics = DFParquetMetadata::new(store, file)
                        .with_file_metadata_cache(Some(Arc::clone(&cache)))
                        .fetch_statistics(&self.schema)
                        .await
                        .ok()?;
                    let statistics = Arc::new(statistics);
                    if let Ok(mut cached) = self.statistics.lock() {
                        if cached.len() >= MAX_CACHED_STATISTICS {
                            cached.clear();
                        }
                        cached.insert(version, Arc::clone(&statistics));
                    }
                    statistics
                }
            };
            each.push(statistics);
        }
        if each.is_empty() {
            return Some(Statistics::new_unknown(&self.schema));
        }
        Statistics::try_merge_iter(each.iter().map(|s| s.as_ref()), &self.schema).ok()
    }
}

/// A planned raw scan and the row count of the files it reads.
pub(crate) struct RawScan {
    pub(crate) plan: Arc<dyn ExecutionPlan>,
    /// `None` when some footer did not declare a usable count.
    pub(crate) rows: Option<u64>,
    /// The files' statistics of the projected columns, raw, when asked for and readable.
    pub(crate) statistics: Option<Statistics>,
}

fn version_of(file: &ObjectMeta) -> FileVersion {
    (
        file.location.clone(),
        file.e_tag.clone(),
        file.size,
        file.last_modified.timestamp_millis(),
    )
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

/// `context` with `stores` as its only object stores (a worker's sealed scan reads, and is
/// decoded, through the worker's mesh store and nothing else).
pub(crate) fn with_stores(
    context: &TaskContext,
    stores: Arc<dyn ObjectStoreRegistry>,
) -> TaskContext {
    let runtime = context.runtime_env();
    let runtime = RuntimeEnv {
        memory_pool: Arc::clone(&runtime.memory_pool),
        disk_manager: Arc::clone(&runtime.disk_manager),
        cache_manager: Arc::clone(&runtime.cache_manager),
        object_store_registry: stores,
    };
    TaskContext::new(
        context.task_id(),
        context.session_id(),
        context.session_config().clone(),
        context.scalar_functions().clone(),
        context.higher_order_functions().clone(),
        context.aggregate_functions().clone(),
        context.window_functions().clone(),
        Arc::new(runtime),
    )
}
