//! The reference mesh through the embedded API: every cell of "What each principal sees"
//! (docs/reference-mesh.md), checked against the raw Parquet files read independently;
//! tokens recomputed from the published scheme; the rewrite in joins, subqueries, CTEs and
//! UNION; EXPLAIN; the locked-down SQL surface; and row-group pruning by the policy filter.

use crate::support::truth;
use crate::support::views;

use std::collections::{BTreeMap, BTreeSet};

use arrow::array::RecordBatch;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use datafusion::prelude::SessionContext;
use meshgate::{Gateway, GatewayError, Session};
use meshgate_lake_server::LakeServer;
use meshgate_reference as reference;
use sha2::{Digest, Sha256};
use truth::{data_dir, email_mask, register_raw, show_last_4, token as expected_token};

// ---------------------------------------------------------------------------------------
// Fixtures

/// The reference mesh served from the in-process S3 server (kept alive by the caller).
async fn gateway() -> (Gateway, LakeServer) {
    let demo = reference::demo(&data_dir())
        .await
        .expect("reference mesh starts");
    let gateway = Gateway::open(demo.config).await.expect("gateway opens");
    (gateway, demo.lake)
}

async fn session(gateway: &Gateway, user: &str) -> Session {
    let principal = gateway
        .authenticate(user, &format!("{user}-pw"))
        .expect("demo password");
    gateway.session(principal)
}

/// The raw files, read from the S3 server's disk without the gateway: the truth the
/// gateway's answers are checked against.
async fn raw() -> SessionContext {
    let ctx = SessionContext::new();
    register_raw(&ctx, "").await;
    ctx
}

async fn raw_rows(ctx: &SessionContext, sql: &str) -> Vec<BTreeMap<String, Option<String>>> {
    rows(&ctx.sql(sql).await.unwrap().collect().await.unwrap())
}

/// Rows as column -> displayed value maps (value types are compared through their text).
fn rows(batches: &[RecordBatch]) -> Vec<BTreeMap<String, Option<String>>> {
    let Some(first) = batches.first() else {
        return Vec::new();
    };
    let names: Vec<String> = first
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    views::rows(batches)
        .into_iter()
        .map(|row| names.iter().cloned().zip(row).collect())
        .collect()
}

async fn query(session: &Session, sql: &str) -> Vec<BTreeMap<String, Option<String>>> {
    rows(
        &session
            .collect(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}")),
    )
}

fn columns_of(batches: &[RecordBatch]) -> Vec<String> {
    batches[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect()
}

async fn count(session: &Session, sql: &str) -> i64 {
    let rows = query(session, sql).await;
    rows[0]
        .values()
        .next()
        .unwrap()
        .as_ref()
        .unwrap()
        .parse()
        .unwrap()
}

fn text(row: &BTreeMap<String, Option<String>>, column: &str) -> String {
    row.get(column)
        .unwrap_or_else(|| panic!("no column {column}"))
        .clone()
        .unwrap_or_else(|| panic!("{column} is null"))
}

async fn expect_denied(session: &Session, sql: &str, product: &str) {
    match session.collect(sql).await {
        Err(GatewayError::Denied(denial)) => {
            let message = denial.to_string();
            assert!(message.contains(&format!("`{product}`")), "{message}");
            // What can be done: ask for access, or, where a deny rule closes the product
            // (the auditor), have the rule changed; never a request that cannot help.
            assert!(
                message.contains("Request access from its owner")
                    || message.contains("a deny rule of the access rules (`access.csv`)"),
                "{message}"
            );
        }
        Err(other) => panic!("{sql}: expected a permission error for {product}, got {other}"),
        Ok(_) => panic!("{sql}: expected a permission error for {product}, got data"),
    }
}

/// Compare a principal's view of a table with the raw rows, column by column.
/// `expected(column, raw value)` gives the value the principal must see; `None` = hidden.
async fn check_table<F>(session: &Session, table: &str, key: &str, raw_sql: &str, expected: F)
where
    F: Fn(&str, &str) -> Option<String>,
{
    let ctx = raw().await;
    let raw = raw_rows(&ctx, raw_sql).await;
    let batches = session
        .collect(&format!("SELECT * FROM {table} ORDER BY {key}"))
        .await
        .unwrap();
    let seen = rows(&batches);
    assert_eq!(
        seen.len(),
        raw.len(),
        "{}: row count of {table}",
        session.principal().id()
    );
    let raw_columns: Vec<String> = raw[0].keys().cloned().collect();
    let visible: BTreeSet<String> = columns_of(&batches).into_iter().collect();
    for column in &raw_columns {
        let sample = raw[0][column].clone().unwrap_or_default();
        assert_eq!(
            visible.contains(column),
            expected(column, &sample).is_some(),
            "{}: visibility of {table}.{column}",
            session.principal().id()
        );
    }
    for (seen_row, raw_row) in seen.iter().zip(&raw) {
        assert_eq!(seen_row[key], raw_row[key]);
        for column in &visible {
            let clear = text(raw_row, column);
            let want = expected(column, &clear).unwrap();
            assert_eq!(
                text(seen_row, column),
                want,
                "{}: {table}.{column} of {key}={:?}",
                session.principal().id(),
                raw_row[key]
            );
        }
    }
}

// ---------------------------------------------------------------------------------------
// Every cell of the reference table

#[tokio::test]
async fn counterparties_as_each_principal_sees_them() {
    let (gateway, _lake) = gateway().await;
    let counterparties = "reference.counterparties";
    let raw = "SELECT * FROM counterparties";
    let lob_system = |column: &str, v: &str| match column {
        "tax_id" => Some(expected_token("reference", v)),
        "contact_email" => Some(email_mask(v)),
        "internal_rating" => None,
        _ => Some(v.to_string()),
    };
    for (user, lob) in [("cib-reporting", "CIB"), ("ccb-fraud", "CCB")] {
        let s = session(&gateway, user).await;
        check_table(
            &s,
            counterparties,
            "counterparty_id",
            &format!("{raw} WHERE lob = '{lob}' ORDER BY counterparty_id"),
            lob_system,
        )
        .await;
    }
    let risk = session(&gateway, "risk-officer").await;
    check_table(
        &risk,
        counterparties,
        "counterparty_id",
        &format!("{raw} ORDER BY counterparty_id"),
        |column, v| match column {
            "tax_id" => Some(expected_token("reference", v)),
            "contact_email" => Some(email_mask(v)),
            _ => Some(v.to_string()),
        },
    )
    .await;
    let owner = session(&gateway, "ref-owner").await;
    check_table(
        &owner,
        counterparties,
        "counterparty_id",
        &format!("{raw} ORDER BY counterparty_id"),
        |_, v| Some(v.to_string()),
    )
    .await;
    for user in ["auditor", "intern"] {
        expect_denied(
            &session(&gateway, user).await,
            "SELECT * FROM reference.counterparties",
            counterparties,
        )
        .await;
    }
}

#[tokio::test]
async fn counts_per_lob_match_the_reference_rule() {
    let (gateway, _lake) = gateway().await;
    // LOB of id: CIB when id % 10 in 0..=4, CCB in 5..=7, AWM in 8..=9.
    for (user, expected) in [
        ("cib-reporting", vec![("CIB", 15_000)]),
        ("ccb-fraud", vec![("CCB", 9_000)]),
    ] {
        let s = session(&gateway, user).await;
        let seen = query(
            &s,
            "SELECT lob, count(*) AS n FROM reference.counterparties GROUP BY lob",
        )
        .await;
        let seen: Vec<(String, i64)> = seen
            .iter()
            .map(|r| (text(r, "lob"), text(r, "n").parse().unwrap()))
            .collect();
        let expected: Vec<(String, i64)> = expected
            .into_iter()
            .map(|(l, n)| (l.to_string(), n))
            .collect();
        assert_eq!(seen, expected, "{user}");
    }
    let risk = session(&gateway, "risk-officer").await;
    let seen = query(
        &risk,
        "SELECT lob, count(*) AS n FROM reference.counterparties GROUP BY lob ORDER BY lob",
    )
    .await;
    let seen: Vec<(String, String)> = seen
        .iter()
        .map(|r| (text(r, "lob"), text(r, "n")))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("AWM".into(), "6000".into()),
            ("CCB".into(), "9000".into()),
            ("CIB".into(), "15000".into())
        ]
    );
    // The lob rule holds in the data itself.
    let ctx = raw().await;
    let wrong = raw_rows(
        &ctx,
        "SELECT count(*) AS n FROM counterparties WHERE lob <> CASE WHEN counterparty_id % 10 < 5 THEN 'CIB' \
         WHEN counterparty_id % 10 < 8 THEN 'CCB' ELSE 'AWM' END",
    )
    .await;
    assert_eq!(text(&wrong[0], "n"), "0");
}

#[tokio::test]
async fn transactions_as_each_principal_sees_them() {
    let (gateway, _lake) = gateway().await;
    let ccb = session(&gateway, "ccb-fraud").await;
    check_table(
        &ccb,
        "payments.transactions",
        "txn_id",
        "SELECT * FROM transactions WHERE lob = 'CCB' ORDER BY txn_id",
        |column, v| {
            Some(if column == "card_number" {
                expected_token("payments", v)
            } else {
                v.to_string()
            })
        },
    )
    .await;
    let risk = session(&gateway, "risk-officer").await;
    check_table(
        &risk,
        "payments.transactions",
        "txn_id",
        "SELECT * FROM transactions ORDER BY txn_id",
        |column, v| {
            Some(if column == "card_number" {
                show_last_4(v)
            } else {
                v.to_string()
            })
        },
    )
    .await;
    for user in ["cib-reporting", "ref-owner", "auditor", "intern"] {
        expect_denied(
            &session(&gateway, user).await,
            "SELECT count(*) FROM payments.transactions",
            "payments.transactions",
        )
        .await;
    }
}

#[tokio::test]
async fn trades_as_each_principal_sees_them() {
    let (gateway, _lake) = gateway().await;
    let cib = session(&gateway, "cib-reporting").await;
    check_table(
        &cib,
        "markets.trades",
        "trade_id",
        "SELECT * FROM trades WHERE lob = 'CIB' ORDER BY trade_id",
        |column, v| {
            Some(if column == "trader_id" {
                expected_token("markets", v)
            } else {
                v.to_string()
            })
        },
    )
    .await;
    let risk = session(&gateway, "risk-officer").await;
    check_table(
        &risk,
        "markets.trades",
        "trade_id",
        "SELECT * FROM trades ORDER BY trade_id",
        |_, v| Some(v.to_string()),
    )
    .await;
    for user in ["ccb-fraud", "ref-owner", "auditor", "intern"] {
        expect_denied(
            &session(&gateway, user).await,
            "SELECT * FROM markets.trades",
            "markets.trades",
        )
        .await;
    }
}

#[tokio::test]
async fn tokens_are_deterministic_across_principals_and_differ_across_domains() {
    let (gateway, _lake) = gateway().await;
    let sql = "SELECT counterparty_id, tax_id FROM reference.counterparties WHERE counterparty_id IN (10, 20, 30) ORDER BY 1";
    let cib = query(&session(&gateway, "cib-reporting").await, sql).await;
    let risk = query(&session(&gateway, "risk-officer").await, sql).await;
    assert_eq!(cib.len(), 3);
    assert_eq!(
        cib, risk,
        "same clear value, same token domain: same token for every principal"
    );
    let clear = query(&session(&gateway, "ref-owner").await, sql).await;
    for (token_row, clear_row) in cib.iter().zip(&clear) {
        let (token, value) = (text(token_row, "tax_id"), text(clear_row, "tax_id"));
        assert_ne!(token, value);
        assert!(!token.contains(&value));
        assert_eq!(token, expected_token("reference", &value));
        assert_ne!(
            token,
            expected_token("payments", &value),
            "token domains must not link"
        );
    }
}

// ---------------------------------------------------------------------------------------
// Hidden means absent everywhere

#[tokio::test]
async fn hidden_columns_do_not_exist_for_the_caller() {
    let (gateway, _lake) = gateway().await;
    let cib = session(&gateway, "cib-reporting").await;
    let star = cib
        .collect("SELECT * FROM reference.counterparties LIMIT 1")
        .await
        .unwrap();
    assert!(!columns_of(&star).contains(&"internal_rating".to_string()));

    for sql in [
        "SELECT internal_rating FROM reference.counterparties",
        "SELECT count(*) FROM reference.counterparties WHERE internal_rating = 'AAA'",
        "SELECT c.internal_rating FROM reference.counterparties c",
    ] {
        match cib.collect(sql).await {
            Err(GatewayError::Rejected { message, .. }) => {
                assert!(message.contains("internal_rating"), "{message}")
            }
            other => panic!("{sql}: expected an unknown-column error, got {other:?}"),
        }
    }

    let columns = |rows: Vec<BTreeMap<String, Option<String>>>, key: &str| -> Vec<String> {
        rows.iter().map(|r| text(r, key)).collect()
    };
    let info = "SELECT column_name FROM information_schema.columns \
                WHERE table_schema = 'reference' AND table_name = 'counterparties' ORDER BY ordinal_position";
    let expected = [
        "counterparty_id",
        "legal_name",
        "lob",
        "country",
        "tax_id",
        "contact_email",
        "onboarded_on",
    ];
    assert_eq!(columns(query(&cib, info).await, "column_name"), expected);
    assert_eq!(
        columns(
            query(&cib, "DESCRIBE reference.counterparties").await,
            "column_name"
        ),
        expected
    );
    assert_eq!(
        columns(
            query(&cib, "SHOW COLUMNS FROM reference.counterparties").await,
            "column_name"
        )
        .len(),
        expected.len()
    );
    let risk = session(&gateway, "risk-officer").await;
    assert!(
        columns(query(&risk, info).await, "column_name").contains(&"internal_rating".to_string())
    );
}

#[tokio::test]
async fn information_schema_lists_only_what_the_caller_may_read() {
    let (gateway, _lake) = gateway().await;
    // The mesh catalog's own tables are listed for everyone (tests/governance.rs).
    let sql = "SELECT table_schema || '.' || table_name AS t FROM information_schema.tables \
               WHERE table_schema NOT IN ('information_schema', 'mesh_catalog') ORDER BY 1";
    for (user, expected) in [
        (
            "cib-reporting",
            vec!["markets.trades", "reference.counterparties"],
        ),
        (
            "ccb-fraud",
            vec!["payments.transactions", "reference.counterparties"],
        ),
        (
            "risk-officer",
            vec![
                "markets.trades",
                "payments.transactions",
                "reference.counterparties",
            ],
        ),
        ("ref-owner", vec!["reference.counterparties"]),
        ("auditor", vec![]),
        ("intern", vec![]),
    ] {
        let s = session(&gateway, user).await;
        let seen: Vec<String> = query(&s, sql).await.iter().map(|r| text(r, "t")).collect();
        assert_eq!(seen, expected, "{user}");
        let tables: Vec<String> = s
            .tables()
            .await
            .iter()
            .map(|t| format!("{}.{}", t.schema, t.name))
            .collect();
        assert_eq!(tables, expected, "{user}: Session::tables");
    }
}

// ---------------------------------------------------------------------------------------
// The rewrite, wherever a table appears

#[tokio::test]
async fn every_reference_to_a_product_is_wrapped() {
    let (gateway, _lake) = gateway().await;
    let cib = session(&gateway, "cib-reporting").await;
    let ctx = raw().await;
    let raw_count = |sql: &'static str| {
        let ctx = ctx.clone();
        async move {
            text(&raw_rows(&ctx, sql).await[0], "n")
                .parse::<i64>()
                .unwrap()
        }
    };
    let cib_trades = raw_count("SELECT count(*) AS n FROM trades WHERE lob = 'CIB'").await;

    // Joins: both sides filtered.
    let joined = "SELECT count(*) FROM markets.trades t JOIN reference.counterparties c ON t.counterparty_id = c.counterparty_id";
    assert_eq!(count(&cib, joined).await, cib_trades);
    let lobs = query(
        &cib,
        "SELECT DISTINCT c.lob AS a, t.lob AS b FROM markets.trades t \
         LEFT JOIN reference.counterparties c ON t.counterparty_id = c.counterparty_id",
    )
    .await;
    assert_eq!(lobs.len(), 1);
    assert_eq!(
        (text(&lobs[0], "a"), text(&lobs[0], "b")),
        ("CIB".into(), "CIB".into())
    );

    // Subqueries: IN, EXISTS, scalar.
    let expected_in =
        raw_count("SELECT count(DISTINCT counterparty_id) AS n FROM trades WHERE lob = 'CIB'")
            .await;
    assert_eq!(
        count(&cib, "SELECT count(*) FROM reference.counterparties WHERE counterparty_id IN (SELECT counterparty_id FROM markets.trades)").await,
        expected_in
    );
    assert_eq!(
        count(
            &cib,
            "SELECT count(*) FROM reference.counterparties c WHERE EXISTS \
             (SELECT 1 FROM markets.trades t WHERE t.counterparty_id = c.counterparty_id)"
        )
        .await,
        expected_in
    );
    assert_eq!(
        count(
            &cib,
            "SELECT (SELECT count(*) FROM reference.counterparties) AS n"
        )
        .await,
        15_000
    );

    // CTEs.
    let cte = query(&cib, "WITH c AS (SELECT * FROM reference.counterparties) SELECT count(*) AS n, count(DISTINCT lob) AS l FROM c").await;
    assert_eq!(
        (text(&cte[0], "n"), text(&cte[0], "l")),
        ("15000".into(), "1".into())
    );

    // UNION branches.
    let union = query(
        &cib,
        "SELECT lob, count(*) AS n FROM (SELECT lob FROM reference.counterparties UNION ALL SELECT lob FROM markets.trades) u GROUP BY lob",
    )
    .await;
    assert_eq!(union.len(), 1);
    assert_eq!(text(&union[0], "lob"), "CIB");
    assert_eq!(
        text(&union[0], "n").parse::<i64>().unwrap(),
        15_000 + cib_trades
    );

    // A denied table anywhere in the query denies the query.
    expect_denied(
        &cib,
        "SELECT count(*) FROM reference.counterparties WHERE counterparty_id IN (SELECT counterparty_id FROM payments.transactions)",
        "payments.transactions",
    )
    .await;
    expect_denied(
        &cib,
        "WITH t AS (SELECT * FROM payments.transactions) SELECT 1",
        "payments.transactions",
    )
    .await;

    // Aggregates answer from visible rows, never from file statistics.
    assert_eq!(
        count(&cib, "SELECT count(*) FROM reference.counterparties").await,
        15_000
    );
    let extremes = query(&cib, "SELECT min(counterparty_id) AS lo, max(counterparty_id) AS hi FROM reference.counterparties").await;
    assert_eq!(
        (text(&extremes[0], "lo"), text(&extremes[0], "hi")),
        ("1".into(), "30000".into())
    );
}

#[tokio::test]
async fn predicates_on_protected_columns_see_only_protected_values() {
    let (gateway, _lake) = gateway().await;
    let cib = session(&gateway, "cib-reporting").await;
    let owner = session(&gateway, "ref-owner").await;
    let clear = query(
        &owner,
        "SELECT tax_id, contact_email FROM reference.counterparties WHERE counterparty_id = 10",
    )
    .await;
    let (tax_id, email) = (text(&clear[0], "tax_id"), text(&clear[0], "contact_email"));

    let n = |sql: String| {
        let cib = cib.clone();
        async move { count(&cib, &sql).await }
    };
    assert_eq!(
        n(format!(
            "SELECT count(*) FROM reference.counterparties WHERE tax_id = '{tax_id}'"
        ))
        .await,
        0
    );
    assert_eq!(
        n(format!(
            "SELECT count(*) FROM reference.counterparties WHERE contact_email = '{email}'"
        ))
        .await,
        0
    );
    let prefix = &email[..3];
    assert_eq!(
        n(format!(
            "SELECT count(*) FROM reference.counterparties WHERE contact_email LIKE '{prefix}%'"
        ))
        .await,
        0
    );
    assert_eq!(
        n("SELECT count(*) FROM reference.counterparties WHERE contact_email LIKE '***@%'".into())
            .await,
        15_000
    );
    let token = expected_token("reference", &tax_id);
    assert_eq!(
        n(format!(
            "SELECT count(*) FROM reference.counterparties WHERE tax_id = '{token}'"
        ))
        .await,
        1
    );
    let first = query(
        &cib,
        "SELECT tax_id FROM reference.counterparties ORDER BY tax_id LIMIT 1",
    )
    .await;
    assert!(text(&first[0], "tax_id").starts_with("tok_"));
}

#[tokio::test]
async fn explain_shows_an_opaque_scan_and_no_policy_internals() {
    let (gateway, _lake) = gateway().await;
    let cib = session(&gateway, "cib-reporting").await;
    let mut plans = String::new();
    for sql in [
        "EXPLAIN SELECT * FROM reference.counterparties WHERE country = 'US'",
        "EXPLAIN VERBOSE SELECT tax_id, count(*) FROM reference.counterparties GROUP BY tax_id",
    ] {
        for row in query(&cib, sql).await {
            plans.push_str(&text(&row, "plan"));
            plans.push('\n');
        }
    }
    assert!(
        plans.contains(
            "ProtectedScanExec: table=reference.counterparties, policy=reference.counterparties@v1"
        ),
        "{plans}"
    );
    // No filter bodies, no attribute values, no masks or keys.
    let master = Sha256::digest(b"meshgate demo master key - public, never use for real data");
    for secret in [
        "'CIB'".to_string(),
        "lob =".to_string(),
        "mask_email".to_string(),
        "tokenize".to_string(),
        hex::encode(master),
        URL_SAFE_NO_PAD.encode(master),
    ] {
        assert!(
            !plans.contains(&secret),
            "EXPLAIN shows `{secret}`:\n{plans}"
        );
    }
    match cib
        .collect("EXPLAIN ANALYZE SELECT * FROM reference.counterparties")
        .await
    {
        Err(GatewayError::NotAllowed(message)) => {
            assert!(message.contains("EXPLAIN ANALYZE"), "{message}")
        }
        other => panic!("EXPLAIN ANALYZE must be refused, got {other:?}"),
    }
}

/// Every protected scan in `sql`'s physical plan, with the statistics the planner gets
/// from it: (table, statistics).
async fn scan_statistics(
    session: &Session,
    sql: &str,
) -> Vec<(String, datafusion::common::Statistics)> {
    use datafusion::physical_plan::ExecutionPlan;
    use datafusion::physical_plan::statistics::{StatisticsArgs, StatisticsContext};
    use meshgate::engine::ProtectedScanExec;
    use std::sync::Arc;

    fn walk(
        plan: &Arc<dyn ExecutionPlan>,
        out: &mut Vec<(String, datafusion::common::Statistics)>,
    ) {
        let any: &dyn std::any::Any = plan.as_ref();
        if let Some(scan) = any.downcast_ref::<ProtectedScanExec>() {
            let stats = StatisticsContext::new()
                .compute(plan.as_ref(), &StatisticsArgs::new())
                .expect("statistics");
            let policy = scan.policy().expect("planned by this gateway");
            out.push((
                format!("{}.{}", policy.domain, policy.table),
                stats.as_ref().clone(),
            ));
        }
        for child in plan.children() {
            walk(child, out);
        }
    }
    // Behind a row filter, the statistics of the rows the caller sees are computed in the
    // background after a first scan: plan again until every scan has a row count (or 5 s).
    let mut out = Vec::new();
    for _ in 0..100 {
        let query = session
            .query(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        out.clear();
        walk(&query.physical_plan(), &mut out);
        if out
            .iter()
            .all(|(_, s)| s.num_rows != datafusion::common::stats::Precision::Absent)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    out
}

#[tokio::test]
async fn a_scan_reports_statistics_only_to_callers_who_see_every_row_and_only_of_clear_columns() {
    use datafusion::common::stats::Precision;
    use datafusion::common::{ColumnStatistics, ScalarValue};

    let (gateway, _lake) = gateway().await;
    let owner = session(&gateway, "ref-owner").await;
    let risk = session(&gateway, "risk-officer").await;
    let cib = session(&gateway, "cib-reporting").await;

    // Every row visible: the files' row count and, of the columns shown in the clear, their
    // footers' statistics, all inexact (so the planner sizes joins and filters but never
    // answers count(*) or min() from them). Nothing of a masked or tokenized column, and a
    // byte size only when every column is clear. Behind a row filter the files' count would
    // tell how many rows are hidden: the count of the rows the caller sees instead.
    let unknown = ColumnStatistics::new_unknown();
    let cib_trades = count(&cib, "SELECT count(*) FROM markets.trades").await as usize;
    for (session, sql, table, rows, clear, bytes) in [
        (
            &owner,
            "SELECT counterparty_id, lob, country FROM reference.counterparties",
            "reference.counterparties",
            Precision::Inexact(30_000),
            &[true, true, true][..],
            true,
        ),
        (
            &risk,
            "SELECT tax_id, contact_email, internal_rating FROM reference.counterparties",
            "reference.counterparties",
            Precision::Inexact(30_000),
            &[false, false, true][..],
            false,
        ),
        (
            &risk,
            "SELECT amount, card_number FROM payments.transactions",
            "payments.transactions",
            Precision::Inexact(200_000),
            &[true, false][..],
            false,
        ),
        (
            &cib,
            "SELECT counterparty_id, country, tax_id FROM reference.counterparties",
            "reference.counterparties",
            Precision::Inexact(15_000),
            &[true, true, false][..],
            false,
        ),
        (
            &cib,
            "SELECT notional, trader_id FROM markets.trades",
            "markets.trades",
            Precision::Inexact(cib_trades),
            &[true, false][..],
            false,
        ),
        (
            &cib,
            "SELECT trade_id, notional FROM markets.trades",
            "markets.trades",
            Precision::Inexact(cib_trades),
            &[true, true][..],
            true,
        ),
    ] {
        let scans = scan_statistics(session, sql).await;
        assert_eq!(scans.len(), 1, "{sql}");
        let (name, stats) = &scans[0];
        assert_eq!(name, table);
        assert_eq!(stats.num_rows, rows, "{sql}");
        assert_eq!(
            matches!(stats.total_byte_size, Precision::Inexact(n) if n > 0),
            bytes,
            "{sql}: {stats:?}"
        );
        for (column, clear) in stats.column_statistics.iter().zip(clear) {
            if *clear {
                assert!(
                    matches!(column.min_value, Precision::Inexact(_))
                        && matches!(column.max_value, Precision::Inexact(_))
                        && matches!(column.byte_size, Precision::Inexact(_)),
                    "{sql}: {column:?}"
                );
            } else {
                assert_eq!(*column, unknown, "{sql}");
            }
        }
    }
    // The statistics are the files' own: what the owner's query computes.
    let scans = scan_statistics(
        &owner,
        "SELECT counterparty_id FROM reference.counterparties",
    )
    .await;
    let column = &scans[0].1.column_statistics[0];
    let (min, max) = (
        count(
            &owner,
            "SELECT min(counterparty_id) FROM reference.counterparties",
        )
        .await,
        count(
            &owner,
            "SELECT max(counterparty_id) FROM reference.counterparties",
        )
        .await,
    );
    let bounds_are = |column: &ColumnStatistics, min: i64, max: i64| {
        assert_eq!(
            column.min_value,
            Precision::Inexact(ScalarValue::Int64(Some(min)))
        );
        assert_eq!(
            column.max_value,
            Precision::Inexact(ScalarValue::Int64(Some(max)))
        );
    };
    bounds_are(column, min, max);

    // count(*) is still counted from the rows, not taken from the estimate.
    assert_eq!(
        count(&owner, "SELECT count(*) FROM reference.counterparties").await,
        30_000
    );
    assert_eq!(
        count(&cib, "SELECT count(*) FROM reference.counterparties").await,
        15_000
    );

    // Behind a row filter, the statistics are those of the rows the caller sees, not the
    // files': what cib-reporting's own query computes.
    let scans = scan_statistics(&cib, "SELECT trade_id FROM markets.trades").await;
    let column = &scans[0].1.column_statistics[0];
    let (min, max) = (
        count(&cib, "SELECT min(trade_id) FROM markets.trades").await,
        count(&cib, "SELECT max(trade_id) FROM markets.trades").await,
    );
    bounds_are(column, min, max);
}

/// The first hash join in `plan`, depth first.
fn first_join(
    plan: &std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>,
) -> Option<std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>> {
    use datafusion::physical_plan::joins::HashJoinExec;
    let any: &dyn std::any::Any = plan.as_ref();
    if any.downcast_ref::<HashJoinExec>().is_some() {
        return Some(std::sync::Arc::clone(plan));
    }
    plan.children().into_iter().find_map(first_join)
}

/// `plan` as EXPLAIN shows it (the tables it scans).
fn tables(plan: &std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>) -> String {
    datafusion::physical_plan::displayable(plan.as_ref())
        .indent(false)
        .to_string()
}

#[tokio::test]
async fn joins_build_on_the_smaller_product_when_the_caller_sees_every_row() {
    let (gateway, _lake) = gateway().await;
    let risk = session(&gateway, "risk-officer").await;
    // The big table first in the SQL: with row counts the planner swaps the sides so the
    // 30,000 counterparties, not the 200,000 transactions, are hashed.
    let sql = "SELECT c.country, sum(t.amount) FROM payments.transactions t \
               JOIN reference.counterparties c ON t.counterparty_id = c.counterparty_id \
               GROUP BY c.country";
    let query = risk.query(sql).await.expect("plans");
    let join = first_join(&query.physical_plan()).expect("a hash join");
    let build = &join.children()[0];
    assert!(
        tables(build).contains("table=reference.counterparties")
            && !tables(build).contains("table=payments.transactions"),
        "build side:\n{}",
        tables(&join)
    );
    assert!(!query.collect().await.expect("runs").is_empty());
}

/// Behind a row filter too, once the statistics of the rows the caller sees are known: the
/// smaller side is hashed, as for a caller who sees every row.
#[tokio::test]
async fn joins_build_on_the_side_the_caller_sees_less_of_behind_a_row_filter() {
    let (gateway, _lake) = gateway().await;
    let cib = session(&gateway, "cib-reporting").await;
    // cib-reporting sees more trades than counterparties (15,000); the trades come first.
    assert!(count(&cib, "SELECT count(*) FROM markets.trades").await > 15_000);
    let sql = "SELECT c.country, sum(t.notional) FROM markets.trades t \
               JOIN reference.counterparties c ON t.counterparty_id = c.counterparty_id \
               GROUP BY c.country";
    let mut build = String::new();
    for _ in 0..100 {
        let query = cib.query(sql).await.expect("plans");
        let join = first_join(&query.physical_plan()).expect("a hash join");
        build = tables(join.children()[0]);
        if build.contains("table=reference.counterparties") {
            break;
        }
        // The statistics are computed after a first scan of each table.
        assert!(!query.collect().await.expect("runs").is_empty());
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(
        build.contains("table=reference.counterparties") && !build.contains("table=markets.trades"),
        "build side:\n{build}"
    );
    // The files read in the background are the operator's to see, with their reads.
    let metrics = gateway.render_metrics();
    assert!(
        metrics.contains("meshgate_row_filter_statistics_total{outcome=\"computed\"}"),
        "{metrics}"
    );
}

/// An operator may turn them off (no background reads): then a caller behind a row filter
/// plans without statistics, however often it queries.
#[tokio::test]
async fn statistics_behind_row_filters_can_be_turned_off() {
    use datafusion::common::stats::Precision;

    let mut demo = reference::demo(&data_dir())
        .await
        .expect("reference mesh starts");
    demo.config.statistics_behind_row_filters = false;
    let gateway = Gateway::open(demo.config).await.expect("gateway opens");
    let cib = session(&gateway, "cib-reporting").await;
    for _ in 0..3 {
        assert!(count(&cib, "SELECT count(trade_id) FROM markets.trades").await > 0);
    }
    let scans = scan_statistics(&cib, "SELECT trade_id FROM markets.trades").await;
    assert_eq!(scans[0].1.num_rows, Precision::Absent);
    assert!(
        !gateway
            .render_metrics()
            .contains("meshgate_row_filter_statistics_total{")
    );
    // Callers who see every row keep the footers'.
    let risk = session(&gateway, "risk-officer").await;
    let scans = scan_statistics(&risk, "SELECT trade_id FROM markets.trades").await;
    assert_eq!(scans[0].1.num_rows, Precision::Inexact(50_000));
}

#[tokio::test]
async fn authentication_is_required_and_checked() {
    let (gateway, _lake) = gateway().await;
    assert!(gateway.authenticate("cib-reporting", "wrong").is_err());
    assert!(gateway.authenticate("nobody", "nobody-pw").is_err());
    // A principal the policies do not know is denied, not defaulted.
    let stranger = gateway.session(meshgate::Principal::new("stranger"));
    expect_denied(
        &stranger,
        "SELECT 1 FROM reference.counterparties",
        "reference.counterparties",
    )
    .await;
    assert!(stranger.tables().await.is_empty());
}

// ---------------------------------------------------------------------------------------
// The policy filter prunes row groups

#[tokio::test]
async fn the_lob_filter_prunes_row_groups_of_the_lob_sorted_product() {
    let (gateway, _lake) = gateway().await;
    let report = |user: &'static str, sql: &'static str| {
        let gateway = gateway.clone();
        async move {
            let s = session(&gateway, user).await;
            let planned = s.query(sql).await.unwrap();
            planned.collect().await.unwrap();
            (planned.scan_report(), planned.io_report())
        }
    };
    let count = "SELECT count(*) FROM reference.counterparties";
    // Warm the shared footer cache, so both runs below read data pages only.
    report("risk-officer", count).await;
    let (cib, _) = report("cib-reporting", count).await;
    let (risk, _) = report("risk-officer", count).await;
    assert_eq!(cib.tables, vec!["reference.counterparties"]);
    // Sorted by lob (AWM, CCB, CIB) in 3 files of 10,000 rows and row groups of 4,000: the
    // first file holds no CIB row, the second's first row group neither.
    assert_eq!(
        (
            cib.row_groups_pruned,
            cib.row_groups_matched,
            cib.rows_scanned
        ),
        (4, 5, 16_000),
        "{cib:?}"
    );
    assert_eq!(
        (
            risk.row_groups_pruned,
            risk.row_groups_matched,
            risk.rows_scanned
        ),
        (0, 9, 30_000),
        "{risk:?}"
    );
    // Over S3, pruning shows as fewer requests and fewer bytes for a query that reads data.
    // (`count(*)` alone reads no data at all when no filter applies: row counts come from
    // the cached footers.)
    // (Not `max(...)`: its dynamic filter prunes row groups for every caller.)
    let names = "SELECT sum(length(legal_name)) FROM reference.counterparties";
    report("risk-officer", names).await;
    let (_, cib_io) = report("cib-reporting", names).await;
    let (_, risk_io) = report("risk-officer", names).await;
    let (cib_io, risk_io) = (
        cib_io.products["reference.counterparties"],
        risk_io.products["reference.counterparties"],
    );
    assert!(
        cib_io.gets < risk_io.gets && cib_io.bytes < risk_io.bytes,
        "cib {cib_io:?} vs risk {risk_io:?}"
    );
    assert_eq!((cib_io.writes_refused, risk_io.writes_refused), (0, 0));
    // Transactions are sorted by time: the same filter cannot prune there.
    let (ccb, _) = report("ccb-fraud", "SELECT count(*) FROM payments.transactions").await;
    assert_eq!(
        (ccb.row_groups_pruned, ccb.rows_scanned),
        (0, 200_000),
        "{ccb:?}"
    );
}

/// Leakproof user predicates (comparisons of clear columns) cross the barrier and prune like
/// the policy filter; a predicate on a tokenized column or one that can fail does not.
#[tokio::test]
async fn leakproof_user_predicates_prune_and_no_others_enter_the_scan() {
    let (gateway, _lake) = gateway().await;
    let run = |user: &'static str, sql: String| {
        let gateway = gateway.clone();
        async move {
            let s = session(&gateway, user).await;
            let planned = s.query(&sql).await.unwrap();
            let answer = rows(&planned.collect().await.unwrap());
            let explain = rows(&s.collect(&format!("EXPLAIN {sql}")).await.unwrap());
            let explain = format!("{explain:?}");
            let scan = planned.scan_report();
            (answer[0]["count(*)"].clone(), scan, explain)
        }
    };
    let cib_only = "SELECT count(*) FROM reference.counterparties WHERE lob = 'CIB'".to_string();
    let (answer, risk, explain) = run("risk-officer", cib_only.clone()).await;
    assert_eq!(answer.as_deref(), Some("15000"));
    assert_eq!(
        (
            risk.row_groups_pruned,
            risk.row_groups_matched,
            risk.rows_scanned
        ),
        (4, 5, 16_000),
        "the user's own filter on a clear column prunes like cib-reporting's policy: {risk:?}"
    );
    assert!(
        explain.contains("pushed=[") && explain.contains("CIB"),
        "{explain}"
    );
    // Pushed next to another LOB's policy filter: only the row group where CCB ends and CIB
    // begins can match both.
    let (answer, ccb, _) = run("ccb-fraud", cib_only).await;
    assert_eq!(answer.as_deref(), Some("0"));
    assert_eq!(
        (
            ccb.row_groups_pruned,
            ccb.row_groups_matched,
            ccb.rows_scanned
        ),
        (8, 1, 4_000),
        "{ccb:?}"
    );

    // A tokenized column never enters the scan: only the policy filter prunes.
    let token = expected_token(
        "reference",
        &raw_rows(
            &raw().await,
            "SELECT tax_id FROM counterparties WHERE counterparty_id = 12",
        )
        .await[0]["tax_id"]
            .clone()
            .unwrap(),
    );
    let (answer, cib, explain) = run(
        "cib-reporting",
        format!("SELECT count(*) FROM reference.counterparties WHERE tax_id = '{token}'"),
    )
    .await;
    assert_eq!(answer.as_deref(), Some("1"));
    assert_eq!(cib.rows_scanned, 16_000, "{cib:?}");
    assert!(!explain.contains("pushed="), "{explain}");
    // Neither does a predicate that can fail, even on clear columns.
    let (_, risk, explain) = run(
        "risk-officer",
        "SELECT count(*) FROM reference.counterparties WHERE lob = 'CIB' AND counterparty_id / 2 > 0"
            .to_string(),
    )
    .await;
    let pushed = explain
        .split("pushed=[")
        .nth(1)
        .and_then(|rest| rest.split(']').next())
        .unwrap_or_default();
    assert!(
        pushed.contains("CIB") && !pushed.contains('/'),
        "only the leakproof conjunct crosses: {explain}"
    );
    assert_eq!(risk.rows_scanned, 16_000, "{risk:?}");
}

/// A hash join hands its build side's keys to the probe side's sealed scan as a dynamic
/// filter when the key is a column the caller sees in clear: one trade's counterparty LOB
/// prunes the LOB-sorted counterparties exactly as the caller's own `lob = ...` would. (The
/// trades side is the build side because the seal reports the selectivity of the caller's
/// pushed `trade_id = 7`, as DataFusion estimates it on the raw table.)
#[tokio::test]
async fn a_join_prunes_the_probe_side_by_its_build_side_keys() {
    let (gateway, _lake) = gateway().await;
    let s = session(&gateway, "risk-officer").await;
    let run = |sql: String| {
        let s = &s;
        async move {
            let planned = s.query(&sql).await.unwrap();
            let answer = rows(&planned.collect().await.unwrap());
            (answer, planned.scan_report())
        }
    };
    let (lob, _) = run("SELECT lob FROM markets.trades WHERE trade_id = 7".to_string()).await;
    let lob = lob[0]["lob"].clone().unwrap();
    let (_, trades) =
        run("SELECT count(*) FROM markets.trades WHERE trade_id = 7".to_string()).await;
    let (same_lob, own) = run(format!(
        "SELECT count(*) FROM reference.counterparties WHERE lob = '{lob}'"
    ))
    .await;
    assert!(own.rows_scanned < 30_000, "{own:?}");
    let (joined, join) = run(
        "SELECT count(*) FROM reference.counterparties c JOIN markets.trades t \
         ON c.lob = t.lob WHERE t.trade_id = 7"
            .to_string(),
    )
    .await;
    assert_eq!(joined, same_lob);
    assert_eq!(
        join.tables,
        vec!["markets.trades", "reference.counterparties"],
        "trades build, counterparties probe"
    );
    assert_eq!(
        join.rows_scanned,
        trades.rows_scanned + own.rows_scanned,
        "the probe side reads what `lob = '{lob}'` reads: {join:?}"
    );
}

#[tokio::test]
async fn generated_data_is_deterministic_and_is_what_the_lake_holds() {
    let (_gateway, _lake) = gateway().await;
    let first = reference::data_files().unwrap();
    let second = reference::data_files().unwrap();
    assert_eq!(first.len(), 7);
    for (a, b) in first.iter().zip(&second) {
        assert_eq!((&a.bucket, &a.key), (&b.bucket, &b.key));
        assert!(
            a.bytes == b.bytes,
            "{} differs between two generations",
            a.key
        );
        let stored = std::fs::read(data_dir().join("s3").join(&a.bucket).join(&a.key)).unwrap();
        assert!(
            stored == a.bytes.as_ref(),
            "{}/{} in the lake differs from the generated bytes",
            a.bucket,
            a.key
        );
    }
}
