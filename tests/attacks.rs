//! The attack suite: the ways real engines have leaked what a policy hides
//! (shared/research/access-control.md, section (c)), each run as every principal of the
//! reference mesh through the library API and again over Flight SQL, each with its expected
//! result asserted.
//!
//! Most expectations are "what the literal policy views answer" (`tests/support/views.rs`:
//! plain DataFusion over the raw files with each principal's row filter, masks and tokens
//! re-implemented), so an aggregate is compared with the true visible rows and a denied
//! product must be refused. Some carry spot values written out by hand as well. Every answer
//! and every error is also searched for clear values the principal may never see.
//!
//! Elsewhere, and not repeated here: tickets and prepared handles forged or replayed with a
//! changed SQL (`tests/flight.rs`, `tests/flight_sql.rs`), generated queries
//! (`tests/differential.rs`), published views (`tests/policies.rs`).

use crate::support::flight;
use crate::support::grants;
use crate::support::substrait;
use crate::support::truth;
use crate::support::views;

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use arrow_flight::sql::CommandGetTables;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use grants::{grant, grant_before_a_deny_rule};
use meshgate::Gateway;
use meshgate_lake_server::LakeServer;
use meshgate_reference as reference;
use tonic::Code;
use tonic::transport::Channel;
use truth::{data_dir, token};
use views::{
    Rows, forbidden_values, local_gateway, principals, raw_engine, reference_engine, rows,
    run_flight, run_gateway, run_reference, session, sorted, words,
};

/// Concrete values the attacks aim at, read from the raw files: counterparty 12 is CIB's,
/// 17 CCB's, 19 AWM's (the reference mesh's LOB is `counterparty_id % 10`).
pub(crate) struct Targets {
    pub(crate) cib_tax: String,
    pub(crate) cib_email: String,
    pub(crate) card: String,
    pub(crate) trader: String,
}

pub(crate) async fn targets() -> Targets {
    let raw = raw_engine().await;
    let one = |sql: &'static str| {
        let raw = raw.clone();
        async move {
            run_reference(&raw, sql).await.unwrap()[0][0]
                .clone()
                .unwrap()
        }
    };
    Targets {
        cib_tax: one("SELECT tax_id FROM raw_counterparties WHERE counterparty_id = 12").await,
        cib_email: one("SELECT contact_email FROM raw_counterparties WHERE counterparty_id = 12")
            .await,
        card: one(
            "SELECT card_number FROM raw_transactions WHERE lob = 'CCB' ORDER BY txn_id LIMIT 1",
        )
        .await,
        trader: one("SELECT trader_id FROM raw_trades WHERE lob = 'CIB' ORDER BY trade_id LIMIT 1")
            .await,
    }
}

enum Expect {
    /// What the literal policy views answer; where they refuse (a denied product, a hidden
    /// column), meshgate must refuse too.
    Views,
    /// Like `Views`, comparing the first columns only (metadata: names, not type names).
    ViewsColumns(usize),
    /// Refused for every principal with a message containing this text.
    Refused(&'static str),
    /// An error oracle: it may fail only when a row the principal sees satisfies `fails`
    /// (then it must fail); otherwise it answers what `otherwise` answers on the views.
    Oracle {
        fails: &'static str,
        otherwise: &'static str,
    },
    /// EXPLAIN output: refused where the views refuse, otherwise opaque protected scans.
    Explain,
}

pub(crate) struct Attack {
    name: &'static str,
    pub(crate) sql: String,
    expect: Expect,
    /// The first cell each named principal must get, written out by hand.
    spot: &'static [(&'static str, &'static str)],
}

fn attack(name: &'static str, sql: impl Into<String>, expect: Expect) -> Attack {
    Attack {
        name,
        sql: sql.into(),
        expect,
        spot: &[],
    }
}

fn spotted(
    name: &'static str,
    sql: impl Into<String>,
    spot: &'static [(&'static str, &'static str)],
) -> Attack {
    Attack {
        name,
        sql: sql.into(),
        expect: Expect::Views,
        spot,
    }
}

pub(crate) fn attacks(t: &Targets) -> Vec<Attack> {
    let tax_token = token("reference", &t.cib_tax);
    let card_token = token("payments", &t.card);
    let email_local = t
        .cib_email
        .split('@')
        .next()
        .unwrap_or_default()
        .to_string();
    let file =
        data_dir().join("s3/reference-counterparties/data/counterparties/part-00000.parquet");
    let file = file.display();
    vec![
        // Predicates, patterns and ordering on masked and tokenized columns compare what the
        // caller sees, never the clear value.
        spotted(
            "equality with a clear tax id",
            format!(
                "SELECT count(*) FROM reference.counterparties WHERE tax_id = '{}'",
                t.cib_tax
            ),
            &[
                ("cib-reporting", "0"),
                ("ccb-fraud", "0"),
                ("risk-officer", "0"),
                ("ref-owner", "1"),
            ],
        ),
        spotted(
            "equality with the tax id's token",
            format!("SELECT count(*) FROM reference.counterparties WHERE tax_id = '{tax_token}'"),
            &[
                ("cib-reporting", "1"),
                ("ccb-fraud", "0"),
                ("risk-officer", "1"),
                ("ref-owner", "0"),
            ],
        ),
        spotted(
            "LIKE on a masked e-mail's local part",
            format!(
                "SELECT count(*) FROM reference.counterparties WHERE contact_email LIKE '{email_local}%'"
            ),
            &[("cib-reporting", "0"), ("risk-officer", "0")],
        ),
        attack(
            "regular expression on a tokenized column",
            "SELECT count(*) FROM reference.counterparties WHERE regexp_like(tax_id, '^[0-9]{2}-')",
            Expect::Views,
        ),
        attack(
            "ORDER BY a tokenized column LIMIT",
            "SELECT counterparty_id, tax_id FROM reference.counterparties ORDER BY tax_id LIMIT 5",
            Expect::Views,
        ),
        attack(
            "ORDER BY a masked column LIMIT",
            "SELECT counterparty_id, contact_email FROM reference.counterparties \
             ORDER BY contact_email DESC, counterparty_id LIMIT 5",
            Expect::Views,
        ),
        spotted(
            "a clear card number and its token",
            format!(
                "SELECT count(*) FILTER (WHERE card_number = '{}'), count(*) FILTER (WHERE card_number = '{card_token}') \
                 FROM payments.transactions",
                t.card
            ),
            &[("ccb-fraud", "0"), ("risk-officer", "0")],
        ),
        attack(
            "a card number's last four digits",
            format!(
                "SELECT count(*) FROM payments.transactions WHERE card_number LIKE '%{}'",
                &t.card[t.card.len() - 4..]
            ),
            Expect::Views,
        ),
        attack(
            "ORDER BY a tokenized trader LIMIT",
            format!(
                "SELECT trade_id, trader_id FROM markets.trades WHERE trader_id <> '{}' ORDER BY trader_id LIMIT 5",
                t.trader
            ),
            Expect::Views,
        ),
        // Aggregates equal the true visible rows, with and without WHERE.
        spotted(
            "count, min and max without WHERE",
            "SELECT count(*), min(counterparty_id), max(counterparty_id), count(DISTINCT lob), \
             min(tax_id), max(contact_email) FROM reference.counterparties",
            &[
                ("cib-reporting", "15000"),
                ("ccb-fraud", "9000"),
                ("risk-officer", "30000"),
                ("ref-owner", "30000"),
            ],
        ),
        attack(
            "aggregates with WHERE per LOB",
            "SELECT lob, count(*), sum(amount), min(booked_at), max(card_number) \
             FROM payments.transactions WHERE amount > 100 GROUP BY lob",
            Expect::Views,
        ),
        attack(
            "aggregates over trades",
            "SELECT lob, count(*), avg(notional), count(DISTINCT trader_id) FROM markets.trades GROUP BY lob",
            Expect::Views,
        ),
        // Error oracles aimed at an AWM counterparty, which only risk and the owner see.
        attack(
            "division by zero on a hidden row",
            "SELECT count(*) FROM reference.counterparties \
             WHERE 1 / (CASE WHEN counterparty_id = 19 THEN 0 ELSE 1 END) = 1",
            Expect::Oracle {
                fails: "SELECT count(*) FROM reference.counterparties WHERE counterparty_id = 19",
                otherwise: "SELECT count(*) FROM reference.counterparties",
            },
        ),
        attack(
            "failing cast on a hidden row",
            "SELECT count(*) FROM reference.counterparties \
             WHERE CAST(CASE WHEN lob = 'AWM' THEN 'x' ELSE '1' END AS INT) = 1",
            Expect::Oracle {
                fails: "SELECT count(*) FROM reference.counterparties WHERE lob = 'AWM'",
                otherwise: "SELECT count(*) FROM reference.counterparties",
            },
        ),
        attack(
            "invalid regular expression on a hidden row",
            "SELECT count(*) FROM reference.counterparties \
             WHERE regexp_like(legal_name, CASE WHEN counterparty_id = 19 THEN '(' ELSE '.' END)",
            Expect::Oracle {
                fails: "SELECT count(*) FROM reference.counterparties WHERE counterparty_id = 19",
                otherwise: "SELECT count(*) FROM reference.counterparties",
            },
        ),
        attack(
            "division by zero on another LOB's trades",
            "SELECT count(*) FROM markets.trades WHERE 1 / (CASE WHEN lob = 'AWM' THEN 0 ELSE 1 END) = 1",
            Expect::Oracle {
                fails: "SELECT count(*) FROM markets.trades WHERE lob = 'AWM'",
                otherwise: "SELECT count(*) FROM markets.trades",
            },
        ),
        // Transactions are sorted by time, so every row group holds every LOB: these probes
        // meet hidden rows in the very batches that are read (the counterparties probes
        // above mostly meet row groups the policy filter prunes).
        attack(
            "division by zero on another LOB's transactions",
            "SELECT count(*) FROM payments.transactions WHERE 1 / (CASE WHEN lob = 'CIB' THEN 0 ELSE 1 END) = 1",
            Expect::Oracle {
                fails: "SELECT count(*) FROM payments.transactions WHERE lob = 'CIB'",
                otherwise: "SELECT count(*) FROM payments.transactions",
            },
        ),
        attack(
            "failing cast on another LOB's transactions",
            "SELECT count(*) FROM payments.transactions \
             WHERE CAST(CASE WHEN lob <> 'CCB' THEN 'x' ELSE '1' END AS INT) = 1",
            Expect::Oracle {
                fails: "SELECT count(*) FROM payments.transactions WHERE lob <> 'CCB'",
                otherwise: "SELECT count(*) FROM payments.transactions",
            },
        ),
        attack(
            "invalid regular expression on another LOB's transactions",
            "SELECT count(*) FROM payments.transactions \
             WHERE regexp_like(currency, CASE WHEN lob = 'AWM' THEN '(' ELSE '.' END)",
            Expect::Oracle {
                fails: "SELECT count(*) FROM payments.transactions WHERE lob = 'AWM'",
                otherwise: "SELECT count(*) FROM payments.transactions",
            },
        ),
        attack(
            // DataFusion's integer arithmetic wraps; a narrowing cast is where overflow fails.
            "numeric overflow on another LOB's transactions",
            "SELECT count(*) FROM payments.transactions \
             WHERE length(CAST(CAST(CASE WHEN lob = 'CIB' THEN txn_id + 300 ELSE 1 END AS TINYINT) AS VARCHAR)) > 0",
            Expect::Oracle {
                fails: "SELECT count(*) FROM payments.transactions WHERE lob = 'CIB'",
                otherwise: "SELECT count(*) FROM payments.transactions",
            },
        ),
        attack(
            "casting a tokenized value to a number",
            "SELECT CAST(tax_id AS BIGINT) FROM reference.counterparties WHERE counterparty_id = 12",
            Expect::Views,
        ),
        // Membership probes reveal visible rows only.
        spotted(
            "IN probe for a hidden id",
            "SELECT count(*) FROM reference.counterparties WHERE counterparty_id IN (12, 17, 19)",
            &[
                ("cib-reporting", "1"),
                ("ccb-fraud", "1"),
                ("risk-officer", "3"),
                ("ref-owner", "3"),
            ],
        ),
        attack(
            "NOT IN over a subquery",
            "SELECT count(*) FROM markets.trades WHERE counterparty_id NOT IN \
             (SELECT counterparty_id FROM reference.counterparties)",
            Expect::Views,
        ),
        attack(
            "EXISTS probe across products",
            "SELECT count(*) FROM reference.counterparties c WHERE EXISTS \
             (SELECT 1 FROM payments.transactions t WHERE t.counterparty_id = c.counterparty_id)",
            Expect::Views,
        ),
        attack(
            "anti-join across products",
            "SELECT count(*) FROM markets.trades t LEFT JOIN reference.counterparties c \
             ON t.counterparty_id = c.counterparty_id WHERE c.counterparty_id IS NULL",
            Expect::Views,
        ),
        // Tokens join within their domain and never across.
        spotted(
            "token join within a domain",
            "SELECT count(*) FROM reference.counterparties a JOIN reference.counterparties b ON a.tax_id = b.tax_id",
            &[("cib-reporting", "15000"), ("risk-officer", "30000")],
        ),
        spotted(
            "token join across domains",
            "SELECT count(*) FROM payments.transactions t JOIN reference.counterparties c ON t.card_number = c.tax_id",
            &[("ccb-fraud", "0"), ("risk-officer", "0")],
        ),
        attack(
            "token join across products of one reader",
            "SELECT count(*) FROM markets.trades t JOIN reference.counterparties c ON t.trader_id = c.tax_id",
            Expect::Views,
        ),
        // Every reference is wrapped: subqueries, CTEs, recursion, unions, windows.
        attack(
            "scalar subqueries",
            "SELECT (SELECT max(amount) FROM payments.transactions), \
             (SELECT count(*) FROM reference.counterparties), (SELECT min(trader_id) FROM markets.trades)",
            Expect::Views,
        ),
        attack(
            "a CTE used twice",
            "WITH c AS (SELECT * FROM reference.counterparties WHERE country = 'GB') \
             SELECT a.lob, count(*) FROM c a JOIN c b ON a.counterparty_id = b.counterparty_id GROUP BY a.lob",
            Expect::Views,
        ),
        spotted(
            "a recursive CTE walking the table",
            "WITH RECURSIVE walk(id, depth) AS ( \
               SELECT counterparty_id, 0 FROM reference.counterparties WHERE counterparty_id <= 20 \
               UNION ALL \
               SELECT c.counterparty_id, w.depth + 1 FROM walk w \
               JOIN reference.counterparties c ON c.counterparty_id = w.id + 5 WHERE w.depth < 3) \
             SELECT count(*), max(id), sum(id) FROM walk",
            &[("risk-officer", "80"), ("ref-owner", "80")],
        ),
        attack(
            "UNION ALL of protected columns",
            "SELECT count(*), count(DISTINCT v) FROM (SELECT tax_id AS v FROM reference.counterparties \
             UNION ALL SELECT card_number FROM payments.transactions \
             UNION ALL SELECT trader_id FROM markets.trades) u",
            Expect::Views,
        ),
        attack(
            "UNION ALL of one product twice",
            "SELECT lob, count(*) FROM (SELECT lob FROM reference.counterparties \
             UNION ALL SELECT lob FROM reference.counterparties) u GROUP BY lob",
            Expect::Views,
        ),
        attack(
            "lag, first_value and ntile over counterparties",
            "SELECT counterparty_id, lag(tax_id) OVER (ORDER BY counterparty_id), \
             first_value(contact_email) OVER (PARTITION BY lob ORDER BY counterparty_id), \
             ntile(4) OVER (ORDER BY counterparty_id) \
             FROM reference.counterparties ORDER BY counterparty_id LIMIT 40",
            Expect::Views,
        ),
        attack(
            "lag and ntile over transactions",
            "SELECT txn_id, lag(card_number, 3) OVER (ORDER BY txn_id), ntile(7) OVER (ORDER BY txn_id) \
             FROM payments.transactions ORDER BY txn_id LIMIT 40",
            Expect::Views,
        ),
        // The read-only surface, for everyone.
        attack(
            "a URL table",
            "SELECT * FROM 's3://reference-counterparties/data/counterparties/part-00000.parquet'",
            Expect::Refused("s3://reference-counterparties"),
        ),
        attack(
            "a local file table",
            format!("SELECT * FROM '{file}'"),
            Expect::Refused("part-00000.parquet"),
        ),
        attack(
            "read_parquet",
            format!("SELECT * FROM read_parquet('{file}')"),
            Expect::Refused("read_parquet"),
        ),
        attack(
            "parquet_metadata",
            format!("SELECT * FROM parquet_metadata('{file}')"),
            Expect::Refused("parquet_metadata"),
        ),
        attack(
            "CREATE EXTERNAL TABLE",
            "CREATE EXTERNAL TABLE x STORED AS PARQUET LOCATION 's3://reference-counterparties/data/counterparties/'",
            Expect::Refused("CREATE EXTERNAL TABLE is not allowed"),
        ),
        attack(
            "COPY TO",
            "COPY (SELECT * FROM reference.counterparties) TO '/tmp/stolen.parquet'",
            Expect::Refused("COPY is not allowed"),
        ),
        attack(
            "INSERT",
            "INSERT INTO reference.counterparties (counterparty_id) VALUES (1)",
            Expect::Refused("is not allowed: meshgate is read-only"),
        ),
        attack(
            "CREATE VIEW",
            "CREATE VIEW v AS SELECT * FROM reference.counterparties",
            Expect::Refused("is not allowed: meshgate is read-only"),
        ),
        attack(
            "CREATE TABLE AS",
            "CREATE TABLE t AS SELECT * FROM reference.counterparties",
            Expect::Refused("is not allowed: meshgate is read-only"),
        ),
        attack(
            "DELETE and DROP",
            "DROP TABLE reference.counterparties",
            Expect::Refused("is not allowed: meshgate is read-only"),
        ),
        attack(
            "SET a Parquet pushdown option",
            "SET datafusion.execution.parquet.pushdown_filters = true",
            Expect::Refused("is not allowed: meshgate is read-only"),
        ),
        attack(
            "SET a time zone",
            "SET TIME ZONE = '+05:00'",
            Expect::Refused("is not allowed: meshgate is read-only"),
        ),
        // The engine's settings and build describe the deployment: hidden from consumers.
        attack(
            "the engine's settings",
            "SELECT name, value FROM information_schema.df_settings",
            Expect::Refused("df_settings' not found"),
        ),
        attack(
            "the engine's settings, fully qualified",
            "SELECT count(*) FROM mesh.information_schema.df_settings",
            Expect::Refused("df_settings' not found"),
        ),
        attack("SHOW ALL", "SHOW ALL", Expect::Refused("is not allowed")),
        attack(
            "the engine's version",
            "SELECT version()",
            Expect::Refused("version"),
        ),
        attack(
            "a user-defined function",
            "CREATE FUNCTION f() RETURNS INT RETURN 1",
            Expect::Refused("is not allowed: meshgate is read-only"),
        ),
        attack(
            "two statements",
            "SELECT 1; SELECT count(*) FROM reference.counterparties",
            Expect::Refused("send one statement per query"),
        ),
        attack(
            "EXPLAIN ANALYZE",
            "EXPLAIN ANALYZE SELECT count(*) FROM reference.counterparties WHERE false",
            Expect::Refused("EXPLAIN ANALYZE is not available"),
        ),
        // Metadata shows what the caller can query and nothing else.
        attack(
            "information_schema.columns",
            "SELECT table_schema || '.' || table_name || '.' || column_name FROM information_schema.columns \
             WHERE table_schema IN ('reference', 'payments', 'markets')",
            Expect::Views,
        ),
        attack(
            "information_schema.tables",
            "SELECT table_schema || '.' || table_name FROM information_schema.tables \
             WHERE table_schema IN ('reference', 'payments', 'markets')",
            Expect::Views,
        ),
        attack(
            "SHOW COLUMNS",
            "SHOW COLUMNS FROM reference.counterparties",
            Expect::ViewsColumns(4),
        ),
        attack(
            "DESCRIBE",
            "DESCRIBE payments.transactions",
            Expect::ViewsColumns(1),
        ),
        attack(
            "EXPLAIN",
            "EXPLAIN SELECT c.tax_id, count(*) FROM reference.counterparties c \
             JOIN markets.trades t ON t.counterparty_id = c.counterparty_id GROUP BY c.tax_id",
            Expect::Explain,
        ),
        attack(
            "EXPLAIN VERBOSE",
            "EXPLAIN VERBOSE SELECT count(*), max(contact_email) FROM reference.counterparties",
            Expect::Explain,
        ),
    ]
}

/// What meshgate answered, and whether the answer is what the attack expects.
fn judge(
    attack: &Attack,
    principal: &str,
    actual: &Result<Rows, String>,
    expected: &Result<Rows, String>,
    oracle_fires: bool,
) -> Option<String> {
    match (&attack.expect, actual) {
        (Expect::Refused(text), Err(e)) => {
            (!e.contains(text)).then(|| format!("refused without saying `{text}`: {e}"))
        }
        (Expect::Refused(_), Ok(rows)) => Some(format!("answered with {} rows", rows.len())),
        (Expect::Oracle { .. }, actual) => match (oracle_fires, actual, expected) {
            (true, Err(_), _) => None,
            (true, Ok(_), _) => Some("a visible row fails the probe, yet it answered".into()),
            (false, Ok(a), Ok(e)) if sorted(a) == sorted(e) => None,
            (false, Err(_), Err(_)) => None,
            (false, a, e) => Some(format!("expected {e:?}, got {a:?}")),
        },
        (Expect::Explain, Ok(rows)) => {
            let text = format!("{rows:?}");
            let must = ["ProtectedScanExec", "policy="];
            let never = [
                "DataSourceExec",
                "FilterExec: lob",
                "CIB",
                "CCB",
                "AWM",
                "mask_",
                "tokenize",
                "principal.",
                "row_filter",
                "output_rows",
                "row_groups",
            ];
            if let Some(m) = must.iter().find(|m| !text.contains(*m)) {
                Some(format!("EXPLAIN does not show `{m}`: {text}"))
            } else {
                never
                    .iter()
                    .find(|n| text.contains(*n))
                    .map(|n| format!("EXPLAIN shows `{n}`"))
            }
            .or_else(|| expected.is_err().then(|| "explained a denied query".into()))
        }
        (Expect::Views | Expect::ViewsColumns(_) | Expect::Explain, actual) => {
            let n = match attack.expect {
                Expect::ViewsColumns(n) => n,
                _ => usize::MAX,
            };
            let first = |rows: &Rows| -> Rows {
                rows.iter()
                    .map(|r| r.iter().take(n).cloned().collect())
                    .collect()
            };
            match (actual, expected) {
                (Ok(a), Ok(e)) if sorted(&first(a)) == sorted(&first(e)) => None,
                (Err(_), Err(_)) => None,
                (a, e) => Some(format!("expected {}, got {}", short(e), short(a))),
            }
        }
    }
    .or_else(|| {
        let first = actual.as_ref().ok()?.first()?.first()?.clone();
        let (_, want) = attack.spot.iter().find(|(p, _)| *p == principal)?;
        (first.as_deref() != Some(*want)).then(|| format!("expected {want} by hand, got {first:?}"))
    })
}

fn short(result: &Result<Rows, String>) -> String {
    match result {
        Ok(rows) => format!(
            "{} rows {:?}",
            rows.len(),
            rows.iter().take(3).collect::<Vec<_>>()
        ),
        Err(e) => format!("an error ({e})"),
    }
}

/// Clear values in an answer or an error that `forbidden` names.
fn leaks(result: &Result<Rows, String>, forbidden: &HashSet<String>) -> Option<String> {
    match result {
        Ok(rows) => rows
            .iter()
            .flatten()
            .flatten()
            .find(|v| forbidden.contains(*v))
            .cloned(),
        Err(e) => words(e).find(|w| forbidden.contains(*w)).map(String::from),
    }
}

/// The library side runs with filters evaluated inside the Parquet decoder, reordered
/// (`parquet_pushdown`); the Flight SQL server with the default. The suite holds for both.
async fn library_gateway() -> (Gateway, LakeServer) {
    local_gateway(|config| config.parquet_pushdown = true).await
}

/// Statistics reach the planner only of what the caller could compute with queries of their
/// own (invariant 4): the row count, min, max and null count of the rows it sees, of the
/// columns it sees in the clear; nothing of a masked, tokenized or partly shown column, and
/// behind a row filter nothing of the files' footers (which count hidden rows too). Checked
/// on every sealed scan of every table and of a join, for every principal, against what
/// the same principal's own `count(*)`, `min`, `max` and `count(col)` answer, and against
/// the ground truth (the raw row counts) to make sure that callers behind a row filter were
/// among those checked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_statistic_of_a_protected_column_or_a_hidden_row_reaches_the_planner() {
    use std::cmp::Ordering;

    use datafusion::common::stats::Precision;
    use datafusion::common::{ColumnStatistics, ScalarValue, Statistics};
    use datafusion::physical_plan::ExecutionPlan;
    use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
    use meshgate::engine::ProtectedScanExec;
    use meshgate::policy::Treatment;

    fn scans(plan: &Arc<dyn ExecutionPlan>, out: &mut Vec<Arc<dyn ExecutionPlan>>) {
        let any: &dyn std::any::Any = plan.as_ref();
        if any.downcast_ref::<ProtectedScanExec>().is_some() {
            out.push(Arc::clone(plan));
        }
        for child in plan.children() {
            scans(child, out);
        }
    }
    fn statistics(plan: &Arc<dyn ExecutionPlan>) -> Arc<Statistics> {
        StatisticsContext::new()
            .compute(plan.as_ref(), &StatisticsArgs::new())
            .unwrap()
    }
    /// One value the caller's own query answers, as `like`'s type.
    async fn own(session: &meshgate::Session, sql: &str, like: &ScalarValue) -> ScalarValue {
        let batches = session.collect(sql).await.unwrap();
        ScalarValue::try_from_array(batches[0].column(0), 0)
            .unwrap()
            .cast_to(&like.data_type())
            .unwrap()
    }

    let (gateway, _lake) = library_gateway().await;
    let raw = raw_engine().await;
    let raw_rows = |table: &str| {
        let sql = format!("SELECT count(*) FROM raw_{table}");
        let raw = raw.clone();
        async move {
            run_reference(&raw, &sql).await.unwrap()[0][0]
                .clone()
                .unwrap()
        }
    };
    let mut clear_columns_with_statistics = 0;
    let mut behind_a_row_filter = 0;
    for principal in principals() {
        let session = session(&gateway, principal.name);
        for sql in [
            "SELECT * FROM reference.counterparties",
            "SELECT * FROM payments.transactions",
            "SELECT * FROM markets.trades",
            "SELECT * FROM markets.trades t JOIN reference.counterparties c \
             ON t.counterparty_id = c.counterparty_id WHERE c.country = 'DE'",
        ] {
            // Statistics of the rows behind a row filter are computed in the background
            // after a first scan: plan again until every scan reports a row count (or 5 s).
            let mut found = Vec::new();
            for _ in 0..100 {
                let Ok(query) = session.query(sql).await else {
                    break; // denied: nothing planned
                };
                found.clear();
                scans(&query.physical_plan(), &mut found);
                assert!(!found.is_empty(), "{sql}");
                if found
                    .iter()
                    .all(|p| statistics(p).num_rows != Precision::Absent)
                {
                    break;
                }
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            for plan in found {
                let any: &dyn std::any::Any = plan.as_ref();
                let scan = any.downcast_ref::<ProtectedScanExec>().unwrap();
                let policy = scan.policy().expect("planned here");
                let stats = statistics(&plan);
                let table = format!("{}.{}", policy.domain, policy.table);
                let who = format!("{} on {table} ({sql})", principal.name);
                // The caller's own predicates pushed into the scan narrow the estimates.
                let narrowed = !scan.pushed_columns().is_empty();
                let visible: usize =
                    run_gateway(&session, &format!("SELECT count(*) FROM {table}"))
                        .await
                        .unwrap()[0][0]
                        .clone()
                        .unwrap()
                        .parse()
                        .unwrap();
                match stats.num_rows {
                    Precision::Absent => {}
                    Precision::Inexact(rows) if narrowed => {
                        assert!(rows <= visible, "{who}: {rows} rows of {visible} seen")
                    }
                    Precision::Inexact(rows) => assert_eq!(rows, visible, "{who}: {stats:?}"),
                    Precision::Exact(_) => panic!("{who}: an exact row count: {stats:?}"),
                }
                let raw_count: usize = raw_rows(&policy.table).await.parse().unwrap();
                if stats.num_rows != Precision::Absent && visible < raw_count {
                    behind_a_row_filter += 1;
                }
                let schema = plan.schema();
                let known: Vec<(&str, &ColumnStatistics)> = schema
                    .fields()
                    .iter()
                    .map(|f| f.name().as_str())
                    .zip(&stats.column_statistics)
                    .filter(|(_, c)| **c != ColumnStatistics::new_unknown())
                    .collect();
                for (name, column) in known {
                    let resolved = policy.columns.iter().find(|c| c.name == name).unwrap();
                    assert!(
                        resolved.treatment == Treatment::Clear && resolved.only_where.is_none(),
                        "{who}: statistics of `{name}`, shown as {:?}: {column:?}",
                        resolved.treatment
                    );
                    assert_eq!(column.min_value.is_exact(), Some(false), "{who}: {name}");
                    // Inside the range of the values the caller sees, and the range itself
                    // when nothing narrowed it.
                    for (bound, function, inside) in [
                        (&column.min_value, "min", Ordering::Greater),
                        (&column.max_value, "max", Ordering::Less),
                    ] {
                        let Some(reported) = bound.get_value() else {
                            continue;
                        };
                        let seen = own(
                            &session,
                            &format!("SELECT {function}(\"{name}\") FROM {table}"),
                            reported,
                        )
                        .await;
                        let order = reported.partial_cmp(&seen);
                        assert!(
                            order == Some(Ordering::Equal) || (narrowed && order == Some(inside)),
                            "{who}: {function} of `{name}` {reported:?}, the caller sees {seen:?}"
                        );
                    }
                    if let (Some(nulls), false) = (column.null_count.get_value(), narrowed) {
                        let seen = own(
                            &session,
                            &format!("SELECT count(*) - count(\"{name}\") FROM {table}"),
                            &ScalarValue::Int64(None),
                        )
                        .await;
                        assert_eq!(
                            seen,
                            ScalarValue::Int64(Some(*nulls as i64)),
                            "{who}: nulls of `{name}`"
                        );
                    }
                    clear_columns_with_statistics += 1;
                }
            }
        }
    }
    // The check saw statistics at all (risk-officer's and ref-owner's clear columns), and
    // some of callers behind a row filter.
    assert!(
        clear_columns_with_statistics > 10,
        "{clear_columns_with_statistics}"
    );
    assert!(behind_a_row_filter > 0, "{behind_a_row_filter}");
}

/// A join's (or a top-k's, or a min/max's) dynamic filter enters a sealed scan only where a
/// leakproof predicate of the caller's own could: on keys that are plain columns the caller
/// sees in clear, in a product that lets predicates cross. Inside, it would be evaluated
/// beside the row filter and prune by raw statistics, so on a masked, tokenized, partly shown
/// or computed key it would compare raw values (and answer wrongly besides). Checked on every
/// sealed scan of joins, top-k and aggregate queries whose keys are clear, masked, tokenized
/// and computed, for every principal; the answers of such queries are the attack suite's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_dynamic_filter_reads_a_protected_column_inside_a_seal() {
    use meshgate::policy::Treatment;

    let (gateway, _lake) = library_gateway().await;
    let mut accepted = BTreeMap::new();
    for principal in principals() {
        let session = session(&gateway, principal.name);
        for sql in [
            // Clear keys for most callers.
            "SELECT count(*) FROM reference.counterparties c JOIN markets.trades t \
             ON c.counterparty_id = t.counterparty_id WHERE t.trade_id < 100",
            "SELECT count(*) FROM markets.trades t JOIN payments.transactions p \
             ON p.counterparty_id = t.counterparty_id WHERE t.trade_id < 10",
            "SELECT trade_id FROM markets.trades ORDER BY trade_date DESC LIMIT 2",
            // Tokenized, masked and partly shown keys.
            "SELECT count(*) FROM markets.trades t JOIN reference.counterparties c \
             ON c.tax_id = t.trader_id WHERE t.trade_id < 100",
            "SELECT count(*) FROM reference.counterparties a JOIN reference.counterparties b \
             ON a.contact_email = b.contact_email WHERE b.counterparty_id < 50",
            "SELECT count(*) FROM markets.trades t JOIN payments.transactions p \
             ON p.card_number = t.trader_id WHERE t.trade_id < 10",
            "SELECT contact_email FROM reference.counterparties ORDER BY contact_email LIMIT 3",
            "SELECT max(tax_id), min(card_number) FROM reference.counterparties, \
             payments.transactions WHERE txn_id = counterparty_id",
            "SELECT max(tax_id) FROM reference.counterparties",
            // A computed key: the filter's key is an expression, not a column.
            "SELECT count(*) FROM markets.trades t JOIN reference.counterparties c \
             ON c.counterparty_id + 1 = t.counterparty_id WHERE t.trade_id < 100",
        ] {
            let Ok(query) = session.query(sql).await else {
                continue; // denied: nothing planned
            };
            for (table, policy, keys) in crate::support::sealed_scans(&query.physical_plan()) {
                let who = format!("{} on {table} ({sql})", principal.name);
                assert!(
                    keys.is_empty() || policy.pushdown_user_predicates,
                    "{who}: a dynamic filter in a product that keeps predicates out"
                );
                for name in keys {
                    let resolved = policy
                        .columns
                        .iter()
                        .find(|c| c.name == name)
                        .unwrap_or_else(|| panic!("{who}: a dynamic filter on `{name}`"));
                    assert!(
                        resolved.treatment == Treatment::Clear && resolved.only_where.is_none(),
                        "{who}: a dynamic filter reads `{name}`, shown as {:?}",
                        resolved.treatment
                    );
                    *accepted.entry(name).or_insert(0) += 1;
                }
            }
        }
    }
    // The check saw dynamic filters at all, on joins and top-k alike.
    assert!(
        accepted.contains_key("counterparty_id") && accepted.contains_key("trade_date"),
        "{accepted:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_as_every_principal() {
    let (gateway, _lake) = library_gateway().await;
    let server = flight::default_server().await;
    attack_suite(&gateway, Some(&server)).await;
}

/// The same suite with every query that reads a product cut into stages for three worker
/// processes: the answers must be the views', and the worker-side seal must leak nothing the
/// in-process one does not. (Through the library: Flight SQL reaches the same sessions, and
/// its agreement with the library is the in-process suite's; the deploy test queries
/// workers over Flight SQL.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_attack_as_every_principal_on_workers() {
    let cluster = crate::support::cluster::Cluster::start(3).await;
    let distribution = cluster.distribution().await;
    let (gateway, _lake) = local_gateway(move |config| {
        config.parquet_pushdown = true;
        config.master_key = crate::support::cluster::master_key();
        config.distribution = Some(distribution);
    })
    .await;
    attack_suite(&gateway, None).await;
    let auditor = session(&gateway, "auditor");
    let distributed = run_gateway(
        &auditor,
        "SELECT count(*) FROM mesh_catalog.audit WHERE workers IS NOT NULL",
    )
    .await
    .unwrap();
    assert_ne!(
        distributed[0][0].as_deref(),
        Some("0"),
        "the attacks ran on the workers"
    );
}

/// The attack suite against `gateway` (library sessions) and, with `server`, over Flight SQL
/// too, as SQL and as the Substrait plan DataFusion's producer makes of the SQL (all must
/// agree).
async fn attack_suite(gateway: &Gateway, server: Option<&flight::TestServer>) {
    let targets = targets().await;
    let attacks = attacks(&targets);
    let mut failures = Vec::new();
    // Attacks no Substrait plan could express, per principal.
    let mut not_plans = BTreeMap::<&str, Vec<&str>>::new();
    for principal in principals() {
        let views = reference_engine(&principal).await;
        let forbidden = forbidden_values(&principal).await;
        let session = session(gateway, principal.name);
        let mut client = match server {
            Some(server) => Some(flight::login(server.addr, principal.name).await),
            None => None,
        };
        for attack in &attacks {
            let (expected, oracle_fires) = match &attack.expect {
                Expect::Oracle { fails, otherwise } => {
                    let visible = run_reference(&views, fails).await;
                    let fires = matches!(&visible, Ok(r) if r[0][0].as_deref() != Some("0"));
                    (run_reference(&views, otherwise).await, fires)
                }
                Expect::Explain => {
                    let query = attack
                        .sql
                        .trim_start_matches("EXPLAIN ")
                        .trim_start_matches("VERBOSE ");
                    (run_reference(&views, query).await, false)
                }
                _ => (run_reference(&views, &attack.sql).await, false),
            };
            let library = run_gateway(&session, &attack.sql).await;
            let mut problems: Vec<String> =
                judge(attack, principal.name, &library, &expected, oracle_fires)
                    .into_iter()
                    .collect();
            problems.extend(leaks(&library, &forbidden).map(|v| format!("LEAKED {v:?}")));
            if let Some(client) = client.as_mut() {
                let over_flight = run_flight(client, &attack.sql).await;
                problems.extend(
                    judge(
                        attack,
                        principal.name,
                        &over_flight,
                        &expected,
                        oracle_fires,
                    )
                    .map(|p| format!("over Flight SQL: {p}")),
                );
                problems.extend(
                    leaks(&over_flight, &forbidden)
                        .map(|v| format!("LEAKED over Flight SQL {v:?}")),
                );
                let explain = matches!(attack.expect, Expect::Explain);
                match (&library, &over_flight) {
                    (Ok(a), Ok(b)) if explain || sorted(a) == sorted(b) => {}
                    (Err(_), Err(_)) => {}
                    (a, b) => problems.push(format!(
                        "Flight SQL disagrees with the library: {} vs {}",
                        short(b),
                        short(a)
                    )),
                }
                // The same statement as a Substrait plan, where a plan can express it.
                let Some(plan) = substrait::produce(&session, &attack.sql).await else {
                    not_plans
                        .entry(principal.name)
                        .or_default()
                        .push(attack.name);
                    continue;
                };
                {
                    let planned = substrait::run(client, plan).await;
                    // Refused as SQL is refused; the message may name what the plan reads
                    // instead of the statement (SHOW ALL reads df_settings).
                    let verdict = match (&attack.expect, &planned) {
                        (Expect::Refused(_), Ok(rows)) => {
                            Some(format!("answered with {} rows", rows.len()))
                        }
                        (Expect::Refused(_), Err(_)) => None,
                        _ => judge(attack, principal.name, &planned, &expected, oracle_fires),
                    };
                    problems.extend(verdict.map(|p| format!("as Substrait: {p}")));
                    problems.extend(
                        leaks(&planned, &forbidden).map(|v| format!("LEAKED as Substrait {v:?}")),
                    );
                    match (&over_flight, &planned) {
                        (Ok(a), Ok(b)) if sorted(a) == sorted(b) => {}
                        (Err(_), Err(_)) => {}
                        (a, b) => problems.push(format!(
                            "Substrait disagrees with SQL: {} vs {}",
                            short(b),
                            short(a)
                        )),
                    }
                }
            }
            for problem in problems {
                failures.push(format!(
                    "{} / {}: {problem}\n    {}",
                    principal.name, attack.name, attack.sql
                ));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} attacks went wrong:\n{}",
        failures.len(),
        failures.join("\n")
    );
    if server.is_some() {
        // Every attack that is a query went as a Substrait plan too, for every principal;
        // only statements, file tables and recursion cannot be written as one.
        let expected = [
            "a recursive CTE walking the table",
            "a URL table",
            "a local file table",
            "read_parquet",
            "parquet_metadata",
            "CREATE EXTERNAL TABLE",
            "COPY TO",
            "INSERT",
            "CREATE VIEW",
            "CREATE TABLE AS",
            "DELETE and DROP",
            "SET a Parquet pushdown option",
            "SET a time zone",
            "SHOW ALL",
            "a user-defined function",
            "two statements",
            "EXPLAIN ANALYZE",
            "SHOW COLUMNS",
            "DESCRIBE",
            "EXPLAIN",
            "EXPLAIN VERBOSE",
        ];
        for (principal, names) in &not_plans {
            assert_eq!(
                names, &expected,
                "{principal}: attacks not sent as Substrait"
            );
        }
    }
}

/// Columns per table as the views define them for `principal` (`schema.table` -> names).
async fn views_columns(principal: &views::Principal) -> BTreeMap<String, Vec<String>> {
    let views = reference_engine(principal).await;
    let sql = "SELECT table_schema || '.' || table_name, column_name FROM information_schema.columns \
               WHERE table_schema IN ('reference', 'payments', 'markets') ORDER BY ordinal_position";
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for row in run_reference(&views, sql).await.unwrap() {
        let (table, column) = (row[0].clone().unwrap(), row[1].clone().unwrap());
        out.entry(table).or_default().push(column);
    }
    out
}

#[tokio::test]
async fn get_tables_schemas_show_each_principal_its_columns() {
    let server = flight::default_server().await;
    for principal in principals() {
        let mut client = flight::login(server.addr, principal.name).await;
        let (system, seen): (BTreeMap<String, Vec<String>>, BTreeMap<String, Vec<String>>) =
            tables_over_flight(&mut client)
                .await
                .into_iter()
                .map(|(table, schema)| (table, names(&schema)))
                .partition(|(table, _)| table.starts_with("mesh_catalog."));
        assert_eq!(seen, views_columns(&principal).await, "{}", principal.name);
        // The mesh catalog's tables are listed for everyone, with the same columns.
        let listed: Vec<&str> = system.keys().map(String::as_str).collect();
        assert_eq!(
            listed,
            [
                "mesh_catalog.access_requests",
                "mesh_catalog.audit",
                "mesh_catalog.audit_columns",
                "mesh_catalog.audit_tables",
                "mesh_catalog.columns",
                "mesh_catalog.flows",
                "mesh_catalog.grants",
                "mesh_catalog.products",
                "mesh_catalog.quality",
                "mesh_catalog.tables",
            ],
            "{}",
            principal.name
        );
        assert!(system["mesh_catalog.products"].contains(&"has_access".to_string()));
    }
}

#[tokio::test]
async fn tickets_and_prepared_handles_never_cross_principals() {
    let server = flight::default_server().await;
    let sql = "SELECT count(*) FROM reference.counterparties";
    let mut clients = Vec::new();
    for principal in principals() {
        clients.push((
            principal.name,
            flight::login(server.addr, principal.name).await,
        ));
    }
    for owner in 0..clients.len() {
        let (owner_name, client) = &mut clients[owner];
        let owner_name = *owner_name;
        let Ok(info) = client.execute(sql.to_string(), None).await else {
            continue; // auditor and intern cannot even plan it
        };
        let ticket = info.endpoint[0].ticket.clone().unwrap();
        let mut prepared = client.prepare(sql.to_string(), None).await.unwrap();
        let prepared_info = prepared.execute().await.unwrap();
        let prepared_ticket = prepared_info.endpoint[0].ticket.clone().unwrap();
        // Redeeming one's own ticket twice re-plans and answers the same.
        let (_, first) = flight::fetch(client, &info).await.unwrap();
        let (_, again) = flight::fetch(client, &info).await.unwrap();
        assert_eq!(rows(&first), rows(&again));
        for (other, (other_name, thief)) in clients.iter_mut().enumerate() {
            if other == owner {
                continue;
            }
            for stolen in [&ticket, &prepared_ticket] {
                let error = match thief.do_get(stolen.clone()).await {
                    Ok(stream) => stream.try_collect::<Vec<_>>().await.unwrap_err(),
                    Err(e) => e,
                };
                assert_eq!(
                    flight::code(&error),
                    Code::PermissionDenied,
                    "{other_name} redeemed {owner_name}'s ticket"
                );
            }
        }
    }
}

#[tokio::test]
async fn a_policy_reload_between_prepare_and_execute_applies_at_execute() {
    let server = flight::default_server().await;
    let mut risk = flight::login(server.addr, "risk-officer").await;
    let mut cib = flight::login(server.addr, "cib-reporting").await;
    let cards = "SELECT count(*) FROM payments.transactions";
    let counterparties = "SELECT count(*) FROM reference.counterparties";
    let mut risk_prepared = risk.prepare(cards.to_string(), None).await.unwrap();
    let risk_ticket = risk.execute(cards.to_string(), None).await.unwrap();
    let mut cib_prepared = cib.prepare(counterparties.to_string(), None).await.unwrap();
    let cib_ticket = cib.execute(counterparties.to_string(), None).await.unwrap();

    // The owner narrows LOB systems to British counterparties; risk loses payments.
    let mut narrowed = reference::policy_sources();
    narrowed
        .access_rules
        .text
        .push_str("p, risk-officer, payments, payments.transactions, read, deny\n");
    for source in &mut narrowed.products {
        if source.name.ends_with("reference.counterparties.toml") {
            source.text.push_str(
                "\n[[row_filter]]\nid = \"only-gb\"\ntable = \"counterparties\"\n\
                 kind = \"restriction\"\nto = [\"role:lob-system\"]\nwhere = \"country = 'GB'\"\n",
            );
        }
    }
    server.gateway.reload_policies(&narrowed).await.unwrap();

    let raw = raw_engine().await;
    let british = run_reference(
        &raw,
        "SELECT count(*) FROM raw_counterparties WHERE lob = 'CIB' AND country = 'GB'",
    )
    .await
    .unwrap();
    let prepared_info = cib_prepared.execute().await.unwrap();
    let (_, batches) = flight::fetch(&mut cib, &prepared_info).await.unwrap();
    assert_eq!(
        rows(&batches),
        british,
        "the prepared handle runs the new policy"
    );
    let (_, batches) = flight::fetch(&mut cib, &cib_ticket).await.unwrap();
    assert_eq!(
        rows(&batches),
        british,
        "the old ticket runs the new policy"
    );
    for result in [
        risk_prepared.execute().await.map(|_| ()),
        flight::fetch(&mut risk, &risk_ticket).await.map(|_| ()),
    ] {
        assert_eq!(flight::code(&result.unwrap_err()), Code::PermissionDenied);
    }

    // And back: the same handles follow the policy in force again.
    server
        .gateway
        .reload_policies(&reference::policy_sources())
        .await
        .unwrap();
    let (_, batches) = flight::fetch(&mut cib, &cib_prepared.execute().await.unwrap())
        .await
        .unwrap();
    assert_eq!(rows(&batches), vec![vec![Some("15000".to_string())]]);
    let info = risk_prepared.execute().await.unwrap();
    assert!(flight::fetch(&mut risk, &info).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_sql_by_principals_in_turn_answers_each_their_own() {
    let (gateway, _lake) = library_gateway().await;
    let all = principals();
    let order = [
        "ref-owner",
        "intern",
        "cib-reporting",
        "risk-officer",
        "ref-owner",
        "ccb-fraud",
        "cib-reporting",
    ];
    for sql in [
        "SELECT lob, count(*), min(tax_id) FROM reference.counterparties GROUP BY lob",
        "SELECT count(*) FROM reference.counterparties c JOIN payments.transactions t \
         ON t.counterparty_id = c.counterparty_id",
    ] {
        for name in order {
            let principal = all.iter().find(|p| p.name == name).unwrap();
            let expected = run_reference(&reference_engine(principal).await, sql).await;
            let actual = run_gateway(&session(&gateway, name), sql).await;
            match (&expected, &actual) {
                (Ok(e), Ok(a)) => assert_eq!(sorted(a), sorted(e), "{name}: {sql}"),
                (Err(_), Err(_)) => {}
                _ => panic!(
                    "{name}: {sql}: expected {}, got {}",
                    short(&expected),
                    short(&actual)
                ),
            }
        }
    }
}

/// A product with awkward column names and a nested column its manifest does not declare,
/// in its own local bucket: `lab.people` (region `north` for analysts; the name shown as its
/// last four characters, the quoted column tokenized).
async fn lab_gateway(lake: &std::path::Path) -> (Gateway, LakeServer) {
    use arrow::array::{Array, ArrayRef, Int64Array, RecordBatch, StringArray, StructArray};
    use arrow::datatypes::{DataType, Field, Schema};
    use datafusion::parquet::arrow::ArrowWriter;

    let ssn = Arc::new(StringArray::from(vec![
        "111-11-1111",
        "222-22-2222",
        "333-33-3333",
    ]));
    let details = StructArray::from(vec![(
        Arc::new(Field::new("ssn", DataType::Utf8, false)),
        ssn as ArrayRef,
    )]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Int64, false),
        Field::new("first name", DataType::Utf8, false),
        Field::new("it's \"quoted\"", DataType::Utf8, false),
        Field::new("region", DataType::Utf8, false),
        Field::new("details", details.data_type().clone(), false),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int64Array::from(vec![1, 2, 3])),
            Arc::new(StringArray::from(vec![
                "Alexandra",
                "Bartholomew",
                "Cornelius",
            ])),
            Arc::new(StringArray::from(vec![
                "o'neil",
                "van \"der\" berg",
                "plain",
            ])),
            Arc::new(StringArray::from(vec!["north", "south", "north"])),
            Arc::new(details),
        ],
    )
    .unwrap();
    let dir = lake.join("lab-people/data/people");
    std::fs::create_dir_all(&dir).unwrap();
    let mut writer = ArrowWriter::try_new(
        std::fs::File::create(dir.join("part-0.parquet")).unwrap(),
        schema,
        None,
    )
    .unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();

    let manifest = r#"
apiVersion: v3.1.0
kind: DataContract
id: lab.people
name: People
version: 1.0.0
status: active
domain: lab
dataProduct: lab.people
servers:
  - server: lake
    type: s3
    location: s3://lab-people/data/{model}/
    format: parquet
schema:
  - name: people
    physicalType: table
    properties:
      - {name: id, physicalType: BIGINT, required: true, classification: internal}
      - {name: first name, physicalType: VARCHAR, required: true, tags: [pii]}
      - {name: "it's \"quoted\"", physicalType: VARCHAR, required: true, tags: [pii]}
      - {name: region, physicalType: VARCHAR, required: true, classification: internal}
team: {name: lab, members: [{username: lab-owner, role: owner}]}
"#;
    let policy = r#"
[policy]
product = "lab.people"
version = 1

[[row_filter]]
id = "all"
table = "people"
kind = "grant"
to = ["*"]
where = "true"

[[row_filter]]
id = "analysts-north"
table = "people"
kind = "restriction"
to = ["analyst"]
where = "region = 'north'"

[[column]]
id = "name-last-4"
table = "people"
column = "first name"
treatment = "mask(show-last-4)"
to = ["*"]

[[column]]
id = "quoted-tokenized"
table = "people"
column = "it's \"quoted\""
treatment = "tokenize(lab)"
to = ["*"]
"#;
    let mut demo = reference::demo(&data_dir()).await.unwrap();
    let manifests = reference::MANIFESTS
        .iter()
        .map(|(name, text)| (*name, text.to_string()))
        .chain([("lab.people.yaml", manifest.to_string())]);
    demo.config.catalog = meshgate::catalog::Catalog::from_sources(manifests).unwrap();
    demo.config
        .policies
        .access_rules
        .text
        .push_str("p, analyst, lab, lab.people, read, allow\n");
    demo.config
        .policies
        .products
        .push(meshgate::policy::Source {
            name: "lab.people.toml".into(),
            text: policy.into(),
        });
    demo.config.storage.products.insert(
        "lab.people".into(),
        meshgate::storage::ProductStorage {
            kind: Some(meshgate::storage::StorageKind::Local),
            path: Some(format!("{}/{{bucket}}", lake.display())),
            ..Default::default()
        },
    );
    (Gateway::open(demo.config).await.unwrap(), demo.lake)
}

#[tokio::test]
async fn odd_column_names_and_undeclared_nested_fields() {
    let lake = tempfile::tempdir().unwrap();
    let (gateway, _lake) = lab_gateway(lake.path()).await;
    let analyst = gateway.session(meshgate::Principal::new("analyst"));
    let quoted = "\"it's \"\"quoted\"\"\"";

    let all = run_gateway(&analyst, "SELECT * FROM lab.people ORDER BY id")
        .await
        .unwrap();
    assert_eq!(
        all,
        vec![
            vec![
                Some("1".into()),
                Some("*****ndra".into()),
                Some(token("lab", "o'neil")),
                Some("north".into())
            ],
            vec![
                Some("3".into()),
                Some("*****lius".into()),
                Some(token("lab", "plain")),
                Some("north".into())
            ],
        ]
    );
    let query = analyst.query("SELECT * FROM lab.people").await.unwrap();
    let schema = query.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, ["id", "first name", "it's \"quoted\"", "region"]);

    // Predicates on the awkward names compare what the caller sees.
    for (sql, expected) in [
        (
            "SELECT count(*) FROM lab.people WHERE \"first name\" = 'Alexandra'".to_string(),
            "0",
        ),
        (
            "SELECT count(*) FROM lab.people WHERE \"first name\" LIKE '%ndra'".to_string(),
            "1",
        ),
        (
            format!("SELECT count(*) FROM lab.people WHERE {quoted} = 'o''neil'"),
            "0",
        ),
        (
            format!(
                "SELECT count(*) FROM lab.people WHERE {quoted} = '{}'",
                token("lab", "o'neil")
            ),
            "1",
        ),
        (
            format!(
                "SELECT count(*) FROM lab.people WHERE {quoted} = '{}'",
                token("lab", "van \"der\" berg")
            ),
            "0",
        ),
    ] {
        let got = run_gateway(&analyst, &sql).await.unwrap();
        assert_eq!(got[0][0].as_deref(), Some(expected), "{sql}");
    }

    // The nested column the manifest does not declare does not exist, by any path.
    for sql in [
        "SELECT details FROM lab.people",
        "SELECT details['ssn'] FROM lab.people",
        "SELECT get_field(details, 'ssn') FROM lab.people",
        "SELECT unnest(details) FROM lab.people",
        "SELECT count(*) FROM lab.people WHERE details['ssn'] LIKE '1%'",
    ] {
        let error = run_gateway(&analyst, sql).await.unwrap_err();
        assert!(error.contains("details"), "{sql}: {error}");
        assert!(
            !error.contains("-11-") && !error.contains("-22-"),
            "{sql}: {error}"
        );
    }
    // Nor can a manifest declare a nested type for a policy to miss.
    let nested = r#"
apiVersion: v3.1.0
kind: DataContract
id: lab.nested
name: Nested
version: 1.0.0
status: active
domain: lab
dataProduct: lab.nested
servers: [{server: lake, type: s3, location: "s3://lab-nested/data/{model}/", format: parquet}]
schema:
  - name: nested
    physicalType: table
    properties:
      - {name: details, physicalType: "STRUCT<ssn VARCHAR>", classification: internal}
team: {name: lab, members: [{username: lab-owner, role: owner}]}
"#;
    let error = meshgate::catalog::Catalog::from_sources([("lab.nested.yaml", nested.to_string())])
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("details") && error.contains("STRUCT"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------------------
// Around the barrier: governance state, other sinks, sessions, exhaustion
//
// The sealed scan answers one query under one fixed policy. These attacks combine governance
// state, follow a value to every reader but the caller, live through a session's life and
// try to take the gateway from the others, each over the real Flight SQL server.

async fn one_number(
    client: &mut FlightSqlServiceClient<Channel>,
    sql: &str,
) -> Result<i64, String> {
    let rows = run_flight(client, sql).await?;
    Ok(rows[0][0].as_deref().unwrap().parse().unwrap())
}

/// Several grants, a suspended one, a grant behind a deny line, a grant whose filter cannot
/// apply to its grantee, and filters that would fail at query time: each combination shows
/// exactly what one single grant in force allows, never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn governance_state_combinations_never_widen_access() {
    let (server, _state) = flight::own_state_server(Default::default(), |_| {}).await;
    let gateway = &server.gateway;
    let id = "counterparty_id";
    // A: CIB rows with tax_id. B: AWM rows with legal_name.
    grant(gateway, "intern", &[id, "tax_id"], Some("lob = 'CIB'"))
        .await
        .unwrap();
    let b = grant(gateway, "intern", &[id, "legal_name"], Some("lob = 'AWM'"))
        .await
        .unwrap();
    // A grant whose filter names an attribute intern does not carry: it admits nothing and
    // leaves the others in force.
    grant(
        gateway,
        "intern",
        &[id, "country"],
        Some("lob = ${principal.lob}"),
    )
    .await
    .unwrap();

    let mut intern = flight::login(server.addr, "intern").await;
    let count = |sql: &str| format!("SELECT count(*) FROM reference.counterparties WHERE {sql}");
    assert_eq!(one_number(&mut intern, &count("true")).await, Ok(21_000));
    assert_eq!(
        one_number(&mut intern, &count("tax_id IS NOT NULL")).await,
        Ok(15_000)
    );
    assert_eq!(
        one_number(&mut intern, &count("legal_name IS NOT NULL")).await,
        Ok(6_000)
    );
    // No row shows both: no single grant admits both columns on one row.
    assert_eq!(
        one_number(
            &mut intern,
            &count("tax_id IS NOT NULL AND legal_name IS NOT NULL")
        )
        .await,
        Ok(0)
    );
    // Each column shows on its own grant's rows only (CIB ids end in 0-4, AWM in 8-9).
    assert_eq!(
        one_number(
            &mut intern,
            &count("tax_id IS NOT NULL AND counterparty_id % 10 >= 5")
        )
        .await,
        Ok(0)
    );
    assert_eq!(
        one_number(
            &mut intern,
            &count("legal_name IS NOT NULL AND counterparty_id % 10 < 8")
        )
        .await,
        Ok(0)
    );
    let country = run_flight(&mut intern, "SELECT country FROM reference.counterparties").await;
    assert!(
        country.unwrap_err().contains("country"),
        "no grant in force shows country"
    );

    // Suspended: B admits nothing, from the next query; A still does.
    gateway
        .workflow()
        .suspend("ref-owner", &b, Some("review".into()))
        .await
        .unwrap();
    assert_eq!(one_number(&mut intern, &count("true")).await, Ok(15_000));
    let hidden = run_flight(
        &mut intern,
        "SELECT legal_name FROM reference.counterparties",
    )
    .await;
    assert!(hidden.unwrap_err().contains("legal_name"));

    // A deny line wins over any grant: the auditor's request is refused up front, and a
    // grant approved before the rule existed admits nothing.
    let refused = grant(gateway, "auditor", &[], None).await.unwrap_err();
    assert!(refused.contains("deny rule"), "{refused}");
    let behind = grant_before_a_deny_rule(gateway, "auditor", &[])
        .await
        .unwrap();
    let mut auditor = flight::login(server.addr, "auditor").await;
    let denied = run_flight(&mut auditor, &count("true")).await.unwrap_err();
    assert!(denied.contains("permission denied"), "{denied}");
    assert!(
        denied.contains("deny rule") && denied.contains(&behind),
        "the denial names the rule and the grant it overrides: {denied}"
    );

    // Filters that would fail at query time are refused at approval.
    for failing in [
        "1/0 = 1",
        "CAST(legal_name AS INT) > 0",
        "counterparty_id + 1 > 0",
        "regexp_like(lob, '(')",
        "onboarded_on > 'not a date'",
    ] {
        let refused = grant(gateway, "intern", &[id], Some(failing))
            .await
            .unwrap_err();
        assert!(
            refused.contains("could fail") || refused.contains("cannot be used"),
            "{failing}: {refused}"
        );
    }
    // Filters that cannot fail are accepted.
    for fine in [
        "country IN ('DE', 'FR') AND counterparty_id BETWEEN 1 AND 100",
        "onboarded_on >= '2012-01-01' OR lob IS NULL",
        "NOT (lob <> 'CIB')",
    ] {
        grant(gateway, "intern", &[id], Some(fine))
            .await
            .unwrap_or_else(|e| panic!("{fine}: {e}"));
    }
}

/// `count(*)` of one described statement's ticket, redeemed now.
async fn redeem_count(
    client: &mut FlightSqlServiceClient<Channel>,
    info: &arrow_flight::FlightInfo,
) -> Result<i64, Code> {
    use arrow::array::AsArray;
    use arrow::datatypes::Int64Type;
    let (_, batches) = flight::fetch(client, info)
        .await
        .map_err(|e| flight::code(&e))?;
    let batch = batches.iter().find(|b| b.num_rows() == 1).unwrap();
    Ok(batch.column(0).as_primitive::<Int64Type>().value(0))
}

/// How many statements ran from their GetFlightInfo's plan (`continued`) or were planned
/// again because it no longer applied (`replanned`).
fn drafts(gateway: &Gateway, outcome: &str) -> u64 {
    let series = format!("meshgate_drafts_total{{outcome=\"{outcome}\"}} ");
    gateway
        .render_metrics()
        .lines()
        .find_map(|line| line.strip_prefix(&series)?.parse().ok())
        .unwrap_or(0)
}

/// GetFlightInfo plans a statement and DoGet continues from that plan: a grant revoked,
/// given or suspended in between applies to the redeemed ticket all the same, because the
/// plan is continued from only under the very policy version and grants it was made under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ticket_described_before_a_grant_change_runs_under_the_grants_in_force() {
    let (server, _state) = flight::own_state_server(Default::default(), |_| {}).await;
    let gateway = &server.gateway;
    let cib = grant(gateway, "intern", &["counterparty_id"], Some("lob = 'CIB'"))
        .await
        .unwrap();
    let mut intern = flight::login(server.addr, "intern").await;
    let count = "SELECT count(*) FROM reference.counterparties";

    // Described and redeemed with nothing in between: planned once.
    let info = intern.execute(count.into(), None).await.unwrap();
    assert_eq!(redeem_count(&mut intern, &info).await, Ok(15_000));
    assert_eq!(drafts(gateway, "continued"), 1);

    // A second grant given in between: the ticket counts both grants' rows.
    let info = intern.execute(count.into(), None).await.unwrap();
    let awm = grant(gateway, "intern", &["counterparty_id"], Some("lob = 'AWM'"))
        .await
        .unwrap();
    assert_eq!(redeem_count(&mut intern, &info).await, Ok(21_000));

    // Suspended in between: its rows are gone from the ticket's answer.
    let info = intern.execute(count.into(), None).await.unwrap();
    gateway
        .workflow()
        .suspend("ref-owner", &awm, Some("review".into()))
        .await
        .unwrap();
    assert_eq!(redeem_count(&mut intern, &info).await, Ok(15_000));

    // Revoked in between: the ticket is refused.
    let info = intern.execute(count.into(), None).await.unwrap();
    gateway
        .workflow()
        .revoke("ref-owner", &cib, Some("done".into()))
        .await
        .unwrap();
    assert_eq!(
        redeem_count(&mut intern, &info).await,
        Err(Code::PermissionDenied)
    );
    assert_eq!(drafts(gateway, "replanned"), 3);
    assert_eq!(drafts(gateway, "continued"), 1);
}

/// `reference.counterparties` as `session`'s listing shows it: its columns, or `None` when
/// it is not listed.
async fn listed_counterparties(session: &meshgate::Session) -> Option<arrow::datatypes::SchemaRef> {
    session
        .tables()
        .await
        .into_iter()
        .find(|t| t.schema == "reference" && t.name == "counterparties")
        .map(|t| t.arrow_schema)
}

/// Every table `GetTables` (with schemas) lists to the signed-in `client`: `schema.table`
/// and its columns.
async fn tables_over_flight(
    client: &mut FlightSqlServiceClient<Channel>,
) -> Vec<(String, arrow::datatypes::Schema)> {
    let command = CommandGetTables {
        catalog: None,
        db_schema_filter_pattern: None,
        table_name_filter_pattern: None,
        table_types: vec![],
        include_schema: true,
    };
    let info = client.get_tables(command).await.unwrap();
    let (_, batches) = flight::fetch(client, &info).await.unwrap();
    flight::table_schemas(&batches)
}

/// `reference.counterparties` as [`tables_over_flight`] lists it: its column names, or
/// `None` when it is not listed.
async fn counterparties_over_flight(
    client: &mut FlightSqlServiceClient<Channel>,
) -> Option<Vec<String>> {
    tables_over_flight(client)
        .await
        .into_iter()
        .find(|(table, _)| table == "reference.counterparties")
        .map(|(_, schema)| names(&schema))
}

/// A schema's column names, in order.
fn names(schema: &arrow::datatypes::Schema) -> Vec<String> {
    schema.fields().iter().map(|f| f.name().clone()).collect()
}

/// Listings are kept between calls (a BI tool lists again on every refresh), but never past a
/// change: a grant given, suspended or revoked, a policy reload, and a caller with the same id
/// but other roles each get a listing of their own from the very next call, through the
/// library and through GetTables alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_listing_never_outlives_a_grant_change_a_reload_or_its_caller() {
    let (server, _state) = flight::own_state_server(Default::default(), |_| {}).await;
    let gateway = &server.gateway;
    let intern = || gateway.session(gateway.known_principal("intern").unwrap());
    let mut flight_intern = flight::login(server.addr, "intern").await;
    assert_eq!(listed_counterparties(&intern()).await, None);

    let cib = grant(gateway, "intern", &["counterparty_id"], Some("lob = 'CIB'"))
        .await
        .unwrap();
    let first = listed_counterparties(&intern()).await.unwrap();
    assert_eq!(names(&first), ["counterparty_id"]);
    // Nothing changed in between: the listing is the one kept.
    let again = listed_counterparties(&intern()).await.unwrap();
    assert!(Arc::ptr_eq(&first, &again), "a repeat listing is kept");

    // A second grant, then its suspension: each shows from the next listing.
    let awm = grant(
        gateway,
        "intern",
        &["counterparty_id", "lob"],
        Some("lob = 'AWM'"),
    )
    .await
    .unwrap();
    let both = listed_counterparties(&intern()).await.unwrap();
    assert_eq!(names(&both), ["counterparty_id", "lob"]);
    assert_eq!(
        counterparties_over_flight(&mut flight_intern)
            .await
            .unwrap(),
        ["counterparty_id", "lob"]
    );
    gateway
        .workflow()
        .suspend("ref-owner", &awm, Some("review".into()))
        .await
        .unwrap();
    let suspended = listed_counterparties(&intern()).await.unwrap();
    assert_eq!(names(&suspended), ["counterparty_id"]);
    assert_eq!(
        counterparties_over_flight(&mut flight_intern)
            .await
            .unwrap(),
        ["counterparty_id"]
    );

    // A reload with a deny line, and back.
    let mut denied = reference::policy_sources();
    denied
        .access_rules
        .text
        .push_str("p, intern, reference, reference.counterparties, read, deny\n");
    gateway.reload_policies(&denied).await.unwrap();
    assert_eq!(listed_counterparties(&intern()).await, None);
    assert_eq!(counterparties_over_flight(&mut flight_intern).await, None);
    gateway
        .reload_policies(&reference::policy_sources())
        .await
        .unwrap();
    assert!(listed_counterparties(&intern()).await.is_some());

    // Revoked: gone from the next listing.
    gateway
        .workflow()
        .revoke("ref-owner", &cib, Some("done".into()))
        .await
        .unwrap();
    assert_eq!(listed_counterparties(&intern()).await, None);
    assert_eq!(counterparties_over_flight(&mut flight_intern).await, None);

    // The whole caller is the key: the same id without its roles and attributes is not
    // answered from the listing kept for it with them.
    let cib_reporting = gateway.known_principal("cib-reporting").unwrap();
    assert!(
        listed_counterparties(&gateway.session(cib_reporting))
            .await
            .is_some()
    );
    let bare = meshgate::Principal::new("cib-reporting");
    assert_eq!(listed_counterparties(&gateway.session(bare)).await, None);
}

/// Clear values the raw data holds in `column` of `table`, as words of four letters or more.
async fn raw_words(sql: &str) -> HashSet<String> {
    let raw = raw_engine().await;
    run_reference(&raw, sql)
        .await
        .unwrap()
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|v| words(&v).map(str::to_string).collect::<Vec<_>>())
        .filter(|w| w.len() >= 4)
        .collect()
}

/// A value in an error reaches only the caller who may see it: the audit log (read by the
/// auditor and by other products' owners), OpenLineage events and the gateway's log get the
/// failure's class, never the value.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_in_errors_reach_the_caller_and_no_other_sink() {
    let lineage = tempfile::tempdir().unwrap();
    let events = lineage.path().join("events.jsonl");
    let (server, _state) = flight::own_state_server(Default::default(), |config| {
        config.lineage.file = Some(events.clone());
    })
    .await;
    let names = raw_words("SELECT legal_name FROM raw_counterparties").await;
    let emails = raw_words("SELECT contact_email FROM raw_counterparties").await;
    let logs = log_capture();

    // The caller sees their own error, with the value they may see in it.
    let mut risk = flight::login(server.addr, "risk-officer").await;
    let error = run_flight(
        &mut risk,
        "SELECT CAST(legal_name AS INT) FROM reference.counterparties WHERE counterparty_id = 12",
    )
    .await
    .unwrap_err();
    assert!(
        words(&error).any(|w| names.contains(w)),
        "the caller sees the value: {error}"
    );
    // A literal of the statement in a planning error.
    let literal =
        "SELECT CAST('secret-literal-4111' AS INT) + counterparty_id FROM reference.counterparties";
    let literal_error = run_flight(&mut risk, literal).await.unwrap_err();
    assert!(
        literal_error.contains("secret-literal-4111"),
        "{literal_error}"
    );
    let mut cib = flight::login(server.addr, "cib-reporting").await;
    let masked = run_flight(
        &mut cib,
        "SELECT CAST(contact_email AS INT) FROM reference.counterparties",
    )
    .await
    .unwrap_err();
    assert!(
        masked.contains("***@"),
        "the caller sees the masked value: {masked}"
    );

    // Every other reader: the auditor (all records), the owner of reference (its part).
    // A failed query's outcome is written just after the caller gets the error, so the
    // auditor's view is read until the three failures are there.
    let mut readers = Vec::new();
    for reader in ["auditor", "ref-owner"] {
        let mut client = flight::login(server.addr, reader).await;
        let mut rows = Vec::new();
        for _ in 0..100 {
            rows = run_flight(
                &mut client,
                "SELECT principal, error FROM mesh_catalog.audit WHERE error IS NOT NULL",
            )
            .await
            .unwrap();
            if reader != "auditor" || rows.len() >= 3 {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        readers.push((reader, rows));
    }
    let (_, auditor_rows) = &readers[0];
    assert!(auditor_rows.len() >= 3, "{auditor_rows:?}");
    assert!(
        auditor_rows
            .iter()
            .any(|r| r[1].as_deref().unwrap().contains("arrow error (cast)")),
        "the audit keeps the failure's class: {auditor_rows:?}"
    );
    let mut lines = String::new();
    for _ in 0..100 {
        lines = std::fs::read_to_string(&events).unwrap_or_default();
        if lines.matches("\"FAIL\"").count() >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        lines.contains("errorMessage"),
        "lineage events carry the error class: {lines}"
    );
    let mut sinks: Vec<(String, String)> = readers
        .iter()
        .map(|(who, rows)| (format!("the audit as {who}"), format!("{rows:?}")))
        .collect();
    sinks.push(("lineage".into(), lines));
    sinks.push(("the gateway's log".into(), logs.text()));
    for (sink, text) in sinks {
        assert!(
            !text.contains("secret-literal-4111"),
            "{sink} holds the statement's literal"
        );
        if let Some(w) = words(&text).find(|w| names.contains(*w) || emails.contains(*w)) {
            panic!("{sink} holds the value {w:?}: {text}");
        }
    }
}

/// Everything meshgate logs during a test (this test binary's global subscriber).
struct LogCapture(Arc<std::sync::Mutex<Vec<u8>>>);

impl LogCapture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

fn log_capture() -> LogCapture {
    use std::sync::OnceLock;
    static BUFFER: OnceLock<Arc<std::sync::Mutex<Vec<u8>>>> = OnceLock::new();
    let buffer = BUFFER.get_or_init(|| {
        let buffer = Arc::new(std::sync::Mutex::new(Vec::new()));
        let writer = Arc::clone(&buffer);
        let subscriber = tracing_subscriber::fmt()
            .with_env_filter("debug")
            .with_ansi(false)
            .with_writer(move || LogWriter(Arc::clone(&writer)))
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
        buffer
    });
    LogCapture(Arc::clone(buffer))
}

struct LogWriter(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every refusal at every front door leaves an audit record naming the products the
/// statement named, the method and the client, with a value-free reason; EXPLAIN and
/// information_schema are attributed to the products they describe; the owner sees the
/// probes of their product.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_refusal_at_every_front_door_is_audited_for_the_product_owner() {
    let (server, _state) = flight::own_state_server(Default::default(), |_| {}).await;
    let mut cib = flight::login(server.addr, "cib-reporting").await;
    let refusals = [
        (
            "COPY (SELECT * FROM reference.counterparties) TO '/tmp/x.parquet'",
            "not_allowed",
        ),
        ("SET datafusion.execution.batch_size = 1", "not_allowed"),
        (
            "SELECT internal_rating FROM reference.counterparties",
            "invalid_query",
        ),
        ("SELECT * FROM payments.transactions", "denied"),
        ("SELECT * FROM read_parquet('x.parquet')", ""),
    ];
    for (sql, _) in &refusals {
        assert!(run_flight(&mut cib, sql).await.is_err(), "{sql}");
    }
    // Preparing refuses at CreatePreparedStatement.
    assert!(
        cib.prepare("SELECT card_number FROM payments.transactions".into(), None)
            .await
            .is_err()
    );
    // Allowed, but reading no data: attributed as metadata.
    run_flight(&mut cib, "EXPLAIN SELECT * FROM markets.trades")
        .await
        .unwrap();
    run_flight(
        &mut cib,
        "SELECT count(*) FROM information_schema.columns WHERE table_name = 'counterparties'",
    )
    .await
    .unwrap();

    let mut auditor = flight::login(server.addr, "auditor").await;
    let records = run_flight(
        &mut auditor,
        "SELECT a.method, a.client, a.decision, a.error, t.product_id, t.access \
         FROM mesh_catalog.audit a LEFT JOIN mesh_catalog.audit_tables t USING (query_id) \
         WHERE a.principal = 'cib-reporting' ORDER BY a.started_at",
    )
    .await
    .unwrap();
    let has =
        |method: &str, decision: &str, error: &str, product: Option<&str>, access: Option<&str>| {
            records.iter().any(|r| {
                r[0].as_deref() == Some(method)
                    && r[1].as_deref().is_some_and(|c| c.starts_with("127.0.0.1:"))
                    && r[2].as_deref() == Some(decision)
                    && r[3].as_deref().unwrap_or("").starts_with(error)
                    && r[4].as_deref() == product
                    && r[5].as_deref() == access
            })
        };
    for (want, what) in [
        (
            has(
                "GetFlightInfo",
                "deny",
                "not_allowed",
                Some("reference.counterparties"),
                Some("denied"),
            ),
            "COPY",
        ),
        (
            has("GetFlightInfo", "deny", "not_allowed: `SET", None, None),
            "SET",
        ),
        (
            has(
                "GetFlightInfo",
                "error",
                "invalid_query: schema error (unknown column)",
                Some("reference.counterparties"),
                Some("metadata"),
            ),
            "a hidden column's name",
        ),
        (
            has(
                "GetFlightInfo",
                "deny",
                "denied",
                Some("payments.transactions"),
                Some("denied"),
            ),
            "a denied product",
        ),
        (
            has("GetFlightInfo", "error", "", None, None),
            "a file function",
        ),
        (
            has(
                "CreatePreparedStatement",
                "deny",
                "denied",
                Some("payments.transactions"),
                Some("denied"),
            ),
            "preparing",
        ),
        (
            has(
                "DoGet",
                "allow",
                "",
                Some("markets.trades"),
                Some("metadata"),
            ),
            "EXPLAIN",
        ),
        (
            has(
                "DoGet",
                "allow",
                "",
                Some("reference.counterparties"),
                Some("metadata"),
            ),
            "information_schema",
        ),
    ] {
        assert!(want, "{what} is not audited as expected: {records:#?}");
    }
    // The owner of payments.transactions... is nobody here; the owner of reference sees the
    // probes of reference.counterparties and nothing of the other products.
    let mut owner = flight::login(server.addr, "ref-owner").await;
    let seen = run_flight(
        &mut owner,
        "SELECT DISTINCT t.product_id, t.access FROM mesh_catalog.audit a \
         JOIN mesh_catalog.audit_tables t USING (query_id) WHERE a.principal = 'cib-reporting'",
    )
    .await
    .unwrap();
    assert!(
        seen.contains(&vec![
            Some("reference.counterparties".into()),
            Some("metadata".into())
        ]),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .all(|r| r[0].as_deref() == Some("reference.counterparties")),
        "{seen:?}"
    );
    // No flow: nothing was read.
    let flows = run_flight(
        &mut owner,
        "SELECT count(*) FROM mesh_catalog.flows WHERE consumer_app = 'cib-regulatory-report'",
    )
    .await
    .unwrap();
    assert_eq!(flows, vec![vec![Some("0".to_string())]]);
}

/// The handshake presenting `token` (a session token) instead of a password: the new
/// session token it answers with.
async fn renew(addr: std::net::SocketAddr, token: &str) -> Result<String, Code> {
    use arrow_flight::HandshakeRequest;
    use arrow_flight::flight_service_client::FlightServiceClient;
    let mut client = FlightServiceClient::new(flight::channel(addr).await);
    let mut request = tonic::Request::new(futures::stream::iter([HandshakeRequest::default()]));
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    let response = client.handshake(request).await.map_err(|s| s.code())?;
    let header = response.metadata().get("authorization").unwrap();
    Ok(header
        .to_str()
        .unwrap()
        .trim_start_matches("Bearer ")
        .to_string())
}

async fn works(addr: std::net::SocketAddr, token: &str) -> Result<(), Code> {
    let mut client = FlightSqlServiceClient::new(flight::channel(addr).await);
    client.set_token(token.to_string());
    let info = client
        .execute("SELECT 1".into(), None)
        .await
        .map_err(|e| flight::code(&e))?;
    flight::fetch(&mut client, &info)
        .await
        .map(|_| ())
        .map_err(|e| flight::code(&e))
}

/// A session ends when the credential it came from ends: renewing it with its own token
/// gives a new token that ends no later. Tokens are signed, so logging in again and again
/// stores nothing on the server (any replica checks a token by its signature); a token
/// closed with CloseSession stops working, and closing one touches no other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_never_outlive_their_credential_and_closing_one_ends_only_it() {
    use std::time::{Duration, Instant};
    let flight_config = meshgate::flight::FlightConfig {
        token_ttl: Duration::from_secs(4),
        ..Default::default()
    };
    let server = flight::start(flight_config, None).await;
    let logged_in = Instant::now();
    let first = flight::login(server.addr, "cib-reporting")
        .await
        .token()
        .cloned()
        .unwrap();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let renewed = renew(server.addr, &first).await.unwrap();
    assert_ne!(renewed, first);
    assert_eq!(works(server.addr, &renewed).await, Ok(()));
    // Renewing the renewed one does not help either.
    let again = renew(server.addr, &renewed).await.unwrap();
    tokio::time::sleep(
        Duration::from_secs(4).saturating_sub(logged_in.elapsed()) + Duration::from_millis(500),
    )
    .await;
    for (what, token) in [
        ("the first", &first),
        ("the renewed", &renewed),
        ("the renewed renewal", &again),
    ] {
        assert_eq!(
            works(server.addr, token).await,
            Err(Code::Unauthenticated),
            "{what} token"
        );
        assert_eq!(
            renew(server.addr, token).await,
            Err(Code::Unauthenticated),
            "{what} token"
        );
    }

    // Many logins: every token works until its end, and closing one ends it alone.
    let other = flight::login(server.addr, "risk-officer")
        .await
        .token()
        .cloned()
        .unwrap();
    let oldest = flight::login(server.addr, "cib-reporting")
        .await
        .token()
        .cloned()
        .unwrap();
    let mut renewed = Vec::new();
    for _ in 0..64 {
        renewed.push(renew(server.addr, &oldest).await.unwrap());
    }
    assert_eq!(works(server.addr, &oldest).await, Ok(()));
    let mut closing = FlightSqlServiceClient::new(flight::channel(server.addr).await);
    closing.set_token(oldest.clone());
    closing
        .do_action(arrow_flight::Action {
            r#type: "CloseSession".into(),
            body: Default::default(),
        })
        .await
        .unwrap();
    assert_eq!(
        works(server.addr, &oldest).await,
        Err(Code::Unauthenticated),
        "a closed session's token stops working"
    );
    assert_eq!(works(server.addr, &renewed[63]).await, Ok(()));
    assert_eq!(works(server.addr, &other).await, Ok(()));
}

/// A principal that can read nothing runs as many long statements as it likes; the others
/// still run their queries: each principal has a share of the running slots and the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_principal_cannot_take_every_running_slot() {
    use meshgate::engine::QueryLimits;
    // The shipped defaults for a 2-core machine: 4 running, 64 waiting.
    let limits = QueryLimits::with_slots(4, 64);
    assert_eq!(limits.max_concurrent_per_principal, 2);
    assert_eq!(
        limits.timeout,
        Some(meshgate::engine::DEFAULT_QUERY_TIMEOUT)
    );
    let server = flight::start(Default::default(), Some(limits)).await;
    let endless = "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 1000000000) \
                   SELECT count(*) FROM r";
    let intern = flight::login(server.addr, "intern").await;
    let mut running = Vec::new();
    for _ in 0..4 {
        let mut client = intern.clone();
        running.push(tokio::spawn(async move {
            let info = client.execute(endless.into(), None).await?;
            flight::fetch(&mut client, &info).await
        }));
    }
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let mut cib = flight::login(server.addr, "cib-reporting").await;
    let answered = tokio::time::timeout(
        std::time::Duration::from_secs(60),
        one_number(&mut cib, "SELECT count(*) FROM reference.counterparties"),
    )
    .await
    .expect("another principal's query waits behind the intern's statements");
    assert_eq!(answered, Ok(15_000));
    assert!(
        running.iter().all(|r| !r.is_finished()),
        "the intern's statements still run"
    );
    for r in running {
        r.abort();
    }
}
