//! Sign-in for front doors other than Flight SQL (the console): the same users, passwords and
//! identity providers' tokens, checked by the same code as a Flight handshake, and a session
//! token of the door's own (signed with a key derived for its purpose, so a console cookie is
//! never a Flight bearer token, nor the reverse).

use std::time::{Duration, SystemTime};

use meshgate_engine::Gateway;
use meshgate_policy::Principal;

use crate::auth::{Authenticator, Caller};
use crate::jwt::{JwtConfig, JwtVerifier};

/// Checks credentials and keeps signed sessions for one front door.
pub struct SignIn {
    auth: Authenticator,
}

impl std::fmt::Debug for SignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignIn").finish_non_exhaustive()
    }
}

/// A signed-in principal and when their session ends.
#[derive(Debug, Clone)]
pub struct SignedIn {
    pub principal: Principal,
    pub token: String,
    pub expires: SystemTime,
}

impl SignIn {
    /// Sign-in over `gateway`'s users and the identity providers `jwt`; sessions last
    /// `ttl` at most and are signed with a key for `purpose` alone.
    pub fn new(
        gateway: Gateway,
        jwt: &[JwtConfig],
        ttl: Duration,
        purpose: &str,
    ) -> Result<Self, String> {
        crate::jwt::check_namespaces(jwt, &gateway.user_names())?;
        let verifiers = jwt
            .iter()
            .cloned()
            .map(JwtVerifier::new)
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            auth: Authenticator::for_purpose(gateway, verifiers, ttl, purpose),
        })
    }

    /// Sign in with a user name and password (or `token` and an identity provider's token
    /// as the password): a new session.
    pub async fn password(&self, user: &str, password: &str) -> Result<SignedIn, String> {
        let (principal, expires) = self
            .auth
            .credentials(user.to_string(), password.to_string())
            .await
            .map_err(|status| status.message().to_string())?;
        self.open(principal, expires)
    }

    fn open(&self, principal: Principal, expires: Option<SystemTime>) -> Result<SignedIn, String> {
        let token = self
            .auth
            .issue(Caller {
                principal,
                session: None,
                expires,
                client: None,
            })
            .map_err(|status| status.message().to_string())?;
        let (principal, expires) = self
            .auth
            .session_principal(&token)
            .ok_or_else(|| "the session could not be opened; sign in again".to_string())?;
        Ok(SignedIn {
            principal,
            token,
            expires,
        })
    }

    /// The session `token` stands for, unless it ended, was closed here, or names a user
    /// who is no longer there.
    pub fn session(&self, token: &str) -> Option<SignedIn> {
        let (principal, expires) = self.auth.session_principal(token)?;
        Some(SignedIn {
            principal,
            token: token.to_string(),
            expires,
        })
    }

    /// End a session: its token stops working here.
    pub fn close(&self, session: &SignedIn) {
        self.auth.close(&Caller {
            principal: session.principal.clone(),
            session: Some(session.token.clone()),
            expires: Some(session.expires),
            client: None,
        });
    }
}
