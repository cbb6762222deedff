//! Search: every product the mesh publishes (discoverable by everyone, readable or not), by
//! name, description, tag, owner or column, with freshness, quality and access badges.

use std::collections::BTreeMap;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde::Deserialize;

use crate::Console;
use crate::html::{esc, problem, render, url};
use crate::session::Viewer;

#[derive(Deserialize, Default)]
pub(crate) struct Search {
    #[serde(default)]
    q: String,
}

pub(crate) async fn page(
    State(console): State<Console>,
    viewer: Viewer,
    Query(search): Query<Search>,
) -> Response {
    let products = console
        .rows(
            &viewer,
            "SELECT product_id, name, version, status, description, owner_team, owners, tags, \
             last_modified, quality, has_access, sunset FROM mesh_catalog.products \
             ORDER BY product_id, version",
        )
        .await;
    let columns = console
        .rows(
            &viewer,
            "SELECT product_id, column_name FROM mesh_catalog.columns",
        )
        .await;
    let (products, columns) = match (products, columns) {
        (Ok(p), Ok(c)) => (p, c),
        (Err(e), _) | (_, Err(e)) => return problem(Some(&viewer), StatusCode::BAD_GATEWAY, &e),
    };
    let mut columns_of: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for row in &columns {
        columns_of
            .entry(row.get("product_id"))
            .or_default()
            .push(row.get("column_name"));
    }
    let wanted = search.q.trim().to_lowercase();
    let mut cards = String::new();
    let mut found = 0;
    for product in &products {
        let id = product.get("product_id");
        let haystack = [
            id,
            product.get("name"),
            product.get("description"),
            product.get("tags"),
            product.get("owner_team"),
            product.get("owners"),
        ]
        .join(" ")
        .to_lowercase();
        let column_hit = columns_of
            .get(id)
            .into_iter()
            .flatten()
            .find(|c| !wanted.is_empty() && c.to_lowercase().contains(&wanted));
        if !wanted.is_empty() && !haystack.contains(&wanted) && column_hit.is_none() {
            continue;
        }
        found += 1;
        let access = if product.get("has_access") == "true" {
            "<span class=\"badge ok\">you can read it</span>"
        } else {
            "<span class=\"badge no\">no access yet: request it</span>"
        };
        let quality = match product.get("quality") {
            "" => String::new(),
            q => format!(
                "<span class=\"badge {}\">quality: {}</span>",
                if q.starts_with("passed") {
                    "ok"
                } else {
                    "warn"
                },
                esc(q)
            ),
        };
        let fresh = match product.get("last_modified") {
            "" => "<span class=\"badge\">no files yet</span>".to_string(),
            t => format!("<span class=\"badge\">newest file {}</span>", esc(t)),
        };
        let status = match product.get("status") {
            "active" => String::new(),
            s => format!(
                "<span class=\"badge warn\">{}{}</span>",
                esc(s),
                if product.is_null("sunset") {
                    String::new()
                } else {
                    format!(" until {}", esc(product.get("sunset")))
                }
            ),
        };
        let matched = column_hit
            .map(|c| format!("<p class=\"hit\">column <code>{}</code></p>", esc(c)))
            .unwrap_or_default();
        cards.push_str(&format!(
            "<article class=\"card product\"><h2><a href=\"/products/{}\">{}</a> \
             <small>{}</small></h2><p>{}</p>{matched}<p class=\"meta\">owner {} · version {} · tags {}</p>\
             <p>{access} {fresh} {quality} {status}</p></article>",
            url(id),
            esc(id),
            esc(product.get("name")),
            esc(product.get("description")),
            esc(product.get("owner_team")),
            esc(product.get("version")),
            esc(product.get("tags")),
        ));
    }
    let body = format!(
        "<form class=\"search\" method=\"get\" action=\"/\" role=\"search\">\
         <label>Find a product <input type=\"search\" name=\"q\" value=\"{}\" \
         placeholder=\"name, description, tag, owner or column\"></label>\
         <button type=\"submit\">Search</button></form>\
         <p class=\"count\">{found} product(s)</p>{cards}",
        esc(&search.q)
    );
    render(Some(&viewer), "Data products", &body)
}
