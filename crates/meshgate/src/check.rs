//! What a gateway would start with that still needs its operator: the warnings `meshgate
//! check` reports and `meshgate serve` prints at start. Everything that is an error (a file
//! that does not parse, a policy naming an unknown column, a missing lake directory) already
//! stops [`crate::config::ServeConfig::load`] or [`Gateway::open`]; these are the states that
//! start but serve less than the operator meant.

use meshgate_distributed::Network;
use meshgate_engine::{Distribution, Gateway, OnWorkerDown, WorkerNetwork};
use meshgate_storage::LakeStatus;

/// One thing to look at, about one product or one worker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// The product's id, or `worker <url>`.
    pub subject: String,
    pub message: String,
}

impl std::fmt::Display for Warning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.subject, self.message)
    }
}

/// The warnings about `gateway`'s products: no product policy (everyone is denied), a
/// column hidden from every reader because it has no classification and no rule names it,
/// and, from `lakes` (what [`Gateway::lake_status`] found, read once by the caller), a lake
/// that cannot be read or holds no file of the product's tables (empty tables), and files
/// left out of every scan.
pub fn warnings(gateway: &Gateway, lakes: &[LakeStatus]) -> Vec<Warning> {
    let policies = gateway.policies();
    let mut out = Vec::new();
    for product in gateway.catalog().products() {
        let Some(policy) = policies.product_policy(&product.id) else {
            out.push(Warning {
                subject: product.id.clone(),
                message: format!(
                    "no product policy (policies/products/{}.toml): every query of it is denied",
                    product.id
                ),
            });
            continue;
        };
        for table in product.tables.iter().filter(|t| !t.is_view()) {
            for column in &table.columns {
                let ruled = policy
                    .columns
                    .iter()
                    .any(|r| r.table == table.name && r.column == column.name);
                if column.classification.is_none() && column.tags.is_empty() && !ruled {
                    out.push(Warning {
                        subject: product.id.clone(),
                        message: format!(
                            "column `{}.{}` has no classification and no rule: it is hidden from every reader \
                             (classify it `internal` or `public` in the contract to show it, or give it a rule)",
                            table.name, column.name
                        ),
                    });
                }
            }
        }
    }
    for lake in lakes {
        let warn = |message: String| Warning {
            subject: lake.product.clone(),
            message,
        };
        match &lake.error {
            Some(error) => out.push(warn(format!("its lake cannot be read: {error}"))),
            None if lake.files == 0 => out.push(warn(format!(
                "no data files in bucket `{}` for its tables: queries return empty tables",
                lake.bucket
            ))),
            None => {}
        }
        for (file, reason) in &lake.refused_files {
            out.push(warn(format!("file `{file}` is not served: {reason}")));
        }
    }
    out
}

/// Storage settings for a product the catalog does not have: a product still to be
/// published, or a misspelt id (whose product then reads with the default settings).
pub fn storage_warnings(
    catalog: &meshgate_catalog::Catalog,
    storage: &meshgate_storage::StorageConfig,
) -> Vec<Warning> {
    storage
        .products
        .keys()
        .filter(|id| catalog.product(id).is_none())
        .map(|id| Warning {
            subject: id.clone(),
            message: "storage is configured for a product the catalog does not have: it applies once a                       product with this id is published (if the id is misspelt, fix it: the product it                       meant reads with the default settings)"
                .into(),
        })
        .collect()
}

/// The workers of `[distributed]` that do not answer a probe now, and what the gateway does
/// about each while it stays down.
pub async fn worker_warnings(network: &Network, distribution: &Distribution) -> Vec<Warning> {
    network.probe().await;
    let live = network.live();
    let consequence = match distribution.on_worker_down {
        OnWorkerDown::Skip => "queries are planned on the workers that answer",
        OnWorkerDown::Local => "every query that would be distributed runs in process",
    };
    network
        .configured()
        .into_iter()
        .filter(|url| !live.contains(url))
        .map(|url| Warning {
            subject: format!("worker {url}"),
            message: format!(
                "does not answer (is `meshgate worker` running there, with this mesh's \
                 master key and TLS settings?): while it is down, {consequence}"
            ),
        })
        .collect()
}
