//! Publishing without a restart: a product owner's whole loop, from an empty directory to
//! the next Flight SQL query of a running `meshgate serve` (`product init`, edits, `lint`,
//! `policy test`, then the files land in the served mesh directory and are published), and
//! a broken change that leaves the last good version serving.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{AsArray, Int64Array, RecordBatch, StringArray, TimestampMicrosecondArray};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::cli::{copy_dir, run};
use crate::golden::{edit, repo};
use crate::policies::{data_dir, demo_config};
use crate::support::flight::{fetch, login};

/// `meshgate serve --config <config>` on a free port: the process, the address it listens
/// on, and its stderr's lines.
pub(crate) async fn serve(
    config: &Path,
) -> (
    tokio::process::Child,
    String,
    tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_meshgate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(config)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = stdout
            .next_line()
            .await
            .unwrap()
            .expect("the server's stdout");
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.to_string();
        }
    };
    let stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    (child, addr, stderr)
}

/// Waits for a line of the server's stderr containing `wanted`, and returns it.
pub(crate) async fn line_with(
    stderr: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>,
    wanted: &str,
) -> String {
    let mut seen = Vec::new();
    let wait = async {
        loop {
            let line = stderr
                .next_line()
                .await
                .unwrap()
                .expect("the server's stderr");
            if line.contains(wanted) {
                return line;
            }
            seen.push(line);
        }
    };
    match tokio::time::timeout(Duration::from_secs(60), wait).await {
        Ok(line) => line,
        Err(_) => panic!("no line with `{wanted}` in:\n{}", seen.join("\n")),
    }
}

/// `sql` as `user` over Flight SQL: the batches, or the error's text.
async fn query(
    addr: std::net::SocketAddr,
    user: &str,
    sql: &str,
) -> Result<Vec<RecordBatch>, String> {
    let mut client = login(addr, user).await;
    let info = client
        .execute(sql.to_string(), None)
        .await
        .map_err(|e| e.to_string())?;
    fetch(&mut client, &info)
        .await
        .map(|(_, batches)| batches)
        .map_err(|e| e.to_string())
}

fn write_refunds(lake: &Path) {
    let dir = lake.join("payments-refunds/data/refunds");
    std::fs::create_dir_all(&dir).unwrap();
    let batch = RecordBatch::try_from_iter([
        ("id", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
        (
            "customer_email",
            Arc::new(StringArray::from(vec![
                "ann@x.test",
                "bob@y.test",
                "cy@z.test",
            ])) as _,
        ),
        (
            "updated_at",
            Arc::new(TimestampMicrosecondArray::from(vec![0, 1, 2])) as _,
        ),
    ])
    .unwrap();
    let file = std::fs::File::create(dir.join("part-0.parquet")).unwrap();
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

/// A copy of the repository's mesh in `dir/mesh`, and `dir/meshgate.toml` serving it (watched
/// every 200 ms) over the reference lakes, with `extra` storage lines: the served directory.
fn served_mesh(dir: &Path, extra: &str) -> std::path::PathBuf {
    let served = dir.join("mesh");
    copy_dir(&repo().join("products"), &served.join("products"));
    copy_dir(&repo().join("policies"), &served.join("policies"));
    std::fs::write(dir.join("master.key"), "cd".repeat(32)).unwrap();
    std::fs::write(
        dir.join("meshgate.toml"),
        format!(
            "products = \"mesh/products\"\npolicies = \"mesh/policies\"\nusers = \"mesh/policies/users.toml\"\n\
             master_key_file = \"master.key\"\nwatch = \"200ms\"\n\
             [storage.default]\nkind = \"local\"\npath = \"{}/{{bucket}}\"\n{extra}",
            data_dir().join("s3").display(),
        ),
    )
    .unwrap();
    served
}

#[tokio::test]
async fn a_product_published_into_a_running_gateway_is_queryable_by_the_next_query() {
    let (_, _seeded) = demo_config().await;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    write_refunds(&lake);
    let served = served_mesh(
        dir.path(),
        &format!(
            "[storage.products.\"payments.refunds\"]\nkind = \"local\"\npath = \"{}/{{bucket}}\"\n",
            lake.display()
        ),
    );
    let (mut child, addr, mut stderr) = serve(&dir.path().join("meshgate.toml")).await;
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let refunds = "SELECT id, customer_email FROM payments.refunds ORDER BY id";
    let unknown = query(addr, "ccb-fraud", refunds).await.unwrap_err();
    assert!(unknown.contains("refunds"), "{unknown}");

    // The owner's loop, from an empty directory.
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let args = [
        "product",
        "init",
        "payments.refunds",
        "--team",
        "payments-core",
        "--mesh",
    ];
    let (status, out, err) = run(args.iter().map(OsStr::new).chain([work.as_os_str()]));
    assert!(status.success(), "{out}{err}");
    let contract = work.join("products/payments.refunds.yaml");
    edit(&contract, "replace-with-the-owner", "pay-owner");
    let policy = work.join("policies/products/payments.refunds.toml");
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str(
        r#"
[[row_filter]]
id = "lob-systems-read-refunds"
table = "refunds"
kind = "grant"
to = ["role:lob-system"]
where = "true"

[[column]]
id = "emails-masked"
table = "refunds"
column = "customer_email"
treatment = "mask(email)"
to = ["*"]
"#,
    );
    std::fs::write(&policy, text).unwrap();
    std::fs::create_dir_all(work.join("policies/tests")).unwrap();
    std::fs::write(
        work.join("policies/tests/payments.refunds.toml"),
        r#"
[[decision]]
principal = "ccb-fraud"
table = "payments.refunds"
rows = "true"
[decision.columns]
customer_email = "mask(email)"
id = "clear"
updated_at = "clear"

[[decision]]
principal = "intern"
table = "payments.refunds"
denied = "not-permitted"
"#,
    )
    .unwrap();
    // The change as a pull request sees it: the served mesh with the owner's files on top.
    let checkout = dir.path().join("checkout");
    copy_dir(&served, &checkout);
    copy_dir(&work.join("products"), &checkout.join("products"));
    copy_dir(&work.join("policies"), &checkout.join("policies"));
    let access = checkout.join("policies/access.csv");
    let mut text = std::fs::read_to_string(&access).unwrap();
    text.push_str("p, role:lob-system, payments, payments.refunds, read, allow\n");
    std::fs::write(&access, text).unwrap();
    let (status, out, err) = run([
        OsStr::new("lint"),
        checkout.as_os_str(),
        OsStr::new("--strict"),
    ]);
    assert!(status.success(), "lint: {out}{err}");
    let (status, out, err) = run([
        OsStr::new("policy"),
        OsStr::new("test"),
        checkout.as_os_str(),
    ]);
    assert!(status.success(), "policy test: {out}{err}");
    assert!(out.contains("20 decisions in 2 file(s)"), "{out}");

    // Merged: the files land in the served directory, and the gateway publishes them.
    copy_dir(&checkout.join("products"), &served.join("products"));
    copy_dir(&checkout.join("policies"), &served.join("policies"));
    let published = line_with(&mut stderr, "published the mesh").await;
    assert!(published.contains("4 product(s)"), "{published}");

    // The next query sees it, with its treatments.
    let batches = query(addr, "ccb-fraud", refunds).await.unwrap();
    let emails: Vec<String> = batches
        .iter()
        .flat_map(|b| {
            b.column(1)
                .as_string_view_opt()
                .map(|a| a.iter().map(|v| v.unwrap().to_string()).collect::<Vec<_>>())
                .unwrap_or_else(|| {
                    b.column(1)
                        .as_string::<i32>()
                        .iter()
                        .map(|v| v.unwrap().to_string())
                        .collect()
                })
        })
        .collect();
    assert_eq!(emails, ["***@x.test", "***@y.test", "***@z.test"]);
    let denied = query(addr, "intern", refunds).await.unwrap_err();
    assert!(denied.contains("payments.refunds"), "{denied}");
    // Discoverable by every principal, readers or not.
    for user in ["intern", "auditor", "cib-reporting"] {
        let listed = query(
            addr,
            user,
            "SELECT product_id FROM mesh.mesh_catalog.products WHERE product_id = 'payments.refunds'",
        )
        .await
        .unwrap();
        let rows: usize = listed.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(rows, 1, "{user} discovers the product");
    }

    // The catalog says when each product was published: the new one now, the others at
    // the gateway's start (republishing them unchanged keeps their time).
    let newest = query(
        addr,
        "intern",
        "SELECT product_id FROM mesh.mesh_catalog.products WHERE published_at > \
         (SELECT max(published_at) FROM mesh.mesh_catalog.products WHERE product_id <> 'payments.refunds')",
    )
    .await
    .unwrap();
    let newest: Vec<String> = newest
        .iter()
        .flat_map(|b| {
            let column =
                arrow::compute::cast(b.column(0), &arrow::datatypes::DataType::Utf8).unwrap();
            column
                .as_string::<i32>()
                .iter()
                .map(|v| v.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    assert_eq!(newest, ["payments.refunds"]);

    // A broken change is refused whole: the last good version keeps serving, and says why.
    edit(
        &served.join("policies/products/payments.refunds.toml"),
        "id = \"emails-masked\"\ntable = \"refunds\"\ncolumn = \"customer_email\"",
        "id = \"emails-masked\"\ntable = \"refunds\"\ncolumn = \"customer_mail\"",
    );
    let refused = line_with(&mut stderr, "publishing the mesh").await;
    assert!(
        refused.contains("failed; still serving policy version"),
        "{refused}"
    );
    let reason = line_with(&mut stderr, "customer_mail").await;
    assert!(reason.contains("error[product-policy]"), "{reason}");
    let batches = query(addr, "ccb-fraud", refunds).await.unwrap();
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 3);
    child.kill().await.unwrap();
}

/// A product's life after `active`: a deprecated one is served until its sunset, and every
/// query that reads it says so (the result schema's metadata over Flight SQL, `warnings()`
/// in the library); a retired one, or a deprecated one past its sunset, is refused with
/// the reason and is no longer listed, while discovery keeps showing it.
#[tokio::test]
async fn a_deprecated_product_warns_until_its_sunset_and_a_retired_one_is_refused() {
    let lifecycle = |counterparties: &str, payments: &str| {
        let manifests = meshgate_reference::MANIFESTS.iter().map(|(name, text)| {
            let text = if name.ends_with("reference.counterparties.yaml") {
                text.replacen("status: active", counterparties, 1)
            } else if name.ends_with("payments.transactions.yaml") {
                text.replacen("status: active", payments, 1)
            } else {
                text.to_string()
            };
            (*name, text)
        });
        meshgate::catalog::Catalog::from_sources(manifests).unwrap()
    };
    let deprecated =
        "status: deprecated\ncustomProperties: [{property: sunset, value: 2999-12-31}]";
    let catalog = lifecycle(deprecated, "status: retired");
    let server = crate::support::flight::start_with(
        meshgate::flight::FlightConfig::default(),
        move |config| config.catalog = catalog,
    )
    .await;
    let mut client = login(server.addr, "risk-officer").await;
    let warning = "product `reference.counterparties` (version 1.0.0) is deprecated and served until 2999-12-31 (UTC); ask its owner (team `reference-data`) what replaces it";
    let info = client
        .execute(
            "SELECT count(*) FROM reference.counterparties".to_string(),
            None,
        )
        .await
        .unwrap();
    let (schema, batches) = fetch(&mut client, &info).await.unwrap();
    assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
    for (what, metadata) in [
        ("the stream", schema.metadata().clone()),
        (
            "the FlightInfo",
            info.clone().try_decode_schema().unwrap().metadata().clone(),
        ),
    ] {
        let said = metadata
            .get(meshgate::engine::WARNINGS_METADATA_KEY)
            .unwrap_or_else(|| panic!("{what} carries no warning: {metadata:?}"));
        assert!(said.contains(warning), "{what}: {said}");
    }
    // A query that does not read it carries no warning.
    let info = client
        .execute("SELECT count(*) FROM markets.trades".to_string(), None)
        .await
        .unwrap();
    let (schema, _) = fetch(&mut client, &info).await.unwrap();
    assert!(schema.metadata().is_empty(), "{:?}", schema.metadata());
    // The library says the same.
    let risk = server
        .gateway
        .authenticate("risk-officer", "risk-officer-pw")
        .unwrap();
    let planned = server
        .gateway
        .session(risk.clone())
        .query("SELECT c.lob FROM reference.counterparties c LIMIT 1")
        .await
        .unwrap();
    assert_eq!(planned.warnings().len(), 1);
    assert!(
        planned.warnings()[0].contains(warning),
        "{:?}",
        planned.warnings()
    );

    // Retired: refused, saying why; not listed; still discoverable.
    let refused = query(
        server.addr,
        "risk-officer",
        "SELECT count(*) FROM payments.transactions",
    )
    .await
    .unwrap_err();
    assert!(
        refused.contains("product `payments.transactions` is no longer served: its owner (team `payments-core`) retired it"),
        "{refused}"
    );
    let listed = query(
        server.addr,
        "risk-officer",
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'payments'",
    )
    .await
    .unwrap();
    assert_eq!(listed.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    let discovered = query(
        server.addr,
        "intern",
        "SELECT product_id, status, sunset FROM mesh_catalog.products ORDER BY product_id",
    )
    .await
    .unwrap();
    let text: Vec<String> = discovered
        .iter()
        .flat_map(|b| {
            (0..b.num_rows()).map(move |row| {
                (0..3)
                    .map(|c| {
                        let column =
                            arrow::compute::cast(b.column(c), &arrow::datatypes::DataType::Utf8)
                                .unwrap();
                        column.as_string::<i32>().value(row).to_string()
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            })
        })
        .collect();
    assert_eq!(
        text,
        [
            "markets.trades active ",
            "payments.transactions retired ",
            "reference.counterparties deprecated 2999-12-31"
        ]
    );

    // Past its sunset (published so), the deprecated product is refused too.
    server
        .gateway
        .publish(
            lifecycle(
                "status: deprecated\ncustomProperties: [{property: sunset, value: 2000-01-01}]",
                "status: active",
            ),
            &meshgate_reference::policy_sources(),
        )
        .await
        .unwrap();
    let refused = query(
        server.addr,
        "risk-officer",
        "SELECT count(*) FROM reference.counterparties",
    )
    .await
    .unwrap_err();
    assert!(
        refused.contains("its last day served was 2000-01-01 (UTC)"),
        "{refused}"
    );
    let back = query(
        server.addr,
        "risk-officer",
        "SELECT count(*) FROM payments.transactions",
    )
    .await
    .unwrap();
    assert_eq!(back.iter().map(RecordBatch::num_rows).sum::<usize>(), 1);
}

/// Every row of `batches` as its cells joined by ` | ` (NULL as `NULL`).
fn rows_text(batches: &[RecordBatch]) -> Vec<String> {
    crate::policies::rows_as_text(batches)
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|c| c.unwrap_or_else(|| "NULL".into()))
                .collect::<Vec<_>>()
                .join(" | ")
        })
        .collect()
}

/// A breaking change published as a new major version: the old one keeps serving its
/// consumers under the unversioned name for its deprecation window, with a warning that
/// names the new one; the new one is served beside it as `<table>_v2` under the same
/// policy; discovery lists both. Retiring the old one refuses it, naming the new one;
/// removing its contract gives the plain name to the new one, and `_v2` keeps working.
#[tokio::test]
async fn a_new_major_version_is_served_beside_the_old_one_for_its_deprecation_window() {
    let (_, _seeded) = demo_config().await;
    let dir = tempfile::tempdir().unwrap();
    let served = served_mesh(dir.path(), "");
    let (mut child, addr, mut stderr) = serve(&dir.path().join("meshgate.toml")).await;
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    let v1_sql = "SELECT counterparty_id, tax_id, onboarded_on FROM reference.counterparties \
                  ORDER BY counterparty_id LIMIT 3";
    let before = rows_text(&query(addr, "cib-reporting", v1_sql).await.unwrap());
    assert_eq!(before.len(), 3);
    let v2_sql = "SELECT * FROM reference.counterparties_v2 ORDER BY counterparty_id LIMIT 3";
    let unknown = query(addr, "cib-reporting", v2_sql).await.unwrap_err();
    assert!(unknown.contains("counterparties_v2"), "{unknown}");

    // Version 2 drops `onboarded_on`; version 1 stays, deprecated until its sunset.
    let checkout = dir.path().join("checkout");
    copy_dir(&served, &checkout);
    let contracts = checkout.join("products");
    let v1 = std::fs::read_to_string(contracts.join("reference.counterparties.yaml")).unwrap();
    let onboarded = v1
        .find("      - name: onboarded_on")
        .expect("the reference contract declares onboarded_on");
    // It is the last column; the SLOs follow.
    let end = onboarded
        + v1[onboarded..]
            .find("slaProperties:")
            .expect("the SLOs follow onboarded_on");
    let v2 = format!("{}{}", &v1[..onboarded], &v1[end..]).replacen(
        "version: 1.0.0",
        "version: 2.0.0",
        1,
    );
    assert!(!v2.contains("onboarded_on"), "{v2}");
    std::fs::write(contracts.join("reference.counterparties.v2.yaml"), &v2).unwrap();
    // Dropping version 1 in the same change is refused: its consumers get no window.
    std::fs::write(contracts.join("reference.counterparties.yaml"), &v2).unwrap();
    std::fs::remove_file(contracts.join("reference.counterparties.v2.yaml")).unwrap();
    let lint = |base: &Path| {
        run([
            OsStr::new("lint"),
            checkout.as_os_str(),
            OsStr::new("--base"),
            base.as_os_str(),
        ])
    };
    let (status, out, err) = lint(&served);
    assert!(!status.success(), "{out}{err}");
    assert!(
        out.contains("error[major-dropped]") && out.contains("version 1.0.0"),
        "{out}{err}"
    );
    std::fs::write(contracts.join("reference.counterparties.v2.yaml"), &v2).unwrap();
    let deprecated = v1.replacen(
        "status: active",
        "status: deprecated\ncustomProperties: [{property: sunset, value: 2999-12-31}]",
        1,
    );
    std::fs::write(contracts.join("reference.counterparties.yaml"), &deprecated).unwrap();
    let (status, out, err) = lint(&served);
    assert!(status.success(), "{out}{err}");
    copy_dir(&contracts, &served.join("products"));
    line_with(&mut stderr, "published the mesh").await;

    // The old major's consumers are unchanged, and told what replaces it.
    let mut client = login(addr, "cib-reporting").await;
    let info = client.execute(v1_sql.to_string(), None).await.unwrap();
    let (schema, batches) = fetch(&mut client, &info).await.unwrap();
    assert_eq!(rows_text(&batches), before);
    let warning = schema
        .metadata()
        .get(meshgate::engine::WARNINGS_METADATA_KEY)
        .cloned()
        .unwrap_or_default();
    assert!(
        warning.contains(
            "product `reference.counterparties` (version 1.0.0) is deprecated and served until \
             2999-12-31 (UTC); version 2.0.0 is served as `reference.counterparties_v2`"
        ),
        "{warning}"
    );
    // The new one, under the same policy: the same rows and tokens, the restricted rating
    // still hidden, and no warning.
    let info = client.execute(v2_sql.to_string(), None).await.unwrap();
    let (schema, batches) = fetch(&mut client, &info).await.unwrap();
    assert!(schema.metadata().is_empty(), "{:?}", schema.metadata());
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(
        names,
        [
            "counterparty_id",
            "legal_name",
            "lob",
            "country",
            "tax_id",
            "contact_email"
        ]
    );
    let v2_rows = rows_text(&batches);
    for (old, new) in before.iter().zip(&v2_rows) {
        let old: Vec<&str> = old.split(" | ").collect();
        let new: Vec<&str> = new.split(" | ").collect();
        assert_eq!(old[0], new[0], "same rows");
        assert_eq!(old[1], new[new.len() - 2], "the same token of tax_id");
    }
    let count = |table: &str| format!("SELECT count(*) FROM reference.{table}");
    let cib_v1 = rows_text(
        &query(addr, "cib-reporting", &count("counterparties"))
            .await
            .unwrap(),
    );
    let cib_v2 = rows_text(
        &query(addr, "cib-reporting", &count("counterparties_v2"))
            .await
            .unwrap(),
    );
    assert_eq!(cib_v1, cib_v2, "the row filter applies to both");
    let all = rows_text(
        &query(addr, "risk-officer", &count("counterparties_v2"))
            .await
            .unwrap(),
    );
    assert_ne!(cib_v1, all, "the LOB restriction applies to version 2");
    // The older major's versioned name is its too.
    let named_v1 = rows_text(
        &query(addr, "cib-reporting", &count("counterparties_v1"))
            .await
            .unwrap(),
    );
    assert_eq!(named_v1, cib_v1);
    // Someone without access is refused both, the same way.
    for table in ["counterparties", "counterparties_v2"] {
        let denied = query(addr, "intern", &count(table)).await.unwrap_err();
        assert!(
            denied.contains("reference.counterparties"),
            "{table}: {denied}"
        );
    }

    // Discovery shows both versions, and what replaces the old one.
    let listed = rows_text(
        &query(
            addr,
            "intern",
            "SELECT version, status, coalesce(sunset, '-'), coalesce(replaced_by, '-'), tables \
             FROM mesh_catalog.products WHERE product_id = 'reference.counterparties' ORDER BY version",
        )
        .await
        .unwrap(),
    );
    assert_eq!(
        listed,
        [
            "1.0.0 | deprecated | 2999-12-31 | 2.0.0 | reference.counterparties",
            "2.0.0 | active | - | - | reference.counterparties_v2"
        ]
    );
    let tables = rows_text(
        &query(
            addr,
            "cib-reporting",
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'reference' \
             ORDER BY table_name",
        )
        .await
        .unwrap(),
    );
    assert_eq!(tables, ["counterparties", "counterparties_v2"]);

    // Retired: the old name is refused, naming the new one.
    std::fs::write(
        served.join("products/reference.counterparties.yaml"),
        v1.replacen("status: active", "status: retired", 1),
    )
    .unwrap();
    line_with(&mut stderr, "published the mesh").await;
    let refused = query(addr, "cib-reporting", &count("counterparties"))
        .await
        .unwrap_err();
    assert!(
        refused.contains("version 2.0.0 is served as `reference.counterparties_v2`"),
        "{refused}"
    );
    // Gone: the plain name is version 2's, and the versioned one keeps working.
    std::fs::remove_file(served.join("products/reference.counterparties.yaml")).unwrap();
    line_with(&mut stderr, "published the mesh").await;
    for table in ["counterparties", "counterparties_v2"] {
        let counted = rows_text(&query(addr, "cib-reporting", &count(table)).await.unwrap());
        assert_eq!(counted, cib_v2, "{table}");
    }
    let columns = rows_text(
        &query(
            addr,
            "cib-reporting",
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'reference' \
             AND column_name = 'onboarded_on'",
        )
        .await
        .unwrap(),
    );
    assert_eq!(columns, ["0"]);
    child.kill().await.unwrap();
}
