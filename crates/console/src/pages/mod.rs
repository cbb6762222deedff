//! One file per page: each reads `mesh_catalog` as the viewer and renders it, or turns a form
//! into a governance action.

pub(crate) mod audit;
pub(crate) mod flows;
pub(crate) mod inbox;
pub(crate) mod product;
pub(crate) mod search;
pub(crate) mod signin;

use axum::http::StatusCode;
use axum::response::Response;

use crate::Console;
use crate::html::problem;
use crate::session::Viewer;

/// A form's comma-separated column list (`a, t.b`), empty entries dropped.
pub(crate) fn column_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// A form's CSRF check: `None` when it passes, the refusal otherwise.
pub(crate) fn refused(console: &Console, viewer: &Viewer, csrf: &str) -> Option<Response> {
    (!console.csrf_matches(&viewer.session, csrf)).then(|| {
        problem(
            Some(viewer),
            StatusCode::FORBIDDEN,
            "this form is out of date or was not sent from the console; reload the page and try again",
        )
    })
}
