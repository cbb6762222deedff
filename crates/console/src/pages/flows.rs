//! The flow graph: products on the left, the consumer applications their data reached on the
//! right, each edge as thick as its queries, each a link into the audit records behind it.
//! Whose flows a viewer sees is the governance rule `mesh_catalog.flows` applies
//! (`Workflow::visible_flows`): owners their products', the auditor all, a consumer their
//! own. Over a chosen period, each edge weighs what that period's queries made of it.

use std::collections::{BTreeMap, BTreeSet};

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use meshgate_api::{DAY_MILLIS, iso8601, now_millis};
use meshgate_engine::Gateway;

use crate::Console;
use crate::html::{esc, problem, render, url};
use crate::session::Viewer;

#[derive(Deserialize, Default)]
pub(crate) struct Period {
    /// Edges and weights of the last this many days (all time without).
    #[serde(default)]
    days: String,
}

/// An application name for people: flows without one came from a client that did not say.
fn app_name(app: &str) -> &str {
    if app.is_empty() {
        "(unnamed client)"
    } else {
        app
    }
}

/// Each side of the graph in name order, top to bottom: each name's row.
fn rows<'a>(names: impl Iterator<Item = &'a str>) -> BTreeMap<&'a str, usize> {
    let names: BTreeSet<&str> = names.collect();
    names.into_iter().enumerate().map(|(i, n)| (n, i)).collect()
}

pub(crate) async fn page(
    State(console): State<Console>,
    viewer: Viewer,
    Query(period): Query<Period>,
) -> Response {
    let principal = &viewer.session.principal;
    // An empty or unreadable number is all time, as the form says.
    let days: Option<u32> = period.days.trim().parse().ok();
    let since = days.map(|d| now_millis() - i64::from(d) * DAY_MILLIS);
    let flows = match console
        .gateway
        .workflow_for(principal)
        .visible_flows(&Gateway::viewer(principal), since)
        .await
    {
        Ok(flows) => flows,
        Err(e) => {
            return problem(
                Some(&viewer),
                StatusCode::SERVICE_UNAVAILABLE,
                &e.to_string(),
            );
        }
    };
    let products = rows(flows.iter().map(|f| f.product.as_str()));
    let apps = rows(flows.iter().map(|f| app_name(f.consumer_app.as_str())));
    let (width, row) = (760, 48);
    let height = row * products.len().max(apps.len()).max(1) + 24;
    let y = |i: usize| 24 + i * row;
    let mut svg = format!(
        "<svg class=\"flows\" role=\"img\" aria-label=\"data flows from products to consumer applications\" \
         viewBox=\"0 0 {width} {height}\" width=\"100%\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for flow in &flows {
        let (Some(&from), Some(&to)) = (
            products.get(flow.product.as_str()),
            apps.get(app_name(flow.consumer_app.as_str())),
        ) else {
            continue;
        };
        // Thicker with more queries, and with more rows.
        let stroke =
            1.0 + (flow.queries.max(1) as f64).log2() + (flow.rows.max(1) as f64).log10() / 2.0;
        let (y1, y2) = (y(from), y(to));
        svg.push_str(&format!(
            "<a href=\"/audit?product={}&amp;app={}\"><title>{} → {}: {} queries, {} rows</title>\
             <path class=\"edge\" d=\"M 230 {y1} C 380 {y1}, 380 {y2}, 530 {y2}\" stroke-width=\"{stroke:.1}\"/></a>",
            url(flow.product.as_str()),
            url(flow.consumer_app.as_str()),
            esc(flow.product.as_str()),
            esc(app_name(flow.consumer_app.as_str())),
            flow.queries,
            flow.rows,
        ));
    }
    for (name, &i) in &products {
        svg.push_str(&format!(
            "<a href=\"/products/{}\"><rect class=\"node product\" x=\"10\" y=\"{}\" width=\"220\" height=\"32\" rx=\"6\"/>\
             <text x=\"20\" y=\"{}\">{}</text></a>",
            url(name),
            y(i) - 16,
            y(i) + 5,
            esc(name)
        ));
    }
    for (name, &i) in &apps {
        svg.push_str(&format!(
            "<rect class=\"node app\" x=\"530\" y=\"{}\" width=\"220\" height=\"32\" rx=\"6\"/>\
             <text x=\"540\" y=\"{}\">{}</text>",
            y(i) - 16,
            y(i) + 5,
            esc(name)
        ));
    }
    svg.push_str("</svg>");
    let mut table = String::from(
        "<table><thead><tr><th>Product</th><th>Application</th><th>Principals</th>\
         <th>Queries</th><th>Rows</th><th>Last</th></tr></thead><tbody>",
    );
    for flow in &flows {
        table.push_str(&format!(
            "<tr><td>{}</td><td><a href=\"/audit?product={}&amp;app={}\">{}</a></td><td>{}</td>\
             <td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(flow.product.as_str()),
            url(flow.product.as_str()),
            url(flow.consumer_app.as_str()),
            esc(app_name(flow.consumer_app.as_str())),
            esc(&flow.principals.join(", ")),
            flow.queries,
            flow.rows,
            esc(&iso8601(flow.last_access)),
        ));
    }
    table.push_str("</tbody></table>");
    let days = days.map(|d| d.to_string()).unwrap_or_default();
    let body = format!(
        "<form method=\"get\" action=\"/flows\"><label>Over the last \
         <input name=\"days\" type=\"number\" min=\"1\" value=\"{days}\"> days (empty: all time)</label> \
         <button type=\"submit\">Show</button></form><p class=\"count\">{} flow(s)</p>{svg}{table}",
        flows.len()
    );
    render(Some(&viewer), "Data flows", &body)
}
