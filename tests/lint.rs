//! `meshgate lint`: a mesh directory's contracts and policies against the global rules and
//! each other, every finding with file, line, check id and fix, and an exit code for CI.

use std::ffi::OsStr;
use std::path::Path;

use crate::golden::{edit, reference_copy, repo};

/// `meshgate lint <mesh> [extra]`: (exit code, stdout, stderr).
fn lint(mesh: &Path, extra: &[&str]) -> (i32, String, String) {
    let args = [OsStr::new("lint"), mesh.as_os_str()]
        .into_iter()
        .chain(extra.iter().map(OsStr::new));
    let (status, stdout, stderr) = crate::cli::run(args);
    (status.code().unwrap_or(-1), stdout, stderr)
}

/// The line of a policy rule: its `[[column]]` or `[[row_filter]]` header, just above the
/// line with its id.
fn rule_line(mesh: &Path, file: &str, id: &str) -> usize {
    line_of(mesh, file, &format!("id = \"{id}\"")) - 1
}

/// The 1-based line of the first line of `file` (under `mesh`) containing `needle`.
fn line_of(mesh: &Path, file: &str, needle: &str) -> usize {
    let text = std::fs::read_to_string(mesh.join(file)).unwrap();
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("`{needle}` is in {file}"))
        + 1
}

#[test]
fn the_reference_mesh_lints_clean() {
    let (code, stdout, stderr) = lint(&repo(), &["--strict"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("3 contract(s), 3 product policy file(s): 0 error(s), 0 warning(s)"),
        "{stdout}"
    );
}

/// Every kind of error at once: each reported at its file and line, with the check and a
/// fix, and the run fails.
#[test]
fn each_error_is_reported_where_it_is_with_its_fix() {
    let mesh = reference_copy();
    let path = mesh.path();
    let counterparties = "policies/products/reference.counterparties.toml";
    let payments = "policies/products/payments.transactions.toml";
    let trades = "policies/products/markets.trades.toml";
    // A product rule clearer than the global pii floor for callers outside the domain.
    edit(
        &path.join(counterparties),
        "treatment = \"mask(email)\"",
        "treatment = \"clear\"",
    );
    // A row filter that parses but names no column of the table.
    edit(
        &path.join(payments),
        "where = \"lob = ${principal.lob}\"",
        "where = \"line_of_business = ${principal.lob}\"",
    );
    // A rule naming a column the contract does not have.
    edit(
        &path.join(trades),
        "column = \"trader_id\"",
        "column = \"trader\"",
    );
    // A contract without a service level the global rules require, one without a semantic
    // version, and a column that is not snake_case.
    edit(
        &path.join("products/payments.transactions.yaml"),
        "  - property: retention",
        "  - property: freshness",
    );
    edit(
        &path.join("products/reference.counterparties.yaml"),
        "version: 1.0.0",
        "version: \"1.0\"",
    );
    edit(
        &path.join("products/markets.trades.yaml"),
        "- name: instrument",
        "- name: Instrument",
    );

    let (code, stdout, stderr) = lint(path, &[]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let at = |file: &str, line: usize, check: &str| {
        let head = format!("{}/{file}:{line}: error[{check}]", path.display());
        assert!(stdout.contains(&head), "expected `{head}` in:\n{stdout}");
        let block = &stdout[stdout.find(&head).unwrap()..];
        let fix = block.lines().nth(1).unwrap_or_default();
        assert!(fix.starts_with("  fix: "), "{check} has a fix: {block}");
        block.lines().next().unwrap().to_string()
    };
    let floor = at(
        counterparties,
        rule_line(path, counterparties, "email-masked"),
        "global-floor",
    );
    assert!(
        floor.contains("`email-masked` gives `clear` of `counterparties.contact_email`")
            && floor.contains("`pii-tokenized-outside-its-domain`")
            && floor.contains("holds `tokenize(reference)` for")
            && floor.contains("cib-reporting"),
        "{floor}"
    );
    let filter = at(
        payments,
        rule_line(path, payments, "lob-systems-see-own-lob"),
        "row-filter-type",
    );
    assert!(filter.contains("line_of_business"), "{filter}");
    let unknown = at(
        trades,
        rule_line(path, trades, "trader-tokenized"),
        "product-policy",
    );
    assert!(unknown.contains("has no column `trader`"), "{unknown}");
    let slo = at(
        "products/payments.transactions.yaml",
        line_of(
            path,
            "products/payments.transactions.yaml",
            "slaProperties:",
        ),
        "required-slo",
    );
    assert!(slo.contains("`retention`"), "{slo}");
    at(
        "products/reference.counterparties.yaml",
        line_of(
            path,
            "products/reference.counterparties.yaml",
            "version: \"1.0\"",
        ),
        "semver",
    );
    let name = at(
        "products/markets.trades.yaml",
        line_of(path, "products/markets.trades.yaml", "- name: Instrument"),
        "column-name",
    );
    assert!(name.contains("`trades.Instrument`"), "{name}");

    // The same for tools.
    let (code, stdout, _) = lint(path, &["--format", "json"]);
    assert_eq!(code, 1);
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let checks: Vec<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["severity"] == "error")
        .map(|f| f["check"].as_str().unwrap())
        .collect();
    for check in [
        "global-floor",
        "row-filter-type",
        "product-policy",
        "required-slo",
        "semver",
        "column-name",
    ] {
        assert!(checks.contains(&check), "{check} in {checks:?}");
    }
}

/// The done-when case: a new product forgets its personal data; the global rule tokenizes
/// it for readers outside the product's domain, `policy test` shows it, and `lint` says so.
#[test]
fn a_pii_column_a_new_product_forgot_is_tokenized_and_reported() {
    let mesh = reference_copy();
    let path = mesh.path();
    let args = ["product", "init", "payments.refunds", "--mesh"].map(OsStr::new);
    let (status, stdout, stderr) = crate::cli::run(args.into_iter().chain([path.as_os_str()]));
    assert!(status.success(), "{stdout}{stderr}");
    // The owner opens it to a role and forgets `customer_email` (tag pii).
    let policy = path.join("policies/products/payments.refunds.toml");
    let mut text = std::fs::read_to_string(&policy).unwrap();
    text.push_str(
        "\n[[row_filter]]\nid = \"readers\"\ntable = \"refunds\"\nkind = \"grant\"\nto = [\"role:refunds-readers\"]\nwhere = \"true\"\n",
    );
    std::fs::write(&policy, text).unwrap();
    let access = path.join("policies/access.csv");
    let mut text = std::fs::read_to_string(&access).unwrap();
    text.push_str("\np, role:refunds-readers, payments, payments.refunds, read, allow\n");
    std::fs::write(&access, text).unwrap();

    // A reader outside the payments domain gets a token of the payments domain; a reader of
    // the payments domain is exempt from the floor, and the unruled pii column stays hidden.
    std::fs::write(
        path.join("policies/tests/refunds.toml"),
        r#"
[[decision]]
caller = { roles = ["refunds-readers"], attributes = { domain = "consumer-banking" } }
table = "payments.refunds"
rows = "true"
[decision.columns]
customer_email = "tokenize(payments)"
id = "clear"
updated_at = "clear"

[[decision]]
caller = { roles = ["refunds-readers"], attributes = { domain = "payments" } }
table = "payments.refunds"
rows = "true"
[decision.columns]
customer_email = "hidden"
id = "clear"
updated_at = "clear"
"#,
    )
    .unwrap();
    let (status, stdout, stderr) =
        crate::cli::run([OsStr::new("policy"), OsStr::new("test"), path.as_os_str()]);
    assert!(status.success(), "{stdout}{stderr}");

    let line = line_of(
        path,
        "products/payments.refunds.yaml",
        "- name: customer_email",
    );
    let head = format!(
        "{}/products/payments.refunds.yaml:{line}: warning[left-to-global]: column `refunds.customer_email` (tags pii) has no rule",
        path.display()
    );
    let (code, stdout, _) = lint(path, &["--strict"]);
    assert_eq!(code, 1, "--strict fails on the warning: {stdout}");
    assert!(stdout.contains(&head), "expected `{head}` in:\n{stdout}");
    assert!(
        stdout.contains("`pii-tokenized-outside-its-domain` (tokenize(payments))"),
        "{stdout}"
    );
    let (code, stdout, _) = lint(path, &[]);
    assert_eq!(code, 0, "a warning alone passes without --strict: {stdout}");
}

/// A removed or retyped column is a breaking change: it needs a new major version.
#[test]
fn a_breaking_change_needs_a_new_major_version() {
    let mesh = reference_copy();
    let path = mesh.path();
    let contract = path.join("products/markets.trades.yaml");
    edit(
        &contract,
        "physicalType: DOUBLE",
        "physicalType: DECIMAL(18,2)",
    );
    // DECIMAL's logical type is `number` too; the column's type still changes.
    let (code, stdout, stderr) = lint(path, &["--base", repo().to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    let line = line_of(path, "products/markets.trades.yaml", "version: 1.0.0");
    let head = format!(
        "{}/products/markets.trades.yaml:{line}: error[breaking-change]: column `trades.notional` changed from DOUBLE to DECIMAL(18,2) since version 1.0.0",
        path.display()
    );
    assert!(stdout.contains(&head), "expected `{head}` in:\n{stdout}");

    // A new major in place of the old one leaves the old one's consumers without a window.
    edit(&contract, "version: 1.0.0", "version: 2.0.0");
    let (code, stdout, stderr) = lint(path, &["--base", repo().to_str().unwrap()]);
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!(
            "{}/products/markets.trades.yaml:{line}: error[major-dropped]: version 1.0.0 of `markets.trades` is no longer published",
            path.display()
        )),
        "{stdout}"
    );
    // Served beside it, deprecated until a sunset, it passes.
    let v1 = std::fs::read_to_string(repo().join("products/markets.trades.yaml")).unwrap();
    let deprecated = |sunset: &str| {
        v1.replacen(
            "status: active",
            &format!(
                "status: deprecated\ncustomProperties: [{{property: sunset, value: {sunset}}}]"
            ),
            1,
        )
    };
    let old = path.join("products/markets.trades.v1.yaml");
    std::fs::write(&old, deprecated("2999-12-31")).unwrap();
    let (code, stdout, stderr) = lint(path, &["--base", repo().to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Once its sunset has passed, the old contract may go.
    let base = reference_copy();
    std::fs::write(
        base.path().join("products/markets.trades.yaml"),
        deprecated("2001-02-03"),
    )
    .unwrap();
    std::fs::copy(
        &contract,
        base.path().join("products/markets.trades.v2.yaml"),
    )
    .unwrap();
    std::fs::remove_file(&old).unwrap();
    let (code, stdout, stderr) = lint(path, &["--base", base.path().to_str().unwrap()]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    // Without a base there is nothing to compare.
    edit(&contract, "version: 2.0.0", "version: 1.0.0");
    let (code, stdout, _) = lint(path, &[]);
    assert_eq!(code, 0, "{stdout}");
}

/// A deprecated product past its sunset is refused at query time; lint says so, and how to
/// retire it properly. A sunset that is no date, or a deprecated product without one, does
/// not load.
#[test]
fn a_sunset_that_passed_is_a_warning_and_a_bad_one_an_error() {
    let mesh = reference_copy();
    let contract = mesh.path().join("products/reference.counterparties.yaml");
    edit(
        &contract,
        "status: active",
        "status: deprecated\ncustomProperties: [{property: sunset, value: 2001-02-03}]",
    );
    let (code, stdout, stderr) = lint(mesh.path(), &[]);
    assert_eq!(code, 0, "a warning only: {stdout}{stderr}");
    let line = line_of(
        mesh.path(),
        "products/reference.counterparties.yaml",
        "status:",
    );
    assert!(
        stdout.contains(&format!(
            "products/reference.counterparties.yaml:{line}: warning[sunset-passed]: product `reference.counterparties` was served until 2001-02-03"
        )),
        "{stdout}"
    );
    assert!(stdout.contains("set `status: retired`"), "{stdout}");
    let (code, _, _) = lint(mesh.path(), &["--strict"]);
    assert_eq!(code, 1);
    edit(&contract, "value: 2001-02-03", "value: soon");
    let (code, stdout, _) = lint(mesh.path(), &[]);
    assert_eq!(code, 1, "{stdout}");
    assert!(
        stdout.contains("error[contract]") && stdout.contains("`sunset` must be a date"),
        "{stdout}"
    );
}
