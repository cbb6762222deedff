//! The reference mesh's policies, resolved for every principal, against the table in
//! `docs/reference-mesh.md` ("What each principal sees"). Also: load errors name file,
//! line and rule.

#![allow(clippy::unwrap_used, clippy::expect_used)] // helpers panic to fail the test

use std::path::PathBuf;

use meshgate_catalog::Catalog;
use meshgate_policy::{
    Denial, PolicySet, PolicySources, Principal, Source, Treatment, UserDirectory,
};
use meshgate_protect::MaskKind;

fn repo() -> PathBuf {
    // Where cargo runs the test from, not where it was compiled: a build cache shared by
    // several checkouts may hold a binary compiled in another one.
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from)
        .join("../..")
}

fn catalog() -> Catalog {
    Catalog::load_dir(&repo().join("products")).expect("reference manifests load")
}

async fn policies(catalog: &Catalog) -> PolicySet {
    let sources = PolicySources::from_dir(&repo().join("policies")).expect("policy files readable");
    PolicySet::load(catalog, &sources)
        .await
        .expect("reference policies load")
}

fn users() -> UserDirectory {
    let path = repo().join("policies/users.toml");
    UserDirectory::parse("users.toml", &std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The reference mesh's users (`policies/users.toml`; passwords `<user>-pw`).
const DEMO_USERS: [&str; 6] = [
    "cib-reporting",
    "ccb-fraud",
    "risk-officer",
    "ref-owner",
    "auditor",
    "intern",
];

fn principal(name: &str) -> Principal {
    users()
        .principal(name)
        .unwrap_or_else(|| panic!("demo user {name}"))
        .clone()
}

/// What one principal sees of one table, in a form easy to compare.
#[derive(Debug, PartialEq)]
enum Seen {
    Denied,
    Sees {
        rows: String,
        columns: Vec<(&'static str, Treatment)>,
    },
}

async fn seen(set: &PolicySet, catalog: &Catalog, who: &str, domain: &str, table: &str) -> Seen {
    match set
        .resolve_by_name(catalog, &principal(who), domain, table)
        .unwrap()
    {
        Err(Denial::NotPermitted { product, .. }) => {
            assert_eq!(product, format!("{domain}.{table}"));
            Seen::Denied
        }
        Err(other) => panic!("{who} on {domain}.{table}: unexpected denial {other}"),
        Ok(resolved) => {
            let rows = resolved
                .restrictions
                .iter()
                .map(|f| f.expr.to_string())
                .collect::<Vec<_>>()
                .join(" AND ");
            let interesting = [
                "tax_id",
                "contact_email",
                "internal_rating",
                "card_number",
                "trader_id",
            ];
            let columns = resolved
                .columns
                .iter()
                .filter_map(|c| {
                    interesting
                        .iter()
                        .find(|n| **n == c.name)
                        .map(|n| (*n, c.treatment.clone()))
                })
                .collect();
            // Every non-sensitive column is clear for everyone who gets in.
            for c in &resolved.columns {
                if !interesting.contains(&c.name.as_str()) {
                    assert_eq!(c.treatment, Treatment::Clear, "{who}: {}", c.name);
                }
            }
            Seen::Sees {
                rows: if rows.is_empty() { "all".into() } else { rows },
                columns,
            }
        }
    }
}

fn sees(rows: &str, columns: Vec<(&'static str, Treatment)>) -> Seen {
    Seen::Sees {
        rows: rows.into(),
        columns,
    }
}

#[tokio::test]
async fn every_cell_of_the_reference_table() {
    let catalog = catalog();
    let set = policies(&catalog).await;
    let token = |d: &str| Treatment::Tokenize(d.into());
    let email = Treatment::Mask(MaskKind::Email);
    use Treatment::{Clear, Hidden};

    let cp = |who| seen(&set, &catalog, who, "reference", "counterparties");
    assert_eq!(
        cp("cib-reporting").await,
        sees(
            "lob = 'CIB'",
            vec![
                ("tax_id", token("reference")),
                ("contact_email", email.clone()),
                ("internal_rating", Hidden)
            ]
        )
    );
    assert_eq!(
        cp("ccb-fraud").await,
        sees(
            "lob = 'CCB'",
            vec![
                ("tax_id", token("reference")),
                ("contact_email", email.clone()),
                ("internal_rating", Hidden)
            ]
        )
    );
    assert_eq!(
        cp("risk-officer").await,
        sees(
            "all",
            vec![
                ("tax_id", token("reference")),
                ("contact_email", email.clone()),
                ("internal_rating", Clear)
            ]
        )
    );
    assert_eq!(
        cp("ref-owner").await,
        sees(
            "all",
            vec![
                ("tax_id", Clear),
                ("contact_email", Clear),
                ("internal_rating", Clear)
            ]
        )
    );
    assert_eq!(cp("auditor").await, Seen::Denied);
    assert_eq!(cp("intern").await, Seen::Denied);

    let tx = |who| seen(&set, &catalog, who, "payments", "transactions");
    assert_eq!(tx("cib-reporting").await, Seen::Denied);
    assert_eq!(
        tx("ccb-fraud").await,
        sees("lob = 'CCB'", vec![("card_number", token("payments"))])
    );
    assert_eq!(
        tx("risk-officer").await,
        sees(
            "all",
            vec![("card_number", Treatment::Mask(MaskKind::ShowLast4))]
        )
    );
    for who in ["ref-owner", "auditor", "intern"] {
        assert_eq!(tx(who).await, Seen::Denied, "{who}");
    }

    let tr = |who| seen(&set, &catalog, who, "markets", "trades");
    assert_eq!(
        tr("cib-reporting").await,
        sees("lob = 'CIB'", vec![("trader_id", token("markets"))])
    );
    assert_eq!(
        tr("risk-officer").await,
        sees("all", vec![("trader_id", Clear)])
    );
    for who in ["ccb-fraud", "ref-owner", "auditor", "intern"] {
        assert_eq!(tr(who).await, Seen::Denied, "{who}");
    }
}

#[tokio::test]
async fn denial_names_the_product_and_how_to_ask() {
    let catalog = catalog();
    let set = policies(&catalog).await;
    let err = set
        .resolve_by_name(&catalog, &principal("intern"), "payments", "transactions")
        .unwrap()
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("payments.transactions")
            && text.contains("payments-core")
            && text.contains("#payments-data"),
        "{text}"
    );
}

#[tokio::test]
async fn unknown_principals_and_missing_attributes_are_denied() {
    let catalog = catalog();
    let set = policies(&catalog).await;
    let stranger = Principal::new("mallory");
    assert!(matches!(
        set.resolve_by_name(&catalog, &stranger, "reference", "counterparties")
            .unwrap(),
        Err(Denial::NotPermitted { .. })
    ));
    // A LOB system whose token lacks the lob attribute gets nothing, not everything.
    let no_lob = Principal::new("cib-reporting");
    let err = set
        .resolve_by_name(&catalog, &no_lob, "reference", "counterparties")
        .unwrap()
        .unwrap_err();
    assert!(
        matches!(&err, Denial::Unresolvable { reason, .. } if reason.contains("`lob`")),
        "{err}"
    );
    // Ids with separators cannot smuggle roles into the subject set.
    let sneaky = Principal::new("x|role:firmwide-risk|");
    assert!(matches!(
        set.resolve_by_name(&catalog, &sneaky, "markets", "trades")
            .unwrap(),
        Err(Denial::MalformedPrincipal { .. })
    ));
}

#[tokio::test]
async fn a_role_from_authentication_counts_like_a_casbin_role() {
    let catalog = catalog();
    let set = policies(&catalog).await;
    let risk = Principal::new("new-risk-analyst").with_role("firmwide-risk");
    let resolved = set
        .resolve_by_name(&catalog, &risk, "markets", "trades")
        .unwrap()
        .unwrap();
    assert!(resolved.restrictions.is_empty());
    // Deny overrides allow: an auditor who is also firm-wide risk reads nothing.
    let both = Principal::new("dual")
        .with_role("firmwide-risk")
        .with_role("auditor");
    assert!(matches!(
        set.resolve_by_name(&catalog, &both, "markets", "trades")
            .unwrap(),
        Err(Denial::NotPermitted { .. })
    ));
}

#[tokio::test]
async fn demo_passwords_verify() {
    let users = users();
    for name in DEMO_USERS {
        assert!(
            users.authenticate(name, &format!("{name}-pw")).is_ok(),
            "{name}"
        );
    }
    assert!(users.authenticate("cib-reporting", "ccb-fraud-pw").is_err());
    let text = std::fs::read_to_string(repo().join("policies/users.toml")).unwrap();
    assert!(
        !text.contains("\"cib-reporting-pw\""),
        "no clear passwords in the users file"
    );
}

async fn load_error(edit: impl Fn(&mut PolicySources)) -> String {
    let catalog = catalog();
    let mut sources = PolicySources::from_dir(&repo().join("policies")).unwrap();
    edit(&mut sources);
    PolicySet::load(&catalog, &sources)
        .await
        .unwrap_err()
        .to_string()
}

fn edit_product(sources: &mut PolicySources, product: &str, from: &str, to: &str) {
    let source = sources
        .products
        .iter_mut()
        .find(|s| s.name.ends_with(&format!("{product}.toml")))
        .unwrap();
    assert!(source.text.contains(from), "fixture text `{from}` missing");
    source.text = source.text.replacen(from, to, 1);
}

#[tokio::test]
async fn load_errors_name_file_line_and_rule() {
    let err = load_error(|s| {
        edit_product(
            s,
            "payments.transactions",
            "mask(show-last-4)",
            "mask(show-last-5)",
        )
    })
    .await;
    assert!(
        err.contains("payments.transactions.toml:33: rule `card-last-4-for-risk`")
            && err.contains("unknown mask kind"),
        "{err}"
    );

    let err = load_error(|s| {
        edit_product(
            s,
            "payments.transactions",
            "except = [\"role:firmwide-risk\"]",
            "",
        )
    })
    .await;
    assert!(
        err.contains("rule `card-last-4-for-risk`") && err.contains("two masks on one column"),
        "{err}"
    );

    let err = load_error(|s| {
        edit_product(
            s,
            "markets.trades",
            "column = \"trader_id\"",
            "column = \"trader\"",
        )
    })
    .await;
    assert!(
        err.contains("markets.trades.toml:") && err.contains("no column `trader`"),
        "{err}"
    );

    let err = load_error(|s| {
        edit_product(
            s,
            "markets.trades",
            "treatment = \"clear\"",
            "treatment = \"Clear\"",
        )
    })
    .await;
    assert!(
        err.contains("rule `trader-clear-for-risk`") && err.contains("unknown treatment `Clear`"),
        "{err}"
    );

    let err = load_error(|s| edit_product(s, "markets.trades", "except = [", "expect = [")).await;
    assert!(
        err.contains("markets.trades.toml:") && err.contains("expect"),
        "{err}"
    );

    let err = load_error(|s| {
        edit_product(
            s,
            "markets.trades",
            "${principal.lob}",
            "'${principal.lob}'",
        )
    })
    .await;
    assert!(
        err.contains("rule `lob-systems-see-own-lob`") && err.contains("must not be quoted"),
        "{err}"
    );

    let err = load_error(|s| {
        s.access_rules.text = s.access_rules.text.replace("read, deny", "read, Deny")
    })
    .await;
    assert!(
        err.contains("access.csv:24") && err.contains("unknown effect `Deny`"),
        "{err}"
    );

    let err = load_error(|s| {
        s.access_rules
            .text
            .push_str("p, intern, payments, payments.transaction, read, allow\n")
    })
    .await;
    assert!(
        err.contains("unknown product `payments.transaction`"),
        "{err}"
    );

    let err = load_error(|s| {
        s.products.push(Source::new(
            "dup.toml",
            "[policy]\nproduct = \"markets.trades\"\nversion = 2\n",
        ))
    })
    .await;
    assert!(
        err.contains("dup.toml") && err.contains("already has a policy"),
        "{err}"
    );
}

#[tokio::test]
async fn a_product_without_a_policy_file_is_denied_to_everyone() {
    let catalog = catalog();
    let mut sources = PolicySources::from_dir(&repo().join("policies")).unwrap();
    sources
        .products
        .retain(|s| !s.name.ends_with("markets.trades.toml"));
    let set = PolicySet::load(&catalog, &sources).await.unwrap();
    let err = set
        .resolve_by_name(&catalog, &principal("risk-officer"), "markets", "trades")
        .unwrap()
        .unwrap_err();
    assert!(matches!(err, Denial::NoPolicy { .. }), "{err}");
}

#[tokio::test]
async fn the_deny_check_that_admits_grants_matches_exactly_the_deny_lines() {
    let catalog = catalog();
    let set = policies(&catalog).await;
    let access = set.access();
    // The shipped model is deny-overrides-allow, so grants are admitted by this check
    // instead of by casbin over one line per grant.
    assert!(access.checks_denials());
    for (who, product, denied) in [
        ("auditor", "reference.counterparties", true),
        ("auditor", "payments.transactions", true),
        ("intern", "payments.transactions", false),
        ("cib-reporting", "payments.transactions", false),
        ("risk-officer", "markets.trades", false),
        ("ref-owner", "reference.counterparties", false),
    ] {
        let (domain, _) = product.split_once('.').unwrap();
        let subjects = access.subjects(&principal(who), domain);
        assert_eq!(
            access.denies(&subjects, domain, product),
            Some(Ok(denied)),
            "{who} on {product}"
        );
    }

    // Under another effect a deny line does not mean what it means here, so the check
    // declines and grants go through casbin again.
    let mut sources = PolicySources::from_dir(&repo().join("policies")).unwrap();
    let shipped = "e = some(where (p.eft == allow)) && !some(where (p.eft == deny))";
    assert!(sources.access_model.text.contains(shipped));
    sources.access_model.text = sources
        .access_model
        .text
        .replace(shipped, "e = some(where (p.eft == allow))");
    let other = PolicySet::load(&catalog, &sources).await.unwrap();
    assert!(!other.access().checks_denials());
    let subjects = other.access().subjects(&principal("auditor"), "payments");
    assert_eq!(
        other
            .access()
            .denies(&subjects, "payments", "payments.transactions"),
        None
    );

    // Without any deny line nothing is denied (the check holds the deny lines alone).
    let mut sources = PolicySources::from_dir(&repo().join("policies")).unwrap();
    sources.access_rules.text = sources
        .access_rules
        .text
        .lines()
        .filter(|line| !line.trim_end().ends_with("deny"))
        .collect::<Vec<_>>()
        .join("\n");
    let no_deny = PolicySet::load(&catalog, &sources).await.unwrap();
    assert!(no_deny.access().checks_denials());
    let subjects = no_deny.access().subjects(&principal("auditor"), "payments");
    assert_eq!(
        no_deny
            .access()
            .denies(&subjects, "payments", "payments.transactions"),
        Some(Ok(false))
    );
}

/// A policy set remembers what it resolved, keyed by the whole principal: the same id with
/// other attributes (another token) or none is resolved afresh, never handed the first
/// caller's view.
#[tokio::test]
async fn a_remembered_resolution_is_never_handed_to_a_caller_with_other_attributes() {
    let catalog = catalog();
    let set = policies(&catalog).await;
    let resolve = |p: &Principal| {
        set.resolve_by_name(&catalog, p, "reference", "counterparties")
            .unwrap()
    };
    let cib = principal("cib-reporting");
    let first = resolve(&cib).unwrap();
    assert_eq!(
        resolve(&cib).unwrap(),
        first,
        "the same caller, the same view"
    );
    let rows = |r: &meshgate_policy::ResolvedTablePolicy| {
        format!("{:?} {:?}", r.admission, r.restrictions)
    };
    assert!(rows(&first).contains("CIB"), "{}", rows(&first));

    let other_lob = Principal::new("cib-reporting")
        .with_attribute("lob", "CCB")
        .with_attribute("domain", "markets")
        .with_attribute("app", "cib-regulatory-report");
    let other = resolve(&other_lob).unwrap();
    assert!(rows(&other).contains("CCB"), "{}", rows(&other));
    assert!(!rows(&other).contains("CIB"), "{}", rows(&other));

    let bare = Principal::new("cib-reporting");
    assert!(
        matches!(resolve(&bare), Err(Denial::Unresolvable { .. })),
        "a caller without the attribute is denied even after the full one was resolved"
    );
}

/// For the shipped model, decisions are made over the `p` lines indexed by product rather
/// than by casbin's matcher on every line (`lines.rs`). The index must decide exactly as
/// casbin does: compared on every principal (the reference users, and callers with each
/// role) and every product, for the reference rules and for 300 generated rule sets mixing
/// subjects (`*`, ids, roles), domains (`*`, each, a mismatch), objects (ids, prefixes,
/// `*`) and effects, against a plain casbin enforcer over the same model and lines; and the
/// deny check (what admits grants) against casbin with deny lines alone.
#[tokio::test]
async fn the_indexed_decision_is_casbins() {
    use casbin::function_map::{OperatorFunction, key_match};
    use casbin::rhai::Dynamic;
    use casbin::{CoreApi, DefaultModel, Enforcer, MemoryAdapter, MgmtApi};
    use meshgate_policy::access::AccessControl;

    fn subject_in(request: Dynamic, rule: Dynamic) -> Dynamic {
        let request = request.into_immutable_string().unwrap();
        let rule = rule.into_immutable_string().unwrap();
        (rule.as_str() == "*" || request.contains(&format!("|{rule}|"))).into()
    }
    async fn casbin(model: &str, effect: Option<&str>, rules: &str, deny_only: bool) -> Enforcer {
        let mut model = DefaultModel::from_str(model).await.unwrap();
        if let Some(effect) = effect {
            use casbin::Model;
            model.add_def("e", "e", effect);
        }
        let mut enforcer = Enforcer::new(model, MemoryAdapter::default())
            .await
            .unwrap();
        enforcer.add_function("subjectIn", OperatorFunction::Arg2(subject_in));
        enforcer
            .get_role_manager()
            .write()
            .matching_fn(None, Some(key_match));
        let fields = |l: &str| -> Vec<String> {
            l.split(',').skip(1).map(|f| f.trim().to_string()).collect()
        };
        let lines = rules.lines().map(str::trim);
        let g: Vec<Vec<String>> = lines
            .clone()
            .filter(|l| l.starts_with("g,"))
            .map(fields)
            .collect();
        let p: Vec<Vec<String>> = lines
            .filter(|l| l.starts_with("p,") && (!deny_only || l.ends_with("deny")))
            .map(fields)
            .collect();
        if !g.is_empty() {
            enforcer.add_grouping_policies(g).await.unwrap();
        }
        if !p.is_empty() {
            enforcer.add_policies(p).await.unwrap();
        }
        enforcer
    }

    let catalog = catalog();
    let sources = PolicySources::from_dir(&repo().join("policies")).unwrap();
    let model = sources.access_model.text.clone();
    let roles = [
        "lob-system",
        "auditor",
        "firmwide-risk",
        "reference-owner",
        "x",
    ];
    let mut callers: Vec<Principal> = DEMO_USERS.into_iter().map(principal).collect();
    callers.extend(
        roles
            .iter()
            .map(|r| Principal::new(format!("someone-{r}")).with_role(*r)),
    );
    callers.push(Principal::new("nobody"));
    let products: Vec<(String, String)> = catalog
        .products()
        .map(|p| (p.domain.clone(), p.id.clone()))
        .collect();

    // The reference rules, then generated ones (a fixed linear congruential sequence).
    let subjects = [
        "*",
        "ccb-fraud",
        "intern",
        "role:lob-system",
        "role:auditor",
        "role:x",
    ];
    let domains = ["*", "reference", "payments", "markets"];
    let objects = [
        "*",
        "reference.*",
        "payments.*",
        "reference.counterparties",
        "payments.transactions",
        "markets.trades",
    ];
    let mut seed: u64 = 0x5eed;
    let mut next = |n: usize| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) as usize % n
    };
    let mut rule_sets = vec![sources.access_rules.text.clone()];
    for _ in 0..300 {
        let mut text =
            String::from("g, intern, role:x, reference\ng, role:x, role:lob-system, *\n");
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1 + next(8) {
            let line = format!(
                "p, {}, {}, {}, read, {}\n",
                subjects[next(subjects.len())],
                domains[next(domains.len())],
                objects[next(objects.len())],
                if next(3) == 0 { "deny" } else { "allow" }
            );
            if seen.insert(line.clone()) {
                text.push_str(&line);
            }
        }
        rule_sets.push(text);
    }

    let mut decisions = [0usize; 2];
    for rules in &rule_sets {
        let access = AccessControl::load("access.conf", &model, "access.csv", rules, &catalog)
            .await
            .unwrap();
        assert!(
            access.indexed(),
            "the shipped model is decided by the index"
        );
        let full = casbin(&model, None, rules, false).await;
        let denies = casbin(&model, Some("!some(where (p.eft == deny))"), rules, true).await;
        for caller in &callers {
            for (domain, product) in &products {
                let set = access.subjects(caller, domain);
                let mut encoding = format!("|{}|", set.id());
                for role in set.roles() {
                    encoding.push_str(&format!("role:{role}|"));
                }
                let request = (encoding.clone(), domain.clone(), product.clone(), "read");
                let expected = full.enforce(request.clone()).unwrap();
                let case = format!("{} on {product} under\n{rules}", caller.id());
                assert_eq!(
                    access.enforce(&set, domain, product).unwrap(),
                    expected,
                    "{case}"
                );
                let denied = !denies.enforce(request).unwrap();
                assert_eq!(
                    access.denies(&set, domain, product).unwrap().unwrap(),
                    denied,
                    "{case}"
                );
                decisions[usize::from(expected)] += 1;
            }
        }
    }
    // Both answers were exercised many times.
    assert!(decisions[0] > 1000 && decisions[1] > 1000, "{decisions:?}");
}
