//! The audit browser: the records the viewer may see (their own; those touching products they
//! decide; all, for an auditor; the rule is governance's, `Workflow::visible_audit`), newest
//! first, filtered by principal, product, application, decision and time. Every filter and
//! the page size go to the store, which reads that page only, never the whole log; the next
//! page starts below the last record shown.

use std::collections::BTreeSet;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use meshgate_api::iso8601;
use meshgate_engine::Gateway;
use meshgate_governance::AuditFilter;
use serde::Deserialize;

use crate::Console;
use crate::html::{esc, problem, render, url};
use crate::session::Viewer;

/// Records per page.
const PAGE: usize = 50;

#[derive(Deserialize, Default)]
pub(crate) struct Filters {
    #[serde(default)]
    principal: String,
    #[serde(default)]
    product: String,
    #[serde(default)]
    app: String,
    #[serde(default)]
    decision: String,
    /// Records that started before this instant (milliseconds since the epoch): the page's
    /// cursor.
    #[serde(default)]
    before: String,
}

fn given(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

pub(crate) async fn page(
    State(console): State<Console>,
    viewer: Viewer,
    Query(filters): Query<Filters>,
) -> Response {
    let principal = &viewer.session.principal;
    let read = console
        .gateway
        .workflow_for(principal)
        .visible_audit(
            &Gateway::viewer(principal),
            AuditFilter {
                principal: given(&filters.principal),
                product: given(&filters.product),
                app: given(&filters.app),
                decision: given(&filters.decision),
                until: filters.before.trim().parse().ok(),
                // One more than a page: whether there is a next one.
                limit: Some(PAGE + 1),
                ..AuditFilter::default()
            },
        )
        .await;
    let mut records = match read {
        Ok(records) => records,
        Err(e) => {
            return problem(
                Some(&viewer),
                StatusCode::SERVICE_UNAVAILABLE,
                &e.to_string(),
            );
        }
    };
    // The store returns the page oldest first; newest first reads better.
    records.reverse();
    let field = |name: &str, label: &str, value: &str| {
        format!(
            "<label>{label} <input name=\"{name}\" value=\"{}\"></label>",
            esc(value)
        )
    };
    let mut body = format!(
        "<form class=\"filters\" method=\"get\" action=\"/audit\">{}{}{}{}\
         <button type=\"submit\">Filter</button></form>",
        field("principal", "Principal", &filters.principal),
        field("product", "Product", &filters.product),
        field("app", "Application", &filters.app),
        field(
            "decision",
            "Decision (allow, deny, error)",
            &filters.decision
        ),
    );
    body.push_str(
        "<table class=\"audit\"><thead><tr><th>Started</th><th>Principal</th><th>Application</th>\
         <th>Method</th><th>Decision</th><th>Status</th><th>Products</th><th>Rows</th>\
         <th>Error</th></tr></thead><tbody>",
    );
    for stored in records.iter().take(PAGE) {
        let record = &stored.record;
        let products: BTreeSet<&str> = stored.products().collect();
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            esc(&iso8601(record.started_at)),
            esc(&record.principal),
            esc(record.app.as_deref().unwrap_or("")),
            esc(&record.method),
            esc(record.decision.as_str()),
            esc(stored.status.as_str()),
            esc(&products.into_iter().collect::<Vec<_>>().join(", ")),
            stored
                .rows_returned
                .map(|r| r.to_string())
                .unwrap_or_default(),
            esc(record.error.as_deref().unwrap_or("")),
        ));
    }
    body.push_str("</tbody></table>");
    if records.len() > PAGE
        && let Some(last) = records.get(PAGE - 1)
    {
        body.push_str(&format!(
            "<p><a rel=\"next\" href=\"/audit?principal={}&amp;product={}&amp;app={}&amp;decision={}&amp;before={}\">Older records</a></p>",
            url(&filters.principal),
            url(&filters.product),
            url(&filters.app),
            url(&filters.decision),
            last.record.started_at,
        ));
    }
    render(Some(&viewer), "Audit", &body)
}
