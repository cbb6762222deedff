//! Policy semantics beyond the reference mesh, on the reference data: grants OR together and
//! restrictions AND on top; every mask kind through SQL; reloads; loading a mesh from a
//! `meshgate.toml` with a master key file.

use std::collections::HashSet;
use std::path::PathBuf;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::DataType;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use meshgate::config::ServeConfig;
use meshgate::policy::{Denial, PolicySources};
use meshgate::{Gateway, GatewayConfig, GatewayError, Principal};
use meshgate_lake_server::LakeServer;
use meshgate_reference as reference;
use sha2::{Digest, Sha256};

/// The repository's top level (products/, policies/).
fn repo() -> PathBuf {
    crate::support::manifest_dir()
        .join("../..")
        .canonicalize()
        .unwrap()
}

pub(crate) fn data_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("reference-mesh")
}

/// The reference mesh's configuration and the in-process S3 server serving it (keep it
/// alive while the gateway runs).
pub(crate) async fn demo_config() -> (GatewayConfig, LakeServer) {
    let demo = reference::demo(&data_dir()).await.unwrap();
    (demo.config, demo.lake)
}

/// The reference policies with the counterparties policy replaced and extra access lines.
fn sources(counterparties_policy: &str, extra_access: &str) -> PolicySources {
    let mut sources = reference::policy_sources();
    sources.access_rules.text.push_str(extra_access);
    let policy = sources
        .products
        .iter_mut()
        .find(|s| s.name.ends_with("reference.counterparties.toml"))
        .unwrap();
    policy.text = counterparties_policy.to_string();
    sources
}

async fn gateway_with(sources: PolicySources) -> (Gateway, LakeServer) {
    let (mut config, lake) = demo_config().await;
    config.policies = sources;
    (Gateway::open(config).await.unwrap(), lake)
}

async fn strings(gateway: &Gateway, principal: Principal, sql: &str) -> Vec<Vec<Option<String>>> {
    let batches = gateway
        .session(principal)
        .collect(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    rows_as_text(&batches)
}

/// Every row as text, NULL as `None`.
pub(crate) fn rows_as_text(batches: &[RecordBatch]) -> Vec<Vec<Option<String>>> {
    let mut out = Vec::new();
    for batch in batches {
        let columns: Vec<_> = batch
            .columns()
            .iter()
            .map(|c| cast(c, &DataType::Utf8).unwrap())
            .collect();
        for row in 0..batch.num_rows() {
            out.push(
                columns
                    .iter()
                    .map(|c| {
                        let c = c.as_string::<i32>();
                        (!c.is_null(row)).then(|| c.value(row).to_string())
                    })
                    .collect(),
            );
        }
    }
    out
}

async fn raw(sql: &str) -> Vec<Vec<Option<String>>> {
    let ctx = SessionContext::new();
    let path = data_dir().join("s3/reference-counterparties/data/counterparties/");
    ctx.register_parquet(
        "counterparties",
        path.to_str().unwrap(),
        ParquetReadOptions::default(),
    )
    .await
    .unwrap();
    rows_as_text(&ctx.sql(sql).await.unwrap().collect().await.unwrap())
}

const ANALYSTS: &str = "p, role:analyst, reference, reference.counterparties, read, allow\n";

#[tokio::test]
async fn grants_or_together_and_restrictions_and_on_top() {
    let policy = r#"
[policy]
product = "reference.counterparties"
version = 7

[[row_filter]]
id = "awm-rows"
table = "counterparties"
kind = "grant"
to = ["role:awm"]
where = "lob = 'AWM'"

[[row_filter]]
id = "us-rows"
table = "counterparties"
kind = "grant"
to = ["role:us"]
where = "country = ${principal.country}"

[[row_filter]]
id = "small-ids"
table = "counterparties"
kind = "restriction"
to = ["role:small"]
where = "counterparty_id <= 5000"

[[row_filter]]
id = "no-old-rows"
table = "counterparties"
kind = "restriction"
to = ["role:small"]
where = "onboarded_on >= DATE '2012-01-01'"
"#;
    let (gateway, _lake) = gateway_with(sources(policy, ANALYSTS)).await;
    let analyst = |roles: &[&str]| {
        roles.iter().fold(
            Principal::new("ann")
                .with_role("analyst")
                .with_attribute("country", "US"),
            |p, r| p.with_role(*r),
        )
    };
    let count = "SELECT count(*) FROM reference.counterparties";
    let seen = |roles: &'static [&'static str]| {
        let gateway = gateway.clone();
        async move { strings(&gateway, analyst(roles), count).await[0][0].clone() }
    };
    let raw_count = |filter: &'static str| async move {
        raw(&format!(
            "SELECT count(*) FROM counterparties WHERE {filter}"
        ))
        .await[0][0]
            .clone()
    };

    assert_eq!(seen(&["awm"]).await, raw_count("lob = 'AWM'").await);
    assert_eq!(
        seen(&["awm", "us"]).await,
        raw_count("lob = 'AWM' OR country = 'US'").await
    );
    assert_eq!(
        seen(&["awm", "us", "small"]).await,
        raw_count("(lob = 'AWM' OR country = 'US') AND counterparty_id <= 5000 AND onboarded_on >= DATE '2012-01-01'").await
    );
    // A restriction without any grant gives nothing: it is denied, with the policy named.
    match gateway.session(analyst(&["small"])).collect(count).await {
        Err(GatewayError::Denied(Denial::NoRowGrant { policy, .. })) => {
            assert_eq!(policy, "reference.counterparties@v7")
        }
        other => panic!("expected NoRowGrant, got {other:?}"),
    }
    // A grant whose template needs an attribute the caller lacks denies rather than widens.
    let no_country = Principal::new("bob")
        .with_role("analyst")
        .with_role("us")
        .with_role("awm");
    match gateway.session(no_country).collect(count).await {
        Err(GatewayError::Denied(Denial::Unresolvable { reason, .. })) => {
            assert!(reason.contains("`country`"), "{reason}")
        }
        other => panic!("expected an unresolvable policy, got {other:?}"),
    }
}

#[tokio::test]
async fn every_mask_kind_through_sql() {
    let policy = r#"
[policy]
product = "reference.counterparties"
version = 1

[[row_filter]]
id = "all"
table = "counterparties"
kind = "grant"
to = ["*"]
where = "true"

[[column]]
id = "c1"
table = "counterparties"
column = "legal_name"
treatment = "mask(show-first-4)"
to = ["*"]

[[column]]
id = "c2"
table = "counterparties"
column = "country"
treatment = "mask(redact, 'XX')"
to = ["*"]

[[column]]
id = "c3"
table = "counterparties"
column = "tax_id"
treatment = "mask(hash)"
to = ["*"]

[[column]]
id = "c4"
table = "counterparties"
column = "contact_email"
treatment = "mask(email)"
to = ["*"]

[[column]]
id = "c5"
table = "counterparties"
column = "internal_rating"
treatment = "mask(null)"
to = ["*"]

[[column]]
id = "c6"
table = "counterparties"
column = "onboarded_on"
treatment = "mask(year-only)"
to = ["*"]

[[column]]
id = "c7"
table = "counterparties"
column = "lob"
treatment = "mask(show-last-4)"
to = ["*"]
"#;
    // The masks themselves are the subject here, so without the global floors (which
    // would hide the restricted `internal_rating` from an analyst).
    let mut without_floors = sources(policy, ANALYSTS);
    without_floors.global = None;
    let (gateway, _lake) = gateway_with(without_floors).await;
    let session = gateway.session(Principal::new("ann").with_role("analyst"));
    let columns = "counterparty_id, legal_name, country, tax_id, contact_email, internal_rating, onboarded_on, lob";
    let sql = format!("SELECT {columns} FROM reference.counterparties ORDER BY counterparty_id");
    let batches = session.collect(&sql).await.unwrap();
    let schema = batches[0].schema();
    assert_eq!(
        schema.field_with_name("onboarded_on").unwrap().data_type(),
        &DataType::Date32
    );
    assert!(
        schema
            .field_with_name("internal_rating")
            .unwrap()
            .is_nullable()
    );
    let seen = rows_as_text(&batches);
    let clear = raw(&format!(
        "SELECT {columns} FROM counterparties ORDER BY counterparty_id"
    ))
    .await;
    assert_eq!(seen.len(), 30_000);
    for (s, c) in seen.iter().zip(&clear) {
        let c: Vec<String> = c.iter().map(|v| v.clone().unwrap()).collect();
        let name = &c[1];
        let first4: String = name
            .chars()
            .take(4)
            .chain(name.chars().skip(4).map(|_| '*'))
            .collect();
        let email = &c[4];
        let want = vec![
            Some(c[0].clone()),
            Some(first4),
            Some("XX".to_string()),
            Some(hex::encode(Sha256::digest(c[3].as_bytes()))),
            Some(format!("***{}", &email[email.find('@').unwrap()..])),
            None,
            Some(format!("{}-01-01", &c[6][..4])),
            Some(c[7].clone()), // three letters: show-last-4 keeps them all
        ];
        assert_eq!(s, &want);
    }
}

#[tokio::test]
async fn a_reload_takes_effect_on_the_next_query_and_a_bad_one_changes_nothing() {
    let (config, _lake) = demo_config().await;
    let gateway = Gateway::open(config).await.unwrap();
    let cib = gateway
        .authenticate("cib-reporting", "cib-reporting-pw")
        .unwrap();
    let count = "SELECT count(*) FROM reference.counterparties";
    let before = gateway.policies().fingerprint().to_string();
    assert_eq!(
        strings(&gateway, cib.clone(), count).await[0][0].as_deref(),
        Some("15000")
    );

    let mut bad = reference::policy_sources();
    bad.access_rules
        .text
        .push_str("p, role:lob-system, reference, reference.counterparties, Read, allow\n");
    let err = gateway.reload_policies(&bad).await.unwrap_err().to_string();
    assert!(
        err.contains("access.csv") && err.contains("unknown action `Read`"),
        "{err}"
    );
    assert_eq!(gateway.policies().fingerprint(), before);
    assert_eq!(
        strings(&gateway, cib.clone(), count).await[0][0].as_deref(),
        Some("15000")
    );

    // A filter that names a column the table does not have is refused on reload, with its rule.
    let mut bad_filter = reference::policy_sources();
    for source in &mut bad_filter.products {
        source.text = source.text.replace(
            "lob = ${principal.lob}",
            "line_of_business = ${principal.lob}",
        );
    }
    let err = gateway
        .reload_policies(&bad_filter)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rule `lob-systems-see-own-lob`") && err.contains("line_of_business"),
        "{err}"
    );

    // Revoking LOB systems' access is enforced by the very next query.
    let mut revoked = reference::policy_sources();
    revoked
        .access_rules
        .text
        .push_str("p, cib-reporting, reference, reference.counterparties, read, deny\n");
    assert_ne!(gateway.reload_policies(&revoked).await.unwrap(), before);
    assert!(matches!(
        gateway.session(cib).collect(count).await,
        Err(GatewayError::Denied(_))
    ));
}

#[tokio::test]
async fn a_mesh_loads_from_a_config_file_with_a_key_file() {
    let repo = repo();
    // The demo's S3 server stores objects as plain files: read them as a local lake.
    let (_, _seeded) = demo_config().await;
    let dir = tempfile::tempdir().unwrap();
    let lake = data_dir().join("s3");
    std::fs::write(dir.path().join("master.key"), "ab".repeat(32)).unwrap();
    let config = format!(
        r#"
listen = "127.0.0.1:0"
products = "{repo}/products"
policies = "{repo}/policies"
users = "{repo}/policies/users.toml"
master_key_file = "master.key"

[storage.default]
kind = "local"
path = "{lake}/{{bucket}}"
"#,
        repo = repo.display(),
        lake = lake.display()
    );
    std::fs::write(dir.path().join("meshgate.toml"), &config).unwrap();
    let loaded = ServeConfig::load(&dir.path().join("meshgate.toml")).unwrap();
    assert_eq!(loaded.listen.as_deref(), Some("127.0.0.1:0"));
    let gateway = Gateway::open(loaded.gateway).await.unwrap();
    let cib = gateway
        .authenticate("cib-reporting", "cib-reporting-pw")
        .unwrap();
    let sql = "SELECT tax_id FROM reference.counterparties WHERE counterparty_id = 10";
    let with_file_key = strings(&gateway, cib.clone(), sql).await;
    let (demo_config, _demo_lake) = demo_config().await;
    let demo = Gateway::open(demo_config).await.unwrap();
    let with_demo_key = strings(&demo, cib, sql).await;
    assert_ne!(
        with_file_key, with_demo_key,
        "tokens depend on the master key"
    );

    // Without a key file or $MESHGATE_MASTER_KEY, the gateway refuses to start.
    std::fs::write(
        dir.path().join("meshgate.toml"),
        config.replace("master_key_file = \"master.key\"", ""),
    )
    .unwrap();
    if std::env::var_os(meshgate::protect::MASTER_KEY_ENV).is_none() {
        let err = ServeConfig::load(&dir.path().join("meshgate.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("MESHGATE_MASTER_KEY"), "{err}");
    }
    // A product whose storage cannot be opened is named, with what is missing.
    let s3_without_credentials =
        format!("{config}\n[storage.products.\"markets.trades\"]\nkind = \"s3\"\n");
    std::fs::write(dir.path().join("meshgate.toml"), s3_without_credentials).unwrap();
    let loaded = ServeConfig::load(&dir.path().join("meshgate.toml")).unwrap();
    let err = Gateway::open(loaded.gateway).await.unwrap_err().to_string();
    assert!(
        err.contains("markets.trades") && err.contains("no credentials configured"),
        "{err}"
    );
}

/// The reference catalog with views added to reference.counterparties.
async fn config_with_views() -> (GatewayConfig, LakeServer) {
    let views = r#"
  - name: counterparty_trades
    physicalType: view
    description: Trades with their counterparty.
    customProperties:
      - property: viewDefinition
        value: >-
          SELECT c.counterparty_id, c.legal_name, c.tax_id, t.trade_id, t.notional
          FROM reference.counterparties c JOIN markets.trades t ON t.counterparty_id = c.counterparty_id
    properties:
      - {name: counterparty_id, physicalType: BIGINT, classification: internal}
      - {name: legal_name, physicalType: VARCHAR, classification: internal}
      - {name: tax_id, physicalType: VARCHAR, tags: [pii]}
      - {name: trade_id, physicalType: BIGINT, classification: internal}
      - {name: notional, physicalType: DOUBLE, classification: internal}
  - name: ratings
    physicalType: view
    customProperties: [{property: viewDefinition, value: "SELECT counterparty_id, internal_rating FROM reference.counterparties"}]
    properties:
      - {name: counterparty_id, physicalType: BIGINT, classification: internal}
      - {name: internal_rating, physicalType: VARCHAR, classification: restricted}
  - name: loopy
    physicalType: view
    customProperties: [{property: viewDefinition, value: "SELECT * FROM reference.loopy"}]
    properties:
      - {name: x, physicalType: BIGINT, classification: internal}
  - name: drifted
    physicalType: view
    customProperties: [{property: viewDefinition, value: "SELECT counterparty_id AS id FROM reference.counterparties"}]
    properties:
      - {name: counterparty_id, physicalType: BIGINT, classification: internal}
"#;
    let manifests = reference::MANIFESTS.iter().map(|(name, text)| {
        let text = if name.ends_with("reference.counterparties.yaml") {
            text.replace(
                "slaProperties:",
                &format!("{}\nslaProperties:", views.trim_end()),
            )
        } else {
            text.to_string()
        };
        (*name, text)
    });
    let (mut config, lake) = demo_config().await;
    config.catalog = meshgate::catalog::Catalog::from_sources(manifests).unwrap();
    (config, lake)
}

#[tokio::test]
async fn published_views_run_as_the_caller() {
    let (config, _lake) = config_with_views().await;
    let gateway = Gateway::open(config).await.unwrap();
    let user = |name: &str| gateway.authenticate(name, &format!("{name}-pw")).unwrap();
    let sql = "SELECT count(*) AS n, count(DISTINCT substr(tax_id, 1, 4)) AS prefixes FROM reference.counterparty_trades";

    // Each table inside the view is wrapped for the caller: CIB rows only, tokens, for CIB.
    let cib = strings(&gateway, user("cib-reporting"), sql).await;
    let risk_cib = strings(
        &gateway,
        user("risk-officer"),
        "SELECT count(*) FROM markets.trades t JOIN reference.counterparties c \
         ON t.counterparty_id = c.counterparty_id WHERE c.lob = 'CIB'",
    )
    .await;
    assert_eq!(cib[0][0], risk_cib[0][0]);
    assert_eq!(
        cib[0][1].as_deref(),
        Some("1"),
        "every tax_id is a token (`tok_`)"
    );
    let risk = strings(&gateway, user("risk-officer"), sql).await;
    assert_eq!(risk[0][0].as_deref(), Some("50000"));

    // Invoker rights: a base table the caller may not read denies the view, naming that table.
    for (who, product) in [
        ("ccb-fraud", "markets.trades"),
        ("ref-owner", "markets.trades"),
        ("intern", "reference.counterparties"),
    ] {
        match gateway.session(user(who)).collect(sql).await {
            Err(GatewayError::Denied(denial)) => assert!(
                denial.to_string().contains(&format!("`{product}`")),
                "{who}: {denial}"
            ),
            other => panic!("{who}: expected a denial, got {other:?}"),
        }
    }

    // A view reading a column the caller cannot see does not exist for that caller.
    let ratings = "SELECT count(*) FROM reference.ratings";
    assert_eq!(
        strings(&gateway, user("risk-officer"), ratings).await[0][0].as_deref(),
        Some("30000")
    );
    match gateway
        .session(user("cib-reporting"))
        .collect(ratings)
        .await
    {
        Err(GatewayError::Denied(Denial::Unresolvable { reason, .. })) => {
            assert!(reason.contains("does not show you"), "{reason}");
            assert!(!reason.contains("internal_rating"), "{reason}");
        }
        other => panic!("expected the view to be unresolvable for cib-reporting, got {other:?}"),
    }

    // Broken views deny instead of looping or drifting from their manifest.
    for (view, why) in [
        ("loopy", "reads itself"),
        ("drifted", "differ from its manifest"),
    ] {
        match gateway
            .session(user("risk-officer"))
            .collect(&format!("SELECT * FROM reference.{view}"))
            .await
        {
            Err(GatewayError::Denied(Denial::Unresolvable { reason, .. })) => {
                assert!(reason.contains(why), "{view}: {reason}")
            }
            other => panic!("{view}: expected a denial, got {other:?}"),
        }
    }

    // Listings show a view exactly to those who can query it.
    let listing = "SELECT table_name, table_type FROM information_schema.tables WHERE table_schema = 'reference' ORDER BY 1";
    let cib_listing = strings(&gateway, user("cib-reporting"), listing).await;
    let some = |s: &str| Some(s.to_string());
    assert_eq!(
        cib_listing,
        vec![
            vec![some("counterparties"), some("BASE TABLE")],
            vec![some("counterparty_trades"), some("VIEW")]
        ]
    );
    let ccb_tables: Vec<String> = gateway
        .session(user("ccb-fraud"))
        .tables()
        .await
        .iter()
        .map(|t| format!("{}.{} {}", t.schema, t.name, t.table_type))
        .collect();
    assert_eq!(
        ccb_tables,
        [
            "payments.transactions TABLE",
            "reference.counterparties TABLE"
        ]
    );
    let risk_tables: Vec<String> = gateway
        .session(user("risk-officer"))
        .tables()
        .await
        .iter()
        .map(|t| format!("{}.{}", t.schema, t.name))
        .collect();
    assert!(
        risk_tables.contains(&"reference.ratings".to_string())
            && !risk_tables.contains(&"reference.loopy".to_string())
    );
}

#[tokio::test]
async fn views_cannot_carry_rules_of_their_own() {
    let (mut config, _lake) = config_with_views().await;
    let policy = config
        .policies
        .products
        .iter_mut()
        .find(|s| s.name.ends_with("reference.counterparties.toml"))
        .unwrap();
    policy.text.push_str(
        "\n[[column]]\nid = \"on-a-view\"\ntable = \"ratings\"\ncolumn = \"internal_rating\"\ntreatment = \"clear\"\nto = [\"*\"]\n",
    );
    let err = Gateway::open(config).await.unwrap_err().to_string();
    assert!(
        err.contains("rule `on-a-view`") && err.contains("is a view"),
        "{err}"
    );
}

/// `meshgate serve` reloads its policy directory on SIGHUP: a good reload takes effect on
/// the next query; a policy that does not load, or a directory that cannot be read, keeps
/// the last good version in force (never none, never everything).
#[cfg(unix)]
#[tokio::test]
async fn sighup_reloads_policies_and_a_failed_reload_keeps_the_last_good_version() {
    use arrow_flight::sql::client::FlightSqlServiceClient;

    let repo = repo();
    let (_, _seeded) = demo_config().await;
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(policies.join("products")).unwrap();
    for entry in ["access.conf", "access.csv", "users.toml"] {
        std::fs::copy(repo.join("policies").join(entry), policies.join(entry)).unwrap();
    }
    for entry in std::fs::read_dir(repo.join("policies/products")).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(
            entry.path(),
            policies.join("products").join(entry.file_name()),
        )
        .unwrap();
    }
    std::fs::write(dir.path().join("master.key"), "cd".repeat(32)).unwrap();
    std::fs::write(
        dir.path().join("meshgate.toml"),
        format!(
            "products = \"{}/products\"\npolicies = \"policies\"\nusers = \"policies/users.toml\"\n\
             master_key_file = \"master.key\"\nwatch = \"0s\"\n[storage.default]\nkind = \"local\"\npath = \"{}/{{bucket}}\"\n",
            repo.display(),
            data_dir().join("s3").display()
        ),
    )
    .unwrap();
    let (mut child, addr, mut stderr) =
        crate::publish::serve(&dir.path().join("meshgate.toml")).await;
    let pid = child.id().unwrap().to_string();
    let mut hangup = async |expect: &str| {
        let status = std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap();
        assert!(status.success());
        // Either outcome: "published the mesh from ..." or "publishing the mesh from ... failed".
        let line = crate::publish::line_with(&mut stderr, "the mesh from").await;
        assert!(line.contains(expect), "{line}");
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let count = async |user: &str| -> Result<(), tonic::Code> {
        let mut client = FlightSqlServiceClient::new(channel.clone());
        client.handshake(user, &format!("{user}-pw")).await.unwrap();
        let sql = "SELECT count(*) FROM reference.counterparties";
        match client.execute(sql.to_string(), None).await {
            Ok(_) => Ok(()),
            Err(arrow_flight::error::FlightError::Tonic(status)) => Err(status.code()),
            Err(other) => panic!("{other}"),
        }
    };
    assert_eq!(count("cib-reporting").await, Ok(()));

    // A good reload: revoking cib-reporting takes effect on its next query.
    let access = policies.join("access.csv");
    let mut text = std::fs::read_to_string(&access).unwrap();
    text.push_str("p, cib-reporting, reference, reference.counterparties, read, deny\n");
    std::fs::write(&access, &text).unwrap();
    hangup("published the mesh").await;
    assert_eq!(
        count("cib-reporting").await,
        Err(tonic::Code::PermissionDenied)
    );
    assert_eq!(count("risk-officer").await, Ok(()));

    // A bad policy file and then an unreadable directory: both refused, the revocation stays
    // and everyone else keeps their access.
    std::fs::write(&access, text.replace("read, deny", "Read, deny")).unwrap();
    hangup("failed; still serving policy version").await;
    assert_eq!(
        count("cib-reporting").await,
        Err(tonic::Code::PermissionDenied)
    );
    assert_eq!(count("risk-officer").await, Ok(()));
    std::fs::rename(&policies, dir.path().join("gone")).unwrap();
    hangup("failed; still serving policy version").await;
    assert_eq!(
        count("cib-reporting").await,
        Err(tonic::Code::PermissionDenied)
    );
    assert_eq!(count("risk-officer").await, Ok(()));
    child.kill().await.unwrap();
}

/// The reference mesh's policy file for `reference.counterparties`, as shipped.
fn counterparties_policy() -> String {
    reference::policy_sources()
        .products
        .into_iter()
        .find(|s| s.name.ends_with("reference.counterparties.toml"))
        .unwrap()
        .text
}

/// `count(*)` of `reference.counterparties` as cib-reporting sees it.
async fn cib_counterparties(gateway: &Gateway) -> Option<String> {
    let cib = gateway
        .authenticate("cib-reporting", "cib-reporting-pw")
        .unwrap();
    strings(
        gateway,
        cib,
        "SELECT count(*) FROM reference.counterparties",
    )
    .await[0][0]
        .clone()
}

/// A row filter may name the time of the query (`current_date`, `now()`): a retention rule
/// such as "what was onboarded in the last N days". It is the instant the query runs.
#[tokio::test]
async fn a_row_filter_may_name_the_time_of_the_query() {
    let reference_policy = counterparties_policy();
    // Every counterparty was onboarded before today, none after now.
    let dated = format!(
        "{reference_policy}\n[[row_filter]]\nid = \"onboarded-until-today\"\ntable = \"counterparties\"\n\
         kind = \"restriction\"\nto = [\"role:lob-system\"]\n\
         where = \"onboarded_on <= current_date AND CAST(onboarded_on AS TIMESTAMP) < now()\"\n"
    );
    let (gateway, _lake) = gateway_with(sources(&dated, "")).await;
    assert_eq!(cib_counterparties(&gateway).await.as_deref(), Some("15000"));
    // The other way round, nothing is left.
    let future = dated.replace(
        "onboarded_on <= current_date",
        "onboarded_on > current_date",
    );
    gateway
        .reload_policies(&sources(&future, ""))
        .await
        .unwrap();
    assert_eq!(cib_counterparties(&gateway).await.as_deref(), Some("0"));
}

/// A row filter that type-checks but fails on the data (here a cast of every legal name)
/// denies the query, and the caller's error shows neither the value it failed on nor the
/// filter; a filter that is not a boolean condition never loads.
#[tokio::test]
async fn a_policy_that_fails_on_the_data_denies_without_showing_a_value() {
    let reference_policy = counterparties_policy();
    let failing = format!(
        "{reference_policy}\n[[row_filter]]\nid = \"numeric-names-only\"\ntable = \"counterparties\"\n\
         kind = \"restriction\"\nto = [\"role:lob-system\"]\nwhere = \"CAST(legal_name AS INT) > 0\"\n"
    );
    let (gateway, _lake) = gateway_with(sources(&failing, "")).await;
    let cib = gateway
        .authenticate("cib-reporting", "cib-reporting-pw")
        .unwrap();
    let error = gateway
        .session(cib)
        .collect("SELECT count(*) FROM reference.counterparties")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("reference.counterparties") && error.contains("could not be applied"),
        "{error}"
    );
    let names: HashSet<String> = raw("SELECT legal_name FROM counterparties")
        .await
        .into_iter()
        .flat_map(|row| row.into_iter().flatten())
        .flat_map(|name| name.split(' ').map(str::to_string).collect::<Vec<_>>())
        .filter(|word| word.len() > 3)
        .collect();
    let leaked: Vec<&str> = error
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| names.contains(*w))
        .collect();
    assert!(leaked.is_empty(), "the error shows {leaked:?}: {error}");
    assert!(
        !error.contains("CAST") && !error.contains("Int32"),
        "{error}"
    );
    // Whoever the failing rule does not select reads on.
    let risk = gateway
        .authenticate("risk-officer", "risk-officer-pw")
        .unwrap();
    assert_eq!(
        strings(
            &gateway,
            risk,
            "SELECT count(*) FROM reference.counterparties"
        )
        .await[0][0]
            .as_deref(),
        Some("30000")
    );

    let not_boolean = reference_policy.replace("lob = ${principal.lob}", "counterparty_id + 1");
    let error = gateway
        .reload_policies(&sources(&not_boolean, ""))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("rule `lob-systems-see-own-lob`")
            && error.contains("must be a boolean condition"),
        "{error}"
    );
}

/// Pruning on a caller's own predicate is a timing oracle on hidden rows: ccb-fraud sees no
/// transaction of a counterparty above 29997 (the highest CCB id), but hidden CIB and AWM rows
/// have them, so `> 29997` reads the row groups holding those rows while `> 30000` skips
/// every one; both answer 0. A product that sets `pushdown_user_predicates = false` reads the
/// same for both: only its own filter prunes, and no join's dynamic filter enters either.
/// (The scan report stands in for the time it costs; tests never assert wall-clock time.)
#[tokio::test]
async fn a_product_can_keep_callers_predicates_out_of_the_scan() {
    let fraud = |gateway: &Gateway| gateway.authenticate("ccb-fraud", "ccb-fraud-pw").unwrap();
    let scanned = |gateway: Gateway, bound: u32| async move {
        let sql =
            format!("SELECT count(*) FROM payments.transactions WHERE counterparty_id > {bound}");
        let query = gateway.session(fraud(&gateway)).query(&sql).await.unwrap();
        let answer = rows_as_text(&query.collect().await.unwrap());
        assert_eq!(answer, vec![vec![Some("0".to_string())]], "{sql}");
        let explain = strings(&gateway, fraud(&gateway), &format!("EXPLAIN {sql}")).await;
        let pushed = format!("{explain:?}").contains("pushed=");
        (query.scan_report().rows_scanned, pushed)
    };
    // A join's dynamic filter is a predicate too: it enters only where the caller's would.
    let dynamic_keys = |gateway: Gateway| async move {
        let sql = "SELECT count(*) FROM reference.counterparties c JOIN payments.transactions p \
                   ON c.counterparty_id = p.counterparty_id WHERE c.country = 'DE'";
        let query = gateway.session(fraud(&gateway)).query(sql).await.unwrap();
        crate::support::sealed_scans(&query.physical_plan())
            .into_iter()
            .find(|(table, _, _)| table == "payments.transactions")
            .map(|(_, _, keys)| keys)
            .unwrap()
    };
    let (default, _lake) = gateway_with(reference::policy_sources()).await;
    assert_eq!(dynamic_keys(default.clone()).await, vec!["counterparty_id"]);
    let (below, pushed) = scanned(default.clone(), 29_997).await;
    let (above, _) = scanned(default, 30_000).await;
    assert!(pushed, "by default the predicate enters the scan");
    assert!(
        below > above,
        "the oracle this setting closes: {below} rows read below the hidden maximum, {above} above"
    );

    let mut sources = reference::policy_sources();
    let policy = sources
        .products
        .iter_mut()
        .find(|s| s.name.ends_with("payments.transactions.toml"))
        .unwrap();
    policy.text = policy.text.replacen(
        "version = 1",
        "version = 1\npushdown_user_predicates = false",
        1,
    );
    assert!(policy.text.contains("pushdown_user_predicates"));
    let (isolated, _lake) = gateway_with(sources).await;
    assert!(dynamic_keys(isolated.clone()).await.is_empty());
    let (below, pushed) = scanned(isolated.clone(), 29_997).await;
    let (above, _) = scanned(isolated, 30_000).await;
    assert!(!pushed, "no predicate of the caller's enters the scan");
    assert_eq!(below, above, "the same rows are read whatever the bound");
}

/// A column the product's policy forgot follows the global rules at query time: the pii
/// floor tokenizes it for readers outside the product's domain; where no global rule
/// selects the caller, the built-in default hides it.
#[tokio::test]
async fn a_column_the_product_forgot_follows_the_global_rule() {
    let reference = counterparties_policy();
    let forgotten: Vec<&str> = reference
        .split("\n[[")
        .enumerate()
        .filter(|(i, block)| *i == 0 || !block.contains("column = \"contact_email\""))
        .map(|(_, block)| block)
        .collect();
    let policy = forgotten.join("\n[[");
    assert!(!policy.contains("contact_email"), "{policy}");
    let (gateway, _lake) = gateway_with(sources(&policy, "")).await;
    let user = |name: &str| gateway.authenticate(name, &format!("{name}-pw")).unwrap();

    let sql = "SELECT contact_email FROM reference.counterparties";
    for reader in ["cib-reporting", "ccb-fraud"] {
        let rows = strings(&gateway, user(reader), sql).await;
        assert_eq!(
            rows.len(),
            if reader == "cib-reporting" {
                15_000
            } else {
                9_000
            }
        );
        assert!(
            rows.iter().all(|r| r[0]
                .as_deref()
                .is_some_and(|v| v.starts_with("tok_") && !v.contains('@'))),
            "{reader}: {:?}",
            &rows[..3]
        );
    }
    // Exempt from the floor (risk: by the global rule; the owner: its domain) and with no
    // product rule: hidden.
    for exempt in ["risk-officer", "ref-owner"] {
        let error = gateway
            .session(user(exempt))
            .collect(sql)
            .await
            .expect_err("hidden for them");
        assert!(
            error.to_string().contains("contact_email"),
            "{exempt}: {error}"
        );
    }
}

/// The policy version covers every version of every contract: a worker that holds another
/// older major than its gateway holds another version, and refuses its sealed scans.
#[tokio::test]
async fn the_policy_version_covers_every_major_version_served() {
    let with_old_major = |description: &str| {
        let mut sources: Vec<(String, String)> = reference::MANIFESTS
            .iter()
            .map(|(name, text)| (name.to_string(), text.to_string()))
            .collect();
        let v1 = sources
            .iter()
            .find(|(name, _)| name.ends_with("reference.counterparties.yaml"))
            .map(|(_, text)| text.clone())
            .unwrap();
        for (name, text) in &mut sources {
            if name.ends_with("reference.counterparties.yaml") {
                *text = text.replacen("version: 1.0.0", "version: 2.0.0", 1);
            }
        }
        let old = v1
            .replacen(
                "status: active",
                "status: deprecated\ncustomProperties: [{property: sunset, value: 2999-12-31}]",
                1,
            )
            .replacen(
                "description: Date the counterparty was onboarded.",
                &format!("description: {description}"),
                1,
            );
        sources.push(("reference.counterparties.v1.yaml".into(), old));
        meshgate::catalog::Catalog::from_sources(sources).unwrap()
    };
    let fingerprint = |catalog: meshgate::catalog::Catalog| async move {
        meshgate::policy::PolicySet::load(&catalog, &reference::policy_sources())
            .await
            .unwrap()
            .fingerprint()
            .to_string()
    };
    let one = fingerprint(with_old_major("Onboarding date.")).await;
    let same = fingerprint(with_old_major("Onboarding date.")).await;
    let other = fingerprint(with_old_major("Date of onboarding.")).await;
    assert_eq!(one, same);
    assert_ne!(
        one, other,
        "the old major's contract is part of the version"
    );
}
