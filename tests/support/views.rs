//! The reference mesh's policies applied literally: for each principal, a plain DataFusion
//! engine over the raw files with hand-built views (row filter, hidden columns, masks and
//! tokens computed by `truth.rs`), and the clear values that principal may never see.
//! Differential and attack tests compare meshgate with it.

#![allow(dead_code)] // each test binary uses a different part

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::{SessionConfig, SessionContext};

use meshgate::storage::StorageConfig;
use meshgate::{Gateway, GatewayConfig, Session};
use meshgate_lake_server::LakeServer;
use meshgate_reference as reference;

use arrow_flight::sql::client::FlightSqlServiceClient;
use tonic::transport::Channel;

use super::flight;
use super::truth::{data_dir, email_mask, register_raw, show_last_4, token};

/// A string UDF for the reference engine.
pub fn string_udf(
    name: &str,
    f: impl Fn(&str) -> String + Send + Sync + 'static,
) -> datafusion::logical_expr::ScalarUDF {
    let f = Arc::new(f);
    create_udf(
        name,
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Immutable,
        Arc::new(move |args: &[ColumnarValue]| {
            let arrays = ColumnarValue::values_to_arrays(args)?;
            let input = arrays[0].as_any().downcast_ref::<StringArray>().unwrap();
            let out: StringArray = input.iter().map(|v| v.map(|s| f(s))).collect();
            Ok(ColumnarValue::Array(Arc::new(out) as ArrayRef))
        }),
    )
}

pub struct Principal {
    pub name: &'static str,
    pub hidden: &'static [&'static str],
    /// Per table: the view's SQL over the raw table, or `None` when the product is denied.
    pub counterparties: Option<String>,
    pub transactions: Option<String>,
    pub trades: Option<String>,
}

pub fn lob_filter(lob: Option<&str>) -> String {
    lob.map(|l| format!(" WHERE lob = '{l}'"))
        .unwrap_or_default()
}

pub fn counterparties_view(lob: Option<&str>, rating: bool, clear: bool) -> String {
    let (tax, email) = if clear {
        ("tax_id".to_string(), "contact_email".to_string())
    } else {
        (
            "ref_tok_reference(arrow_cast(tax_id, 'Utf8')) AS tax_id".to_string(),
            "ref_mask_email(arrow_cast(contact_email, 'Utf8')) AS contact_email".to_string(),
        )
    };
    let rating = if rating { "internal_rating, " } else { "" };
    format!(
        "SELECT counterparty_id, legal_name, lob, country, {tax}, {email}, {rating}onboarded_on \
         FROM raw_counterparties{}",
        lob_filter(lob)
    )
}

pub fn principals() -> Vec<Principal> {
    vec![
        Principal {
            name: "cib-reporting",
            hidden: &["internal_rating"],
            counterparties: Some(counterparties_view(Some("CIB"), false, false)),
            transactions: None,
            trades: Some(format!(
                "SELECT trade_id, counterparty_id, lob, instrument, notional, \
                 ref_tok_markets(arrow_cast(trader_id, 'Utf8')) AS trader_id, trade_date \
                 FROM raw_trades{}",
                lob_filter(Some("CIB"))
            )),
        },
        Principal {
            name: "ccb-fraud",
            hidden: &["internal_rating"],
            counterparties: Some(counterparties_view(Some("CCB"), false, false)),
            transactions: Some(format!(
                "SELECT txn_id, counterparty_id, lob, amount, currency, \
                 ref_tok_payments(arrow_cast(card_number, 'Utf8')) AS card_number, booked_at \
                 FROM raw_transactions{}",
                lob_filter(Some("CCB"))
            )),
            trades: None,
        },
        Principal {
            name: "risk-officer",
            hidden: &[],
            counterparties: Some(counterparties_view(None, true, false)),
            transactions: Some(
                "SELECT txn_id, counterparty_id, lob, amount, currency, \
                 ref_show_last_4(arrow_cast(card_number, 'Utf8')) AS card_number, booked_at \
                 FROM raw_transactions"
                    .into(),
            ),
            trades: Some("SELECT * FROM raw_trades".into()),
        },
        Principal {
            name: "ref-owner",
            hidden: &[],
            counterparties: Some(counterparties_view(None, true, true)),
            transactions: None,
            trades: None,
        },
        Principal {
            name: "auditor",
            hidden: &[],
            counterparties: None,
            transactions: None,
            trades: None,
        },
        Principal {
            name: "intern",
            hidden: &[],
            counterparties: None,
            transactions: None,
            trades: None,
        },
    ]
}

/// A plain DataFusion engine with the raw files and `principal`'s views, named as in the mesh.
pub async fn reference_engine(principal: &Principal) -> SessionContext {
    // information_schema on, so metadata queries have an answer to compare with.
    let ctx = SessionContext::new_with_config(
        SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("mesh", "public"),
    );
    register_raw(&ctx, "raw_").await;
    ctx.register_udf(string_udf("ref_tok_reference", |v| token("reference", v)));
    ctx.register_udf(string_udf("ref_tok_payments", |v| token("payments", v)));
    ctx.register_udf(string_udf("ref_tok_markets", |v| token("markets", v)));
    ctx.register_udf(string_udf("ref_mask_email", email_mask));
    ctx.register_udf(string_udf("ref_show_last_4", show_last_4));
    for schema in ["reference", "payments", "markets"] {
        ctx.sql(&format!("CREATE SCHEMA {schema}")).await.unwrap();
    }
    for (table, view) in [
        ("reference.counterparties", &principal.counterparties),
        ("payments.transactions", &principal.transactions),
        ("markets.trades", &principal.trades),
    ] {
        if let Some(view) = view {
            ctx.sql(&format!("CREATE VIEW {table} AS {view}"))
                .await
                .unwrap();
        }
    }
    ctx
}

pub type Rows = Vec<Vec<Option<String>>>;

pub fn rows(batches: &[RecordBatch]) -> Rows {
    let mut out = Vec::new();
    let options = FormatOptions::default();
    for batch in batches {
        let formatters: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                (0..batch.num_columns())
                    .map(|i| {
                        (!batch.column(i).is_null(row))
                            .then(|| formatters[i].value(row).to_string())
                    })
                    .collect(),
            );
        }
    }
    out
}

pub async fn run_reference(ctx: &SessionContext, sql: &str) -> Result<Rows, String> {
    match ctx.sql(sql).await {
        Ok(frame) => frame
            .collect()
            .await
            .map(|b| rows(&b))
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

/// The reference mesh's gateway, reading the buckets' files from the S3 server's disk
/// directly: enforcement is what these tests check, and local reads keep thousands of
/// queries fast (tests/lakes.rs and tests/flight*.rs go through S3). `edit` adjusts the
/// configuration first.
pub async fn local_gateway(edit: impl FnOnce(&mut GatewayConfig)) -> (Gateway, LakeServer) {
    let mut demo = reference::demo(&data_dir()).await.unwrap();
    let mut storage = StorageConfig::local(&data_dir().join("s3"));
    storage.listing_ttl = std::time::Duration::from_secs(3600);
    demo.config.storage = storage;
    edit(&mut demo.config);
    (Gateway::open(demo.config).await.unwrap(), demo.lake)
}

/// `sql` through meshgate as `session`'s principal, in the form `run_reference` gives.
pub async fn run_gateway(session: &Session, sql: &str) -> Result<Rows, String> {
    session
        .collect(sql)
        .await
        .map(|b| rows(&b))
        .map_err(|e| e.to_string())
}

/// A library session of `user`, logged in with the demo password `<user>-pw`.
pub fn session(gateway: &Gateway, user: &str) -> Session {
    gateway.session(gateway.authenticate(user, &format!("{user}-pw")).unwrap())
}

/// `sql` over Flight SQL through `client`, in the form `run_reference` gives.
pub async fn run_flight(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<Rows, String> {
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| flight::message(&e))?;
    let (_, batches) = flight::fetch(client, &info)
        .await
        .map_err(|e| flight::message(&e))?;
    Ok(rows(&batches))
}

/// Rows as a multiset (sorted), for answers whose order SQL does not fix.
pub fn sorted(rows: &Rows) -> Rows {
    let mut rows = rows.clone();
    rows.sort();
    rows
}

/// An engine with the raw tables only (`raw_counterparties`, ...), no views.
pub async fn raw_engine() -> SessionContext {
    reference_engine(&Principal {
        name: "raw",
        hidden: &[],
        counterparties: None,
        transactions: None,
        trades: None,
    })
    .await
}

/// Clear values `principal` may never see in any answer.
pub async fn forbidden_values(principal: &Principal) -> HashSet<String> {
    let ctx = raw_engine().await;
    let mut sqls = Vec::new();
    if principal.name != "ref-owner" {
        sqls.push("SELECT tax_id FROM raw_counterparties".to_string());
        sqls.push("SELECT contact_email FROM raw_counterparties".to_string());
    }
    sqls.push("SELECT card_number FROM raw_transactions".to_string());
    if principal.name != "risk-officer" {
        sqls.push("SELECT trader_id FROM raw_trades".to_string());
    }
    let mut values = HashSet::new();
    for sql in sqls {
        for row in run_reference(&ctx, &sql).await.unwrap() {
            values.extend(row.into_iter().flatten());
        }
    }
    values
}

/// The value-like words of an error message.
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || "@._-*".contains(c)))
        .filter(|w| !w.is_empty())
}
