//! `meshgate policy test`: golden decision files (what each caller must see of each table)
//! against a mesh directory's policies. The reference mesh ships its own file, which pins
//! `docs/reference-mesh.md`'s table; a change of what anyone sees fails it, naming the file,
//! the line, the caller, the table and what differs.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

pub(crate) fn repo() -> PathBuf {
    crate::support::manifest_dir()
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// `meshgate policy <command> <paths> [extra]`.
fn policy(
    command: &str,
    paths: &[&Path],
    extra: &[&str],
) -> (std::process::ExitStatus, String, String) {
    let args = [OsStr::new("policy"), OsStr::new(command)]
        .into_iter()
        .chain(paths.iter().map(|p| p.as_os_str()))
        .chain(extra.iter().map(OsStr::new));
    crate::cli::run(args)
}

/// `meshgate policy test <mesh> [extra]`: (success, stdout, stderr).
fn policy_test(mesh: &Path, extra: &[&str]) -> (bool, String, String) {
    let (status, stdout, stderr) = policy("test", &[mesh], extra);
    (status.success(), stdout, stderr)
}

/// The reference mesh's products and policies (golden file included) in a scratch directory.
pub(crate) fn reference_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    crate::cli::copy_dir(&repo().join("products"), &dir.path().join("products"));
    crate::cli::copy_dir(&repo().join("policies"), &dir.path().join("policies"));
    dir
}

pub(crate) fn edit(path: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let changed = text.replacen(from, to, 1);
    assert_ne!(changed, text, "`{from}` is in {}", path.display());
    std::fs::write(path, changed).unwrap();
}

#[test]
fn the_reference_meshs_golden_decisions_hold() {
    let (ok, stdout, stderr) = policy_test(&repo(), &[]);
    assert!(ok, "{stdout}{stderr}");
    // Six principals, three tables.
    assert!(stdout.contains("18 decisions in 1 file(s)"), "{stdout}");
    assert!(stdout.contains("18 passed, 0 failed"), "{stdout}");
}

/// The golden file says what `docs/reference-mesh.md` says, cell by cell for a few cells
/// (the file is what the test above checks against the policies).
#[test]
fn the_golden_file_is_the_reference_meshs_table() {
    let text = std::fs::read_to_string(repo().join("policies/tests/reference-mesh.toml")).unwrap();
    let golden = meshgate::policy::golden::GoldenFile::parse("reference-mesh.toml", &text).unwrap();
    use meshgate::policy::golden::{Caller, Outcome};
    let find = |user: &str, table: &str| {
        golden
            .decisions
            .iter()
            .find(|d| d.caller == Caller::User(user.into()) && d.table == table)
            .map(|d| d.expected.clone())
            .unwrap_or_else(|| panic!("no decision for {user} on {table}"))
    };
    let Outcome::Sees { rows, columns } = find("cib-reporting", "reference.counterparties") else {
        panic!("cib-reporting sees counterparties")
    };
    assert_eq!(rows, "lob = 'CIB'");
    assert_eq!(columns["tax_id"], "tokenize(reference)");
    assert_eq!(columns["contact_email"], "mask(email)");
    assert_eq!(columns["internal_rating"], "hidden");
    assert_eq!(columns["legal_name"], "clear");
    let Outcome::Sees { rows, columns } = find("risk-officer", "payments.transactions") else {
        panic!("risk-officer sees transactions")
    };
    assert_eq!(rows, "true");
    assert_eq!(columns["card_number"], "mask(show-last-4)");
    assert_eq!(
        find("cib-reporting", "payments.transactions"),
        Outcome::Denied("not-permitted".into())
    );
    for table in [
        "reference.counterparties",
        "payments.transactions",
        "markets.trades",
    ] {
        for user in ["auditor", "intern"] {
            assert!(
                matches!(find(user, table), Outcome::Denied(_)),
                "{user} is denied {table}"
            );
        }
    }
}

/// Each kind of change fails the file where it changes what someone sees, and says how.
#[test]
fn a_change_of_what_anyone_sees_fails_with_where_and_how() {
    type Change<'a> = &'a dyn Fn(&Path);
    let widen_rows = |mesh: &Path| {
        edit(
            &mesh.join("policies/products/payments.transactions.toml"),
            "where = \"lob = ${principal.lob}\"",
            "where = \"true\"",
        )
    };
    let unmask = |mesh: &Path| {
        edit(
            &mesh.join("policies/products/payments.transactions.toml"),
            "treatment = \"mask(show-last-4)\"",
            "treatment = \"clear\"",
        )
    };
    let new_column = |mesh: &Path| {
        edit(
            &mesh.join("products/markets.trades.yaml"),
            "      - name: trade_date\n",
            "      - name: desk\n        logicalType: string\n        physicalType: VARCHAR\n        classification: internal\n      - name: trade_date\n",
        )
    };
    let cases: [(Change, &[&str]); 3] = [
        (
            &widen_rows,
            &[
                "ccb-fraud on payments.transactions",
                "rows: expected `lob = 'CCB'`, got `true`",
            ],
        ),
        (
            &unmask,
            &[
                "risk-officer on payments.transactions",
                // The global rule `card-data-never-clear` keeps the floor: a token, not clear.
                "column card_number: expected mask(show-last-4), got tokenize(payments)",
            ],
        ),
        (
            &new_column,
            &["column desk: clear, but the file has no decision for it"],
        ),
    ];
    for (change, expected) in cases {
        let mesh = reference_copy();
        change(mesh.path());
        let (ok, stdout, stderr) = policy_test(mesh.path(), &[]);
        assert!(!ok, "the change fails the golden file: {stdout}{stderr}");
        for line in expected {
            assert!(
                stdout.contains(line),
                "expected `{line}` in:\n{stdout}{stderr}"
            );
        }
        assert!(
            stdout.contains("reference-mesh.toml:"),
            "a failure names its file and line: {stdout}"
        );
    }
}

/// `--write` writes down what the policies decide (for every user and table when there is no
/// file yet), and the result passes as written.
#[test]
fn write_records_the_decisions_and_they_pass() {
    let mesh = reference_copy();
    std::fs::remove_dir_all(mesh.path().join("policies/tests")).unwrap();
    let (ok, _, stderr) = policy_test(mesh.path(), &[]);
    assert!(!ok);
    assert!(stderr.contains("--write"), "says how to start: {stderr}");

    let (ok, stdout, stderr) = policy_test(mesh.path(), &["--write"]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("wrote 18 decisions"), "{stdout}");
    let (ok, stdout, stderr) = policy_test(mesh.path(), &[]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("18 passed, 0 failed"), "{stdout}");

    // After a deliberate change, --write takes it in and the file passes again.
    edit(
        &mesh
            .path()
            .join("policies/products/payments.transactions.toml"),
        "treatment = \"mask(show-last-4)\"",
        "treatment = \"hidden\"",
    );
    assert!(!policy_test(mesh.path(), &[]).0);
    assert!(policy_test(mesh.path(), &["--write"]).0);
    let (ok, stdout, _) = policy_test(mesh.path(), &[]);
    assert!(ok, "{stdout}");
}

/// A caller described by roles and attributes, not a user of the file: the LOB row filter
/// binds its `lob`, and without the role the access rules do not let it in.
#[test]
fn a_caller_can_be_described_by_its_attributes() {
    let mesh = reference_copy();
    let file = mesh.path().join("policies/tests/attributes.toml");
    let columns = "counterparty_id = \"clear\", legal_name = \"clear\", lob = \"clear\", \
                   country = \"clear\", tax_id = \"tokenize(reference)\", \
                   contact_email = \"mask(email)\", internal_rating = \"hidden\", \
                   onboarded_on = \"clear\"";
    std::fs::write(
        &file,
        format!(
            r#"
[[decision]]
caller = {{ roles = ["lob-system"], attributes = {{ lob = "AWM" }} }}
table = "reference.counterparties"
rows = "lob = 'AWM'"
columns = {{ {columns} }}

[[decision]]
caller = {{ roles = [], attributes = {{ lob = "AWM" }} }}
table = "reference.counterparties"
denied = "not-permitted"
"#
        ),
    )
    .unwrap();
    let path = file.to_str().unwrap();
    let (ok, stdout, stderr) = policy_test(mesh.path(), &[path]);
    assert!(ok, "{stdout}{stderr}");
    assert!(stdout.contains("2 passed, 0 failed"), "{stdout}");

    // The same file with the other LOB fails on the rows.
    edit(&file, "rows = \"lob = 'AWM'\"", "rows = \"lob = 'CIB'\"");
    let (ok, stdout, _) = policy_test(mesh.path(), &[path]);
    assert!(!ok);
    assert!(
        stdout.contains("rows: expected `lob = 'CIB'`, got `lob = 'AWM'`"),
        "{stdout}"
    );

    // --write keeps the described callers as they were written.
    assert!(policy_test(mesh.path(), &[path, "--write"]).0);
    let written = std::fs::read_to_string(&file).unwrap();
    assert!(
        written.contains("caller = { roles = [\"lob-system\"], attributes = { lob = \"AWM\" } }"),
        "{written}"
    );
    assert!(policy_test(mesh.path(), &[path]).0);
}

/// `meshgate policy diff <before> <after> [extra]`: (exit code, stdout, stderr).
fn policy_diff(before: &Path, after: &Path, extra: &[&str]) -> (i32, String, String) {
    let (status, stdout, stderr) = policy("diff", &[before, after], extra);
    (status.code().unwrap_or(-1), stdout, stderr)
}

/// Each prepared change reported as what it does, with the exit code a CI job reads.
#[test]
fn policy_diff_reports_each_kind_of_change() {
    let payments = "policies/products/payments.transactions.toml";
    let counterparties = "policies/products/reference.counterparties.toml";
    type Change<'a> = &'a dyn Fn(&Path);
    let widened_filter = |mesh: &Path| {
        edit(
            &mesh.join(payments),
            "where = \"lob = ${principal.lob}\"",
            "where = \"lob = ${principal.lob} OR lob = 'AWM'\"",
        )
    };
    let removed_mask = |mesh: &Path| {
        edit(
            &mesh.join(counterparties),
            "treatment = \"mask(email)\"",
            "treatment = \"clear\"",
        )
    };
    // The markets owner opens trader ids to LOB systems: the pii floor lets it through
    // for callers of the markets domain only.
    let role_on_clear_rule = |mesh: &Path| {
        let trades = mesh.join("policies/products/markets.trades.toml");
        edit(
            &trades,
            "except = [\"role:firmwide-risk\"]",
            "except = [\"role:firmwide-risk\", \"role:lob-system\"]",
        );
        edit(
            &trades,
            "to = [\"role:firmwide-risk\"]",
            "to = [\"role:firmwide-risk\", \"role:lob-system\"]",
        );
    };
    // The same for a restricted column: the global floor keeps it hidden from everyone
    // outside the reference domain, so nothing changes.
    let clear_rule_held_by_the_floor = |mesh: &Path| {
        edit(
            &mesh.join(counterparties),
            "to = [\"role:firmwide-risk\", \"role:reference-owner\"]",
            "to = [\"role:firmwide-risk\", \"role:reference-owner\", \"role:lob-system\"]",
        )
    };
    let narrowed_filter = |mesh: &Path| {
        edit(
            &mesh.join(payments),
            "where = \"lob = ${principal.lob}\"",
            "where = \"lob = ${principal.lob} AND amount < 1000\"",
        )
    };
    let reformat = |mesh: &Path| {
        let path = mesh.join(counterparties);
        let text = std::fs::read_to_string(&path).unwrap();
        // Comments, spacing and the order of two rules: the same decisions.
        let (head, rest) = text.split_at(text.find("[[column]]").unwrap());
        let mut rules: Vec<&str> = rest.split("\n\n").collect();
        rules.swap(0, 1);
        let changed = format!(
            "# reformatted\n{}\n{}\n",
            head.replace(" = ", "  =  "),
            rules.join("\n\n# next rule\n\n")
        );
        std::fs::write(&path, changed).unwrap();
    };
    let cases: [(&str, Change, i32, &[&str]); 6] = [
        (
            "a widened row filter",
            &widened_filter,
            2,
            &[
                "**Access widens.**",
                "| widened | ccb-fraud | payments.transactions | rows | `lob = 'CCB'` | `lob = 'CCB' OR lob = 'AWM'` |",
            ],
        ),
        (
            "a removed mask",
            &removed_mask,
            2,
            &[
                // The global pii floor still tokenizes it outside the reference domain.
                "| widened | cib-reporting | reference.counterparties | column contact_email | `mask(email)` | `tokenize(reference)` |",
            ],
        ),
        (
            "a role added to a clear rule",
            &role_on_clear_rule,
            2,
            &[
                "| widened | cib-reporting | markets.trades | column trader_id | `tokenize(markets)` | `clear` |",
            ],
        ),
        (
            "a clear rule the global floor holds back",
            &clear_rule_held_by_the_floor,
            0,
            &["**No change** of what anyone sees."],
        ),
        (
            "a narrowed row filter",
            &narrowed_filter,
            0,
            &[
                "Access only narrows.",
                "| narrowed | ccb-fraud | payments.transactions | rows | `lob = 'CCB'` | `lob = 'CCB' AND amount < 1000` |",
            ],
        ),
        (
            "a no-op reformat",
            &reformat,
            0,
            &["**No change** of what anyone sees."],
        ),
    ];
    for (what, change, code, expected) in cases {
        let after = reference_copy();
        change(after.path());
        let (got, stdout, stderr) = policy_diff(&repo(), after.path(), &[]);
        assert_eq!(got, code, "{what}: exit code\n{stdout}{stderr}");
        for line in expected {
            assert!(
                stdout.contains(line),
                "{what}: expected `{line}` in:\n{stdout}{stderr}"
            );
        }
        if code == 0 {
            assert!(!stdout.contains("| widened |"), "{what}: {stdout}");
        }
    }
}

/// A `meshgate.toml` in `dir` serving the repository's mesh over the reference lakes, with
/// `extra` top-level lines: what `policy diff --data` reads.
fn data_config(dir: &Path, extra: &str) -> PathBuf {
    std::fs::write(dir.join("master.key"), "cd".repeat(32)).unwrap();
    let config = dir.join("meshgate.toml");
    std::fs::write(
        &config,
        format!(
            "products = \"{0}/products\"\npolicies = \"{0}/policies\"\nmaster_key_file = \"master.key\"\n\
             {extra}[storage.default]\nkind = \"local\"\npath = \"{1}/{{bucket}}\"\n",
            repo().display(),
            crate::policies::data_dir().join("s3").display()
        ),
    )
    .unwrap();
    config
}

/// What the predicates alone cannot decide, `--data` counts over the products' lakes: a
/// rewrite that adds rows of today's data is a widening, with the count; an equivalent one
/// stays undecided (tomorrow's data may differ), with zero rows gained.
#[tokio::test]
async fn policy_diff_counts_over_the_data_what_it_cannot_decide() {
    let (config, _lake) = crate::policies::demo_config().await;
    let gateway = meshgate::Gateway::open(config).await.unwrap();
    let risk = gateway
        .authenticate("risk-officer", "risk-officer-pw")
        .unwrap();
    let batches = gateway
        .session(risk)
        .collect("SELECT count(*) FROM payments.transactions WHERE lob = 'AWM'")
        .await
        .unwrap();
    let awm =
        arrow::array::AsArray::as_primitive::<arrow::datatypes::Int64Type>(batches[0].column(0))
            .value(0);
    assert!(awm > 0);
    let dir = tempfile::tempdir().unwrap();
    let root = repo();
    let config = data_config(dir.path(), "");
    let payments = "policies/products/payments.transactions.toml";
    let data = ["--data", config.to_str().unwrap()];

    let widened = reference_copy();
    edit(
        &widened.path().join(payments),
        "where = \"lob = ${principal.lob}\"",
        "where = \"lob <> 'CIB'\"",
    );
    let (code, stdout, stderr) = policy_diff(&root, widened.path(), &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stdout.contains("| undecided | ccb-fraud | payments.transactions | rows | `lob = 'CCB'` | `lob <> 'CIB'` |"),
        "{stdout}"
    );
    let (code, stdout, stderr) = policy_diff(&root, widened.path(), &data);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "| widened | ccb-fraud | payments.transactions | rows ({awm} rows gained, 0 lost in today's data) | `lob = 'CCB'` | `lob <> 'CIB'` |"
        )),
        "{stdout}{stderr}"
    );

    let rewritten = reference_copy();
    edit(
        &rewritten.path().join(payments),
        "where = \"lob = ${principal.lob}\"",
        "where = \"lob IN (${principal.lob})\"",
    );
    let (code, stdout, stderr) = policy_diff(&root, rewritten.path(), &data);
    assert_eq!(
        code, 2,
        "undecided still counts as widening: {stdout}{stderr}"
    );
    assert!(
        stdout.contains("| undecided | ccb-fraud | payments.transactions | rows (0 rows gained, 0 lost in today's data) | `lob = 'CCB'` | `lob IN ('CCB')` |"),
        "{stdout}{stderr}"
    );
    assert!(!stdout.contains("| widened |"), "{stdout}");
}

/// With `--data`, the grants in force in the configured store (read, never written) are
/// layered on both versions: a grant holder the files alone deny is compared too, and each
/// change of what they see names the grant it reaches.
#[tokio::test]
async fn policy_diff_names_the_grants_a_change_reaches() {
    use meshgate::governance::{Approval, NewRequest};
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("meshgate.db");
    let (gateway, _lake) = crate::support::views::local_gateway(|c| {
        c.governance = meshgate::Governance::Sqlite(db.clone())
    })
    .await;
    let request = gateway
        .workflow()
        .request(
            "intern",
            NewRequest {
                product: "reference.counterparties".into(),
                columns: Vec::new(),
                purpose: "onboarding analysis".into(),
                valid_days: Some(30),
            },
        )
        .await
        .unwrap();
    let check = |p: &meshgate::catalog::Product, f: &str| gateway.check_grant_filter(p, f);
    let (_, grant) = gateway
        .workflow()
        .approve("ref-owner", &request.id, Approval::default(), &check)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let root = repo();
    let config = data_config(dir.path(), &format!("state = \"{}\"\n", db.display()));
    let after = reference_copy();
    edit(
        &after
            .path()
            .join("policies/products/reference.counterparties.toml"),
        "treatment = \"mask(email)\"",
        "treatment = \"clear\"",
    );
    let holder = format!(
        "| widened | intern (grant {}) | reference.counterparties | column contact_email |",
        grant.id
    );
    let (code, stdout, stderr) = policy_diff(&root, after.path(), &[]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        !stdout.contains("| intern"),
        "the files alone deny the intern: {stdout}"
    );
    let written = std::fs::metadata(&db).unwrap().modified().unwrap();
    let (code, stdout, stderr) =
        policy_diff(&root, after.path(), &["--data", config.to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.contains(&holder), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("Grants affected: `{}` (1 change).", grant.id)),
        "{stdout}"
    );
    // The other readers' lines name no grant.
    assert!(
        stdout.contains(
            "| widened | cib-reporting | reference.counterparties | column contact_email |"
        ),
        "{stdout}"
    );
    assert_eq!(std::fs::metadata(&db).unwrap().modified().unwrap(), written);

    // A store that is not there is said, and the diff goes on from the files alone.
    let missing = config.with_file_name("missing.toml");
    std::fs::write(
        &missing,
        std::fs::read_to_string(&config).unwrap().replace(
            &db.display().to_string(),
            &state.path().join("none.db").display().to_string(),
        ),
    )
    .unwrap();
    let (code, stdout, stderr) =
        policy_diff(&root, after.path(), &["--data", missing.to_str().unwrap()]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(
        stderr.contains("the grants in force are not consulted"),
        "{stderr}"
    );
    assert!(!state.path().join("none.db").exists());
}

/// JSON for tools, and an approval that lets a widening through while still reporting it.
#[test]
fn policy_diff_speaks_json_and_takes_an_approval() {
    let after = reference_copy();
    edit(
        &after
            .path()
            .join("policies/products/reference.counterparties.toml"),
        "treatment = \"mask(email)\"",
        "treatment = \"clear\"",
    );
    let (code, stdout, stderr) = policy_diff(&repo(), after.path(), &["--format", "json"]);
    assert_eq!(code, 2, "{stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["widens"], true);
    let changes = report["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["caller"] == "cib-reporting"
            && c["aspect"] == "column contact_email"
            && c["direction"] == "widened"),
        "{stdout}"
    );
    let (code, stdout, _) =
        policy_diff(&repo(), after.path(), &["--approved-by", "jane (CR-1042)"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("approved by jane (CR-1042)"), "{stdout}");
}

/// `meshgate product init`: a new product's files load with the mesh, nobody reads it until
/// its owner opens it, and opening it is a widening the diff reports.
#[test]
fn product_init_starts_a_product_nobody_reads_yet() {
    let mesh = reference_copy();
    let init = || {
        let args = ["product", "init", "payments.refunds", "--mesh"].map(OsStr::new);
        crate::cli::run(args.into_iter().chain([mesh.path().as_os_str()]))
    };
    let (status, stdout, stderr) = init();
    assert!(status.success(), "{stdout}{stderr}");
    for file in [
        "products/payments.refunds.yaml",
        "policies/products/payments.refunds.toml",
        "lakes/payments.refunds/bucket-policy.json",
        "lakes/payments.refunds/minio.sh",
        ".ci/products/payments.refunds.yml",
    ] {
        assert!(mesh.path().join(file).is_file(), "{file}");
    }
    let policy: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            mesh.path()
                .join("lakes/payments.refunds/bucket-policy.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        policy["Statement"][0]["Resource"][0],
        "arn:aws:s3:::payments-refunds"
    );
    // A second init replaces nothing.
    let (status, _, stderr) = init();
    assert!(!status.success());
    assert!(stderr.contains("never replaces a file"), "{stderr}");

    // The mesh loads with it, and nobody sees anything new.
    let (code, stdout, stderr) = policy_diff(&repo(), mesh.path(), &[]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("**No change**"), "{stdout}");
    assert!(
        policy_test(mesh.path(), &[]).0,
        "the golden decisions still hold"
    );

    // The owner opens it to a role: the diff names the new access, and nothing else.
    let policy = mesh.path().join("policies/products/payments.refunds.toml");
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str(
        "\n[[row_filter]]\nid = \"readers\"\ntable = \"refunds\"\nkind = \"grant\"\nto = [\"role:refunds-readers\"]\nwhere = \"true\"\n",
    );
    std::fs::write(&policy, text).unwrap();
    let access = mesh.path().join("policies/access.csv");
    let mut text = std::fs::read_to_string(&access).unwrap();
    text.push_str("\np, role:refunds-readers, payments, payments.refunds, read, allow\n");
    std::fs::write(&access, text).unwrap();
    let (code, stdout, _) = policy_diff(&repo(), mesh.path(), &["--format", "json"]);
    assert_eq!(code, 2, "{stdout}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let changes = report["changes"].as_array().unwrap();
    assert!(
        changes.iter().any(|c| c["table"] == "payments.refunds"
            && c["aspect"] == "access"
            && c["caller"].as_str().unwrap().contains("refunds-readers")),
        "{stdout}"
    );
    assert!(
        changes
            .iter()
            .all(|c| c["table"] == "payments.refunds" && c["aspect"] == "access"),
        "only the new product's access changes: {stdout}"
    );
}
