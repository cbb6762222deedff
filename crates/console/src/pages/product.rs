//! A product page: what it is, who owns it, its versions, SLOs and quality, its schema as this
//! viewer will see it (each column's treatment for them; columns hidden from them absent,
//! exactly as Flight `GetTables` shows them), how to connect, and the request-access form.

use axum::Form;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use meshgate_api::RequestAccess;
use serde::Deserialize;

use crate::Console;
use crate::data::literal;
use crate::html::{csrf_field, esc, problem, render, url};
use crate::session::Viewer;

pub(crate) async fn page(
    State(console): State<Console>,
    viewer: Viewer,
    Path(id): Path<String>,
) -> Response {
    let id_sql = literal(&id);
    let versions = console
        .rows(
            &viewer,
            &format!(
                "SELECT product_id, name, version, status, description, owner_team, owners, tags, \
                 support, slos, last_modified, quality, has_access, sunset, replaced_by, how_to_request \
                 FROM mesh_catalog.products WHERE product_id = {id_sql} ORDER BY version"
            ),
        )
        .await;
    let columns = console
        .rows(
            &viewer,
            &format!(
                "SELECT table_schema, table_name, column_name, data_type, classification, tags, \
                 description, your_treatment FROM mesh_catalog.columns \
                 WHERE product_id = {id_sql} ORDER BY table_name, ordinal_position"
            ),
        )
        .await;
    let quality = console
        .rows(
            &viewer,
            &format!(
                "SELECT table_name, column_name, rule_id, expectation, status, measured, checked_at \
                 FROM mesh_catalog.quality WHERE product_id = {id_sql}"
            ),
        )
        .await;
    let tables = console
        .rows(
            &viewer,
            &format!(
                "SELECT table_name, your_rows FROM mesh_catalog.tables WHERE product_id = {id_sql}"
            ),
        )
        .await;
    let (versions, columns, quality, tables) = match (versions, columns, quality, tables) {
        (Ok(v), Ok(c), Ok(q), Ok(t)) => (v, c, q, t),
        (Err(e), ..) | (_, Err(e), ..) | (_, _, Err(e), _) | (.., Err(e)) => {
            return problem(Some(&viewer), StatusCode::BAD_GATEWAY, &e);
        }
    };
    let rows_of = |table: &str| {
        tables
            .iter()
            .find(|t| t.get("table_name") == table)
            .map_or("", |t| t.get("your_rows"))
            .to_string()
    };
    let Some(current) = versions.last() else {
        return problem(
            Some(&viewer),
            StatusCode::NOT_FOUND,
            &format!("there is no product `{id}`"),
        );
    };
    let mut body = format!(
        "<p>{}</p><dl class=\"facts\"><dt>Owner</dt><dd>{} ({})</dd><dt>Support</dt><dd>{}</dd>\
         <dt>Tags</dt><dd>{}</dd><dt>Service levels</dt><dd>{}</dd><dt>Newest file</dt><dd>{}</dd><dt>Quality</dt><dd>{}</dd></dl>",
        esc(current.get("description")),
        esc(current.get("owner_team")),
        esc(current.get("owners")),
        esc(current.get("support")),
        esc(current.get("tags")),
        esc(current.get("slos")),
        esc(current.get("last_modified")),
        esc(current.get("quality")),
    );
    body.push_str("<h2>Versions</h2><ul class=\"versions\">");
    for version in &versions {
        let mut line = format!(
            "{} ({})",
            esc(version.get("version")),
            esc(version.get("status"))
        );
        if !version.is_null("sunset") {
            line.push_str(&format!(", served until {}", esc(version.get("sunset"))));
        }
        if !version.is_null("replaced_by") {
            line.push_str(&format!(
                ", replaced by version {}",
                esc(version.get("replaced_by"))
            ));
        }
        body.push_str(&format!("<li>{line}</li>"));
    }
    body.push_str("</ul>");

    body.push_str("<h2>Schema as you will see it</h2>");
    let mut table = "";
    for column in &columns {
        if column.get("table_name") != table {
            if !table.is_empty() {
                body.push_str("</tbody></table>");
            }
            table = column.get("table_name");
            body.push_str(&format!(
                "<h3><code>{}.{}</code></h3><p class=\"rows\">Rows for you: {}</p>\
                 <table class=\"schema\"><thead><tr><th>Column</th>\
                 <th>Type</th><th>Classification</th><th>Tags</th><th>For you</th>\
                 <th>Description</th></tr></thead><tbody>",
                esc(column.get("table_schema")),
                esc(table),
                esc(&rows_of(table))
            ));
        }
        body.push_str(&format!(
            "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"treatment\">{}</td><td>{}</td></tr>",
            esc(column.get("column_name")),
            esc(column.get("data_type")),
            esc(column.get("classification")),
            esc(column.get("tags")),
            esc(column.get("your_treatment")),
            esc(column.get("description")),
        ));
    }
    if !table.is_empty() {
        body.push_str("</tbody></table>");
    }

    if !quality.is_empty() {
        body.push_str(
            "<h2>Quality</h2><table><thead><tr><th>Rule</th><th>On</th><th>Expectation</th>\
             <th>Status</th><th>Measured</th><th>Checked</th></tr></thead><tbody>",
        );
        for rule in &quality {
            let on = [rule.get("table_name"), rule.get("column_name")]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join(".");
            body.push_str(&format!(
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(rule.get("rule_id")),
                esc(&on),
                esc(rule.get("expectation")),
                esc(rule.get("status")),
                esc(rule.get("measured")),
                esc(rule.get("checked_at")),
            ));
        }
        body.push_str("</tbody></table>");
    }

    let first_table = columns
        .first()
        .map(|c| format!("{}.{}", c.get("table_schema"), c.get("table_name")))
        .unwrap_or_default();
    body.push_str(&format!(
        "<h2>Connect</h2><p>Python (ADBC):</p><pre><code>import adbc_driver_flightsql.dbapi as flightsql\n\
         conn = flightsql.connect(\"{flight}\", db_kwargs={{\"username\": \"{user}\", \"password\": \"…\"}})\n\
         conn.cursor().execute(\"SELECT * FROM {table} LIMIT 10\")</code></pre>\
         <p>JDBC:</p><pre><code>jdbc:arrow-flight-sql://{host}?user={user}&amp;useEncryption={tls}</code></pre>\
         <p>Polars:</p><pre><code>pl.read_database_uri(\"SELECT * FROM {table}\", \"{flight}\", engine=\"adbc\")</code></pre>",
        flight = esc(&console.flight_url),
        host = esc(console.flight_url.split("://").nth(1).unwrap_or(&console.flight_url)),
        tls = console.flight_url.starts_with("grpc+tls"),
        user = esc(viewer.id()),
        table = esc(&first_table),
    ));

    if current.get("has_access") == "true" {
        body.push_str("<p class=\"badge ok\">You can read this product.</p>");
    } else {
        body.push_str(&format!(
            "<h2>Request access</h2><form class=\"card\" method=\"post\" action=\"/products/{}/request\">{}\
             <label>Purpose <textarea name=\"purpose\" rows=\"3\" required></textarea></label>\
             <label>Columns (comma-separated; empty for the whole product) <input name=\"columns\"></label>\
             <label>For how many days <input name=\"valid_days\" type=\"number\" min=\"1\" max=\"365\" value=\"90\"></label>\
             <button type=\"submit\">Request access</button></form>",
            url(&id),
            csrf_field(&viewer)
        ));
    }
    render(Some(&viewer), current.get("product_id"), &body)
}

#[derive(Deserialize)]
pub(crate) struct RequestForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    purpose: String,
    #[serde(default)]
    columns: String,
    #[serde(default)]
    valid_days: String,
}

pub(crate) async fn request(
    State(console): State<Console>,
    viewer: Viewer,
    Path(id): Path<String>,
    Form(form): Form<RequestForm>,
) -> Response {
    if let Some(refusal) = super::refused(&console, &viewer, &form.csrf) {
        return refusal;
    }
    let action = RequestAccess {
        product: id,
        purpose: form.purpose,
        columns: super::column_list(&form.columns),
        valid_days: form.valid_days.trim().parse().ok(),
    };
    match console
        .gateway
        .act(&viewer.session.principal, &action)
        .await
    {
        Ok(_) => Redirect::to("/inbox").into_response(),
        Err(e) => problem(Some(&viewer), StatusCode::BAD_REQUEST, &e.to_string()),
    }
}
