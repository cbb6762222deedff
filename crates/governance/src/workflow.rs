//! The rules of access requests and grants: who may do what, in which state.
//!
//! ```text
//! request: pending -> approved | rejected      (owner or delegate, never the requester)
//!          pending -> cancelled                (the requester)
//!          pending -> expired                  (nobody decided within REQUEST_TTL_DAYS)
//! grant:   active <-> suspended                (owner or delegate)
//!          active | suspended -> revoked       (owner or delegate)
//!          active | suspended -> expired       (valid_until passed)
//! ```
//!
//! Every grant expires: at most [`MAX_GRANT_DAYS`] after approval. An approval may narrow
//! what was asked (fewer columns, a row filter, a shorter time), never widen it.

use std::collections::BTreeSet;

use meshgate_catalog::{Catalog, Product};

use crate::error::GovernanceError;
use crate::flows::flows;
use crate::store::{AuditFilter, AuditQuery, GovernanceStore, VisibleTo};
use meshgate_api::{
    AccessRequest, DAY_MILLIS, Flow, Grant, GrantState, Millis, RequestState, StoredAudit,
    now_millis,
};

/// The longest a grant may run.
pub const MAX_GRANT_DAYS: u32 = 365;
/// What a request asks for when it does not say.
pub const DEFAULT_GRANT_DAYS: u32 = 90;
/// How long a request waits for a decision before it expires.
pub const REQUEST_TTL_DAYS: i64 = 30;

/// What a consumer asks for.
#[derive(Debug, Clone, Default)]
pub struct NewRequest {
    pub product: String,
    /// Columns (`column` or `table.column`); empty for the whole product.
    pub columns: Vec<String>,
    pub purpose: String,
    pub valid_days: Option<u32>,
}

/// An owner's approval, optionally narrower than the request.
#[derive(Debug, Clone, Default)]
pub struct Approval {
    /// Only these of the requested columns; empty keeps the request's.
    pub columns: Vec<String>,
    /// A SQL predicate the granted rows must satisfy.
    pub row_filter: Option<String>,
    /// Fewer days than requested.
    pub valid_days: Option<u32>,
    pub comment: Option<String>,
}

/// Checks an approval's row filter against the product (the engine compiles it against the
/// table); `Err` says what is wrong.
pub type FilterCheck<'a> = &'a (dyn Fn(&Product, &str) -> Result<(), String> + Sync);

/// Whether the access rules in force close a product to a principal whatever a grant says
/// (a deny line). The engine answers it from its policy files; a request or an approval that
/// could never take effect is refused up front with that reason.
pub trait AccessRules: Send + Sync {
    /// `Err(why)` when no grant could open `product` to `principal`.
    fn grant_can_open(&self, principal: &str, product: &Product) -> Result<(), String>;
}

/// The access workflow over a store and the catalog.
#[derive(Clone)]
pub struct Workflow<'a> {
    store: &'a dyn GovernanceStore,
    catalog: std::sync::Arc<Catalog>,
    rules: Option<std::sync::Arc<dyn AccessRules + 'a>>,
}

impl std::fmt::Debug for Workflow<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Workflow")
            .field("store", &self.store)
            .field("rules", &self.rules.is_some())
            .finish_non_exhaustive()
    }
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}-{}", uuid::Uuid::now_v7().simple())
}

impl<'a> Workflow<'a> {
    /// A workflow over `store` for the products of `catalog` (the version in force: a
    /// gateway hands in the one it serves now).
    pub fn new(store: &'a dyn GovernanceStore, catalog: std::sync::Arc<Catalog>) -> Self {
        Self {
            store,
            catalog,
            rules: None,
        }
    }

    /// This workflow, refusing requests and approvals that the access rules would make
    /// pointless (see [`AccessRules`]).
    pub fn with_rules(self, rules: impl AccessRules + 'a) -> Self {
        Self {
            rules: Some(std::sync::Arc::new(rules)),
            ..self
        }
    }

    fn grant_can_open(
        &self,
        principal: &str,
        product: &Product,
        then: &str,
    ) -> Result<(), GovernanceError> {
        match &self.rules {
            Some(rules) => rules
                .grant_can_open(principal, product)
                .map_err(|why| GovernanceError::Conflict(format!("{why}; {then}"))),
            None => Ok(()),
        }
    }

    fn product(&self, id: &str) -> Result<&Product, GovernanceError> {
        self.catalog.product(id).map(|p| p.as_ref()).ok_or_else(|| {
            GovernanceError::NotFound(format!(
                "no data product `{id}`; list them with `SELECT product_id FROM mesh.mesh_catalog.products`"
            ))
        })
    }

    fn must_decide(
        &self,
        product: &Product,
        actor: &str,
        what: &str,
    ) -> Result<(), GovernanceError> {
        if product.owner.decides(actor) {
            Ok(())
        } else {
            Err(GovernanceError::NotAllowed(format!(
                "only an owner or delegate of `{}` (team {}: {}) can {what}",
                product.id,
                product.owner.team,
                product.owner.owners.join(", ")
            )))
        }
    }

    /// A consumer asks for access.
    pub async fn request(
        &self,
        requester: &str,
        new: NewRequest,
    ) -> Result<AccessRequest, GovernanceError> {
        let product = self.product(&new.product)?;
        if product.owner.decides(requester) {
            return Err(GovernanceError::Invalid(format!(
                "`{requester}` already decides access to `{}`; owners do not request access to their own products",
                product.id
            )));
        }
        let purpose = new.purpose.trim();
        if purpose.is_empty() {
            return Err(GovernanceError::Invalid(
                "say what the access is for: a request needs a purpose".into(),
            ));
        }
        let valid_days = new.valid_days.unwrap_or(DEFAULT_GRANT_DAYS);
        if !(1..=MAX_GRANT_DAYS).contains(&valid_days) {
            return Err(GovernanceError::Invalid(format!(
                "access can be requested for 1 to {MAX_GRANT_DAYS} days, not {valid_days}"
            )));
        }
        let columns = qualify_columns(product, &new.columns)?;
        self.grant_can_open(
            requester,
            product,
            "a request cannot change that: ask the governance team, or the product's owner, to change the rule",
        )?;
        let now = now_millis();
        let request = AccessRequest {
            id: new_id("req"),
            requester: requester.to_string(),
            product: product.id.clone(),
            columns,
            purpose: purpose.to_string(),
            valid_days,
            state: RequestState::Pending,
            created_at: now,
            expires_at: now + REQUEST_TTL_DAYS * DAY_MILLIS,
            decided_at: None,
            decided_by: None,
            decision_comment: None,
            grant_id: None,
        };
        self.store.insert_request(&request).await?;
        Ok(request)
    }

    async fn pending(&self, id: &str) -> Result<AccessRequest, GovernanceError> {
        self.store.expire(now_millis()).await?;
        let request = self
            .store
            .request(id)
            .await?
            .ok_or_else(|| GovernanceError::NotFound(format!("no access request `{id}`")))?;
        if request.state != RequestState::Pending {
            return Err(GovernanceError::Conflict(format!(
                "access request `{id}` is {}, not pending",
                request.state
            )));
        }
        Ok(request)
    }

    async fn decide(
        &self,
        mut request: AccessRequest,
        grant: Option<Grant>,
    ) -> Result<AccessRequest, GovernanceError> {
        if !self
            .store
            .decide_request(&request, RequestState::Pending, grant.as_ref())
            .await?
        {
            return Err(GovernanceError::Conflict(format!(
                "access request `{}` was decided by someone else meanwhile",
                request.id
            )));
        }
        request.grant_id = grant.map(|g| g.id);
        Ok(request)
    }

    /// The owner (or a delegate) approves: a grant is created, in force from the next query.
    pub async fn approve(
        &self,
        actor: &str,
        request_id: &str,
        approval: Approval,
        check_filter: FilterCheck<'_>,
    ) -> Result<(AccessRequest, Grant), GovernanceError> {
        let mut request = self.pending(request_id).await?;
        if actor == request.requester {
            return Err(GovernanceError::NotAllowed(format!(
                "`{actor}` cannot approve their own access request; its product's owner decides"
            )));
        }
        let product = self.product(&request.product)?;
        self.must_decide(product, actor, "approve this request")?;
        self.grant_can_open(
            &request.requester,
            product,
            "an approval would not take effect: reject the request, or have the rule changed first",
        )?;
        let columns = if approval.columns.is_empty() {
            request.columns.clone()
        } else {
            let narrowed = qualify_columns(product, &approval.columns)?;
            if let (Some(asked), Some(narrowed)) = (&request.columns, &narrowed) {
                let asked: BTreeSet<&String> = asked.iter().collect();
                if let Some(extra) = narrowed.iter().find(|c| !asked.contains(c)) {
                    return Err(GovernanceError::Invalid(format!(
                        "an approval can only narrow the request: `{extra}` was not requested"
                    )));
                }
            }
            narrowed
        };
        let row_filter = approval
            .row_filter
            .map(|f| f.trim().to_string())
            .filter(|f| !f.is_empty());
        if let Some(filter) = &row_filter {
            check_filter(product, filter).map_err(|reason| {
                GovernanceError::Invalid(format!(
                    "the row filter `{filter}` cannot be used: {reason}"
                ))
            })?;
        }
        let days = match approval.valid_days {
            Some(days) if days == 0 || days > request.valid_days => {
                return Err(GovernanceError::Invalid(format!(
                    "an approval can grant 1 to {} days (what was requested), not {days}",
                    request.valid_days
                )));
            }
            Some(days) => days,
            None => request.valid_days,
        };
        let now = now_millis();
        let grant = Grant {
            id: new_id("grant"),
            request_id: Some(request.id.clone()),
            principal: request.requester.clone(),
            product: product.id.clone(),
            domain: product.domain.clone(),
            columns,
            row_filter,
            purpose: request.purpose.clone(),
            state: GrantState::Active,
            approved_by: actor.to_string(),
            created_at: now,
            valid_until: now + i64::from(days) * DAY_MILLIS,
            changed_at: now,
            changed_by: actor.to_string(),
            change_reason: approval.comment.clone(),
        };
        request.state = RequestState::Approved;
        request.decided_at = Some(now);
        request.decided_by = Some(actor.to_string());
        request.decision_comment = approval.comment;
        let request = self.decide(request, Some(grant.clone())).await?;
        Ok((request, grant))
    }

    /// The owner (or a delegate) rejects.
    pub async fn reject(
        &self,
        actor: &str,
        request_id: &str,
        comment: Option<String>,
    ) -> Result<AccessRequest, GovernanceError> {
        let mut request = self.pending(request_id).await?;
        let product = self.product(&request.product)?;
        self.must_decide(product, actor, "reject this request")?;
        request.state = RequestState::Rejected;
        request.decided_at = Some(now_millis());
        request.decided_by = Some(actor.to_string());
        request.decision_comment = comment;
        self.decide(request, None).await
    }

    /// The requester withdraws a pending request.
    pub async fn cancel(
        &self,
        actor: &str,
        request_id: &str,
    ) -> Result<AccessRequest, GovernanceError> {
        let mut request = self.pending(request_id).await?;
        if request.requester != actor {
            return Err(GovernanceError::NotAllowed(format!(
                "only `{}`, who made access request `{request_id}`, can cancel it",
                request.requester
            )));
        }
        request.state = RequestState::Cancelled;
        request.decided_at = Some(now_millis());
        request.decided_by = Some(actor.to_string());
        self.decide(request, None).await
    }

    async fn change_grant(
        &self,
        actor: &str,
        grant_id: &str,
        from: &[GrantState],
        to: GrantState,
        reason: Option<String>,
        verb: &str,
    ) -> Result<Grant, GovernanceError> {
        let now = now_millis();
        self.store.expire(now).await?;
        let mut grant = self
            .store
            .grant(grant_id)
            .await?
            .ok_or_else(|| GovernanceError::NotFound(format!("no grant `{grant_id}`")))?;
        let product = self.product(&grant.product)?;
        self.must_decide(product, actor, &format!("{verb} this grant"))?;
        if !from.contains(&grant.state) {
            return Err(GovernanceError::Conflict(format!(
                "grant `{grant_id}` is {}; only a grant that is {} can be {verb}d",
                grant.state,
                from.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )));
        }
        let expected = grant.state;
        grant.state = to;
        grant.changed_at = now;
        grant.changed_by = actor.to_string();
        grant.change_reason = reason;
        if !self.store.update_grant(&grant, expected).await? {
            return Err(GovernanceError::Conflict(format!(
                "grant `{grant_id}` was changed by someone else meanwhile"
            )));
        }
        Ok(grant)
    }

    /// The owner (or a delegate) revokes: refused from the next query on.
    pub async fn revoke(
        &self,
        actor: &str,
        grant_id: &str,
        reason: Option<String>,
    ) -> Result<Grant, GovernanceError> {
        self.change_grant(
            actor,
            grant_id,
            &[GrantState::Active, GrantState::Suspended],
            GrantState::Revoked,
            reason,
            "revoke",
        )
        .await
    }

    /// Stop enforcing a grant for now, without ending it.
    pub async fn suspend(
        &self,
        actor: &str,
        grant_id: &str,
        reason: Option<String>,
    ) -> Result<Grant, GovernanceError> {
        self.change_grant(
            actor,
            grant_id,
            &[GrantState::Active],
            GrantState::Suspended,
            reason,
            "suspend",
        )
        .await
    }

    /// Enforce a suspended grant again (until its original `valid_until`).
    pub async fn resume(
        &self,
        actor: &str,
        grant_id: &str,
        reason: Option<String>,
    ) -> Result<Grant, GovernanceError> {
        self.change_grant(
            actor,
            grant_id,
            &[GrantState::Suspended],
            GrantState::Active,
            reason,
            "resume",
        )
        .await
    }

    /// Requests `viewer` may see: their own, those for products they decide, all for
    /// auditors.
    pub async fn visible_requests(
        &self,
        viewer: &Viewer,
    ) -> Result<Vec<AccessRequest>, GovernanceError> {
        self.store.expire(now_millis()).await?;
        let visible = self.visibility(viewer);
        Ok(self
            .store
            .requests(visible.as_ref())
            .await?
            .into_iter()
            // The store applied the rule; again here, so a store that did not shows no more.
            .filter(|r| sees(visible.as_ref(), &r.requester, &r.product))
            .collect())
    }

    /// Who sees which governance record, the one rule: an auditor everything (`None`),
    /// anyone else their own records and those touching a product they decide.
    pub fn visibility(&self, viewer: &Viewer) -> Option<VisibleTo> {
        (!viewer.auditor).then(|| VisibleTo {
            principal: viewer.id.clone(),
            products: self
                .catalog
                .products()
                .filter(|p| p.owner.decides(&viewer.id))
                .map(|p| p.id.clone())
                .collect(),
        })
    }

    /// The store read that applies `viewer`'s rule (see [`Workflow::visibility`]).
    fn audit_query(&self, viewer: &Viewer, filter: AuditFilter) -> AuditQuery {
        AuditQuery {
            visible_to: self.visibility(viewer),
            filter,
        }
    }

    /// Audit records `viewer` may see, narrowed by `filter`, each with only the tables they
    /// may see: an owner looking at another principal's query sees its parts on their own
    /// products, and the statement's hash but not its text (the statement is the caller's).
    pub async fn visible_audit(
        &self,
        viewer: &Viewer,
        filter: AuditFilter,
    ) -> Result<Vec<StoredAudit>, GovernanceError> {
        let query = self.audit_query(viewer, filter);
        Ok(self
            .store
            .audit(&query)
            .await?
            .into_iter()
            .filter_map(|mut record| {
                // The store applied the rule; applying it again costs nothing and keeps a
                // store that did not from showing more.
                if !query.matches(&record.record) {
                    return None;
                }
                let Some(visible) = &query.visible_to else {
                    return Some(record);
                };
                if record.record.principal == visible.principal {
                    return Some(record);
                }
                record.record.tables.retain(|t| visible.decides(&t.product));
                if record.record.tables.is_empty() {
                    return None;
                }
                record.record.statement = None;
                Some(record)
            })
            .collect())
    }

    /// Data flows `viewer` may see (see [`flows`]): an edge of a product they decide, or
    /// made by their own queries; every edge for auditors. With `since`, each edge is what
    /// the queries started from then on made of it (its weight over that period).
    pub async fn visible_flows(
        &self,
        viewer: &Viewer,
        since: Option<Millis>,
    ) -> Result<Vec<Flow>, GovernanceError> {
        let query = self.audit_query(
            viewer,
            AuditFilter {
                since,
                ..AuditFilter::default()
            },
        );
        let records = self.store.audit(&query).await?;
        Ok(flows(&records, |record, product| {
            sees(query.visible_to.as_ref(), &record.record.principal, product)
        }))
    }

    /// Grants `viewer` may see (same rule as requests).
    pub async fn visible_grants(&self, viewer: &Viewer) -> Result<Vec<Grant>, GovernanceError> {
        self.store.expire(now_millis()).await?;
        let visible = self.visibility(viewer);
        Ok(self
            .store
            .grants(visible.as_ref())
            .await?
            .into_iter()
            .filter(|g| sees(visible.as_ref(), &g.principal, &g.product))
            .collect())
    }
}

/// Who is looking at governance records, and so which ones they see: auditors everything,
/// owners and delegates what touches their products, everyone their own.
#[derive(Debug, Clone)]
pub struct Viewer {
    pub id: String,
    pub auditor: bool,
}

/// The role whose holders see every governance record (and no product data).
pub const AUDITOR_ROLE: &str = "auditor";

impl Viewer {
    /// The viewer a principal with `id` and `roles` is.
    pub fn new<'r>(id: &str, roles: impl IntoIterator<Item = &'r str>) -> Self {
        Self {
            id: id.to_string(),
            auditor: roles.into_iter().any(|r| r == AUDITOR_ROLE),
        }
    }
}

/// May a viewer with `visible` (`None`: an auditor) see a record made by `subject` about
/// `product`?
fn sees(visible: Option<&VisibleTo>, subject: &str, product: &str) -> bool {
    visible.is_none_or(|v| v.sees(subject, [product]))
}

/// `column` or `table.column` -> `table.column`, checked against the product. Empty means
/// the whole product (`None`).
fn qualify_columns(
    product: &Product,
    columns: &[String],
) -> Result<Option<Vec<String>>, GovernanceError> {
    if columns.is_empty() {
        return Ok(None);
    }
    let mut out = BTreeSet::new();
    for wanted in columns {
        let wanted = wanted.trim();
        let found: Vec<String> = match wanted.split_once('.') {
            Some((table, column)) => product
                .tables
                .iter()
                .filter(|t| t.name == table && t.column(column).is_some())
                .map(|t| format!("{}.{column}", t.name))
                .collect(),
            None => product
                .tables
                .iter()
                .filter(|t| t.column(wanted).is_some())
                .map(|t| format!("{}.{wanted}", t.name))
                .collect(),
        };
        match found.as_slice() {
            [one] => {
                out.insert(one.clone());
            }
            [] => {
                return Err(GovernanceError::Invalid(format!(
                    "`{}` has no column `{wanted}`",
                    product.id
                )));
            }
            _ => {
                return Err(GovernanceError::Invalid(format!(
                    "`{wanted}` is a column of several tables of `{}`; write table.column",
                    product.id
                )));
            }
        }
    }
    Ok(Some(out.into_iter().collect()))
}

/// Grants in force at `now` for one principal and product (for callers that hold a snapshot).
pub fn in_force<'g>(
    grants: &'g [Grant],
    principal: &'g str,
    product: &'g str,
    now: Millis,
) -> impl Iterator<Item = &'g Grant> {
    grants
        .iter()
        .filter(move |g| g.principal == principal && g.product == product && g.in_force(now))
}
