//! Keep governance state where your organisation keeps it: implement `GovernanceStore` and
//! hand it to the gateway. Here the store is a map in memory (a real one would be your
//! database; meshgate's own are SQLite and, for replicas, PostgreSQL). The example runs the
//! access workflow against the reference mesh through it: `intern` is refused, asks, the
//! owner approves, `intern` reads; then it shows the audit records the store received.
//!
//! ```text
//! cargo run -p meshgate --example custom_store
//! ```

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use async_trait::async_trait;
use meshgate::governance::{
    AccessRequest, AuditOutcome, AuditQuery, AuditRecord, Decision, GovernanceStore, Grant,
    GrantState, Millis, NewRequest, QueryStatus, RequestState, StoreError, StoredAudit, VisibleTo,
};
use meshgate::{Gateway, Governance};
use meshgate_reference as reference;

/// Everything in memory, behind one lock: each method is one short critical section, which
/// gives the compare-and-set updates the trait asks for.
#[derive(Debug, Default)]
struct MemoryStore {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    requests: BTreeMap<String, AccessRequest>,
    grants: BTreeMap<String, Grant>,
    generation: i64,
    audit: Vec<StoredAudit>,
}

impl MemoryStore {
    fn state(&self) -> Result<MutexGuard<'_, State>, StoreError> {
        self.state
            .lock()
            .map_err(|_| StoreError::Other("the store's lock is poisoned".into()))
    }
}

#[async_trait]
impl GovernanceStore for MemoryStore {
    async fn insert_request(&self, request: &AccessRequest) -> Result<(), StoreError> {
        let mut state = self.state()?;
        state.requests.insert(request.id.clone(), request.clone());
        Ok(())
    }

    async fn request(&self, id: &str) -> Result<Option<AccessRequest>, StoreError> {
        Ok(self.state()?.requests.get(id).cloned())
    }

    async fn requests(
        &self,
        visible: Option<&VisibleTo>,
    ) -> Result<Vec<AccessRequest>, StoreError> {
        let state = self.state()?;
        let shown =
            |r: &&AccessRequest| visible.is_none_or(|v| v.sees(&r.requester, [r.product.as_str()]));
        Ok(state.requests.values().filter(shown).cloned().collect())
    }

    async fn decide_request(
        &self,
        updated: &AccessRequest,
        expected: RequestState,
        grant: Option<&Grant>,
    ) -> Result<bool, StoreError> {
        let mut state = self.state()?;
        if state.requests.get(&updated.id).map(|r| r.state) != Some(expected) {
            return Ok(false);
        }
        state.requests.insert(updated.id.clone(), updated.clone());
        if let Some(grant) = grant {
            state.grants.insert(grant.id.clone(), grant.clone());
            state.generation += 1;
        }
        Ok(true)
    }

    async fn grant(&self, id: &str) -> Result<Option<Grant>, StoreError> {
        Ok(self.state()?.grants.get(id).cloned())
    }

    async fn grants(&self, visible: Option<&VisibleTo>) -> Result<Vec<Grant>, StoreError> {
        let state = self.state()?;
        let shown = |g: &&Grant| visible.is_none_or(|v| v.sees(&g.principal, [g.product.as_str()]));
        Ok(state.grants.values().filter(shown).cloned().collect())
    }

    async fn update_grant(
        &self,
        updated: &Grant,
        expected: GrantState,
    ) -> Result<bool, StoreError> {
        let mut state = self.state()?;
        if state.grants.get(&updated.id).map(|g| g.state) != Some(expected) {
            return Ok(false);
        }
        state.grants.insert(updated.id.clone(), updated.clone());
        state.generation += 1;
        Ok(true)
    }

    async fn expire(&self, now: Millis) -> Result<(), StoreError> {
        let mut state = self.state()?;
        for request in state.requests.values_mut() {
            if request.state == RequestState::Pending && request.expires_at <= now {
                request.state = RequestState::Expired;
                request.decided_at = Some(now);
            }
        }
        let mut changed = false;
        for grant in state.grants.values_mut() {
            let live = matches!(grant.state, GrantState::Active | GrantState::Suspended);
            if live && grant.valid_until <= now {
                grant.state = GrantState::Expired;
                grant.changed_at = now;
                changed = true;
            }
        }
        if changed {
            state.generation += 1;
        }
        Ok(())
    }

    async fn grant_generation(&self) -> Result<i64, StoreError> {
        Ok(self.state()?.generation)
    }

    async fn grants_in_force(&self, now: Millis) -> Result<Vec<Grant>, StoreError> {
        let state = self.state()?;
        Ok(state
            .grants
            .values()
            .filter(|g| g.in_force(now))
            .cloned()
            .collect())
    }

    async fn record_query(&self, record: &AuditRecord) -> Result<(), StoreError> {
        let status = match record.decision {
            Decision::Allow => QueryStatus::Running,
            Decision::Deny => QueryStatus::Denied,
            Decision::Error => QueryStatus::Failed,
        };
        self.state()?.audit.push(StoredAudit {
            record: record.clone(),
            status,
            rows_returned: None,
            bytes_returned: None,
            duration_ms: None,
            finished_at: None,
            workers: Vec::new(),
        });
        Ok(())
    }

    async fn finish_query(&self, query_id: &str, outcome: &AuditOutcome) -> Result<(), StoreError> {
        let mut state = self.state()?;
        if let Some(stored) = state
            .audit
            .iter_mut()
            .find(|a| a.record.query_id == query_id)
        {
            stored.status = outcome.status;
            stored.rows_returned = Some(outcome.rows_returned);
            stored.bytes_returned = Some(outcome.bytes_returned);
            stored.duration_ms = Some(outcome.duration_ms);
            stored.finished_at = Some(meshgate::api::now_millis());
            stored.workers = outcome.workers.clone();
            if outcome.error.is_some() {
                stored.record.error = outcome.error.clone();
            }
        }
        Ok(())
    }

    async fn audit(&self, query: &AuditQuery) -> Result<Vec<StoredAudit>, StoreError> {
        // `AuditQuery::matches` is the rule; a database store would say it in its query.
        let state = self.state()?;
        let matching: Vec<_> = state
            .audit
            .iter()
            .filter(|a| query.matches(&a.record))
            .cloned()
            .collect();
        let keep = query.filter.limit.unwrap_or(usize::MAX).min(matching.len());
        Ok(matching[matching.len() - keep..].to_vec())
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = Arc::new(MemoryStore::default());
    let mut demo = reference::demo(&reference::default_data_dir()).await?;
    demo.config.governance = Governance::Store(Arc::clone(&store) as Arc<dyn GovernanceStore>);
    let gateway = Gateway::open(demo.config).await?;

    let sql = "SELECT count(*) AS n FROM reference.counterparties";
    let intern = gateway.authenticate("intern", "intern-pw")?;
    let refused = gateway.session(intern.clone()).collect(sql).await;
    let Err(refusal) = refused else {
        return Err("intern read reference.counterparties without a grant".into());
    };
    println!("intern, before asking: {refusal}");

    let workflow = gateway.workflow();
    let request = workflow
        .request(
            "intern",
            NewRequest {
                product: "reference.counterparties".into(),
                purpose: "onboarding study".into(),
                valid_days: Some(7),
                ..NewRequest::default()
            },
        )
        .await?;
    let check = |product: &meshgate::catalog::Product, filter: &str| {
        gateway.check_grant_filter(product, filter)
    };
    let (_, grant) = workflow
        .approve("ref-owner", &request.id, Default::default(), &check)
        .await?;
    println!("ref-owner approved {} as grant {}", request.id, grant.id);

    let batches = gateway.session(intern).collect(sql).await?;
    println!(
        "intern, with the grant:\n{}",
        arrow::util::pretty::pretty_format_batches(&batches)?
    );

    let records = store.audit(&AuditQuery::default()).await?;
    for stored in &records {
        println!(
            "audit: {} {} grants={:?}",
            stored.record.principal,
            stored.record.decision,
            stored
                .record
                .tables
                .iter()
                .flat_map(|t| t.grant_ids.iter())
                .collect::<Vec<_>>()
        );
    }
    let granted_read = records.iter().any(|a| {
        a.record.decision == Decision::Allow
            && a.record
                .tables
                .iter()
                .any(|t| t.grant_ids.contains(&grant.id))
    });
    if records.len() != 2 || !granted_read {
        return Err("the custom store did not receive the two audit records".into());
    }
    println!("custom store: {} audit records", records.len());
    Ok(())
}
