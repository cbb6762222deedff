//! Quality and SLOs from the bucket: the reference mesh's rules measured over its files into
//! `mesh_catalog.quality`, a product whose files are older than its freshness SLO breached,
//! who runs checks on demand, and who sees the numbers.

use std::ffi::OsStr;
use std::time::{Duration, SystemTime};

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use futures::TryStreamExt;
use meshgate::engine::{GatewayError, QualityResult, QualityStatus};
use meshgate::{Gateway, Principal};

use crate::cli::{copy_dir, run};
use crate::golden::repo;
use crate::policies::{data_dir, demo_config};
use crate::publish::{line_with, serve};
use crate::support::flight::{fetch, login};

/// `(rule id, status, measured)` rows of `mesh_catalog.quality` for one product, as `user`
/// sees them over SQL.
async fn quality_rows(
    gateway: &Gateway,
    user: &str,
    product: &str,
) -> Vec<(String, String, Option<f64>)> {
    // The products' owners that are not login users of the reference mesh act as themselves.
    let principal = gateway
        .authenticate(user, &format!("{user}-pw"))
        .unwrap_or_else(|_| Principal::new(user));
    let batches = gateway
        .session(principal)
        .collect(&format!(
            "SELECT rule_id, status, measured FROM mesh_catalog.quality WHERE product_id = '{product}'"
        ))
        .await
        .unwrap();
    rows(&batches)
}

fn rows(batches: &[RecordBatch]) -> Vec<(String, String, Option<f64>)> {
    let text = |b: &RecordBatch, i: usize| -> Vec<String> {
        let column = arrow::compute::cast(b.column(i), &DataType::Utf8).unwrap();
        column
            .as_string::<i32>()
            .iter()
            .map(|v| v.unwrap_or_default().to_string())
            .collect()
    };
    batches
        .iter()
        .flat_map(|b| {
            let measured = b.column(2).as_primitive::<Float64Type>().clone();
            text(b, 0)
                .into_iter()
                .zip(text(b, 1))
                .zip(measured.iter().collect::<Vec<_>>())
                .map(|((rule, status), measured)| (rule, status, measured))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn find<'a>(results: &'a [QualityResult], rule: &str) -> &'a QualityResult {
    results
        .iter()
        .find(|r| r.rule.id == rule)
        .unwrap_or_else(|| panic!("no result for {rule} in {results:?}"))
}

/// The counterparties contract with rules that measure every metric kind, some of which
/// the reference data breaks.
fn catalog_with_rules() -> meshgate::catalog::Catalog {
    let manifests = meshgate_reference::MANIFESTS.iter().map(|(name, text)| {
        let text = if name.ends_with("reference.counterparties.yaml") {
            text.replacen(
                "        description: Every row the product promises is there.\n",
                "        description: Every row the product promises is there.\n\
                 \x20     - {id: key-unique, metric: duplicateValues, arguments: {properties: [counterparty_id, lob]}, mustBe: 0}\n\
                 \x20     - {id: tiny, metric: rowCount, mustBeLessThan: 10}\n\
                 \x20     - {id: custom-sql, type: sql, query: 'SELECT 1', mustBe: 1}\n",
                1,
            )
            .replacen(
                "      - name: lob\n",
                "      - name: lob\n\
                 \x20       quality:\n\
                 \x20         - {id: lob-unique, metric: duplicateValues, mustBe: 0}\n\
                 \x20         - {id: no-cib, metric: missingValues, arguments: {missingValues: [CIB]}, mustBeLessThan: 10, unit: percent}\n",
                1,
            )
        } else {
            text.to_string()
        };
        (*name, text)
    });
    meshgate::catalog::Catalog::from_sources(manifests).unwrap()
}

#[tokio::test]
async fn each_metric_is_measured_over_the_whole_product_and_only_its_owners_see_the_numbers() {
    let (mut config, _lake) = demo_config().await;
    config.catalog = catalog_with_rules();
    let gateway = Gateway::open(config).await.unwrap();

    // Before any check, every rule is listed as pending (or not checked), never as passed.
    let before = quality_rows(&gateway, "intern", "reference.counterparties").await;
    assert!(
        before.iter().all(|(rule, status, _)| status == "pending"
            || (rule == "custom-sql" && status == "not_checked")),
        "{before:?}"
    );

    let results = gateway.check_quality(None, None).await.unwrap();
    let judged = |rule: &str| {
        let r = find(&results, rule);
        (r.status, r.measured_for(true))
    };
    assert_eq!(
        judged("counterparties.rowCount"),
        (QualityStatus::Passed, Some(30_000.0))
    );
    assert_eq!(
        judged("counterparties.counterparty_id.duplicateValues"),
        (QualityStatus::Passed, Some(0.0))
    );
    assert_eq!(
        judged("counterparties.contact_email.nullValues"),
        (QualityStatus::Passed, Some(0.0))
    );
    assert_eq!(judged("key-unique"), (QualityStatus::Passed, Some(0.0)));
    // Three LOBs among 30,000 rows: all but three repeat one; half the ids are CIB's.
    assert_eq!(
        judged("lob-unique"),
        (QualityStatus::Breached, Some(29_997.0))
    );
    assert_eq!(judged("no-cib"), (QualityStatus::Breached, Some(50.0)));
    assert_eq!(judged("tiny"), (QualityStatus::Breached, Some(30_000.0)));
    assert_eq!(judged("custom-sql").0, QualityStatus::NotChecked);
    assert!(
        find(&results, "custom-sql").detail.contains("`sql` rules"),
        "{:?}",
        find(&results, "custom-sql")
    );
    for product in ["payments.transactions", "markets.trades"] {
        let theirs: Vec<&QualityResult> = results.iter().filter(|r| r.product == product).collect();
        assert_eq!(theirs.len(), 3, "{theirs:?}");
        assert!(
            theirs
                .iter()
                .filter(|r| r.rule.id != "freshness")
                .all(|r| r.status == QualityStatus::Passed),
            "{theirs:?}"
        );
    }

    // The owner reads the numbers; a reader behind a row filter, and the auditor, read the
    // status only: a count over the whole table is a statistic of rows they may not see.
    // A file's age is public (products.last_modified shows it).
    let owner = quality_rows(&gateway, "ref-owner", "reference.counterparties").await;
    assert!(
        owner.contains(&("lob-unique".into(), "breached".into(), Some(29_997.0))),
        "{owner:?}"
    );
    for user in ["cib-reporting", "auditor", "pay-owner"] {
        let seen = quality_rows(&gateway, user, "reference.counterparties").await;
        assert!(
            seen.contains(&("lob-unique".into(), "breached".into(), None)),
            "{user}: {seen:?}"
        );
        assert!(
            seen.iter()
                .all(|(rule, _, measured)| rule == "freshness" || measured.is_none()),
            "{user}: {seen:?}"
        );
        assert!(
            seen.iter()
                .any(|(rule, _, measured)| rule == "freshness" && measured.is_some()),
            "{user}: {seen:?}"
        );
    }

    // Breaches are counted per product in /metrics.
    let breached = results
        .iter()
        .filter(|r| r.product == "reference.counterparties" && r.status == QualityStatus::Breached)
        .count();
    assert!(breached >= 3);
    let metrics = gateway.render_metrics();
    assert!(
        metrics.contains(&format!(
            "meshgate_quality_breaches{{product=\"reference.counterparties\"}} {breached}"
        )),
        "{metrics}"
    );

    // On demand: owners for the products they decide, nobody else.
    let user = |name: &str| -> Principal {
        gateway
            .authenticate(name, &format!("{name}-pw"))
            .unwrap_or_else(|_| Principal::new(name))
    };
    let mine = gateway
        .check_quality(Some(&user("pay-owner")), None)
        .await
        .unwrap();
    assert!(mine.iter().all(|r| r.product == "payments.transactions"));
    for (name, product) in [
        ("intern", None),
        ("auditor", None),
        ("ref-owner", Some("payments.transactions")),
        ("cib-reporting", Some("reference.counterparties")),
    ] {
        let refused = gateway.check_quality(Some(&user(name)), product).await;
        assert!(
            matches!(refused, Err(GatewayError::NotAllowed(_))),
            "{name}: {refused:?}"
        );
    }
    let unknown = gateway
        .check_quality(Some(&user("ref-owner")), Some("reference.nope"))
        .await;
    assert!(
        matches!(unknown, Err(GatewayError::NotFound(_))),
        "{unknown:?}"
    );
}

/// A copy of the reference lakes whose counterparties files are three days old (its SLOs
/// allow two: a day's latency on a daily refresh), served by `meshgate serve`: the checks at start find it breached, consumers see
/// it in discovery, and its owner can re-run them over Flight.
#[tokio::test]
async fn a_product_older_than_its_freshness_slo_shows_as_breached() {
    let (_, _seeded) = demo_config().await;
    let dir = tempfile::tempdir().unwrap();
    let lakes = dir.path().join("s3");
    copy_dir(&data_dir().join("s3"), &lakes);
    let three_days_ago = SystemTime::now() - Duration::from_secs(3 * 86_400);
    let mut stale = vec![lakes.join("reference-counterparties")];
    while let Some(path) = stale.pop() {
        if path.is_dir() {
            stale.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
        } else {
            std::fs::File::options()
                .write(true)
                .open(&path)
                .unwrap()
                .set_modified(three_days_ago)
                .unwrap();
        }
    }
    std::fs::write(dir.path().join("master.key"), "cd".repeat(32)).unwrap();
    let root = repo();
    std::fs::write(
        dir.path().join("meshgate.toml"),
        format!(
            "products = \"{0}/products\"\npolicies = \"{0}/policies\"\nusers = \"{0}/policies/users.toml\"\n\
             master_key_file = \"master.key\"\nwatch = \"0s\"\n\
             [storage.default]\nkind = \"local\"\npath = \"{1}/{{bucket}}\"\n",
            root.display(),
            lakes.display()
        ),
    )
    .unwrap();
    let (mut child, addr, mut stderr) = serve(&dir.path().join("meshgate.toml")).await;
    let warned = line_with(&mut stderr, "quality:").await;
    assert!(
        warned.contains("1 rule(s) breached: reference.counterparties freshness"),
        "{warned}"
    );
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let mut client = login(addr, "intern").await;
    let sql = "SELECT product_id, quality FROM mesh_catalog.products ORDER BY product_id";
    let info = client.execute(sql.to_string(), None).await.unwrap();
    let (_, batches) = fetch(&mut client, &info).await.unwrap();
    let listed: Vec<(String, String)> = batches
        .iter()
        .flat_map(|b| {
            let text = |i: usize| {
                let c = arrow::compute::cast(b.column(i), &DataType::Utf8).unwrap();
                c.as_string::<i32>()
                    .iter()
                    .map(|v| v.unwrap_or_default().to_string())
                    .collect::<Vec<_>>()
            };
            text(0).into_iter().zip(text(1)).collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(
        listed,
        [
            ("markets.trades".into(), "passed".into()),
            ("payments.transactions".into(), "passed".into()),
            (
                "reference.counterparties".into(),
                "breached (freshness)".into()
            ),
        ]
    );
    let sql = "SELECT rule_id, status, measured, detail FROM mesh_catalog.quality \
               WHERE product_id = 'reference.counterparties' AND rule_id = 'freshness'";
    let info = client.execute(sql.to_string(), None).await.unwrap();
    let (_, batches) = fetch(&mut client, &info).await.unwrap();
    let freshness = rows(&batches);
    assert_eq!(freshness.len(), 1);
    let (_, status, age) = &freshness[0];
    assert_eq!(status, "breached");
    assert!(
        age.is_some_and(|a| (259_200.0..259_500.0).contains(&a)),
        "{age:?}"
    );

    // On demand over Flight: the owner gets the measured values; a consumer is refused.
    let action = |product: &str| arrow_flight::Action {
        r#type: "mesh.check_quality".into(),
        body: format!("{{\"product\":\"{product}\"}}").into_bytes().into(),
    };
    let mut owner = login(addr, "ref-owner").await;
    let reply: Vec<arrow_flight::Result> = owner
        .do_action(action("reference.counterparties"))
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let checks: Vec<meshgate::api::QualityCheck> = serde_json::from_slice(&reply[0].body).unwrap();
    let rows_rule = checks
        .iter()
        .find(|c| c.rule == "counterparties.rowCount")
        .unwrap();
    assert_eq!(
        (rows_rule.status.as_str(), rows_rule.measured),
        ("passed", Some(30_000.0))
    );
    assert!(
        checks
            .iter()
            .any(|c| c.rule == "freshness" && c.status == "breached"),
        "{checks:?}"
    );
    let refused = client.do_action(action("reference.counterparties")).await;
    let refused = match refused {
        Ok(stream) => stream
            .try_collect::<Vec<_>>()
            .await
            .map(|_| ())
            .map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    };
    let message = refused.unwrap_err();
    assert!(
        message.contains("only the owners and delegates of `reference.counterparties`"),
        "{message}"
    );

    // The CLI shows the same table.
    let (status, out, err) = run([
        OsStr::new("quality"),
        OsStr::new("reference.counterparties"),
        OsStr::new("--server"),
        OsStr::new(&format!("http://{addr}")),
        OsStr::new("--user"),
        OsStr::new("intern"),
        OsStr::new("--password"),
        OsStr::new("intern-pw"),
    ]);
    assert!(status.success(), "{out}{err}");
    assert!(
        out.contains("breached") && out.contains("freshness"),
        "{out}"
    );
    child.kill().await.unwrap();
}
