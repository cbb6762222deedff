//! # meshgate-console
//!
//! Owners, auditors and analysts would rather look than type. This crate is the mesh console:
//! search, a product page with the schema as the viewer will see it, a request-access form, the
//! owner's inbox, the flow graph and the audit browser, served as HTML by the gateway's own
//! binary on its HTTP listener.
//!
//! It decides nothing. Every page is a query of the `mesh_catalog` tables run as the signed-in
//! principal through the engine (so it shows exactly what Flight SQL would), and every form
//! is a governance action run by the engine ([`meshgate_engine::Gateway::run_action`]), where
//! the workflow decides who may do what. Sign-in checks the same users and identity
//! providers' tokens as Flight ([`meshgate_flight::SignIn`]).
//!
//! Code map: `session` (the cookie, CSRF tokens, who is viewing), `html` (the page frame,
//! escaping, security headers), `data` (mesh_catalog rows as text), one file per page under
//! `pages`.

mod data;
mod html;
mod pages;
mod session;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::routing::{get, post};
use meshgate_engine::Gateway;
use meshgate_flight::{JwtConfig, SignIn};

pub use session::COOKIE;

/// How the console signs people in.
#[derive(Debug, Clone)]
pub struct ConsoleConfig {
    /// Identity providers whose tokens are accepted at sign-in (as for Flight SQL).
    pub jwt: Vec<JwtConfig>,
    /// How long a console session lasts at most.
    pub session_ttl: Duration,
    /// Mark the session cookie `Secure` (the console is reached over HTTPS, directly or
    /// through a proxy that terminates TLS).
    pub secure_cookie: bool,
    /// Where consumers reach Flight SQL (`grpc://host:port`, `grpc+tls://...`), for the
    /// connection snippets of product pages.
    pub flight_url: String,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        Self {
            jwt: Vec::new(),
            session_ttl: Duration::from_secs(8 * 3600),
            secure_cookie: false,
            flight_url: "grpc://127.0.0.1:50051".into(),
        }
    }
}

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct Console {
    pub(crate) gateway: Gateway,
    pub(crate) sign_in: Arc<SignIn>,
    /// Derived from the master key: a CSRF token is the same on every replica.
    pub(crate) csrf_key: Arc<[u8; 32]>,
    pub(crate) secure_cookie: bool,
    pub(crate) flight_url: String,
}

/// The console's routes, to serve on the gateway's HTTP listener.
pub fn router(gateway: Gateway, config: &ConsoleConfig) -> Result<Router, String> {
    let sign_in = SignIn::new(
        gateway.clone(),
        &config.jwt,
        config.session_ttl,
        "meshgate console sessions v1",
    )?;
    let csrf_key = *gateway.signing_key("meshgate console csrf v1");
    let state = Console {
        gateway,
        sign_in: Arc::new(sign_in),
        csrf_key: Arc::new(csrf_key),
        secure_cookie: config.secure_cookie,
        flight_url: config.flight_url.clone(),
    };
    Ok(Router::new()
        .route("/", get(pages::search::page))
        .route(
            "/signin",
            get(pages::signin::form).post(pages::signin::submit),
        )
        .route("/signout", post(pages::signin::sign_out))
        .route("/products/{id}", get(pages::product::page))
        .route("/products/{id}/request", post(pages::product::request))
        .route("/inbox", get(pages::inbox::page))
        .route("/inbox/decide", post(pages::inbox::decide))
        .route("/flows", get(pages::flows::page))
        .route("/audit", get(pages::audit::page))
        .route("/static/console.css", get(html::stylesheet))
        .with_state(state))
}
