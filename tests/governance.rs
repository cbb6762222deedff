//! The mesh catalog through the embedded API: access requests and grants enforced from the
//! next query, the audit record of every query (exact columns and treatments), the governed
//! `mesh_catalog` tables as each persona sees them, refusing queries when the audit log
//! cannot be written, and holding every answer until its record is committed.

use crate::support::grants;
use crate::support::truth;
use crate::support::views;

use std::collections::BTreeSet;
use std::path::Path;

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use meshgate::governance::{
    AccessRequest, Approval, AuditOutcome, AuditQuery, AuditRecord, GovernanceError,
    GovernanceStore, Grant, GrantState, Millis, NewRequest, RequestState, StoreError, StoredAudit,
    VisibleTo, Workflow,
};
use meshgate::{Gateway, GatewayError, Governance, Session};
use meshgate_lake_server::LakeServer;
use tempfile::TempDir;
use views::{Rows, local_gateway, run_gateway, sorted};

/// The reference mesh with its own, empty governance store.
async fn gateway() -> (Gateway, LakeServer, TempDir) {
    let state = tempfile::tempdir().unwrap();
    let db = state.path().join("meshgate.db");
    let (gateway, lake) = local_gateway(|c| c.governance = Governance::Sqlite(db)).await;
    (gateway, lake, state)
}

fn session(gateway: &Gateway, user: &str) -> Session {
    gateway.session(gateway.known_principal(user).unwrap())
}

async fn query(gateway: &Gateway, user: &str, sql: &str) -> Result<Rows, String> {
    run_gateway(&session(gateway, user), sql).await
}

fn cells(rows: &Rows) -> Vec<Vec<String>> {
    rows.iter()
        .map(|r| {
            r.iter()
                .map(|c| c.clone().unwrap_or_else(|| "NULL".into()))
                .collect()
        })
        .collect()
}

async fn approve(
    gateway: &Gateway,
    owner: &str,
    id: &str,
    approval: Approval,
) -> Result<String, String> {
    let check = |p: &meshgate::catalog::Product, f: &str| gateway.check_grant_filter(p, f);
    gateway
        .workflow()
        .approve(owner, id, approval, &check)
        .await
        .map(|(_, g)| g.id)
        .map_err(|e| e.to_string())
}

#[tokio::test]
async fn a_grant_applies_from_the_next_query_and_a_revocation_too() {
    let (gateway, _lake, _state) = gateway().await;
    let sql = "SELECT count(*), count(DISTINCT lob) FROM reference.counterparties";
    let denied = query(&gateway, "intern", sql).await.unwrap_err();
    assert!(
        denied.contains("may not read product `reference.counterparties`"),
        "{denied}"
    );
    assert!(
        denied.contains("meshgate access request reference.counterparties"),
        "{denied}"
    );

    let request = gateway
        .workflow()
        .request(
            "intern",
            NewRequest {
                product: "reference.counterparties".into(),
                columns: vec![
                    "counterparty_id".into(),
                    "lob".into(),
                    "country".into(),
                    "tax_id".into(),
                ],
                purpose: "onboarding analysis".into(),
                valid_days: Some(30),
            },
        )
        .await
        .unwrap();
    // Pending is not access.
    assert!(query(&gateway, "intern", sql).await.is_err());

    // Approved, narrowed to three columns and to the CIB rows.
    let approval = Approval {
        columns: vec!["counterparty_id".into(), "lob".into(), "tax_id".into()],
        row_filter: Some("lob = 'CIB'".into()),
        valid_days: None,
        comment: None,
    };
    let grant = approve(&gateway, "ref-owner", &request.id, approval)
        .await
        .unwrap();
    assert_eq!(
        cells(&query(&gateway, "intern", sql).await.unwrap()),
        [["15000", "1"]]
    );
    let star = session(&gateway, "intern")
        .collect("SELECT * FROM reference.counterparties LIMIT 1")
        .await
        .unwrap();
    let names: Vec<_> = star[0]
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    assert_eq!(
        names,
        ["counterparty_id", "lob", "tax_id"],
        "only the granted columns"
    );
    // The product policy still applies under a grant: tax_id is tokenized for everyone but
    // the owner.
    let tax = query(
        &gateway,
        "intern",
        "SELECT tax_id FROM reference.counterparties WHERE counterparty_id = 10",
    )
    .await
    .unwrap();
    assert_eq!(
        cells(&tax),
        [[truth::token("reference", &truth_tax_id(10).await)]]
    );
    let err = query(
        &gateway,
        "intern",
        "SELECT country FROM reference.counterparties",
    )
    .await
    .unwrap_err();
    assert!(err.contains("country"), "{err}");
    // Other principals are unaffected; the files still decide for them.
    assert!(query(&gateway, "auditor", sql).await.is_err());
    assert_eq!(
        cells(&query(&gateway, "cib-reporting", sql).await.unwrap()),
        [["15000", "1"]]
    );

    // Suspended, resumed, revoked: each from the very next query. The denial says the
    // grant is suspended (and why), not that there is none.
    gateway
        .workflow()
        .suspend("ref-owner", &grant, Some("quarterly review".into()))
        .await
        .unwrap();
    let suspended = query(&gateway, "intern", sql).await.unwrap_err();
    assert!(
        suspended.contains(&format!("grant `{grant}`"))
            && suspended.contains("is suspended (reason: quarterly review)")
            && suspended.contains("resume"),
        "{suspended}"
    );
    gateway
        .workflow()
        .resume("ref-owner", &grant, None)
        .await
        .unwrap();
    assert!(query(&gateway, "intern", sql).await.is_ok());
    gateway
        .workflow()
        .revoke("ref-owner", &grant, Some("done".into()))
        .await
        .unwrap();
    let err = query(&gateway, "intern", sql).await.unwrap_err();
    assert!(
        err.contains("may not read product `reference.counterparties`"),
        "{err}"
    );
}

async fn truth_tax_id(id: i64) -> String {
    let ctx = views::raw_engine().await;
    let rows = views::run_reference(
        &ctx,
        &format!("SELECT tax_id FROM raw_counterparties WHERE counterparty_id = {id}"),
    )
    .await
    .unwrap();
    rows[0][0].clone().unwrap()
}

#[tokio::test]
async fn a_deny_rule_refuses_the_request_up_front_and_bad_filters_are_refused_at_approval() {
    let (gateway, _lake, _state) = gateway().await;
    let ask = |product: &str| NewRequest {
        product: product.into(),
        columns: vec![],
        purpose: "audit sampling".into(),
        valid_days: None,
    };
    // access.csv denies auditors every product, and a deny wins over any grant: asking
    // cannot help, so the request is refused now, with that reason, not approved in vain.
    let refused = gateway
        .workflow()
        .request("auditor", ask("reference.counterparties"))
        .await
        .unwrap_err();
    assert!(
        matches!(refused, GovernanceError::Conflict(_)),
        "{refused:?}"
    );
    let text = refused.to_string();
    assert!(
        text.contains("deny rule") && text.contains("`reference.counterparties`"),
        "{text}"
    );
    assert!(!text.contains("Request access"), "{text}");
    // Their query's denial says the same, not "request access".
    let denied = query(
        &gateway,
        "auditor",
        "SELECT count(*) FROM reference.counterparties",
    )
    .await
    .unwrap_err();
    assert!(denied.contains("deny rule"), "{denied}");
    assert!(!denied.contains("Request access"), "{denied}");

    // A request made before the rule existed: its approval is refused with the reason.
    let blind = Workflow::new(gateway.governance().as_ref(), gateway.catalog());
    let early = blind
        .request("auditor", ask("reference.counterparties"))
        .await
        .unwrap();
    let err = approve(&gateway, "ref-owner", &early.id, Approval::default())
        .await
        .unwrap_err();
    assert!(
        err.contains("deny rule") && err.contains("would not take effect"),
        "{err}"
    );

    let request = gateway
        .workflow()
        .request("intern", ask("reference.counterparties"))
        .await
        .unwrap();
    let bad = Approval {
        row_filter: Some("no_such_column = 1".into()),
        ..Approval::default()
    };
    let err = approve(&gateway, "ref-owner", &request.id, bad)
        .await
        .unwrap_err();
    assert!(err.contains("no_such_column"), "{err}");
    let not_bool = Approval {
        row_filter: Some("counterparty_id + 1".into()),
        ..Approval::default()
    };
    assert!(
        approve(&gateway, "ref-owner", &request.id, not_bool)
            .await
            .is_err()
    );
    approve(&gateway, "ref-owner", &request.id, Approval::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn every_query_leaves_one_audit_record_with_exact_columns_and_treatments() {
    let (gateway, _lake, _state) = gateway().await;
    query(
        &gateway,
        "cib-reporting",
        "SELECT c.legal_name, c.tax_id, t.trader_id FROM reference.counterparties c \
         JOIN markets.trades t ON c.counterparty_id = t.counterparty_id WHERE c.country = 'GB' LIMIT 3",
    )
    .await
    .unwrap();
    query(
        &gateway,
        "cib-reporting",
        "SELECT count(*) FROM payments.transactions",
    )
    .await
    .unwrap_err();
    query(&gateway, "cib-reporting", "SELEC nonsense")
        .await
        .unwrap_err();

    let records = gateway
        .governance()
        .audit(&Default::default())
        .await
        .unwrap();
    assert_eq!(records.len(), 3);
    let allowed = &records[0];
    assert_eq!(allowed.record.principal, "cib-reporting");
    assert_eq!(allowed.record.app.as_deref(), Some("cib-regulatory-report"));
    assert_eq!(allowed.record.decision.as_str(), "allow");
    assert_eq!(
        allowed.record.statement, None,
        "statements are not kept by default"
    );
    assert_eq!(allowed.record.statement_sha256.len(), 64);
    let tables: Vec<_> = allowed
        .record
        .tables
        .iter()
        .map(|t| {
            let columns: BTreeSet<String> = t
                .columns
                .iter()
                .map(|c| format!("{}={}", c.name, c.treatment))
                .collect();
            (
                t.product.clone(),
                t.policy_id.clone().unwrap(),
                t.row_filters.clone(),
                columns,
            )
        })
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let set = |items: &[&str]| items.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(
        tables,
        [
            (
                "markets.trades".to_string(),
                "markets.trades@v1".to_string(),
                vec![
                    "readers-see-all-rows".to_string(),
                    "lob-systems-see-own-lob".to_string()
                ],
                set(&["counterparty_id=clear", "trader_id=tokenize(markets)"]),
            ),
            (
                "reference.counterparties".to_string(),
                "reference.counterparties@v1".to_string(),
                vec![
                    "readers-see-all-rows".to_string(),
                    "lob-systems-see-own-lob".to_string()
                ],
                set(&[
                    "counterparty_id=clear",
                    "legal_name=clear",
                    "tax_id=tokenize(reference)",
                    "country=clear"
                ]),
            ),
        ]
    );
    // Once the stream ended, the outcome is recorded (asynchronously).
    let mut finished = None;
    for _ in 0..50 {
        let now = gateway
            .governance()
            .audit(&Default::default())
            .await
            .unwrap();
        if now[0].status.as_str() == "ok" {
            finished = Some(now[0].clone());
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let finished = finished.expect("the outcome is recorded");
    assert_eq!(finished.rows_returned, Some(3));
    assert!(finished.bytes_returned.unwrap() > 0);

    let denied = &records[1];
    assert_eq!(denied.record.decision.as_str(), "deny");
    assert_eq!(denied.status.as_str(), "denied");
    assert_eq!(denied.record.tables.len(), 1);
    assert_eq!(denied.record.tables[0].product, "payments.transactions");
    assert!(denied.record.tables[0].columns.is_empty());
    assert!(
        denied
            .record
            .error
            .as_deref()
            .unwrap()
            .contains("permission denied")
    );
    assert_eq!(records[2].record.decision.as_str(), "error");
}

fn store_path(state: &TempDir) -> std::path::PathBuf {
    state.path().join("meshgate.db")
}

#[tokio::test]
async fn a_query_is_refused_when_its_audit_record_cannot_be_written() {
    let (gateway, _lake, state) = gateway().await;
    let sql = "SELECT count(*) FROM reference.counterparties";
    query(&gateway, "ref-owner", sql).await.unwrap();
    // Make the store refuse writes: a trigger that aborts every audit insert.
    sqlite_exec(
        &store_path(&state),
        "CREATE TRIGGER no_audit BEFORE INSERT ON audit BEGIN SELECT RAISE(ABORT, 'disk full'); END;",
    )
    .await;
    let err = query(&gateway, "ref-owner", sql).await.unwrap_err();
    assert!(
        err.contains("audit log in the governance store cannot be written"),
        "{err}"
    );
    // The library's query plans (and runs), but its stream ends with the refusal before any
    // batch: nothing of a query leaves without its record.
    let planned = session(&gateway, "ref-owner").query(sql).await.unwrap();
    let mut stream = planned.execute().unwrap();
    let first = stream.next().await.expect("an item");
    let err = GatewayError::from_execution(first.expect_err("no batch without a record"));
    assert!(matches!(err, GatewayError::Unavailable(_)), "{err:?}");
    assert!(stream.next().await.is_none());
}

/// The real SQLite store, whose audit-record writes wait until the test lets them through: a
/// slow commit, made visible.
#[derive(Debug)]
struct HeldAudit {
    store: meshgate::governance::SqliteStore,
    open: tokio::sync::Semaphore,
}

#[async_trait::async_trait]
impl GovernanceStore for HeldAudit {
    async fn insert_request(&self, r: &AccessRequest) -> Result<(), StoreError> {
        self.store.insert_request(r).await
    }
    async fn request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
        self.store.request(id).await
    }
    async fn requests(&self, v: Option<&VisibleTo>) -> Result<Vec<AccessRequest>, StoreError> {
        self.store.requests(v).await
    }
    async fn decide_request(
        &self,
        r: &AccessRequest,
        expected: RequestState,
        grant: Option<&Grant>,
    ) -> Result<bool, StoreError> {
        self.store.decide_request(r, expected, grant).await
    }
    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        self.store.grant(id).await
    }
    async fn grants(&self, v: Option<&VisibleTo>) -> Result<Vec<Grant>, StoreError> {
        self.store.grants(v).await
    }
    async fn update_grant(&self, g: &Grant, expected: GrantState) -> Result<bool, StoreError> {
        self.store.update_grant(g, expected).await
    }
    async fn expire(&self, now: Millis) -> Result<(), StoreError> {
        self.store.expire(now).await
    }
    async fn grant_generation(&self) -> Result<i64, StoreError> {
        self.store.grant_generation().await
    }
    async fn grants_in_force(&self, now: Millis) -> Result<Vec<Grant>, StoreError> {
        self.store.grants_in_force(now).await
    }
    async fn record_query(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let _passed = self.open.acquire().await;
        self.store.record_query(record).await
    }
    async fn finish_query(&self, id: &str, outcome: &AuditOutcome) -> Result<(), StoreError> {
        self.store.finish_query(id, outcome).await
    }
    async fn audit(&self, query: &AuditQuery) -> Result<Vec<StoredAudit>, StoreError> {
        self.store.audit(query).await
    }
}

#[tokio::test]
async fn no_batch_leaves_before_its_audit_record_is_committed() {
    let state = tempfile::tempdir().unwrap();
    let store = meshgate::governance::SqliteStore::open(&store_path(&state))
        .await
        .unwrap();
    let held = Arc::new(HeldAudit {
        store,
        open: tokio::sync::Semaphore::new(0),
    });
    let store: Arc<dyn GovernanceStore> = held.clone();
    let (gateway, _lake) = local_gateway(|c| c.governance = Governance::Store(store)).await;
    let sql = "SELECT lob, count(*) FROM reference.counterparties GROUP BY lob";
    let planned = session(&gateway, "ref-owner").query(sql).await.unwrap();
    let mut stream = planned.execute().unwrap();
    // The query runs meanwhile, but its answer waits for the commit.
    let waited = tokio::time::timeout(Duration::from_millis(500), stream.next()).await;
    assert!(
        waited.is_err(),
        "a batch left before its audit record was written"
    );
    let recorded = held.store.audit(&AuditQuery::default()).await.unwrap();
    assert!(recorded.is_empty(), "{recorded:?}");
    held.open.add_permits(1_000);
    let first = stream.next().await.expect("an item").expect("a batch");
    // By the time the first batch arrived, its record was committed.
    let recorded = held.store.audit(&AuditQuery::default()).await.unwrap();
    assert_eq!(recorded.len(), 1);
    assert_eq!(
        recorded[0].record.tables[0].product,
        "reference.counterparties"
    );
    let mut rows = first.num_rows();
    while let Some(batch) = stream.next().await {
        rows += batch.unwrap().num_rows();
    }
    assert_eq!(rows, 3, "one row per line of business");
}

async fn sqlite_exec(path: &Path, sql: &str) {
    use meshgate::governance::SqliteStore;
    // A second handle on the same file, through the store's own driver.
    SqliteStore::open(path)
        .await
        .unwrap()
        .execute_raw(sql)
        .await
        .unwrap();
}

#[tokio::test]
async fn mesh_catalog_tables_show_each_persona_their_part() {
    let (gateway, _lake, _state) = gateway().await;
    // Discovery: every principal sees every product, without data.
    for user in ["intern", "auditor", "cib-reporting"] {
        let products = query(&gateway, user, "SELECT product_id, owner_team, has_access FROM mesh.mesh_catalog.products ORDER BY product_id").await.unwrap();
        let expected_access = match user {
            "cib-reporting" => ["false", "true", "true"],
            _ => ["false", "false", "false"],
        };
        assert_eq!(
            cells(&products),
            [
                ["markets.trades", "markets-data", expected_access[2]],
                ["payments.transactions", "payments-core", expected_access[0]],
                [
                    "reference.counterparties",
                    "reference-data",
                    expected_access[1]
                ],
            ]
            .map(|r| r.map(str::to_string)),
            "{user}"
        );
    }
    // The catalog's tables are listed like any other, for everyone.
    let listed = query(&gateway, "intern", "SELECT table_name FROM information_schema.tables WHERE table_schema = 'mesh_catalog' ORDER BY 1").await.unwrap();
    assert_eq!(
        cells(&listed).concat(),
        [
            "access_requests",
            "audit",
            "audit_columns",
            "audit_tables",
            "columns",
            "flows",
            "grants",
            "products",
            "quality",
            "tables"
        ]
    );
    // Freshness comes from the bucket; how to ask is there exactly where access is not.
    let about = query(
        &gateway,
        "cib-reporting",
        "SELECT product_id, last_modified IS NOT NULL, files > 0, how_to_request IS NULL, \
         starts_with(how_to_request, 'meshgate access request ' || product_id), tables \
         FROM mesh_catalog.products ORDER BY product_id",
    )
    .await
    .unwrap();
    assert_eq!(
        cells(&about),
        [
            [
                "markets.trades",
                "true",
                "true",
                "true",
                "NULL",
                "markets.trades"
            ],
            [
                "payments.transactions",
                "true",
                "true",
                "false",
                "true",
                "payments.transactions"
            ],
            [
                "reference.counterparties",
                "true",
                "true",
                "true",
                "NULL",
                "reference.counterparties"
            ],
        ]
        .map(|r| r.map(str::to_string))
    );
    let tables = query(
        &gateway,
        "intern",
        "SELECT table_schema || '.' || table_name, table_type FROM mesh_catalog.tables ORDER BY 1",
    )
    .await
    .unwrap();
    assert_eq!(
        cells(&tables),
        [
            ["markets.trades", "TABLE"],
            ["payments.transactions", "TABLE"],
            ["reference.counterparties", "TABLE"]
        ]
        .map(|r| r.map(str::to_string))
    );
    let hidden = query(&gateway, "cib-reporting", "SELECT column_name FROM mesh_catalog.columns WHERE product_id = 'reference.counterparties'").await.unwrap();
    assert!(
        !cells(&hidden)
            .concat()
            .contains(&"internal_rating".to_string()),
        "hidden stays hidden"
    );
    let intern = query(&gateway, "intern", "SELECT column_name, your_treatment FROM mesh_catalog.columns WHERE column_name = 'internal_rating'").await.unwrap();
    assert_eq!(cells(&intern), [["internal_rating", "no access"]]);

    // Traffic: cib-reporting joins reference with markets, ccb-fraud reads payments,
    // intern is denied, ref-owner reads their own product.
    query(&gateway, "cib-reporting", "SELECT count(*) FROM reference.counterparties c JOIN markets.trades t USING (counterparty_id)").await.unwrap();
    query(
        &gateway,
        "ccb-fraud",
        "SELECT count(*) FROM payments.transactions",
    )
    .await
    .unwrap();
    query(&gateway, "intern", "SELECT * FROM reference.counterparties")
        .await
        .unwrap_err();
    query(
        &gateway,
        "ref-owner",
        "SELECT lob, count(*) FROM reference.counterparties GROUP BY lob",
    )
    .await
    .unwrap();

    let products_of = |rows: &Rows| -> BTreeSet<String> {
        cells(rows).into_iter().map(|r| r[0].clone()).collect()
    };
    let audit_sql = "SELECT product_id, decision FROM mesh_catalog.audit_tables";
    let auditor = query(&gateway, "auditor", audit_sql).await.unwrap();
    assert_eq!(
        products_of(&auditor),
        [
            "markets.trades",
            "payments.transactions",
            "reference.counterparties"
        ]
        .map(String::from)
        .into()
    );
    let owner = query(&gateway, "ref-owner", audit_sql).await.unwrap();
    assert_eq!(
        products_of(&owner),
        ["reference.counterparties".to_string()].into()
    );
    assert_eq!(
        sorted(&owner)
            .into_iter()
            .map(|r| r[1].clone().unwrap())
            .collect::<Vec<_>>(),
        ["allow", "allow", "deny"],
        "cib-reporting's join (its reference part), ref-owner's own query, intern's denial"
    );
    let consumer = query(
        &gateway,
        "ccb-fraud",
        "SELECT principal FROM mesh_catalog.audit",
    )
    .await
    .unwrap();
    assert!(
        cells(&consumer).iter().all(|r| r[0] == "ccb-fraud"),
        "{consumer:?}"
    );

    let flows_sql = "SELECT product_id, consumer_app, queries FROM mesh_catalog.flows ORDER BY product_id, consumer_app";
    let owner_flows = query(&gateway, "ref-owner", flows_sql).await.unwrap();
    assert_eq!(
        cells(&owner_flows),
        [
            ["reference.counterparties", "cib-regulatory-report", "1"],
            ["reference.counterparties", "ref-owner", "1"]
        ]
        .map(|r| r.map(str::to_string))
    );
    let auditor_flows = query(&gateway, "auditor", flows_sql).await.unwrap();
    assert_eq!(
        cells(&auditor_flows),
        [
            ["markets.trades", "cib-regulatory-report", "1"],
            ["payments.transactions", "ccb-fraud-scoring", "1"],
            ["reference.counterparties", "cib-regulatory-report", "1"],
            ["reference.counterparties", "ref-owner", "1"],
        ]
        .map(|r| r.map(str::to_string))
    );
    // The auditor still reads no product data.
    assert!(
        query(&gateway, "auditor", "SELECT count(*) FROM markets.trades")
            .await
            .is_err()
    );
}

#[tokio::test]
async fn a_grant_stops_admitting_the_moment_it_expires() {
    let (gateway, _lake, state) = gateway().await;
    let sql = "SELECT count(*) FROM reference.counterparties";
    let request = gateway
        .workflow()
        .request(
            "intern",
            NewRequest {
                product: "reference.counterparties".into(),
                columns: vec![],
                purpose: "a short look".into(),
                valid_days: Some(1),
            },
        )
        .await
        .unwrap();
    let grant = approve(&gateway, "ref-owner", &request.id, Approval::default())
        .await
        .unwrap();
    // Grants last whole days; shorten this one to two seconds from now, as a store shared
    // with another replica would (the generation moves with it).
    let until = meshgate::governance::now_millis() + 2000;
    sqlite_exec(
        &store_path(&state),
        &format!(
            "UPDATE grants SET valid_until = {until} WHERE id = '{grant}'; \
             UPDATE grant_generation SET value = value + 1;"
        ),
    )
    .await;
    assert_eq!(
        cells(&query(&gateway, "intern", sql).await.unwrap()),
        [["30000"]]
    );
    // Nothing changes in the store after this: time alone ends the grant.
    let generation = gateway.governance().grant_generation().await.unwrap();
    let wait = until - meshgate::governance::now_millis() + 200;
    tokio::time::sleep(std::time::Duration::from_millis(
        u64::try_from(wait.max(0)).unwrap(),
    ))
    .await;
    assert_eq!(
        gateway.governance().grant_generation().await.unwrap(),
        generation
    );
    let err = query(&gateway, "intern", sql).await.unwrap_err();
    assert!(
        err.contains(&format!(
            "grant `{grant}` on product `reference.counterparties` expired at 20"
        )) && err.contains("Request access again"),
        "the denial says the grant expired, and what to do: {err}"
    );
    // And the records say so once anyone looks.
    let grants = gateway
        .workflow()
        .visible_grants(&Gateway::viewer(
            &gateway.known_principal("intern").unwrap(),
        ))
        .await
        .unwrap();
    assert_eq!(grants[0].state.as_str(), "expired");
}

// ---------------------------------------------------------------------------------------
// Several grants combine per grant, never per dimension

/// A grant's row filter as the test evaluates it on raw rows (independently of meshgate).
#[derive(Debug, Clone, Copy)]
enum GrantRows {
    All,
    Lob(&'static str),
    Country(&'static str),
    IdAtMost(i64),
    /// `lob = ${principal.lob}`: the test principal carries `lob = CCB`.
    OwnLob,
    /// `country = ${principal.country}`: the principal has no such attribute, so this
    /// grant admits nothing (and must not break the others).
    MissingAttribute,
}

impl GrantRows {
    fn sql(self) -> Option<String> {
        match self {
            Self::All => None,
            Self::Lob(lob) => Some(format!("lob = '{lob}'")),
            Self::Country(country) => Some(format!("country = '{country}'")),
            Self::IdAtMost(id) => Some(format!("counterparty_id <= {id}")),
            Self::OwnLob => Some("lob = ${principal.lob}".into()),
            Self::MissingAttribute => Some("country = ${principal.country}".into()),
        }
    }

    fn admits(self, row: &RawCounterparty) -> bool {
        match self {
            Self::All => true,
            Self::Lob(lob) => row.lob == lob,
            Self::Country(country) => row.country == country,
            Self::IdAtMost(id) => row.id <= id,
            Self::OwnLob => row.lob == "CCB",
            Self::MissingAttribute => false,
        }
    }
}

/// The columns a grant may name (`counterparty_id` is always named, to identify rows), and
/// how a grant-admitted reader sees each: the product policy for any reader.
const GRANTABLE: &[&str] = &[
    "legal_name",
    "lob",
    "country",
    "tax_id",
    "contact_email",
    "onboarded_on",
];

#[derive(Debug, Clone)]
struct TestGrant {
    rows: GrantRows,
    /// `None`: every column.
    columns: Option<Vec<&'static str>>,
}

impl TestGrant {
    fn names(&self, column: &str) -> bool {
        column == "counterparty_id" || self.columns.as_ref().is_none_or(|c| c.contains(&column))
    }
}

struct RawCounterparty {
    id: i64,
    lob: String,
    country: String,
    /// Every grantable column as a grant-admitted reader sees it, by name.
    shown: std::collections::HashMap<&'static str, Option<String>>,
}

async fn raw_counterparties() -> Vec<RawCounterparty> {
    let ctx = views::raw_engine().await;
    let rows = views::run_reference(
        &ctx,
        "SELECT counterparty_id, legal_name, lob, country, tax_id, contact_email, onboarded_on \
         FROM raw_counterparties",
    )
    .await
    .unwrap();
    rows.into_iter()
        .map(|r| {
            let text = |i: usize| r[i].clone();
            let shown = [
                ("legal_name", text(1)),
                ("lob", text(2)),
                ("country", text(3)),
                ("tax_id", text(4).map(|v| truth::token("reference", &v))),
                ("contact_email", text(5).map(|v| truth::email_mask(&v))),
                ("onboarded_on", text(6)),
            ]
            .into_iter()
            .collect();
            RawCounterparty {
                id: text(0).unwrap().parse().unwrap(),
                lob: text(2).unwrap(),
                country: text(3).unwrap(),
                shown,
            }
        })
        .collect()
}

/// Grant the test grants to `principal` (one request and approval each).
async fn grant_all(gateway: &Gateway, principal: &str, grants: &[TestGrant]) {
    for test_grant in grants {
        let columns: Vec<&str> = match &test_grant.columns {
            None => Vec::new(),
            Some(c) => std::iter::once("counterparty_id")
                .chain(c.iter().copied())
                .collect(),
        };
        let filter = test_grant.rows.sql();
        grants::grant(gateway, principal, &columns, filter.as_deref())
            .await
            .unwrap();
    }
}

/// What `grants` together let their grantee see, cell by cell: a cell only if one single
/// grant admits both its row and its column; a row only if some grant admits it.
fn check_cells(grants: &[TestGrant], raw: &[RawCounterparty], answer: &Rows, header: &[String]) {
    let by_id: std::collections::HashMap<i64, &RawCounterparty> =
        raw.iter().map(|r| (r.id, r)).collect();
    let expected_rows = raw
        .iter()
        .filter(|r| grants.iter().any(|g| g.rows.admits(r)))
        .count();
    assert_eq!(answer.len(), expected_rows, "rows admitted by {grants:?}");
    // A grant that cannot apply to the caller names nothing either.
    let any_names = |column: &str| {
        grants
            .iter()
            .any(|g| g.names(column) && !matches!(g.rows, GrantRows::MissingAttribute))
    };
    for column in GRANTABLE {
        assert_eq!(
            header.iter().any(|h| h == column),
            any_names(column),
            "{column} is a column of the answer exactly when a grant names it ({grants:?})"
        );
    }
    for row in answer {
        let id: i64 = row[0].as_deref().unwrap().parse().unwrap();
        let raw = by_id[&id];
        for (name, cell) in header.iter().zip(row).skip(1) {
            let admitted = grants.iter().any(|g| g.rows.admits(raw) && g.names(name));
            let expected = if admitted {
                raw.shown[name.as_str()].clone()
            } else {
                None
            };
            assert_eq!(
                cell, &expected,
                "row {id}, column {name}: visible only if one grant admits both ({grants:?})"
            );
        }
    }
}

fn test_grant() -> impl proptest::strategy::Strategy<Value = TestGrant> {
    use proptest::prelude::*;
    let rows = prop_oneof![
        Just(GrantRows::All),
        Just(GrantRows::Lob("CIB")),
        Just(GrantRows::Lob("AWM")),
        Just(GrantRows::Country("DE")),
        Just(GrantRows::IdAtMost(9000)),
        Just(GrantRows::OwnLob),
        Just(GrantRows::MissingAttribute),
    ];
    let columns = prop_oneof![
        1 => Just(None),
        3 => proptest::sample::subsequence(GRANTABLE.to_vec(), 1..=3).prop_map(Some),
    ];
    (rows, columns).prop_map(|(rows, columns)| TestGrant { rows, columns })
}

/// The defect this guards against: combining grants per dimension (the union of their row
/// filters, and separately the union of their columns) showed x on B's rows and y on A's.
#[test]
fn several_grants_show_a_cell_only_if_one_grant_admits_its_row_and_column() {
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let (gateway, _lake, _state) = runtime.block_on(gateway());
    let raw = runtime.block_on(raw_counterparties());
    let mut runner = TestRunner::new_with_rng(
        Config {
            cases: 24,
            failure_persistence: None,
            max_shrink_iters: 0,
            ..Config::default()
        },
        TestRng::from_seed(RngAlgorithm::ChaCha, &[7; 32]),
    );
    let case = std::cell::Cell::new(0);
    let strategy = proptest::collection::vec(test_grant(), 1..=3);
    // The issue's own example comes first, then random sets.
    let first = vec![
        TestGrant {
            rows: GrantRows::Lob("CIB"),
            columns: Some(vec!["tax_id"]),
        },
        TestGrant {
            rows: GrantRows::Lob("AWM"),
            columns: Some(vec!["legal_name"]),
        },
        TestGrant {
            rows: GrantRows::All,
            columns: Some(vec!["country"]),
        },
    ];
    let run = |grants: Vec<TestGrant>| {
        case.set(case.get() + 1);
        let principal = format!("grantee-{}", case.get());
        runtime.block_on(async {
            grant_all(&gateway, &principal, &grants).await;
            let caller = meshgate::policy::Principal::new(&principal).with_attribute("lob", "CCB");
            let session = gateway.session(caller);
            let admits_any = grants
                .iter()
                .any(|g| !matches!(g.rows, GrantRows::MissingAttribute));
            let result = session
                .query("SELECT * FROM reference.counterparties")
                .await;
            if !admits_any {
                let error = result.unwrap_err().to_string();
                assert!(error.contains("permission denied"), "{error}");
                return;
            }
            let query = result.unwrap();
            let batches = query.collect().await.unwrap();
            let header: Vec<String> = query
                .schema()
                .fields()
                .iter()
                .map(|f| f.name().clone())
                .collect();
            assert_eq!(header[0], "counterparty_id");
            check_cells(&grants, &raw, &views::rows(&batches), &header);
        });
    };
    run(first);
    runner
        .run(&strategy, |grants| {
            run(grants);
            Ok(())
        })
        .unwrap();
}
