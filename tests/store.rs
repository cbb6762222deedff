//! The governance store's contract, run against both stores: the embedded SQLite file and a
//! real PostgreSQL server (a cluster of its own per test, see `support/postgres.rs`). Each test
//! is written once against `dyn GovernanceStore` and the access workflow over it, with the
//! reference manifests; `both!` runs it on each store.

use std::sync::Arc;

use meshgate::catalog::Catalog;
use meshgate::governance::*;

use crate::support::postgres::Postgres;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Sqlite,
    Postgres,
}

/// Where a test's store lives; opening it again reaches the same records.
struct Place {
    dir: tempfile::TempDir,
    postgres: Option<(Postgres, String)>,
}

impl Place {
    fn new(kind: Kind) -> Self {
        let postgres = match kind {
            Kind::Sqlite => None,
            Kind::Postgres => {
                let server = Postgres::start();
                let url = server.database("meshgate");
                Some((server, url))
            }
        };
        Self {
            dir: tempfile::tempdir().unwrap(),
            postgres,
        }
    }

    fn sqlite_path(&self) -> std::path::PathBuf {
        self.dir.path().join("state/meshgate.db")
    }

    /// The store at schema `version` (`None`: the newest).
    async fn open_at(&self, version: Option<i64>) -> Arc<dyn GovernanceStore> {
        match &self.postgres {
            None => Arc::new(
                SqliteStore::open_at(&self.sqlite_path(), version)
                    .await
                    .unwrap(),
            ),
            Some((server, url)) => Arc::new(
                PostgresStore::open_at(&server.options(url), version)
                    .await
                    .unwrap(),
            ),
        }
    }

    async fn open(&self) -> Arc<dyn GovernanceStore> {
        self.open_at(None).await
    }

    async fn applied_migrations(&self) -> Vec<i64> {
        match &self.postgres {
            None => SqliteStore::open(&self.sqlite_path())
                .await
                .unwrap()
                .applied_migrations()
                .await
                .unwrap(),
            Some((server, url)) => PostgresStore::open(&server.options(url))
                .await
                .unwrap()
                .applied_migrations()
                .await
                .unwrap(),
        }
    }

    fn all_migrations(&self) -> Vec<i64> {
        match &self.postgres {
            None => vec![1, 2, 3, 4],
            Some(_) => vec![1, 2, 3],
        }
    }

    /// The schema version before the audit's `replica` column.
    fn before_replica(&self) -> i64 {
        match &self.postgres {
            None => 2,
            Some(_) => 1,
        }
    }
}

/// Each test, once per store.
macro_rules! both {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Kind::Sqlite).await
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                super::$name(super::Kind::Postgres).await
            })*
        }
    };
}

both!(
    request_approve_revoke_and_who_may_do_what,
    requests_are_checked_rejected_and_cancelled,
    grants_and_requests_expire_and_state_survives_a_reopen,
    audit_records_round_trip_and_fold_into_flows,
    audit_reads_apply_the_viewers_rule_and_one_page_in_the_store,
    request_and_grant_reads_apply_the_viewers_rule_in_the_store,
    an_old_store_is_upgraded_and_keeps_its_records,
    two_gateways_on_one_store_see_each_others_decisions,
    concurrent_audit_writes_commit_together_and_fail_alone,
);

/// Concurrent queries' records and outcomes share transactions (group commit); each write
/// still gets its own answer: every record that returned `Ok` is there with its outcome, and
/// a write the database refuses (a duplicate query id) fails alone, not its batch.
async fn concurrent_audit_writes_commit_together_and_fail_alone(kind: Kind) {
    let place = Place::new(kind);
    let store = place.open().await;
    let record = |id: usize| AuditRecord {
        query_id: format!("q{id:03}"),
        started_at: i64::try_from(id).unwrap(),
        principal: "intern".into(),
        app: None,
        client: None,
        method: "library".into(),
        statement_sha256: "cd".repeat(32),
        statement: None,
        policy_version: "p1".into(),
        decision: Decision::Allow,
        tables: vec![AuditTable {
            product: "reference.counterparties".into(),
            table: "counterparties".into(),
            access: TableAccess::Read,
            policy_id: None,
            row_filters: vec![],
            grant_ids: vec![],
            columns: vec![AuditColumn {
                name: "tax_id".into(),
                treatment: "tokenize(reference)".into(),
                rule: None,
            }],
        }],
        error: None,
        replica: None,
    };
    store.record_query(&record(7)).await.unwrap();
    let mut tasks = Vec::new();
    for id in 0..40 {
        let store = Arc::clone(&store);
        let record = record(if id == 20 { 7 } else { 100 + id });
        tasks.push(tokio::spawn(async move {
            store.record_query(&record).await?;
            let outcome = AuditOutcome {
                status: QueryStatus::Ok,
                rows_returned: 5,
                bytes_returned: 50,
                duration_ms: 1,
                error: None,
                workers: vec![],
            };
            store.finish_query(&record.query_id, &outcome).await
        }));
    }
    let mut failed = Vec::new();
    for (id, task) in tasks.into_iter().enumerate() {
        if task.await.unwrap().is_err() {
            failed.push(id);
        }
    }
    assert_eq!(failed, [20], "only the duplicate fails");
    let stored = store.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(stored.len(), 40);
    for r in stored.iter().filter(|r| r.record.query_id != "q007") {
        assert_eq!(r.rows_returned, Some(5), "{}", r.record.query_id);
        assert_eq!(r.record.tables[0].columns.len(), 1);
    }
}

fn catalog() -> Catalog {
    meshgate_reference::catalog().unwrap()
}

fn no_filter_check() -> impl Fn(&meshgate::catalog::Product, &str) -> Result<(), String> + Sync {
    |_p: &meshgate::catalog::Product, f: &str| {
        if f.contains("nope") {
            Err("unknown column nope".into())
        } else {
            Ok(())
        }
    }
}

fn ask(product: &str, columns: &[&str]) -> NewRequest {
    NewRequest {
        product: product.into(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        purpose: "quarterly onboarding review".into(),
        valid_days: Some(30),
    }
}

async fn request_approve_revoke_and_who_may_do_what(kind: Kind) {
    let place = Place::new(kind);
    let store = place.open().await;
    let catalog = catalog();
    let flow = Workflow::new(store.as_ref(), std::sync::Arc::new(catalog.clone()));
    let check = no_filter_check();
    let generation = store.grant_generation().await.unwrap();

    let request = flow
        .request(
            "intern",
            ask(
                "reference.counterparties",
                &["counterparty_id", "counterparties.lob", "country"],
            ),
        )
        .await
        .unwrap();
    assert_eq!(request.state, RequestState::Pending);
    assert_eq!(
        request.columns.as_deref().unwrap(),
        [
            "counterparties.counterparty_id",
            "counterparties.country",
            "counterparties.lob"
        ]
    );

    // Nobody approves their own request; only the owner (or a delegate) decides.
    let own = flow
        .approve("intern", &request.id, Approval::default(), &check)
        .await
        .unwrap_err();
    assert!(matches!(own, GovernanceError::NotAllowed(_)), "{own}");
    assert!(own.to_string().contains("own access request"), "{own}");
    for stranger in ["auditor", "risk-officer", "cib-reporting"] {
        let err = flow
            .approve(stranger, &request.id, Approval::default(), &check)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("only an owner or delegate of `reference.counterparties`"),
            "{err}"
        );
        let err = flow.reject(stranger, &request.id, None).await.unwrap_err();
        assert!(matches!(err, GovernanceError::NotAllowed(_)), "{err}");
        let err = flow.cancel(stranger, &request.id).await.unwrap_err();
        assert!(matches!(err, GovernanceError::NotAllowed(_)), "{err}");
    }
    // An approval narrows, never widens.
    let wider = Approval {
        columns: vec!["tax_id".into()],
        ..Approval::default()
    };
    let err = flow
        .approve("ref-owner", &request.id, wider, &check)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("was not requested"), "{err}");
    let longer = Approval {
        valid_days: Some(31),
        ..Approval::default()
    };
    assert!(
        flow.approve("ref-owner", &request.id, longer, &check)
            .await
            .is_err()
    );
    let bad_filter = Approval {
        row_filter: Some("nope = 1".into()),
        ..Approval::default()
    };
    let err = flow
        .approve("ref-owner", &request.id, bad_filter, &check)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("unknown column nope"), "{err}");
    assert_eq!(
        store.grant_generation().await.unwrap(),
        generation,
        "refusals change nothing"
    );

    let approval = Approval {
        columns: vec!["counterparty_id".into(), "lob".into()],
        row_filter: Some("country = 'GB'".into()),
        valid_days: Some(7),
        comment: Some("for the review only".into()),
    };
    let (decided, grant) = flow
        .approve("ref-owner", &request.id, approval, &check)
        .await
        .unwrap();
    assert_eq!(decided.state, RequestState::Approved);
    assert_eq!(decided.grant_id.as_deref(), Some(grant.id.as_str()));
    assert_eq!(grant.principal, "intern");
    assert_eq!(grant.approved_by, "ref-owner");
    assert_eq!(
        grant.columns.as_deref().unwrap(),
        ["counterparties.counterparty_id", "counterparties.lob"]
    );
    assert_eq!(grant.row_filter.as_deref(), Some("country = 'GB'"));
    assert_eq!(grant.valid_until - grant.created_at, 7 * DAY_MILLIS);
    assert!(store.grant_generation().await.unwrap() > generation);
    let in_force = store.grants_in_force(now_millis()).await.unwrap();
    assert_eq!(in_force, vec![grant.clone()]);

    // Decided once: a second decision is a conflict, whoever makes it.
    let again = flow
        .reject("ref-owner", &request.id, None)
        .await
        .unwrap_err();
    assert!(matches!(again, GovernanceError::Conflict(_)), "{again}");

    // Suspend and resume, then revoke; only the owner may.
    assert!(flow.revoke("intern", &grant.id, None).await.is_err());
    let g = flow
        .suspend("ref-owner", &grant.id, Some("incident".into()))
        .await
        .unwrap();
    assert_eq!(g.state, GrantState::Suspended);
    assert!(
        store
            .grants_in_force(now_millis())
            .await
            .unwrap()
            .is_empty()
    );
    let g = flow.resume("ref-owner", &grant.id, None).await.unwrap();
    assert_eq!(g.state, GrantState::Active);
    let g = flow
        .revoke("ref-owner", &grant.id, Some("review done".into()))
        .await
        .unwrap();
    assert_eq!(g.state, GrantState::Revoked);
    assert!(
        store
            .grants_in_force(now_millis())
            .await
            .unwrap()
            .is_empty()
    );
    let err = flow.resume("ref-owner", &grant.id, None).await.unwrap_err();
    assert!(matches!(err, GovernanceError::Conflict(_)), "{err}");
}

async fn requests_are_checked_rejected_and_cancelled(kind: Kind) {
    let place = Place::new(kind);
    let store = place.open().await;
    let catalog = catalog();
    let flow = Workflow::new(store.as_ref(), std::sync::Arc::new(catalog.clone()));

    let err = flow
        .request("intern", ask("reference.nothing", &[]))
        .await
        .unwrap_err();
    assert!(matches!(err, GovernanceError::NotFound(_)), "{err}");
    let err = flow
        .request("intern", ask("reference.counterparties", &["salary"]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("has no column `salary`"), "{err}");
    let err = flow
        .request(
            "intern",
            NewRequest {
                purpose: "  ".into(),
                ..ask("markets.trades", &[])
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("purpose"), "{err}");
    let err = flow
        .request(
            "intern",
            NewRequest {
                valid_days: Some(400),
                ..ask("markets.trades", &[])
            },
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("1 to 365 days"), "{err}");
    let err = flow
        .request("ref-owner", ask("reference.counterparties", &[]))
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("owners do not request access"),
        "{err}"
    );

    let whole = flow
        .request("intern", ask("reference.counterparties", &[]))
        .await
        .unwrap();
    assert_eq!(whole.columns, None);
    let rejected = flow
        .reject(
            "ref-owner",
            &whole.id,
            Some("use the public extract".into()),
        )
        .await
        .unwrap();
    assert_eq!(rejected.state, RequestState::Rejected);
    assert_eq!(rejected.decided_by.as_deref(), Some("ref-owner"));

    let other = flow
        .request("intern", ask("reference.counterparties", &[]))
        .await
        .unwrap();
    let cancelled = flow.cancel("intern", &other.id).await.unwrap();
    assert_eq!(cancelled.state, RequestState::Cancelled);
    assert!(store.grants(None).await.unwrap().is_empty());

    // Who sees which requests.
    let intern = Viewer {
        id: "intern".into(),
        auditor: false,
    };
    let owner = Viewer {
        id: "ref-owner".into(),
        auditor: false,
    };
    let auditor = Viewer {
        id: "auditor".into(),
        auditor: true,
    };
    let trades = flow
        .request("ccb-fraud", ask("markets.trades", &[]))
        .await
        .unwrap();
    let ids = |rs: Vec<AccessRequest>| rs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    assert_eq!(
        ids(flow.visible_requests(&intern).await.unwrap()),
        [whole.id.clone(), other.id.clone()]
    );
    assert_eq!(
        ids(flow.visible_requests(&owner).await.unwrap()),
        [whole.id.clone(), other.id.clone()]
    );
    assert_eq!(
        ids(flow.visible_requests(&auditor).await.unwrap()),
        [whole.id, other.id, trades.id]
    );
}

async fn grants_and_requests_expire_and_state_survives_a_reopen(kind: Kind) {
    let place = Place::new(kind);
    let catalog = catalog();
    let (grant_id, request_id) = {
        let store = place.open().await;
        assert_eq!(place.applied_migrations().await, place.all_migrations());
        let flow = Workflow::new(store.as_ref(), std::sync::Arc::new(catalog.clone()));
        let check = no_filter_check();
        let r = flow
            .request("intern", ask("reference.counterparties", &[]))
            .await
            .unwrap();
        let (_, grant) = flow
            .approve(
                "ref-owner",
                &r.id,
                Approval {
                    valid_days: Some(1),
                    ..Approval::default()
                },
                &check,
            )
            .await
            .unwrap();
        let pending = flow
            .request("intern", ask("markets.trades", &[]))
            .await
            .unwrap();
        (grant.id, pending.id)
    };
    let store = place.open().await;
    assert_eq!(
        place.applied_migrations().await,
        place.all_migrations(),
        "migrations run once"
    );
    let now = now_millis();
    assert_eq!(store.grants_in_force(now).await.unwrap().len(), 1);
    // A day later the grant is not in force, before and after the sweep marks it.
    let later = now + DAY_MILLIS + 1000;
    assert!(store.grants_in_force(later).await.unwrap().is_empty());
    let before = store.grant_generation().await.unwrap();
    store.expire(later).await.unwrap();
    assert_eq!(
        store.grant(&grant_id).await.unwrap().unwrap().state,
        GrantState::Expired
    );
    assert!(store.grant_generation().await.unwrap() > before);
    // Undecided requests expire after 30 days.
    store.expire(now + 31 * DAY_MILLIS).await.unwrap();
    assert_eq!(
        store.request(&request_id).await.unwrap().unwrap().state,
        RequestState::Expired
    );
}

async fn audit_records_round_trip_and_fold_into_flows(kind: Kind) {
    let place = Place::new(kind);
    let store = place.open().await;
    let record =
        |id: &str, principal: &str, app: Option<&str>, decision: Decision, at: i64| AuditRecord {
            query_id: id.into(),
            started_at: at,
            principal: principal.into(),
            app: app.map(str::to_string),
            client: Some("127.0.0.1:5000".into()),
            method: "DoGet".into(),
            statement_sha256: "ab".repeat(32),
            statement: None,
            policy_version: "p1".into(),
            decision,
            tables: vec![AuditTable {
                product: "reference.counterparties".into(),
                table: "counterparties".into(),
                access: TableAccess::Read,
                policy_id: Some("reference.counterparties@v1".into()),
                row_filters: vec!["lob-systems-see-own-lob".into()],
                grant_ids: vec![],
                columns: vec![
                    AuditColumn {
                        name: "lob".into(),
                        treatment: "clear".into(),
                        rule: None,
                    },
                    AuditColumn {
                        name: "tax_id".into(),
                        treatment: "tokenize(reference)".into(),
                        rule: Some("tax-id-tokenized".into()),
                    },
                ],
            }],
            error: None,
            replica: Some("replica-a".into()),
        };
    store
        .record_query(&record(
            "q1",
            "cib-reporting",
            Some("cib-regulatory-report"),
            Decision::Allow,
            10,
        ))
        .await
        .unwrap();
    store
        .finish_query(
            "q1",
            &AuditOutcome {
                status: QueryStatus::Ok,
                rows_returned: 5,
                bytes_returned: 100,
                duration_ms: 3,
                error: None,
                workers: vec!["http://w1:50061/".into(), "http://w2:50061/".into()],
            },
        )
        .await
        .unwrap();
    store
        .record_query(&record(
            "q2",
            "cib-reporting",
            Some("cib-regulatory-report"),
            Decision::Allow,
            20,
        ))
        .await
        .unwrap();
    let mut denied = record("q3", "intern", None, Decision::Deny, 30);
    denied.tables[0].columns.clear();
    denied.error = Some("not permitted".into());
    store.record_query(&denied).await.unwrap();

    let all = store.audit(&Default::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(
        all[0].record,
        record(
            "q1",
            "cib-reporting",
            Some("cib-regulatory-report"),
            Decision::Allow,
            10
        )
    );
    assert_eq!(
        (all[0].status, all[0].rows_returned),
        (QueryStatus::Ok, Some(5))
    );
    assert_eq!(all[0].workers, ["http://w1:50061/", "http://w2:50061/"]);
    assert_eq!(
        (all[1].status, all[1].rows_returned),
        (QueryStatus::Running, None)
    );
    assert!(all[1].workers.is_empty());
    assert_eq!(all[2].status, QueryStatus::Denied);
    assert_eq!(all[2].record, denied);

    let edges = flows(&all, |_, _| true);
    assert_eq!(edges.len(), 1, "denied queries are not flows");
    let f = &edges[0];
    assert_eq!(
        (f.product.as_str(), f.consumer_app.as_str()),
        ("reference.counterparties", "cib-regulatory-report")
    );
    assert_eq!(
        (f.queries, f.rows, f.first_access, f.last_access),
        (2, 5, 10, 20)
    );
    assert_eq!(f.columns, ["counterparties.lob", "counterparties.tax_id"]);
    assert_eq!(f.treatments, ["counterparties.tax_id: tokenize(reference)"]);
    assert!(flows(&all, |_, p| p != "reference.counterparties").is_empty());
}

/// The store applies the viewer's rule and the reader's filters itself and returns one page
/// (the newest records), oldest first; what it returns is what the rule says.
async fn audit_reads_apply_the_viewers_rule_and_one_page_in_the_store(kind: Kind) {
    let place = Place::new(kind);
    let store = place.open().await;
    let catalog = catalog();
    let record = |id: usize, principal: &str, product: &str| AuditRecord {
        query_id: format!("q{id:03}"),
        started_at: i64::try_from(id).unwrap() * 10,
        principal: principal.into(),
        app: id.is_multiple_of(3).then(|| "dashboard".to_string()),
        client: None,
        method: "library".into(),
        statement_sha256: "ab".repeat(32),
        statement: Some(format!("SELECT {id}")),
        policy_version: "p1".into(),
        decision: if id.is_multiple_of(5) {
            Decision::Deny
        } else {
            Decision::Allow
        },
        tables: vec![AuditTable {
            product: product.into(),
            table: product.rsplit('.').next().unwrap().into(),
            access: TableAccess::Read,
            policy_id: None,
            row_filters: vec![],
            grant_ids: vec![],
            columns: vec![],
        }],
        error: None,
        replica: None,
    };
    // 60 records: intern on counterparties, cib-reporting on trades, in turn.
    let mut all = Vec::new();
    for id in 0..60 {
        let r = if id % 2 == 0 {
            record(id, "intern", "reference.counterparties")
        } else {
            record(id, "cib-reporting", "markets.trades")
        };
        store.record_query(&r).await.unwrap();
        all.push(r);
    }
    let ids = |records: &[StoredAudit]| {
        records
            .iter()
            .map(|r| r.record.query_id.clone())
            .collect::<Vec<_>>()
    };
    let expect = |keep: &dyn Fn(&AuditRecord) -> bool, limit: usize| {
        let kept: Vec<String> = all
            .iter()
            .filter(|r| keep(r))
            .map(|r| r.query_id.clone())
            .collect();
        kept[kept.len().saturating_sub(limit)..].to_vec()
    };

    // A page of everything: the newest 20, oldest first.
    let page = AuditQuery {
        visible_to: None,
        filter: AuditFilter {
            limit: Some(20),
            ..AuditFilter::default()
        },
    };
    assert_eq!(
        ids(&store.audit(&page).await.unwrap()),
        expect(&|_| true, 20)
    );

    // The viewer's rule, in the store: intern sees their own records only.
    let intern = AuditQuery {
        visible_to: Some(VisibleTo {
            principal: "intern".into(),
            products: vec![],
        }),
        filter: AuditFilter {
            limit: Some(5),
            ..AuditFilter::default()
        },
    };
    assert_eq!(
        ids(&store.audit(&intern).await.unwrap()),
        expect(&|r| r.principal == "intern", 5)
    );
    // An owner sees records touching their products, whoever ran them, within a time window.
    let owner = AuditQuery {
        visible_to: Some(VisibleTo {
            principal: "someone-else".into(),
            products: vec!["markets.trades".into()],
        }),
        filter: AuditFilter {
            since: Some(100),
            until: Some(300),
            ..AuditFilter::default()
        },
    };
    let got = store.audit(&owner).await.unwrap();
    assert_eq!(
        ids(&got),
        expect(
            &|r| r.tables[0].product == "markets.trades" && (100..300).contains(&r.started_at),
            usize::MAX
        )
    );
    assert!(got.iter().all(|r| owner.matches(&r.record)));
    // A principal filter on top of an auditor's view.
    let theirs = AuditQuery {
        visible_to: None,
        filter: AuditFilter {
            principal: Some("cib-reporting".into()),
            limit: Some(3),
            ..AuditFilter::default()
        },
    };
    assert_eq!(
        ids(&store.audit(&theirs).await.unwrap()),
        expect(&|r| r.principal == "cib-reporting", 3)
    );
    // A page by product, application and decision (the console's audit browser), read as
    // one page by the store, below a cursor.
    let narrowed = AuditQuery {
        visible_to: None,
        filter: AuditFilter {
            product: Some("reference.counterparties".into()),
            app: Some("dashboard".into()),
            decision: Some("allow".into()),
            until: Some(500),
            limit: Some(4),
            ..AuditFilter::default()
        },
    };
    let got = store.audit(&narrowed).await.unwrap();
    assert_eq!(
        ids(&got),
        expect(
            &|r| r.tables[0].product == "reference.counterparties"
                && r.app.as_deref() == Some("dashboard")
                && r.decision == Decision::Allow
                && r.started_at < 500,
            4
        )
    );
    assert_eq!(got.len(), 4);
    assert!(got.iter().all(|r| narrowed.matches(&r.record)));

    // Through the workflow: an owner of markets.trades sees its records, not the statements
    // of others; intern sees only theirs.
    let flow = Workflow::new(store.as_ref(), std::sync::Arc::new(catalog.clone()));
    let owner_id = catalog
        .product("markets.trades")
        .unwrap()
        .owner
        .owners
        .first()
        .unwrap()
        .clone();
    let seen = flow
        .visible_audit(
            &Viewer::new(&owner_id, []),
            AuditFilter {
                limit: Some(4),
                ..AuditFilter::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        ids(&seen),
        expect(&|r| r.tables[0].product == "markets.trades", 4)
    );
    assert!(seen.iter().all(|r| r.record.statement.is_none()));
    let mine = flow
        .visible_audit(&Viewer::new("intern", []), AuditFilter::default())
        .await
        .unwrap();
    assert_eq!(ids(&mine), expect(&|r| r.principal == "intern", usize::MAX));
    assert!(mine.iter().all(|r| r.record.statement.is_some()));
}

/// Requests and grants are read with the viewer's rule applied by the store itself.
async fn request_and_grant_reads_apply_the_viewers_rule_in_the_store(kind: Kind) {
    let place = Place::new(kind);
    let store = place.open().await;
    let catalog = catalog();
    let flow = Workflow::new(store.as_ref(), std::sync::Arc::new(catalog.clone()));
    for (who, product) in [
        ("intern", "reference.counterparties"),
        ("intern", "markets.trades"),
        ("ccb-fraud", "markets.trades"),
        ("ccb-fraud", "reference.counterparties"),
    ] {
        flow.request(who, ask(product, &[])).await.unwrap();
    }
    let seen = |requests: Vec<AccessRequest>| {
        requests
            .into_iter()
            .map(|r| (r.requester, r.product))
            .collect::<Vec<_>>()
    };
    let pair = |a: &str, b: &str| (a.to_string(), b.to_string());
    let own = VisibleTo {
        principal: "intern".into(),
        products: vec![],
    };
    assert_eq!(
        seen(store.requests(Some(&own)).await.unwrap()),
        [
            pair("intern", "reference.counterparties"),
            pair("intern", "markets.trades")
        ]
    );
    let owner = VisibleTo {
        principal: "someone".into(),
        products: vec!["markets.trades".into()],
    };
    assert_eq!(
        seen(store.requests(Some(&owner)).await.unwrap()),
        [
            pair("intern", "markets.trades"),
            pair("ccb-fraud", "markets.trades")
        ]
    );
    assert_eq!(store.requests(None).await.unwrap().len(), 4);

    // Grants: approve the two requests on reference.counterparties as its owner.
    let check = no_filter_check();
    let ref_owner = &catalog
        .product("reference.counterparties")
        .unwrap()
        .owner
        .owners[0];
    for request in store.requests(None).await.unwrap() {
        if request.product == "reference.counterparties" {
            flow.approve(ref_owner, &request.id, Approval::default(), &check)
                .await
                .unwrap();
        }
    }
    let principals =
        |grants: Vec<Grant>| grants.into_iter().map(|g| g.principal).collect::<Vec<_>>();
    assert_eq!(
        principals(store.grants(Some(&own)).await.unwrap()),
        ["intern"]
    );
    assert!(store.grants(Some(&owner)).await.unwrap().is_empty());
    assert_eq!(store.grants(None).await.unwrap().len(), 2);
}

/// A store written by a gateway of the previous schema opens under this one: its records are
/// read back whole, and new records use the new column.
async fn an_old_store_is_upgraded_and_keeps_its_records(kind: Kind) {
    let place = Place::new(kind);
    let catalog = catalog();
    let old = place.open_at(Some(place.before_replica())).await;
    let request = Workflow::new(old.as_ref(), std::sync::Arc::new(catalog.clone()))
        .request("intern", ask("reference.counterparties", &[]))
        .await
        .unwrap();
    let mut record = AuditRecord {
        query_id: "before".into(),
        started_at: 1,
        principal: "intern".into(),
        app: None,
        client: None,
        method: "library".into(),
        statement_sha256: "cd".repeat(32),
        statement: None,
        policy_version: "p1".into(),
        decision: Decision::Deny,
        tables: vec![],
        error: Some("not permitted".into()),
        replica: None,
    };
    // The old schema has no replica column: an old gateway writes without it.
    old.record_query(&record).await.unwrap_err();
    drop(old);
    let old = place.open_at(Some(place.before_replica())).await;
    assert!(old.audit(&AuditQuery::default()).await.unwrap().is_empty());
    drop(old);

    let store = place.open().await;
    assert_eq!(place.applied_migrations().await, place.all_migrations());
    assert_eq!(
        store.request(&request.id).await.unwrap().unwrap(),
        request,
        "the old store's request is read back whole"
    );
    store.record_query(&record).await.unwrap();
    record.query_id = "after".into();
    record.started_at = 2;
    record.replica = Some("gw-b".into());
    store.record_query(&record).await.unwrap();
    let audit = store.audit(&AuditQuery::default()).await.unwrap();
    let replicas: Vec<_> = audit.iter().map(|a| a.record.replica.clone()).collect();
    assert_eq!(replicas, [None, Some("gw-b".to_string())]);
}

/// Two gateways (two pools) on one store: a decision taken through one changes the grant
/// generation the other reads, and two owners deciding one request at once cannot both win.
async fn two_gateways_on_one_store_see_each_others_decisions(kind: Kind) {
    let place = Place::new(kind);
    let a = place.open().await;
    let b = place.open().await;
    let catalog = catalog();
    let check = no_filter_check();
    let seen_by_b = b.grant_generation().await.unwrap();
    let request = Workflow::new(a.as_ref(), std::sync::Arc::new(catalog.clone()))
        .request("intern", ask("reference.counterparties", &[]))
        .await
        .unwrap();
    let (flow_a, flow_b) = (
        Workflow::new(a.as_ref(), std::sync::Arc::new(catalog.clone())),
        Workflow::new(b.as_ref(), std::sync::Arc::new(catalog.clone())),
    );
    let (on_a, on_b) = tokio::join!(
        flow_a.approve("ref-owner", &request.id, Approval::default(), &check),
        flow_b.reject("ref-owner", &request.id, Some("no".into())),
    );
    assert!(
        on_a.is_ok() != on_b.is_ok(),
        "exactly one decision wins: {on_a:?} {on_b:?}"
    );
    let decided = b.request(&request.id).await.unwrap().unwrap();
    match on_a {
        Ok((_, grant)) => {
            assert_eq!(decided.state, RequestState::Approved);
            assert!(b.grant_generation().await.unwrap() > seen_by_b);
            let in_force = b.grants_in_force(now_millis()).await.unwrap();
            assert_eq!(in_force, std::slice::from_ref(&grant));
            // Revoked through b: a no longer has it in force.
            let before = a.grant_generation().await.unwrap();
            Workflow::new(b.as_ref(), std::sync::Arc::new(catalog.clone()))
                .revoke("ref-owner", &grant.id, Some("left the team".into()))
                .await
                .unwrap();
            assert!(a.grant_generation().await.unwrap() > before);
            assert!(a.grants_in_force(now_millis()).await.unwrap().is_empty());
        }
        Err(_) => assert_eq!(decided.state, RequestState::Rejected),
    }
}
