//! Who is viewing: the session cookie (a signed session token, HttpOnly, SameSite=Strict,
//! Secure when configured, ending with the session), and the CSRF token every form carries
//! (an HMAC of the session token under a key derived from the master key, so every replica
//! computes the same one and no state is kept). Sign-in itself is guarded by a random
//! pre-session cookie echoed in its form.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Redirect, Response};
use hmac::{KeyInit, Mac};
use meshgate_flight::SignedIn;
use sha2::Sha256;

use crate::Console;

/// The session cookie's name.
pub const COOKIE: &str = "meshgate_session";
/// The sign-in form's pre-session cookie.
pub(crate) const SIGNIN_COOKIE: &str = "meshgate_signin";

/// The value of cookie `name` in a request.
pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// A `Set-Cookie` value for the console.
pub(crate) fn set_cookie(console: &Console, name: &str, value: &str, max_age: u64) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{}",
        if console.secure_cookie {
            "; Secure"
        } else {
            ""
        }
    )
}

impl Console {
    /// The CSRF token of a session token.
    pub(crate) fn csrf(&self, token: &str) -> String {
        match <hmac::Hmac<Sha256> as KeyInit>::new_from_slice(self.csrf_key.as_slice()) {
            Ok(mut mac) => {
                mac.update(token.as_bytes());
                hex::encode(&mac.finalize().into_bytes()[..16])
            }
            // A 32-byte key always fits; should it not, no token ever matches.
            Err(_) => String::new(),
        }
    }

    /// Whether `offered` is the CSRF token of `session` (compared in constant time).
    pub(crate) fn csrf_matches(&self, session: &SignedIn, offered: &str) -> bool {
        let expected = self.csrf(&session.token);
        !expected.is_empty()
            && expected.len() == offered.len()
            && expected
                .bytes()
                .zip(offered.bytes())
                .fold(0u8, |acc, (a, b)| acc | (a ^ b))
                == 0
    }
}

/// The signed-in viewer of a page. Without a live session, a page answers with a redirect
/// to the sign-in form and nothing else.
pub(crate) struct Viewer {
    pub(crate) session: SignedIn,
    /// This session's CSRF token, for the forms of the page.
    pub(crate) csrf: String,
}

impl Viewer {
    pub(crate) fn id(&self) -> &str {
        self.session.principal.id()
    }
}

impl FromRequestParts<Console> for Viewer {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Console) -> Result<Self, Response> {
        let session =
            cookie(&parts.headers, COOKIE).and_then(|token| console.sign_in.session(token));
        match session {
            Some(session) => Ok(Viewer {
                csrf: console.csrf(&session.token),
                session,
            }),
            None => Err(Redirect::to("/signin").into_response()),
        }
    }
}
