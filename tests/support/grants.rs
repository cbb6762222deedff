//! Access grants for tests: a request by `principal` for columns of
//! `reference.counterparties`, approved by its owner with an optional row filter, through
//! the same workflow (and approval-time filter check) the Flight actions and the CLI use.

#![allow(dead_code)] // each test binary uses a different part

use meshgate::Gateway;
use meshgate::governance::{Approval, NewRequest, Workflow};

/// The grant's id, or why the request or the approval was refused.
pub async fn grant(
    gateway: &Gateway,
    principal: &str,
    columns: &[&str],
    row_filter: Option<&str>,
) -> Result<String, String> {
    grant_with(gateway, gateway.workflow(), principal, columns, row_filter).await
}

/// A grant made by a workflow that does not consult the access rules: how a grant comes to
/// stand behind a deny line added after it was approved.
pub async fn grant_before_a_deny_rule(
    gateway: &Gateway,
    principal: &str,
    columns: &[&str],
) -> Result<String, String> {
    let blind = Workflow::new(gateway.governance().as_ref(), gateway.catalog());
    grant_with(gateway, blind, principal, columns, None).await
}

async fn grant_with(
    gateway: &Gateway,
    workflow: Workflow<'_>,
    principal: &str,
    columns: &[&str],
    row_filter: Option<&str>,
) -> Result<String, String> {
    let columns: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let request = workflow
        .request(
            principal,
            NewRequest {
                product: "reference.counterparties".into(),
                columns: columns.clone(),
                purpose: "a test".into(),
                valid_days: Some(1),
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let check = |p: &meshgate::catalog::Product, f: &str| gateway.check_grant_filter(p, f);
    let approval = Approval {
        columns,
        row_filter: row_filter.map(str::to_string),
        valid_days: None,
        comment: None,
    };
    workflow
        .approve("ref-owner", &request.id, approval, &check)
        .await
        .map(|(_, g)| g.id)
        .map_err(|e| e.to_string())
}
