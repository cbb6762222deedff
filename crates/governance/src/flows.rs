//! Data flows: the audit log folded into product -> consumer application edges.

use std::collections::{BTreeMap, BTreeSet};

use meshgate_api::{Decision, Flow, StoredAudit, TableAccess};

/// Fold allowed queries into flows, one per (product, consumer app), sorted. `keep` picks the
/// (record, product) pairs the viewer may see.
pub fn flows(records: &[StoredAudit], keep: impl Fn(&StoredAudit, &str) -> bool) -> Vec<Flow> {
    #[derive(Default)]
    struct Acc {
        principals: BTreeSet<String>,
        columns: BTreeSet<String>,
        treatments: BTreeSet<String>,
        queries: u64,
        rows: u64,
        first: i64,
        last: i64,
    }
    let mut edges: BTreeMap<(String, String), Acc> = BTreeMap::new();
    for record in records
        .iter()
        .filter(|r| r.record.decision == Decision::Allow)
    {
        // Only tables whose data was read are flows; EXPLAIN and listings read none.
        let products: BTreeSet<&str> = record
            .record
            .tables
            .iter()
            .filter(|t| t.access == TableAccess::Read)
            .map(|t| t.product.as_str())
            .collect();
        for product in products {
            if !keep(record, product) {
                continue;
            }
            let acc = edges
                .entry((product.to_string(), record.record.consumer_app()))
                .or_insert_with(|| Acc {
                    first: i64::MAX,
                    last: i64::MIN,
                    ..Acc::default()
                });
            acc.principals.insert(record.record.principal.clone());
            for table in record.record.tables.iter().filter(|t| t.product == product) {
                for column in &table.columns {
                    let name = format!("{}.{}", table.table, column.name);
                    if column.treatment != "clear" {
                        acc.treatments
                            .insert(format!("{name}: {}", column.treatment));
                    }
                    acc.columns.insert(name);
                }
            }
            acc.queries += 1;
            acc.rows += record.rows_returned.unwrap_or(0);
            acc.first = acc.first.min(record.record.started_at);
            acc.last = acc.last.max(record.record.started_at);
        }
    }
    edges
        .into_iter()
        .map(|((product, consumer_app), acc)| Flow {
            product,
            consumer_app,
            principals: acc.principals.into_iter().collect(),
            columns: acc.columns.into_iter().collect(),
            treatments: acc.treatments.into_iter().collect(),
            queries: acc.queries,
            rows: acc.rows,
            first_access: acc.first,
            last_access: acc.last,
        })
        .collect()
}
