//! The audit browser: the records the viewer may see (their own; those touching products they
//! decide; all, for an auditor), newest first, filtered by principal, product, application,
//! decision and time, a page at a time: the principal and time filters and the page size go
//! to the store, which reads that page only.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::Console;
use crate::data::literal;
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
    /// Records that started before this instant (the page's cursor).
    #[serde(default)]
    before: String,
}

pub(crate) async fn page(
    State(console): State<Console>,
    viewer: Viewer,
    Query(filters): Query<Filters>,
) -> Response {
    let mut conditions = Vec::new();
    if !filters.principal.trim().is_empty() {
        conditions.push(format!("principal = {}", literal(filters.principal.trim())));
    }
    if !filters.before.trim().is_empty() {
        conditions.push(format!(
            "started_at < CAST({} AS TIMESTAMP)",
            literal(filters.before.trim())
        ));
    }
    if !filters.product.trim().is_empty() {
        conditions.push(format!(
            "(',' || replace(products, ' ', '') || ',') LIKE {}",
            literal(&format!("%,{},%", filters.product.trim()))
        ));
    }
    if !filters.app.trim().is_empty() {
        conditions.push(format!("app = {}", literal(filters.app.trim())));
    }
    if !filters.decision.trim().is_empty() {
        conditions.push(format!("decision = {}", literal(filters.decision.trim())));
    }
    let filter = if conditions.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conditions.join(" AND "))
    };
    let records = match console
        .rows(
            &viewer,
            &format!(
                "SELECT query_id, started_at, principal, app, method, decision, status, products, \
                 rows_returned, error FROM mesh_catalog.audit{filter} \
                 ORDER BY started_at DESC LIMIT {}",
                PAGE + 1
            ),
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => return problem(Some(&viewer), StatusCode::BAD_REQUEST, &e),
    };
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
        field("decision", "Decision", &filters.decision),
    );
    body.push_str(
        "<table class=\"audit\"><thead><tr><th>Started</th><th>Principal</th><th>Application</th>\
         <th>Method</th><th>Decision</th><th>Status</th><th>Products</th><th>Rows</th>\
         <th>Error</th></tr></thead><tbody>",
    );
    for record in records.iter().take(PAGE) {
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td>{}</td><td>{}</td></tr>",
            esc(record.get("started_at")),
            esc(record.get("principal")),
            esc(record.get("app")),
            esc(record.get("method")),
            esc(record.get("decision")),
            esc(record.get("status")),
            esc(record.get("products")),
            esc(record.get("rows_returned")),
            esc(record.get("error")),
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
            url(last.get("started_at")),
        ));
    }
    render(Some(&viewer), "Audit", &body)
}
