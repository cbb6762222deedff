//! The reference mesh (`docs/reference-mesh.md`) as a benchmark: a few queries its
//! consumers would run, each as one principal, through meshgate (in process and over Flight
//! SQL) and through that principal's twin: embedded DataFusion over the same files with the
//! published policy written by hand as views, calling meshgate's own mask and token
//! functions under the same key, so the answers must be identical.
//!
//! Unlike TPC-H these products are small and their policies are the real ones: LOB row
//! filters from the caller's attributes (prunable on counterparties, which are sorted by
//! `lob`; not on transactions), tokens in three domains, e-mail and show-last-4 masks,
//! hidden columns, and joins across products.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use datafusion::catalog::MemorySchemaProvider;
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};
use meshgate::Gateway;
use meshgate::protect::{MaskKind, MaskUdf, MasterKey, TokenizeUdf};
use meshgate::storage::StorageConfig;
use meshgate_reference as reference;

use crate::BenchError;

/// One mesh query: who runs it, what it exercises, and its SQL.
#[derive(Debug, Clone, Copy)]
pub struct MeshQuery {
    pub name: &'static str,
    pub principal: &'static str,
    pub what: &'static str,
    pub sql: &'static str,
}

pub const QUERIES: &[MeshQuery] = &[
    MeshQuery {
        name: "m01",
        principal: "cib-reporting",
        what: "counterparties per country: the LOB row filter prunes row groups (files sorted by `lob`)",
        sql: "SELECT country, count(*) AS n FROM reference.counterparties \
              GROUP BY country ORDER BY country",
    },
    MeshQuery {
        name: "m02",
        principal: "ccb-fraud",
        what: "spend per card: a row filter that cannot prune, grouped by the tokenized `card_number`",
        sql: "SELECT card_number, count(*) AS n, sum(amount) AS total \
              FROM payments.transactions GROUP BY card_number \
              ORDER BY total DESC, card_number LIMIT 100",
    },
    MeshQuery {
        name: "m03",
        principal: "ccb-fraud",
        what: "transactions joined with counterparties (two products, both LOB-filtered), grouped by the tokenized `tax_id`",
        sql: "SELECT c.tax_id, count(*) AS n, sum(t.amount) AS total \
              FROM payments.transactions t \
              JOIN reference.counterparties c ON t.counterparty_id = c.counterparty_id \
              GROUP BY c.tax_id ORDER BY total DESC, c.tax_id LIMIT 100",
    },
    MeshQuery {
        name: "m04",
        principal: "cib-reporting",
        what: "notional per trader and counterparty: tokens from two domains (`markets`, `reference`) across a join",
        sql: "SELECT t.trader_id, c.tax_id, c.contact_email, sum(t.notional) AS notional \
              FROM markets.trades t \
              JOIN reference.counterparties c ON t.counterparty_id = c.counterparty_id \
              GROUP BY t.trader_id, c.tax_id, c.contact_email",
    },
    MeshQuery {
        name: "m05",
        principal: "risk-officer",
        what: "an export of every transaction with `card_number` masked show-last-4 (200,000 rows)",
        sql: "SELECT txn_id, counterparty_id, amount, currency, card_number, booked_at \
              FROM payments.transactions",
    },
    MeshQuery {
        name: "m06",
        principal: "risk-officer",
        what: "exposure per LOB, country and rating across all three products",
        sql: "SELECT c.lob, c.country, c.internal_rating, count(DISTINCT t.txn_id) AS txns, \
              sum(t.amount) AS amount, count(DISTINCT tr.trade_id) AS trades \
              FROM reference.counterparties c \
              JOIN payments.transactions t ON t.counterparty_id = c.counterparty_id \
              LEFT JOIN markets.trades tr ON tr.counterparty_id = c.counterparty_id \
              GROUP BY c.lob, c.country, c.internal_rating",
    },
    MeshQuery {
        name: "m07",
        principal: "ref-owner",
        what: "the owner's own product in the clear (no row filter, no treatment)",
        sql: "SELECT lob, count(*) AS n, count(DISTINCT country) AS countries, \
              min(onboarded_on) AS first FROM reference.counterparties GROUP BY lob",
    },
];

/// The reference mesh's files, generated into `<dir>/s3/<bucket>/...` on first use.
pub struct MeshData {
    pub dir: PathBuf,
}

impl MeshData {
    fn lake(&self) -> PathBuf {
        self.dir.join("s3")
    }
}

/// Generate the reference mesh under `dir` (the demo's generator, through its S3 server, so
/// the bytes are the demo's) and open a gateway on the files locally, with the demo's
/// catalog, policies, users and key. Its audit log starts empty.
pub async fn gateway(dir: &Path) -> Result<(MeshData, Gateway), BenchError> {
    let state = dir.join("state");
    let _ = std::fs::remove_dir_all(&state);
    let demo = reference::demo(dir)
        .await
        .map_err(|e| BenchError::setup("the reference mesh")(e.to_string()))?;
    let mut config = demo.config;
    let data = MeshData {
        dir: dir.to_path_buf(),
    };
    config.storage = StorageConfig::local(&data.lake());
    let gateway = Gateway::open(config)
        .await
        .map_err(|e| BenchError::setup("meshgate on the reference mesh")(e.to_string()))?;
    Ok((data, gateway))
}

/// The views `principal` sees, as SQL over the raw tables `raw.<table>`, written from the
/// reference mesh's table "What each principal sees". `None`: the product is denied.
fn views(principal: &str) -> Result<[(&'static str, Option<String>); 3], BenchError> {
    let lob = |l: Option<&str>| l.map_or(String::new(), |l| format!(" WHERE lob = '{l}'"));
    let counterparties = |l: Option<&str>, protected: bool, rating: bool| {
        let (tax, email) = if protected {
            (
                "tokenize_reference(tax_id) AS tax_id",
                "mask_email(contact_email) AS contact_email",
            )
        } else {
            ("tax_id", "contact_email")
        };
        let rating = if rating { "internal_rating, " } else { "" };
        Some(format!(
            "SELECT counterparty_id, legal_name, lob, country, {tax}, {email}, {rating}\
             onboarded_on FROM raw.counterparties{}",
            lob(l)
        ))
    };
    let transactions = |l: Option<&str>, card: &str| {
        Some(format!(
            "SELECT txn_id, counterparty_id, lob, amount, currency, {card}(card_number) AS \
             card_number, booked_at FROM raw.transactions{}",
            lob(l)
        ))
    };
    let trades = |l: Option<&str>, tokenized: bool| {
        let trader = if tokenized {
            "tokenize_markets(trader_id) AS trader_id"
        } else {
            "trader_id"
        };
        Some(format!(
            "SELECT trade_id, counterparty_id, lob, instrument, notional, {trader}, trade_date \
             FROM raw.trades{}",
            lob(l)
        ))
    };
    let (c, p, m) = match principal {
        "cib-reporting" => (
            counterparties(Some("CIB"), true, false),
            None,
            trades(Some("CIB"), true),
        ),
        "ccb-fraud" => (
            counterparties(Some("CCB"), true, false),
            transactions(Some("CCB"), "tokenize_payments"),
            None,
        ),
        "risk-officer" => (
            counterparties(None, true, true),
            transactions(None, "mask_show_last_4"),
            trades(None, false),
        ),
        "ref-owner" => (counterparties(None, false, true), None, None),
        other => {
            return Err(BenchError::setup("a mesh twin")(format!(
                "no twin for principal {other}"
            )));
        }
    };
    Ok([
        ("reference.counterparties", c),
        ("payments.transactions", p),
        ("markets.trades", m),
    ])
}

/// Embedded DataFusion over the raw files with `principal`'s views, named as in the mesh
/// (catalog `mesh`, schema = domain).
pub async fn twin(
    data: &MeshData,
    principal: &str,
    master_key: &MasterKey,
) -> Result<SessionContext, BenchError> {
    let setup = |e: datafusion::error::DataFusionError| {
        BenchError::setup("a mesh twin")(format!("{principal}: {e}"))
    };
    let ctx = SessionContext::new_with_config(
        SessionConfig::new().with_default_catalog_and_schema("mesh", "public"),
    );
    for kind in [MaskKind::Email, MaskKind::ShowLast4] {
        ctx.register_udf(MaskUdf::udf(kind).as_ref().clone());
    }
    for domain in ["reference", "payments", "markets"] {
        ctx.register_udf(
            TokenizeUdf::udf(master_key.token_key(domain))
                .as_ref()
                .clone(),
        );
    }
    let catalog = ctx
        .catalog("mesh")
        .ok_or_else(|| BenchError::setup("a mesh twin")("no catalog `mesh`".into()))?;
    for schema in ["raw", "reference", "payments", "markets"] {
        catalog
            .register_schema(schema, Arc::new(MemorySchemaProvider::new()))
            .map_err(setup)?;
    }
    for (table, path) in [
        (
            "counterparties",
            "reference-counterparties/data/counterparties/",
        ),
        ("transactions", "payments-transactions/data/transactions/"),
        ("trades", "markets-trades/data/trades/"),
    ] {
        let dir = format!("{}/", data.lake().join(path).display());
        ctx.register_parquet(
            format!("raw.{table}").as_str(),
            &dir,
            ParquetReadOptions::default(),
        )
        .await
        .map_err(setup)?;
    }
    for (table, view) in views(principal)? {
        if let Some(sql) = view {
            let view = ctx.sql(&sql).await.map_err(setup)?.into_view();
            ctx.register_table(table, view).map_err(setup)?;
        }
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_query_has_a_twin_and_denied_products_have_no_view() {
        for q in QUERIES {
            assert!(views(q.principal).is_ok(), "{}", q.name);
        }
        let [c, p, m] = views("cib-reporting").map_err(|e| e.to_string()).unwrap();
        assert!(c.1.is_some_and(|v| v.contains("lob = 'CIB'") && !v.contains("internal_rating")));
        assert!(p.1.is_none());
        assert!(m.1.is_some_and(|v| v.contains("tokenize_markets")));
        assert!(views("intern").is_err());
    }
}
