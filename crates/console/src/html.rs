//! The page frame: every page is HTML rendered here with every value escaped, served with a
//! strict Content-Security-Policy (nothing but this server's own stylesheet; no script at
//! all), no caching, and no framing. Nothing a page needs comes from another host.

use std::fmt::Write as _;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::session::Viewer;

/// Every console answer carries these.
const SECURITY_HEADERS: [(header::HeaderName, &str); 5] = [
    (
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
         frame-ancestors 'none'; base-uri 'none'",
    ),
    (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
    (header::REFERRER_POLICY, "no-referrer"),
    (header::CACHE_CONTROL, "no-store"),
    (header::X_FRAME_OPTIONS, "DENY"),
];

/// `text` made safe for HTML text and attribute values.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// `text` made safe for a URL query value or path segment.
pub(crate) fn url(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// The hidden CSRF field of a form.
pub(crate) fn csrf_field(viewer: &Viewer) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(&viewer.csrf)
    )
}

/// A response with the console's security headers.
pub(crate) fn respond(status: StatusCode, content_type: &str, body: String) -> Response {
    let mut response = (status, [(header::CONTENT_TYPE, content_type)], body).into_response();
    for (name, value) in SECURITY_HEADERS {
        response
            .headers_mut()
            .insert(name, header::HeaderValue::from_static(value));
    }
    response
}

/// A whole page: the frame (navigation, who is signed in, sign out) around `body`.
pub(crate) fn render(viewer: Option<&Viewer>, title: &str, body: &str) -> Response {
    page_with_status(StatusCode::OK, viewer, title, body)
}

/// [`render`] with another status.
pub(crate) fn page_with_status(
    status: StatusCode,
    viewer: Option<&Viewer>,
    title: &str,
    body: &str,
) -> Response {
    let nav = match viewer {
        Some(viewer) => format!(
            "<nav aria-label=\"main\"><a href=\"/\">Search</a> <a href=\"/inbox\">Inbox</a> \
             <a href=\"/flows\">Flows</a> <a href=\"/audit\">Audit</a>\
             <form class=\"signout\" method=\"post\" action=\"/signout\">{}\
             <span class=\"who\">{}</span> <button type=\"submit\">Sign out</button></form></nav>",
            csrf_field(viewer),
            esc(viewer.id())
        ),
        None => String::new(),
    };
    respond(
        status,
        "text/html; charset=utf-8",
        format!(
            "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
             <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
             <title>{} · meshgate</title><link rel=\"stylesheet\" href=\"/static/console.css\">\
             </head><body><header><a class=\"brand\" href=\"/\">meshgate</a>{nav}</header>\
             <main id=\"main\"><h1>{}</h1>{body}</main></body></html>\n",
            esc(title),
            esc(title)
        ),
    )
}

/// A page that says what went wrong, as the engine or the workflow said it.
pub(crate) fn problem(viewer: Option<&Viewer>, status: StatusCode, message: &str) -> Response {
    page_with_status(
        status,
        viewer,
        "Something is in the way",
        &format!("<p class=\"problem\" role=\"alert\">{}</p>", esc(message)),
    )
}

/// The console's stylesheet, from the binary.
pub(crate) async fn stylesheet() -> Response {
    let mut response = respond(
        StatusCode::OK,
        "text/css; charset=utf-8",
        include_str!("../assets/console.css").to_string(),
    );
    response.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("max-age=3600"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_everything_html_could_read_as_markup() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
        assert_eq!(url("a b/ü?&"), "a%20b%2F%C3%BC%3F%26");
    }
}
