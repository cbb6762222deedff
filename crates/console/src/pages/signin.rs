//! Sign in (a user name and password, or an identity provider's token) and sign out.

use std::time::SystemTime;

use axum::Form;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use rand::RngCore;
use serde::Deserialize;

use crate::Console;
use crate::html::{esc, page_with_status};
use crate::session::{COOKIE, SIGNIN_COOKIE, Viewer, cookie, set_cookie};

#[derive(Deserialize)]
pub(crate) struct SignInForm {
    #[serde(default)]
    signin: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    token: String,
}

#[derive(Deserialize)]
pub(crate) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

fn form_page(console: &Console, status: StatusCode, message: Option<&str>) -> Response {
    let mut nonce = [0u8; 16];
    rand::rng().fill_bytes(&mut nonce);
    let nonce = hex::encode(nonce);
    let alert = message
        .map(|m| format!("<p class=\"problem\" role=\"alert\">{}</p>", esc(m)))
        .unwrap_or_default();
    let hidden = format!("<input type=\"hidden\" name=\"signin\" value=\"{nonce}\">");
    let body = format!(
        "{alert}<form class=\"card\" method=\"post\" action=\"/signin\">{hidden}\
         <label>User <input name=\"user\" autocomplete=\"username\" required></label>\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\
         <button type=\"submit\">Sign in</button></form>\
         <form class=\"card\" method=\"post\" action=\"/signin\">{hidden}\
         <label>Or a token from your identity provider <textarea name=\"token\" rows=\"3\" required></textarea></label>\
         <button type=\"submit\">Sign in with the token</button></form>"
    );
    let mut response = page_with_status(status, None, "Sign in", &body);
    if let Ok(value) =
        header::HeaderValue::from_str(&set_cookie(console, SIGNIN_COOKIE, &nonce, 600))
    {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}

pub(crate) async fn form(State(console): State<Console>, headers: HeaderMap) -> Response {
    if cookie(&headers, COOKIE).is_some_and(|t| console.sign_in.session(t).is_some()) {
        return Redirect::to("/").into_response();
    }
    form_page(&console, StatusCode::OK, None)
}

pub(crate) async fn submit(
    State(console): State<Console>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    // The form must come from a sign-in page this browser loaded.
    if form.signin.is_empty() || cookie(&headers, SIGNIN_COOKIE) != Some(form.signin.as_str()) {
        return form_page(
            &console,
            StatusCode::FORBIDDEN,
            Some("the sign-in form expired; try again"),
        );
    }
    let signed = if form.token.trim().is_empty() {
        console.sign_in.password(&form.user, &form.password).await
    } else {
        console.sign_in.password("token", form.token.trim()).await
    };
    match signed {
        Ok(session) => {
            let seconds = session
                .expires
                .duration_since(SystemTime::now())
                .map_or(0, |d| d.as_secs());
            let mut response = Redirect::to("/").into_response();
            for value in [
                set_cookie(&console, COOKIE, &session.token, seconds),
                set_cookie(&console, SIGNIN_COOKIE, "", 0),
            ] {
                if let Ok(value) = header::HeaderValue::from_str(&value) {
                    response.headers_mut().append(header::SET_COOKIE, value);
                }
            }
            response
        }
        Err(reason) => form_page(&console, StatusCode::UNAUTHORIZED, Some(&reason)),
    }
}

pub(crate) async fn sign_out(
    State(console): State<Console>,
    viewer: Viewer,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refusal) = super::refused(&console, &viewer, &form.csrf) {
        return refusal;
    }
    console.sign_in.close(&viewer.session);
    let mut response = Redirect::to("/signin").into_response();
    if let Ok(value) = header::HeaderValue::from_str(&set_cookie(&console, COOKIE, "", 0)) {
        response.headers_mut().append(header::SET_COOKIE, value);
    }
    response
}
