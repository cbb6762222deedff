//! The inbox: requests waiting for the viewer's decision (the products they own or delegate),
//! approved, narrowed or rejected here; their own requests; grants, suspended, resumed or
//! revoked here. Each button is the governance action of the same name, decided by the
//! workflow exactly as from Flight or the CLI (owners decide, never the requester).

use axum::Form;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use meshgate_api::{
    ApproveRequest, CancelRequest, GrantChange, RejectRequest, ResumeGrant, RevokeGrant,
    SuspendGrant,
};
use serde::Deserialize;

use crate::Console;
use crate::html::{csrf_field, esc, problem, render, url};
use crate::session::Viewer;

pub(crate) async fn page(State(console): State<Console>, viewer: Viewer) -> Response {
    let requests = console
        .rows(
            &viewer,
            "SELECT request_id, requester, product_id, columns, purpose, valid_days, state, \
             created_at, decision_comment FROM mesh_catalog.access_requests ORDER BY created_at DESC",
        )
        .await;
    let grants = console
        .rows(
            &viewer,
            "SELECT grant_id, principal, product_id, columns, row_filter, state, valid_until \
             FROM mesh_catalog.grants ORDER BY created_at DESC",
        )
        .await;
    let (requests, grants) = match (requests, grants) {
        (Ok(r), Ok(g)) => (r, g),
        (Err(e), _) | (_, Err(e)) => return problem(Some(&viewer), StatusCode::BAD_GATEWAY, &e),
    };
    let me = viewer.id();
    let csrf = csrf_field(&viewer);
    let mut body = String::from("<h2>Waiting for your decision</h2>");
    let mut waiting = 0;
    for request in requests
        .iter()
        .filter(|r| r.get("state") == "pending" && r.get("requester") != me)
    {
        waiting += 1;
        let id = esc(request.get("request_id"));
        body.push_str(&format!(
            "<article class=\"card request\"><h3>{} asks for <a href=\"/products/{}\">{}</a></h3>\
             <p>Purpose: {}</p><p>Columns: {} · {} days · asked {}</p>\
             <form method=\"post\" action=\"/inbox/decide\">{csrf}\
             <input type=\"hidden\" name=\"id\" value=\"{id}\">\
             <label>Only these columns <input name=\"columns\" value=\"\"></label>\
             <label>Only rows where <input name=\"row_filter\" placeholder=\"lob = 'CIB'\"></label>\
             <label>Days <input name=\"valid_days\" type=\"number\" min=\"1\" max=\"365\"></label>\
             <label>Comment <input name=\"comment\"></label>\
             <button type=\"submit\" name=\"op\" value=\"approve\">Approve</button> \
             <button type=\"submit\" name=\"op\" value=\"reject\">Reject</button></form></article>",
            esc(request.get("requester")),
            url(request.get("product_id")),
            esc(request.get("product_id")),
            esc(request.get("purpose")),
            esc(or_all(request.get("columns"))),
            esc(request.get("valid_days")),
            esc(request.get("created_at")),
        ));
    }
    if waiting == 0 {
        body.push_str("<p>Nothing waits for you.</p>");
    }
    body.push_str(
        "<h2>Your requests</h2><table><thead><tr><th>Product</th><th>Columns</th>\
         <th>State</th><th>Comment</th><th></th></tr></thead><tbody>",
    );
    for request in requests.iter().filter(|r| r.get("requester") == me) {
        let cancel = if request.get("state") == "pending" {
            format!(
                "<form method=\"post\" action=\"/inbox/decide\">{csrf}\
                 <input type=\"hidden\" name=\"id\" value=\"{}\">\
                 <button type=\"submit\" name=\"op\" value=\"cancel\">Withdraw</button></form>",
                esc(request.get("request_id"))
            )
        } else {
            String::new()
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{cancel}</td></tr>",
            esc(request.get("product_id")),
            esc(or_all(request.get("columns"))),
            esc(request.get("state")),
            esc(request.get("decision_comment")),
        ));
    }
    body.push_str(
        "</tbody></table><h2>Grants</h2><table><thead><tr><th>Holder</th><th>Product</th>\
         <th>Columns</th><th>Rows</th><th>State</th><th>Until</th><th></th></tr></thead><tbody>",
    );
    for grant in &grants {
        let id = esc(grant.get("grant_id"));
        let buttons = if grant.get("principal") == me {
            String::new()
        } else {
            let mut ops = Vec::new();
            match grant.get("state") {
                "active" => ops.extend(["suspend", "revoke"]),
                "suspended" => ops.extend(["resume", "revoke"]),
                _ => {}
            }
            let buttons: String = ops
                .iter()
                .map(|op| {
                    format!("<button type=\"submit\" name=\"op\" value=\"{op}\">{op}</button> ")
                })
                .collect();
            if buttons.is_empty() {
                String::new()
            } else {
                format!(
                    "<form method=\"post\" action=\"/inbox/decide\">{csrf}\
                     <input type=\"hidden\" name=\"id\" value=\"{id}\">{buttons}</form>"
                )
            }
        };
        body.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{buttons}</td></tr>",
            esc(grant.get("principal")),
            esc(grant.get("product_id")),
            esc(or_all(grant.get("columns"))),
            esc(if grant.is_null("row_filter") {
                "all"
            } else {
                grant.get("row_filter")
            }),
            esc(grant.get("state")),
            esc(grant.get("valid_until")),
        ));
    }
    body.push_str("</tbody></table>");
    render(Some(&viewer), "Inbox", &body)
}

fn or_all(columns: &str) -> &str {
    if columns.is_empty() { "all" } else { columns }
}

#[derive(Deserialize)]
pub(crate) struct Decision {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    op: String,
    #[serde(default)]
    id: String,
    #[serde(default)]
    columns: String,
    #[serde(default)]
    row_filter: String,
    #[serde(default)]
    valid_days: String,
    #[serde(default)]
    comment: String,
}

fn some(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_string())
}

pub(crate) async fn decide(
    State(console): State<Console>,
    viewer: Viewer,
    Form(form): Form<Decision>,
) -> Response {
    if let Some(refusal) = super::refused(&console, &viewer, &form.csrf) {
        return refusal;
    }
    let gateway = &console.gateway;
    let who = &viewer.session.principal;
    let change = || GrantChange {
        grant_id: form.id.clone(),
        reason: some(&form.comment),
    };
    let done = match form.op.as_str() {
        "approve" => gateway
            .act(
                who,
                &ApproveRequest {
                    request_id: form.id.clone(),
                    columns: super::column_list(&form.columns),
                    row_filter: some(&form.row_filter),
                    valid_days: form.valid_days.trim().parse().ok(),
                    comment: some(&form.comment),
                },
            )
            .await
            .map(drop),
        "reject" => gateway
            .act(
                who,
                &RejectRequest {
                    request_id: form.id.clone(),
                    comment: some(&form.comment),
                },
            )
            .await
            .map(drop),
        "cancel" => gateway
            .act(
                who,
                &CancelRequest {
                    request_id: form.id.clone(),
                },
            )
            .await
            .map(drop),
        "suspend" => gateway.act(who, &SuspendGrant(change())).await.map(drop),
        "resume" => gateway.act(who, &ResumeGrant(change())).await.map(drop),
        "revoke" => gateway.act(who, &RevokeGrant(change())).await.map(drop),
        other => {
            return problem(
                Some(&viewer),
                StatusCode::BAD_REQUEST,
                &format!("unknown decision `{other}`"),
            );
        }
    };
    match done {
        Ok(()) => Redirect::to("/inbox").into_response(),
        Err(e) => problem(Some(&viewer), StatusCode::BAD_REQUEST, &e.to_string()),
    }
}
