//! TPC-H as a meshgate data product: the data (generated with `tpchgen`, never committed),
//! the 22 queries, and the product's manifest and policies.
//!
//! Layout of a generated scale factor (reused across runs):
//! `<dir>/lake/tpch/data/<table>/part-00000.parquet`: `lake` is the root of every bucket
//! (local files and the in-process S3 server serve the same bytes), `tpch` the product's
//! bucket, `data/<table>/` the product's table prefix.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use tpchgen::generators::{
    CustomerGenerator, LineItemGenerator, NationGenerator, OrderGenerator, PartGenerator,
    PartSuppGenerator, RegionGenerator, SupplierGenerator,
};
use tpchgen_arrow::{
    CustomerArrow, LineItemArrow, NationArrow, OrderArrow, PartArrow, PartSuppArrow, RegionArrow,
    SupplierArrow,
};

use crate::BenchError;

/// The eight tables, smallest first.
pub const TABLES: [&str; 8] = [
    "region", "nation", "supplier", "customer", "part", "partsupp", "orders", "lineitem",
];

/// The product's bucket (a directory under the lake root).
pub const BUCKET: &str = "tpch";
/// The product id and SQL schema.
pub const PRODUCT: &str = "tpch.benchmark";
pub const DOMAIN: &str = "tpch";

/// Rows per Parquet row group: lineitem at SF1 has ~47 of them, so a row filter on the
/// sort key (`l_orderkey`) can skip most.
const ROW_GROUP_ROWS: usize = 131_072;

/// Bumped whenever the generated files change.
const DATA_VERSION: &str = "meshgate-bench-tpch-v1";

/// The 22 queries, `(name, sql)`, tables qualified as `tpch.<table>`.
pub const QUERIES: [(&str, &str); 22] = [
    ("q01", include_str!("../tpch/q01.sql")),
    ("q02", include_str!("../tpch/q02.sql")),
    ("q03", include_str!("../tpch/q03.sql")),
    ("q04", include_str!("../tpch/q04.sql")),
    ("q05", include_str!("../tpch/q05.sql")),
    ("q06", include_str!("../tpch/q06.sql")),
    ("q07", include_str!("../tpch/q07.sql")),
    ("q08", include_str!("../tpch/q08.sql")),
    ("q09", include_str!("../tpch/q09.sql")),
    ("q10", include_str!("../tpch/q10.sql")),
    ("q11", include_str!("../tpch/q11.sql")),
    ("q12", include_str!("../tpch/q12.sql")),
    ("q13", include_str!("../tpch/q13.sql")),
    ("q14", include_str!("../tpch/q14.sql")),
    ("q15", include_str!("../tpch/q15.sql")),
    ("q16", include_str!("../tpch/q16.sql")),
    ("q17", include_str!("../tpch/q17.sql")),
    ("q18", include_str!("../tpch/q18.sql")),
    ("q19", include_str!("../tpch/q19.sql")),
    ("q20", include_str!("../tpch/q20.sql")),
    ("q21", include_str!("../tpch/q21.sql")),
    ("q22", include_str!("../tpch/q22.sql")),
];

/// One generated scale factor on disk.
#[derive(Debug, Clone)]
pub struct TpchData {
    pub scale: f64,
    /// Root of every bucket (`StorageConfig::local` and the S3 server both serve it).
    pub lake: PathBuf,
    /// Total bytes of the Parquet files.
    pub bytes: u64,
    /// Rows per table, in [`TABLES`] order.
    pub rows: Vec<(String, usize)>,
}

impl TpchData {
    /// The directory holding `table`'s files.
    pub fn table_dir(&self, table: &str) -> PathBuf {
        self.lake.join(BUCKET).join("data").join(table)
    }

    /// Written once the files were uploaded through the S3 server (see
    /// `mesh::s3_lake`); removed whenever the files are generated again.
    pub fn uploaded_marker(&self) -> PathBuf {
        self.lake.with_file_name(".s3-uploaded")
    }

    /// Every Parquet file, for the raw read limit.
    pub fn files(&self) -> Vec<PathBuf> {
        TABLES
            .iter()
            .map(|t| self.table_dir(t).join("part-00000.parquet"))
            .collect()
    }
}

/// Generate `scale` under `dir` unless it is already there (same version and scale).
pub fn generate(dir: &Path, scale: f64) -> Result<TpchData, BenchError> {
    let lake = dir.join("lake");
    let marker = dir.join(".complete");
    let expected = format!("{DATA_VERSION} scale={scale}");
    let current = std::fs::read_to_string(&marker).is_ok_and(|m| m == expected);
    if !current {
        let _ = std::fs::remove_dir_all(&lake);
        let _ = std::fs::remove_file(&marker);
        let _ = std::fs::remove_file(dir.join(".s3-uploaded"));
        for table in TABLES {
            let table_dir = lake.join(BUCKET).join("data").join(table);
            std::fs::create_dir_all(&table_dir).map_err(BenchError::io(&table_dir))?;
            write_table(table, scale, &table_dir.join("part-00000.parquet"))?;
        }
        std::fs::write(&marker, &expected).map_err(BenchError::io(&marker))?;
    }
    let mut data = TpchData {
        scale,
        lake,
        bytes: 0,
        rows: Vec::new(),
    };
    for (table, file) in TABLES.iter().zip(data.files()) {
        let meta = std::fs::metadata(&file).map_err(BenchError::io(&file))?;
        data.bytes += meta.len();
        let reader = std::fs::File::open(&file).map_err(BenchError::io(&file))?;
        let rows = parquet::file::reader::SerializedFileReader::new(reader)
            .map(|r| {
                use parquet::file::reader::FileReader;
                r.metadata().file_metadata().num_rows() as usize
            })
            .map_err(|e| BenchError::Data(format!("{}: {e}", file.display())))?;
        data.rows.push((table.to_string(), rows));
    }
    Ok(data)
}

fn write_table(table: &str, scale: f64, path: &Path) -> Result<(), BenchError> {
    type Batches = Box<dyn Iterator<Item = Result<RecordBatch, arrow::error::ArrowError>>>;
    let batches: Batches = match table {
        "region" => Box::new(RegionArrow::new(RegionGenerator::new(scale, 1, 1))),
        "nation" => Box::new(NationArrow::new(NationGenerator::new(scale, 1, 1))),
        "supplier" => Box::new(SupplierArrow::new(SupplierGenerator::new(scale, 1, 1))),
        "customer" => Box::new(CustomerArrow::new(CustomerGenerator::new(scale, 1, 1))),
        "part" => Box::new(PartArrow::new(PartGenerator::new(scale, 1, 1))),
        "partsupp" => Box::new(PartSuppArrow::new(PartSuppGenerator::new(scale, 1, 1))),
        "orders" => Box::new(OrderArrow::new(OrderGenerator::new(scale, 1, 1))),
        "lineitem" => Box::new(LineItemArrow::new(LineItemGenerator::new(scale, 1, 1))),
        other => return Err(BenchError::Data(format!("no TPC-H table {other}"))),
    };
    let file = std::fs::File::create(path).map_err(BenchError::io(path))?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .build();
    let mut writer: Option<ArrowWriter<std::fs::File>> = None;
    let mut file = Some(file);
    for batch in batches {
        let batch = batch.map_err(|e| BenchError::Data(format!("{table}: {e}")))?;
        let batch = plain_strings(&batch)?;
        if writer.is_none() {
            let Some(file) = file.take() else { break };
            writer = Some(
                ArrowWriter::try_new(file, batch.schema(), Some(properties.clone()))
                    .map_err(|e| BenchError::Data(format!("{table}: {e}")))?,
            );
        }
        if let Some(writer) = writer.as_mut() {
            writer
                .write(&batch)
                .map_err(|e| BenchError::Data(format!("{table}: {e}")))?;
        }
    }
    match writer {
        Some(writer) => writer
            .close()
            .map(|_| ())
            .map_err(|e| BenchError::Data(format!("{table}: {e}"))),
        None => Err(BenchError::Data(format!("{table}: no rows generated"))),
    }
}

/// The generator's string views become plain UTF-8, the type the product's manifest names
/// (`VARCHAR`); every engine reads the same files either way.
fn plain_strings(batch: &RecordBatch) -> Result<RecordBatch, BenchError> {
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        if field.data_type() == &DataType::Utf8View {
            fields.push(Field::new(
                field.name(),
                DataType::Utf8,
                field.is_nullable(),
            ));
            columns
                .push(cast(column, &DataType::Utf8).map_err(|e| BenchError::Data(e.to_string()))?);
        } else {
            fields.push(field.as_ref().clone());
            columns.push(Arc::clone(column));
        }
    }
    let schema: SchemaRef = Arc::new(Schema::new(fields));
    RecordBatch::try_new(schema, columns).map_err(|e| BenchError::Data(e.to_string()))
}

/// The schema of `table` as written.
pub fn table_schema(data: &TpchData, table: &str) -> Result<SchemaRef, BenchError> {
    let file = data.table_dir(table).join("part-00000.parquet");
    let reader = std::fs::File::open(&file).map_err(BenchError::io(&file))?;
    let builder = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(reader)
        .map_err(|e| BenchError::Data(format!("{}: {e}", file.display())))?;
    Ok(Arc::clone(builder.schema()))
}

/// The product's manifest (ODCS v3.1, as every meshgate product), written from the files'
/// own schemas so the gateway accepts them.
pub fn manifest(data: &TpchData) -> Result<String, BenchError> {
    let mut out = String::from(
        "apiVersion: v3.1.0\nkind: DataContract\nid: tpch.benchmark\nname: TPC-H\n\
         version: 1.0.0\nstatus: active\ndomain: tpch\ndataProduct: tpch.benchmark\n\
         description:\n  purpose: TPC-H data for meshgate's benchmarks.\n\
         tags: [benchmark]\nservers:\n  - server: product-lake\n    type: s3\n\
         \x20   location: s3://tpch/data/{model}/\n    format: parquet\nschema:\n",
    );
    for table in TABLES {
        out.push_str(&format!(
            "  - name: {table}\n    physicalType: table\n    description: TPC-H {table}.\n    properties:\n"
        ));
        for field in table_schema(data, table)?.fields() {
            let (logical, physical) = match field.data_type() {
                DataType::Int64 => ("integer", "BIGINT".to_string()),
                DataType::Int32 => ("integer", "INTEGER".to_string()),
                DataType::Decimal128(p, s) => ("number", format!("DECIMAL({p},{s})")),
                DataType::Date32 => ("date", "DATE".to_string()),
                DataType::Utf8 => ("string", "VARCHAR".to_string()),
                other => {
                    return Err(BenchError::Data(format!(
                        "{table}.{}: no manifest type for {other}",
                        field.name()
                    )));
                }
            };
            out.push_str(&format!(
                "      - name: {}\n        logicalType: {logical}\n        physicalType: {physical}\n\
                 \x20       required: true\n        classification: internal\n        description: TPC-H column.\n",
                field.name()
            ));
        }
    }
    out.push_str(
        "team:\n  name: benchmarks\n  members:\n    - username: tpch-owner\n      role: owner\n\
         support:\n  - channel: \"#benchmarks\"\n    tool: slack\n",
    );
    Ok(out)
}

/// What each benchmark principal may see of TPC-H.
///
/// - `bench-all`: everything, clear (the "no policy" configurations);
/// - `bench-prunable`: orders and lineitem with `orderkey <= 1,500,000` (a quarter of the
///   rows; the files are sorted by order key, so row groups are skipped by statistics);
/// - `bench-region`: customers and suppliers of one region (EUROPE), a filter on a column
///   the files are not sorted by, so every row group is read;
/// - `bench-protect`: `c_phone` masked (last four digits), `c_name` tokenized, `o_clerk`
///   hidden.
pub const PRINCIPALS: [&str; 4] = [
    "bench-all",
    "bench-prunable",
    "bench-region",
    "bench-protect",
];

/// Concurrent clients of the load test, each its own principal seeing everything like
/// `bench-all` (many consumers at once; one principal's share of the gateway is capped).
pub const LOAD_CLIENTS: usize = 32;

/// The load test's `client`-th principal (from 0).
pub fn load_principal(client: usize) -> String {
    format!("bench-client-{}", client + 1)
}

/// Every benchmark principal: [`PRINCIPALS`], then the load test's.
pub fn all_principals() -> Vec<String> {
    PRINCIPALS
        .iter()
        .map(|p| p.to_string())
        .chain((0..LOAD_CLIENTS).map(load_principal))
        .collect()
}

/// EUROPE's nation keys.
pub const EUROPE: &str = "6, 7, 19, 22, 23";
/// The prunable filter's bound.
pub const ORDERKEY_BOUND: i64 = 1_500_000;

pub fn access_rules() -> String {
    let mut out = String::from("# meshgate-bench: every benchmark principal reads TPC-H.\n");
    for principal in all_principals() {
        out.push_str(&format!(
            "p, {principal}, {DOMAIN}, {PRODUCT}, read, allow\n"
        ));
    }
    out
}

/// The product policy; with `pushdown_user_predicates = false` callers' own predicates never
/// enter the sealed scans (the timing-safe setting, see ARCHITECTURE.md "The barrier").
pub fn product_policy(pushdown_user_predicates: bool) -> String {
    let mut out = format!(
        "[policy]\nproduct = \"tpch.benchmark\"\nversion = 1\ndescription = \"Benchmark policies.\"\n\
         pushdown_user_predicates = {pushdown_user_predicates}\n"
    );
    for table in TABLES {
        out.push_str(&format!(
            "\n[[row_filter]]\nid = \"all-rows-{table}\"\ntable = \"{table}\"\nkind = \"grant\"\nto = [\"*\"]\nwhere = \"true\"\n"
        ));
    }
    let restriction = |id: &str, table: &str, to: &str, filter: &str| {
        format!(
            "\n[[row_filter]]\nid = \"{id}\"\ntable = \"{table}\"\nkind = \"restriction\"\nto = [\"{to}\"]\nwhere = \"{filter}\"\n"
        )
    };
    out.push_str(&restriction(
        "prunable-orders",
        "orders",
        "bench-prunable",
        &format!("o_orderkey <= {ORDERKEY_BOUND}"),
    ));
    out.push_str(&restriction(
        "prunable-lineitem",
        "lineitem",
        "bench-prunable",
        &format!("l_orderkey <= {ORDERKEY_BOUND}"),
    ));
    out.push_str(&restriction(
        "region-customer",
        "customer",
        "bench-region",
        &format!("c_nationkey IN ({EUROPE})"),
    ));
    out.push_str(&restriction(
        "region-supplier",
        "supplier",
        "bench-region",
        &format!("s_nationkey IN ({EUROPE})"),
    ));
    for (id, table, column, treatment) in [
        ("phone-masked", "customer", "c_phone", "mask(show-last-4)"),
        ("name-tokenized", "customer", "c_name", "tokenize(tpch)"),
        ("clerk-hidden", "orders", "o_clerk", "hidden"),
    ] {
        out.push_str(&format!(
            "\n[[column]]\nid = \"{id}\"\ntable = \"{table}\"\ncolumn = \"{column}\"\ntreatment = \"{treatment}\"\nto = [\"bench-protect\"]\n"
        ));
    }
    out
}

/// The same policies written by hand in SQL: per principal, a view over the raw table for
/// every table the policy changes. The twin configurations run the TPC-H queries unchanged
/// against these views.
pub fn twin_views(principal: &str) -> Vec<(&'static str, String)> {
    match principal {
        "bench-prunable" => vec![
            (
                "orders",
                format!("SELECT * FROM raw.orders WHERE o_orderkey <= {ORDERKEY_BOUND}"),
            ),
            (
                "lineitem",
                format!("SELECT * FROM raw.lineitem WHERE l_orderkey <= {ORDERKEY_BOUND}"),
            ),
        ],
        "bench-region" => vec![
            (
                "customer",
                format!("SELECT * FROM raw.customer WHERE c_nationkey IN ({EUROPE})"),
            ),
            (
                "supplier",
                format!("SELECT * FROM raw.supplier WHERE s_nationkey IN ({EUROPE})"),
            ),
        ],
        "bench-protect" => vec![
            (
                "customer",
                "SELECT c_custkey, tokenize_tpch(c_name) AS c_name, c_address, c_nationkey, \
                 mask_show_last_4(c_phone) AS c_phone, c_acctbal, c_mktsegment, c_comment \
                 FROM raw.customer"
                    .to_string(),
            ),
            (
                "orders",
                "SELECT o_orderkey, o_custkey, o_orderstatus, o_totalprice, o_orderdate, \
                 o_orderpriority, o_shippriority, o_comment FROM raw.orders"
                    .to_string(),
            ),
        ],
        _ => Vec::new(),
    }
}
