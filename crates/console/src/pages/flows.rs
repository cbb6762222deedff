//! The flow graph: products on the left, the consumer applications their data reached on the
//! right, each edge as thick as its queries, each a link into the audit records behind it.
//! Whose flows a viewer sees is the governance rule `mesh_catalog.flows` applies: owners
//! their products', the auditor all, a consumer their own.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::Console;
use crate::html::{esc, problem, render, url};
use crate::session::Viewer;

#[derive(Deserialize, Default)]
pub(crate) struct Period {
    /// Only edges used in the last this many days.
    #[serde(default)]
    days: Option<u32>,
}

/// An application name for people: flows without one came from a client that did not say.
fn app_name(app: &str) -> &str {
    if app.is_empty() {
        "(unnamed client)"
    } else {
        app
    }
}

pub(crate) async fn page(
    State(console): State<Console>,
    viewer: Viewer,
    Query(period): Query<Period>,
) -> Response {
    let since = period
        .days
        .map(|d| format!(" WHERE last_access >= now() - INTERVAL '{d} days'"))
        .unwrap_or_default();
    let flows = match console
        .rows(
            &viewer,
            &format!(
                "SELECT product_id, consumer_app, principals, queries, rows, last_access \
                 FROM mesh_catalog.flows{since} ORDER BY product_id, consumer_app"
            ),
        )
        .await
    {
        Ok(rows) => rows,
        Err(e) => return problem(Some(&viewer), StatusCode::BAD_GATEWAY, &e),
    };
    let mut products: BTreeMap<&str, usize> = BTreeMap::new();
    let mut apps: BTreeMap<&str, usize> = BTreeMap::new();
    for flow in &flows {
        let next = products.len();
        products.entry(flow.get("product_id")).or_insert(next);
        let next = apps.len();
        apps.entry(app_name(flow.get("consumer_app")))
            .or_insert(next);
    }
    // Name order top to bottom on each side.
    for (i, v) in products.values_mut().enumerate() {
        *v = i;
    }
    for (i, v) in apps.values_mut().enumerate() {
        *v = i;
    }
    let (width, row) = (760, 48);
    let height = row * products.len().max(apps.len()).max(1) + 24;
    let y = |i: usize| 24 + i * row;
    let mut svg = format!(
        "<svg class=\"flows\" role=\"img\" aria-label=\"data flows from products to consumer applications\" \
         viewBox=\"0 0 {width} {height}\" width=\"100%\" xmlns=\"http://www.w3.org/2000/svg\">"
    );
    for flow in &flows {
        let (Some(&from), Some(&to)) = (
            products.get(flow.get("product_id")),
            apps.get(app_name(flow.get("consumer_app"))),
        ) else {
            continue;
        };
        let queries: f64 = flow.get("queries").parse().unwrap_or(1.0);
        let stroke = 1.0 + queries.max(1.0).log2();
        let (y1, y2) = (y(from), y(to));
        svg.push_str(&format!(
            "<a href=\"/audit?product={}&amp;app={}\"><title>{} → {}: {} queries, {} rows</title>\
             <path class=\"edge\" d=\"M 230 {y1} C 380 {y1}, 380 {y2}, 530 {y2}\" stroke-width=\"{stroke:.1}\"/></a>",
            url(flow.get("product_id")),
            url(flow.get("consumer_app")),
            esc(flow.get("product_id")),
            esc(app_name(flow.get("consumer_app"))),
            esc(flow.get("queries")),
            esc(flow.get("rows")),
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
            esc(flow.get("product_id")),
            url(flow.get("product_id")),
            url(flow.get("consumer_app")),
            esc(app_name(flow.get("consumer_app"))),
            esc(flow.get("principals")),
            esc(flow.get("queries")),
            esc(flow.get("rows")),
            esc(flow.get("last_access")),
        ));
    }
    table.push_str("</tbody></table>");
    let days = period.days.map(|d| d.to_string()).unwrap_or_default();
    let body = format!(
        "<form method=\"get\" action=\"/flows\"><label>Used in the last \
         <input name=\"days\" type=\"number\" min=\"1\" value=\"{days}\"> days</label> \
         <button type=\"submit\">Show</button></form><p class=\"count\">{} flow(s)</p>{svg}{table}",
        flows.len()
    );
    render(Some(&viewer), "Data flows", &body)
}
