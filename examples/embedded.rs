//! Query the reference mesh in process, as a principal, through the library API: the same
//! catalog, policies and enforcement as the Flight SQL server, without a server.
//!
//! ```text
//! cargo run -p meshgate --example embedded                       # cib-reporting, counterparties
//! cargo run -p meshgate --example embedded -- risk-officer "SELECT lob, count(*) FROM payments.transactions GROUP BY lob"
//! ```
//!
//! The mesh lives where `meshgate demo` keeps it ($MESHGATE_DATA_DIR or
//! ~/.local/share/meshgate/reference-mesh) and is generated there on first use.

use arrow::util::pretty::pretty_format_batches;
use meshgate::Gateway;
use meshgate_reference as reference;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let user = args.next().unwrap_or_else(|| "cib-reporting".to_string());
    let sql = args
        .next()
        .unwrap_or_else(|| "SELECT * FROM reference.counterparties".to_string());

    // The demo's lakes: an in-process S3 server with one bucket and one key per product.
    let demo = reference::demo(&reference::default_data_dir()).await?;
    let gateway = Gateway::open(demo.config).await?;
    // In a real application the principal comes from your own authentication; the demo
    // users log in with the password `<user>-pw`.
    let principal = gateway.authenticate(&user, &format!("{user}-pw"))?;
    let session = gateway.session(principal);

    let batches = session.collect(&sql).await?;
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    // Every batch's rows, up to SHOWN in all: a result comes in several batches.
    const SHOWN: usize = 10;
    let mut shown = Vec::new();
    let mut left = SHOWN;
    for batch in &batches {
        if left == 0 {
            break;
        }
        let take = batch.num_rows().min(left);
        shown.push(batch.slice(0, take));
        left -= take;
    }
    println!("{}", pretty_format_batches(&shown)?);
    if rows > SHOWN {
        println!("(the first {SHOWN} rows shown)");
    }
    println!("{user}: {rows} rows");
    Ok(())
}
