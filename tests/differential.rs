//! Differential testing of enforcement. For every reference principal P and thousands of
//! generated queries Q (filters, joins, aggregates, windows, subqueries, CTEs, UNION ALL,
//! ORDER BY ... LIMIT) over the reference mesh, Q run by P through meshgate must give exactly
//! what Q gives on a plain DataFusion engine over hand-built views that apply P's policy
//! literally (docs/reference-mesh.md, "What each principal sees"): its row filter, masks
//! and tokens computed here by an independent implementation. Where the views refuse a query
//! (a denied product, a hidden column), meshgate must refuse it too. And no answer may
//! contain a value P may not see.
//!
//! Fixed seed. `MESHGATE_DIFF_QUERIES` sets the queries per reading principal (default 200;
//! the two principals that read nothing get five times as many, so 2,800 in CI);
//! `MESHGATE_DIFF_SEED` picks another seed. See the README for the long mode.
//!
//! Error oracles (a division by zero or a failing cast aimed at one counterparty's rows) are
//! judged differently: SQL fixes no evaluation order for AND, so whether a probe fires
//! depends on the plan; what must hold is that meshgate's probe only fires when a row the
//! principal can see makes it fail.

use crate::support::truth;
use crate::support::views;

use std::collections::BTreeSet;

use truth::{email_mask, show_last_4, token};
use views::{
    Rows, forbidden_values, local_gateway, principals, raw_engine, reference_engine, run_gateway,
    run_reference, sorted, words,
};

// ---------------------------------------------------------------------------------------
// Query generation

/// A small deterministic generator (xorshift64*), so that a seed names the same queries
/// everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Int,
    Text,
    Date,
    Timestamp,
    Decimal,
    Double,
}

struct Table {
    name: &'static str,
    key: &'static str,
    /// Columns with (nearly) distinct values.
    unique: &'static [&'static str],
    columns: &'static [(&'static str, Kind)],
}

const COUNTERPARTIES: Table = Table {
    name: "reference.counterparties",
    key: "counterparty_id",
    unique: &["counterparty_id", "tax_id", "contact_email"],
    columns: &[
        ("counterparty_id", Kind::Int),
        ("legal_name", Kind::Text),
        ("lob", Kind::Text),
        ("country", Kind::Text),
        ("tax_id", Kind::Text),
        ("contact_email", Kind::Text),
        ("internal_rating", Kind::Text),
        ("onboarded_on", Kind::Date),
    ],
};

const TRANSACTIONS: Table = Table {
    name: "payments.transactions",
    key: "txn_id",
    unique: &["txn_id", "card_number"],
    columns: &[
        ("txn_id", Kind::Int),
        ("counterparty_id", Kind::Int),
        ("lob", Kind::Text),
        ("amount", Kind::Decimal),
        ("currency", Kind::Text),
        ("card_number", Kind::Text),
        ("booked_at", Kind::Timestamp),
    ],
};

const TRADES: Table = Table {
    name: "markets.trades",
    key: "trade_id",
    unique: &["trade_id", "trader_id"],
    columns: &[
        ("trade_id", Kind::Int),
        ("counterparty_id", Kind::Int),
        ("lob", Kind::Text),
        ("instrument", Kind::Text),
        ("notional", Kind::Double),
        ("trader_id", Kind::Text),
        ("trade_date", Kind::Date),
    ],
};

const TABLES: [&Table; 3] = [&COUNTERPARTIES, &TRANSACTIONS, &TRADES];

/// Literals worth comparing against: real clear values of protected columns (which must
/// match nothing once protected), their tokens and masks, and ordinary values.
struct Literals {
    text: Vec<String>,
}

struct Generator {
    rng: Rng,
    literals: Literals,
    /// The tables the principal may read (others are used now and then, to be refused).
    readable: Vec<&'static Table>,
    /// Columns hidden from the principal (used now and then, to be refused).
    hidden: &'static [&'static str],
    /// Distinct output names.
    next_alias: usize,
    /// For an error oracle: the query counting the visible rows that make the probe fail.
    oracle: Option<String>,
}

impl Generator {
    fn literal(&mut self, kind: Kind) -> String {
        match kind {
            Kind::Int => format!("{}", self.rng.below(31_000)),
            Kind::Text => {
                let value = self.rng.pick(&self.literals.text).clone();
                format!("'{}'", value.replace('\'', "''"))
            }
            Kind::Date => format!(
                "DATE '20{:02}-0{}-1{}'",
                5 + self.rng.below(21),
                1 + self.rng.below(9),
                self.rng.below(10)
            ),
            Kind::Timestamp => format!(
                "TIMESTAMP '2026-0{}-1{}T0{}:00:00Z'",
                1 + self.rng.below(6),
                self.rng.below(10),
                self.rng.below(10)
            ),
            Kind::Decimal => format!("{}.{:02}", self.rng.below(20_000), self.rng.below(100)),
            Kind::Double => format!("{}.5", self.rng.below(5_000_000)),
        }
    }

    fn column<'t>(&mut self, table: &'t Table) -> (&'t str, Kind) {
        loop {
            let column = *self.rng.pick(table.columns);
            if !self.hidden.contains(&column.0) || self.rng.chance(3) {
                return column;
            }
        }
    }

    fn table(&mut self) -> &'static Table {
        if self.readable.is_empty() || self.rng.chance(3) {
            TABLES[self.rng.below(TABLES.len())]
        } else {
            self.readable[self.rng.below(self.readable.len())]
        }
    }

    fn alias(&mut self) -> String {
        self.next_alias += 1;
        format!("a{}", self.next_alias)
    }

    /// A predicate over `table` (columns qualified with `alias`).
    fn predicate(&mut self, table: &Table, alias: &str, depth: usize) -> String {
        if depth > 0 && self.rng.chance(35) {
            let op = if self.rng.chance(50) { "AND" } else { "OR" };
            let left = self.predicate(table, alias, depth - 1);
            let right = self.predicate(table, alias, depth - 1);
            return format!("({left} {op} {right})");
        }
        let (column, kind) = self.column(table);
        let c = format!("{alias}.{column}");
        match (kind, self.rng.below(8)) {
            (Kind::Text, 0) => format!("{c} LIKE '{}%'", self.prefix()),
            (Kind::Text, 1) => format!("length({c}) > {}", self.rng.below(20)),
            (Kind::Text, 2) => format!("{c} ~ '^{}'", self.prefix()),
            (Kind::Text, 3) => format!("starts_with({c}, '{}')", self.prefix()),
            (Kind::Text, 4) => {
                let a = self.literal(kind);
                let b = self.literal(kind);
                format!("{c} IN ({a}, {b})")
            }
            (_, 5) => format!("{c} IS NOT NULL"),
            (_, 6) => format!("NOT ({c} = {})", self.literal(kind)),
            (_, _) => {
                let op = *self.rng.pick(&["=", "<", ">", "<=", ">=", "<>"]);
                format!("{c} {op} {}", self.literal(kind))
            }
        }
    }

    fn prefix(&mut self) -> String {
        let prefixes = [
            "tok_", "***", "A", "C", "N", "1", "2", "4", "T0", "tok_a", "**", "CI", "AWM", "US",
            "@", "9",
        ];
        self.rng.pick(&prefixes).to_string()
    }

    fn aggregate(&mut self, table: &Table, alias: &str) -> String {
        let name = self.alias();
        format!("{} AS {name}", self.aggregate_expr(table, alias))
    }

    fn aggregate_expr(&mut self, table: &Table, alias: &str) -> String {
        let (column, kind) = self.column(table);
        let c = format!("{alias}.{column}");
        match self.rng.below(6) {
            0 => "count(*)".to_string(),
            1 => format!("min({c})"),
            2 => format!("max({c})"),
            3 => format!("count(DISTINCT {c})"),
            4 if matches!(kind, Kind::Int | Kind::Decimal) => format!("sum({c})"),
            _ => format!("count({c})"),
        }
    }

    fn query(&mut self) -> String {
        self.next_alias = 0;
        self.oracle = None;
        let table = self.table();
        match self.rng.below(11) {
            // Projection with a filter, totally ordered, maybe limited.
            0 | 1 => {
                let mut columns: Vec<&str> = (0..1 + self.rng.below(3))
                    .map(|_| self.column(table).0)
                    .filter(|c| *c != table.key)
                    .collect();
                columns.sort_unstable();
                columns.dedup();
                let pred = self.predicate(table, "t", 2);
                let limit = format!(" LIMIT {}", 1 + self.rng.below(100));
                let order = columns
                    .iter()
                    .map(|c| format!("t.{c}"))
                    .chain([format!("t.{}", table.key)])
                    .collect::<Vec<_>>()
                    .join(", ");
                format!(
                    "SELECT {order} FROM {} t WHERE {pred} ORDER BY {order}{limit}",
                    table.name
                )
            }
            // Aggregates, with and without WHERE, grouped or not.
            2 | 3 => {
                let aggregates: Vec<String> = (0..1 + self.rng.below(3))
                    .map(|_| self.aggregate(table, "t"))
                    .collect();
                let filter = if self.rng.chance(50) {
                    format!(" WHERE {}", self.predicate(table, "t", 1))
                } else {
                    String::new()
                };
                if self.rng.chance(50) {
                    let (group, _) = self.column(table);
                    format!(
                        "SELECT t.{group}, {} FROM {} t{filter} GROUP BY t.{group} \
                         ORDER BY {} LIMIT 100",
                        aggregates.join(", "),
                        table.name,
                        positions(aggregates.len() + 1)
                    )
                } else {
                    format!(
                        "SELECT {} FROM {} t{filter}",
                        aggregates.join(", "),
                        table.name
                    )
                }
            }
            // A join with counterparties on the key, or on protected values.
            4 | 5 => {
                let other = self.table();
                let on = if self.rng.chance(80) {
                    "c.counterparty_id = x.counterparty_id".to_string()
                } else {
                    // Only on (nearly) unique columns, so that the join stays small.
                    let a = *self.rng.pick(&[
                        "counterparty_id",
                        "tax_id",
                        "contact_email",
                        "legal_name",
                    ]);
                    let b = *self.rng.pick(other.unique);
                    format!("arrow_cast(c.{a}, 'Utf8') = arrow_cast(x.{b}, 'Utf8')")
                };
                let kind = *self.rng.pick(&["JOIN", "LEFT JOIN", "JOIN"]);
                let pred = self.predicate(other, "x", 1);
                let aggregate = self.aggregate(other, "x");
                let (group, _) = self.column(&COUNTERPARTIES);
                format!(
                    "SELECT c.{group}, count(*), {aggregate} FROM reference.counterparties c \
                     {kind} {} x ON {on} WHERE {pred} GROUP BY c.{group} \
                     ORDER BY 1, 2, 3 LIMIT 100",
                    other.name
                )
            }
            // Window functions over a slice, ordered by the key.
            6 => {
                let (column, _) = self.column(table);
                let function = match self.rng.below(5) {
                    0 => format!("lag(t.{column}) OVER (ORDER BY t.{})", table.key),
                    1 => format!(
                        "first_value(t.{column}) OVER (PARTITION BY t.lob ORDER BY t.{})",
                        table.key
                    ),
                    2 => format!("ntile(4) OVER (ORDER BY t.{})", table.key),
                    3 => format!(
                        "row_number() OVER (PARTITION BY t.{column} ORDER BY t.{})",
                        table.key
                    ),
                    _ => format!("lead(t.{column}, 2) OVER (ORDER BY t.{})", table.key),
                };
                let upper = 50 + self.rng.below(600);
                format!(
                    "SELECT t.{key}, {function} AS w FROM {} t WHERE t.counterparty_id < {upper} \
                     AND {}",
                    table.name,
                    self.predicate(table, "t", 1),
                    key = table.key
                )
            }
            // Subqueries: IN, EXISTS, NOT EXISTS (anti-join), scalar.
            7 | 8 => {
                let pred = self.predicate(&COUNTERPARTIES, "c", 1);
                let inner = self.predicate(table, "t", 1);
                match self.rng.below(4) {
                    0 => format!(
                        "SELECT count(*) FROM reference.counterparties c WHERE {pred} AND \
                         c.counterparty_id IN (SELECT t.counterparty_id FROM {} t WHERE {inner})",
                        table.name
                    ),
                    1 => format!(
                        "SELECT count(*) FROM reference.counterparties c WHERE {pred} AND \
                         EXISTS (SELECT 1 FROM {} t WHERE t.counterparty_id = c.counterparty_id \
                         AND {inner})",
                        table.name
                    ),
                    2 => format!(
                        "SELECT count(*), min(c.counterparty_id) FROM reference.counterparties c \
                         WHERE {pred} AND NOT EXISTS (SELECT 1 FROM {} t \
                         WHERE t.counterparty_id = c.counterparty_id AND {inner})",
                        table.name
                    ),
                    _ => {
                        let aggregate = self.aggregate_expr(table, "t");
                        format!(
                            "SELECT (SELECT {aggregate} FROM {} t WHERE {inner}) AS s, \
                             (SELECT count(*) FROM reference.counterparties c WHERE {pred}) AS n",
                            table.name
                        )
                    }
                }
            }
            // CTEs and UNION ALL over the same and different tables.
            9 => {
                let (column, _) = self.column(table);
                let a = self.predicate(table, "t", 1);
                let b = self.predicate(table, "t", 1);
                format!(
                    "WITH v AS (SELECT t.{column} AS x FROM {name} t WHERE {a} \
                     UNION ALL SELECT t.{column} FROM {name} t WHERE {b}) \
                     SELECT x, count(*) FROM v GROUP BY x ORDER BY 1, 2 LIMIT 100",
                    name = table.name
                )
            }
            // Division and cast oracles aimed at one counterparty's rows: an error may only
            // come from a row the principal can see.
            _ => {
                let (column, kind) = self.column(table);
                let id = self.rng.below(30_000) + 1;
                let (probe, fails) = match (kind, self.rng.below(3)) {
                    (Kind::Text, 0) => (
                        format!(
                            "arrow_cast(CASE WHEN t.counterparty_id = {id} THEN t.{column} \
                             ELSE '1' END, 'Int64')"
                        ),
                        format!(
                            "t.counterparty_id = {id} AND NOT (arrow_cast(t.{column}, 'Utf8') \
                             ~ '^[0-9]+$')"
                        ),
                    ),
                    (_, 1) => {
                        let value = self.literal(kind);
                        (
                            format!("1 / (CASE WHEN t.{column} = {value} THEN 0 ELSE 1 END)"),
                            format!("t.{column} = {value}"),
                        )
                    }
                    _ => (
                        format!("1 / (CASE WHEN t.counterparty_id = {id} THEN 0 ELSE 1 END)"),
                        format!("t.counterparty_id = {id}"),
                    ),
                };
                self.oracle = Some(format!(
                    "SELECT count(*) FROM {} t WHERE {fails}",
                    table.name
                ));
                format!(
                    "SELECT count(*) FROM {} t WHERE {} AND {probe} = 1",
                    table.name,
                    self.predicate(table, "t", 1)
                )
            }
        }
    }
}

/// Whole-table answers every principal's run starts with.
const ANCHORS: [&str; 6] = [
    "SELECT lob, count(*) FROM reference.counterparties GROUP BY lob",
    "SELECT lob, count(*) FROM payments.transactions GROUP BY lob",
    "SELECT lob, count(*) FROM markets.trades GROUP BY lob",
    "SELECT * FROM reference.counterparties ORDER BY counterparty_id LIMIT 100",
    "SELECT * FROM payments.transactions ORDER BY txn_id LIMIT 100",
    "SELECT * FROM markets.trades ORDER BY trade_id LIMIT 100",
];

// ---------------------------------------------------------------------------------------
// Running and comparing

/// Results as multisets, unless the query fixes the order.
fn normalize(rows: Rows, ordered: bool) -> Rows {
    if ordered { rows } else { sorted(&rows) }
}

/// Literal candidates: ordinary values and, for protected columns, clear values, tokens and
/// masks, so that predicates probe both what a principal sees and what it must not.
async fn literals() -> Literals {
    let ctx = raw_engine().await;
    let mut text: BTreeSet<String> = [
        "CIB", "CCB", "AWM", "USD", "EUR", "GB", "US", "DE", "AAA", "BBB", "CCC", "nobody",
    ]
    .into_iter()
    .map(String::from)
    .collect();
    for sql in [
        "SELECT tax_id, contact_email, legal_name, country FROM raw_counterparties WHERE counterparty_id % 997 = 1",
        "SELECT card_number, currency FROM raw_transactions WHERE txn_id % 9973 = 1",
        "SELECT trader_id, instrument FROM raw_trades WHERE trade_id % 997 = 1",
    ] {
        for row in run_reference(&ctx, sql).await.unwrap() {
            for value in row.into_iter().flatten() {
                text.insert(token("reference", &value));
                text.insert(token("payments", &value));
                text.insert(token("markets", &value));
                text.insert(email_mask(&value));
                text.insert(show_last_4(&value));
                text.insert(value);
            }
        }
    }
    Literals {
        text: text.into_iter().collect(),
    }
}

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_principal_gets_exactly_its_policy_applied_literally() {
    let per_reader = setting("MESHGATE_DIFF_QUERIES", 200);
    let (gateway, _lake) = local_gateway(|_| {}).await;
    differential_suite(&gateway, per_reader).await;
}

/// The same generated queries with every one that reads a product cut into stages for three
/// worker processes: the answers must be the literal views', as in one process.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_principal_gets_exactly_its_policy_applied_literally_on_workers() {
    let per_reader = setting("MESHGATE_DIFF_QUERIES_DISTRIBUTED", 40);
    let cluster = crate::support::cluster::Cluster::start(3).await;
    let distribution = cluster.distribution().await;
    let (gateway, _lake) = local_gateway(move |config| {
        config.master_key = crate::support::cluster::master_key();
        config.distribution = Some(distribution);
    })
    .await;
    differential_suite(&gateway, per_reader).await;
}

async fn differential_suite(gateway: &meshgate::Gateway, per_reader: u64) {
    let seed = setting("MESHGATE_DIFF_SEED", 0x6d65_7368_6761_7465);
    let literals = literals().await;
    let mut failures = Vec::new();
    for principal in principals() {
        let session = gateway.session(
            gateway
                .authenticate(principal.name, &format!("{}-pw", principal.name))
                .unwrap(),
        );
        let reference = reference_engine(&principal).await;
        let forbidden = forbidden_values(&principal).await;
        let readable: Vec<&'static Table> = [
            (&principal.counterparties, &COUNTERPARTIES),
            (&principal.transactions, &TRANSACTIONS),
            (&principal.trades, &TRADES),
        ]
        .into_iter()
        .filter(|(view, _)| view.is_some())
        .map(|(_, table)| table)
        .collect();
        let mut generator = Generator {
            rng: Rng(seed ^ fxhash(principal.name)),
            literals: Literals {
                text: literals.text.clone(),
            },
            readable,
            hidden: principal.hidden,
            next_alias: 0,
            oracle: None,
        };
        // Principals that read nothing answer in microseconds: give them more.
        let per_principal = if principal.counterparties.is_some() {
            per_reader
        } else {
            per_reader * 5
        };
        let (mut answered, mut refused) = (0u64, 0u64);
        let (mut reference_time, mut gateway_time) =
            (std::time::Duration::ZERO, std::time::Duration::ZERO);
        for i in 0..per_principal {
            // A few fixed queries first, then generated ones.
            let sql = match ANCHORS.get(i as usize) {
                Some(anchor) => {
                    generator.oracle = None;
                    anchor.to_string()
                }
                None => generator.query(),
            };
            // Projections are totally ordered by their key; other limited queries are ordered
            // by every column, so their rows are a definite set: compare those as multisets.
            let ordered = !sql.contains(" OVER (") && sql.contains(" ORDER BY t.");
            if std::env::var("MESHGATE_DIFF_TRACE").is_ok() {
                eprintln!("{} #{i}: {sql}", principal.name);
            }
            let started = std::time::Instant::now();
            let expected = run_reference(&reference, &sql).await;
            let between = std::time::Instant::now();
            let actual = run_gateway(&session, &sql).await;
            reference_time += between - started;
            gateway_time += between.elapsed();
            if std::env::var("MESHGATE_DIFF_TRACE").is_ok() {
                eprintln!(
                    "   reference {:?}, meshgate {:?}",
                    between - started,
                    between.elapsed()
                );
            }
            let problem = match (&expected, &actual) {
                (Ok(e), Ok(a)) => {
                    answered += 1;
                    let leaked: Vec<&String> = a
                        .iter()
                        .flatten()
                        .flatten()
                        .filter(|v| forbidden.contains(*v))
                        .collect();
                    if !leaked.is_empty() {
                        Some(format!(
                            "LEAKED {} forbidden values, e.g. {:?}",
                            leaked.len(),
                            leaked[0]
                        ))
                    } else if normalize(e.clone(), ordered) != normalize(a.clone(), ordered) {
                        Some(format!(
                            "different answers: reference {} rows {:?}, meshgate {} rows {:?}",
                            e.len(),
                            e.iter().take(3).collect::<Vec<_>>(),
                            a.len(),
                            a.iter().take(3).collect::<Vec<_>>()
                        ))
                    } else {
                        None
                    }
                }
                (_, Err(mine)) if generator.oracle.is_some() => {
                    // SQL fixes no evaluation order for AND, so whether a probe fires depends
                    // on the plan; what must hold is that only a visible row can fire it.
                    refused += 1;
                    let fails = generator.oracle.clone().unwrap_or_default();
                    let visible = run_reference(&reference, &fails)
                        .await
                        .ok()
                        .and_then(|rows| rows.first()?.first()?.clone())
                        .and_then(|n| n.parse::<u64>().ok())
                        .unwrap_or(0);
                    let leaked = words(mine).find(|w| forbidden.contains(*w));
                    if visible == 0 && expected.is_ok() {
                        Some(format!(
                            "ORACLE: the probe failed ({mine}) though no row {} sees makes it fail",
                            principal.name
                        ))
                    } else {
                        leaked.map(|w| format!("the error names a forbidden value {w:?}: {mine}"))
                    }
                }
                (Err(_), Ok(_)) if generator.oracle.is_some() => {
                    answered += 1;
                    None
                }
                (Err(e), Err(mine)) => {
                    refused += 1;
                    let leaked = words(mine).find(|w| forbidden.contains(*w));
                    if std::env::var("MESHGATE_DIFF_SHOW_REFUSED").is_ok() {
                        eprintln!("refused: {sql}\n   {e}");
                    }
                    leaked.map(|w| format!("the error names a forbidden value {w:?}: {mine}"))
                }
                (Err(e), Ok(a)) => Some(format!(
                    "meshgate answered ({} rows) what the policy views refuse: {e}",
                    a.len()
                )),
                (Ok(e), Err(a)) => Some(format!(
                    "meshgate refused ({a}) what the policy views answer ({} rows)",
                    e.len()
                )),
            };
            if let Some(problem) = problem {
                failures.push(format!("{} #{i}: {sql}\n    {problem}", principal.name));
            }
        }
        eprintln!(
            "{}: {answered} answered by both, {refused} refused by meshgate \
             (reference engine {reference_time:?}, meshgate {gateway_time:?})",
            principal.name
        );
        let readable = principal.counterparties.is_some();
        if readable {
            // The generator must mostly produce queries that run, or it tests little.
            assert!(
                answered * 2 > per_principal,
                "{}: only {answered} of {per_principal} queries ran",
                principal.name
            );
        } else {
            assert_eq!(answered, 0, "{} reads nothing", principal.name);
        }
    }
    assert!(
        failures.is_empty(),
        "{} of the generated queries disagree:\n{}",
        failures.len(),
        failures
            .iter()
            .take(15)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// `1, 2, ..., n`: ORDER BY every output column, so that a LIMIT keeps a definite set.
fn positions(n: usize) -> String {
    (1..=n)
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

fn fxhash(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
