//! Serve a mesh of your own from a directory: your product contracts, your policies, your
//! lake. `examples/own-mesh/` holds one product (`shop.orders`), its policy and a
//! `meshgate.toml`; this example copies it to a scratch directory, writes the product's
//! Parquet file into its local "bucket" and a master key next to it, then queries it in
//! process as two principals of your application.
//!
//! ```text
//! cargo run -p meshgate --example own_mesh
//! ```
//!
//! To serve the same directory over Flight SQL instead: `meshgate serve --config
//! <dir>/meshgate.toml`.

use std::path::Path;
use std::sync::Arc;

use arrow::array::{Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema};
use arrow::util::pretty::pretty_format_batches;
use meshgate::config::ServeConfig;
use meshgate::{Gateway, Principal};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/own-mesh");
    let scratch = tempfile::tempdir()?;
    let dir = scratch.path();
    copy_dir(&source, dir)?;
    // An example key; make yours with `openssl rand -hex 32` and keep it out of the repo.
    std::fs::write(dir.join("master.key"), "42".repeat(32))?;
    write_lake(&dir.join("lakes/shop-orders/data/orders"))?;

    let config = ServeConfig::load(&dir.join("meshgate.toml"))?;
    let gateway = Gateway::open(config.gateway).await?;

    // Principals come from your application's own authentication.
    let analyst = Principal::new("emea-analyst")
        .with_role("analyst")
        .with_attribute("region", "EMEA");
    let finance = Principal::new("controller").with_role("finance");
    let sql = "SELECT order_id, region, amount, customer_email FROM shop.orders ORDER BY order_id";
    // The analyst sees EMEA's two orders, finance all four; nobody sees an e-mail in clear.
    for (principal, expected) in [(analyst, 2), (finance, 4)] {
        let who = principal.id().to_string();
        let batches = gateway.session(principal).collect(sql).await?;
        let table = pretty_format_batches(&batches)?.to_string();
        println!("{who}:\n{table}");
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        println!("{who}: {rows} rows");
        if rows != expected || table.contains("ana@") {
            return Err(format!("{who} should see {expected} rows, e-mails masked").into());
        }
    }
    // Someone the policy does not name is refused, and told whom to ask.
    let stranger = gateway.session(Principal::new("stranger"));
    match stranger.collect(sql).await {
        Ok(_) => return Err("a principal without access read shop.orders".into()),
        Err(e) => println!("stranger: {e}"),
    }
    Ok(())
}

/// The lake: one Parquet file of orders.
fn write_lake(table_dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    std::fs::create_dir_all(table_dir)?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("order_id", DataType::Int64, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("amount", DataType::Float64, false),
        Field::new("customer_email", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3, 4])),
            Arc::new(StringArray::from(vec!["EMEA", "AMER", "EMEA", "APAC"])),
            Arc::new(Float64Array::from(vec![120.0, 80.5, 42.0, 19.9])),
            Arc::new(StringArray::from(vec![
                "ana@example.com",
                "bo@example.com",
                "cy@example.com",
                "di@example.com",
            ])),
        ],
    )?;
    let file = std::fs::File::create(table_dir.join("part-0.parquet"))?;
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, schema, None)?;
    writer.write(&batch)?;
    writer.close()?;
    Ok(())
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}
