//! Authentication: who is calling.
//!
//! Accepted, in this order of precedence:
//! - `authorization: Bearer <token>`: a session token this server issued at the handshake,
//!   or a signed JWT from a configured issuer (JDBC `token=`, ADBC `authorization_header`);
//! - `authorization: Basic <base64(user:password)>`, with or without base64 padding (ADBC's Go
//!   driver omits it): a static user's password, or a JWT as the password for tools that
//!   only have a password field (user name `token` or the token's own principal);
//! - with mutual TLS and no header: the client certificate's common name.
//!
//! The handshake takes any of these and answers with `authorization: Bearer <session token>`
//! in the response headers, where JDBC and ADBC look for it. A session token is signed with a
//! key derived from the master secret and carries its principal and its end, so every replica
//! of the gateway accepts it; a principal from the user directory is looked up again on each
//! use (a user removed from the file is refused), one asserted by a token issuer travels in
//! the signed token. Closing a session is remembered by the replica that closed it.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, general_purpose};
use meshgate_engine::Gateway;
use meshgate_policy::Principal;
use rand::RngCore;
use tonic::{Request, Status};

use crate::jwt::{self, JwtVerifier};
use crate::session_options::SessionOptions;
use crate::sessions::Sessions;
use crate::tickets::{Kind, TicketSigner};

/// What a session token starts with: a bearer value that is one is never tried as a JWT.
const SESSION_TOKEN_PREFIX: &str = "mgs1.";

/// Standard base64 that accepts input with or without padding.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// An authenticated call.
#[derive(Debug, Clone)]
pub(crate) struct Caller {
    pub(crate) principal: Principal,
    /// The bearer credential, which keys the caller's session options.
    pub(crate) session: Option<String>,
    /// When the credential itself ends (a JWT's `exp`, a session token's end): a session
    /// opened with it must not outlive it.
    pub(crate) expires: Option<SystemTime>,
    /// The client's network address, for the audit log.
    pub(crate) client: Option<String>,
}

pub(crate) struct Authenticator {
    gateway: Gateway,
    jwt: Vec<JwtVerifier>,
    token_ttl: Duration,
    signer: TicketSigner,
    sessions: Mutex<Sessions>,
}

impl Authenticator {
    pub(crate) fn new(gateway: Gateway, jwt: Vec<JwtVerifier>, token_ttl: Duration) -> Self {
        Self::for_purpose(gateway, jwt, token_ttl, "meshgate flight sessions v1")
    }

    /// An authenticator whose session tokens are signed with a key of their own
    /// (`purpose`): a token of one front door is never one of another.
    pub(crate) fn for_purpose(
        gateway: Gateway,
        jwt: Vec<JwtVerifier>,
        token_ttl: Duration,
        purpose: &str,
    ) -> Self {
        let signer = TicketSigner::with_key(&gateway.signing_key(purpose));
        Self {
            gateway,
            jwt,
            token_ttl,
            signer,
            sessions: Mutex::default(),
        }
    }

    /// Issue a session token for an authenticated caller: signed, with a random part (two
    /// logins never share a token), never derived from the credentials. It lives
    /// `token_ttl`, or less if the caller's own credential ends sooner; a session token
    /// presented again carries its own end, so renewal never extends it.
    pub(crate) fn issue(&self, caller: Caller) -> Result<String, Status> {
        let ttl_end = SystemTime::now() + self.token_ttl;
        let expires = caller.expires.map_or(ttl_end, |end| end.min(ttl_end));
        let end_millis = u64::try_from(
            expires
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis(),
        )
        .unwrap_or(u64::MAX);
        let mut nonce = [0u8; 16];
        rand::rng().fill_bytes(&mut nonce);
        // A directory user is looked up again on use; anyone else travels in the token.
        let from_directory =
            self.gateway.known_principal(caller.principal.id()).as_ref() == Some(&caller.principal);
        let asserted = if from_directory {
            Vec::new()
        } else {
            serde_json::to_vec(&(caller.principal.roles(), caller.principal.attributes()))
                .map_err(|_| Status::internal("the session token cannot be made; log in again"))?
        };
        let signed = self.signer.sign(
            Kind::Session,
            caller.principal.id(),
            &[&end_millis.to_be_bytes(), &nonce, &asserted],
        )?;
        let token = format!("{SESSION_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(signed));
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| Status::internal("the session store failed; log in again"))?;
        // Options set in the session presented carry over to the renewed one.
        if let Some(options) = caller
            .session
            .as_deref()
            .and_then(|s| sessions.options(s).cloned())
        {
            sessions.insert(token.clone(), caller.principal, expires, false, options);
        }
        Ok(token)
    }

    /// The principal and end of a session token this gateway (any replica) signed, unless it
    /// ended, was closed here, or names a directory user who is no longer there.
    pub(crate) fn session_principal(&self, token: &str) -> Option<(Principal, SystemTime)> {
        let signed = URL_SAFE_NO_PAD
            .decode(token.strip_prefix(SESSION_TOKEN_PREFIX)?)
            .ok()?;
        let (id, fields) = self.signer.open(Kind::Session, &signed)?;
        let [end, _nonce, asserted]: [Vec<u8>; 3] = fields.try_into().ok()?;
        let end = UNIX_EPOCH + Duration::from_millis(u64::from_be_bytes(end.try_into().ok()?));
        if end <= SystemTime::now() || self.sessions.lock().ok()?.is_closed(token) {
            return None;
        }
        let principal = if asserted.is_empty() {
            self.gateway.known_principal(&id)?
        } else {
            let (roles, attributes): (BTreeSet<String>, BTreeMap<String, String>) =
                serde_json::from_slice(&asserted).ok()?;
            let principal = roles
                .into_iter()
                .fold(Principal::new(id), Principal::with_role);
            attributes
                .into_iter()
                .fold(principal, |p, (k, v)| p.with_attribute(k, v))
        };
        Some((principal, end))
    }

    /// End the caller's session: its token stops working on this replica, and the
    /// session's options are forgotten. `false` when the call had no session to close.
    pub(crate) fn close(&self, caller: &Caller) -> bool {
        let Some(session) = &caller.session else {
            return false;
        };
        if let Ok(mut sessions) = self.sessions.lock() {
            sessions.remove(session);
            if session.starts_with(SESSION_TOKEN_PREFIX)
                && let Some(end) = caller.expires
            {
                sessions.insert(
                    session.clone(),
                    caller.principal.clone(),
                    end,
                    true,
                    SessionOptions::default(),
                );
            }
        }
        true
    }

    pub(crate) fn options(&self, caller: &Caller) -> SessionOptions {
        caller
            .session
            .as_ref()
            .and_then(|s| self.sessions.lock().ok()?.options(s).cloned())
            .unwrap_or_default()
    }

    pub(crate) fn set_options(
        &self,
        caller: &Caller,
        options: SessionOptions,
    ) -> Result<(), Status> {
        let (Some(session), Some(expires)) = (&caller.session, caller.expires) else {
            return Err(Status::failed_precondition(
                "session options need a session: log in with the handshake or send a Bearer token",
            ));
        };
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| Status::internal("the session store failed; log in again"))?;
        if !sessions.set_options(session, options.clone()) {
            // The first options of this session (a token or a JWT sent on every call): kept
            // until the credential ends.
            sessions.insert(
                session.clone(),
                caller.principal.clone(),
                expires,
                false,
                options,
            );
        }
        Ok(())
    }

    /// The principal behind a call's credentials.
    pub(crate) async fn caller<T>(&self, request: &Request<T>) -> Result<Caller, Status> {
        match authorization(request)? {
            Some(value) => self.caller_from_header(value).await,
            None => match certificate_principal(&self.gateway, request)? {
                Some(principal) => Ok(Caller {
                    principal,
                    session: None,
                    expires: None,
                    client: None,
                }),
                None => Err(Status::unauthenticated(
                    "no credentials: log in with a user name and password (the handshake), or send \
                     `authorization: Bearer <token>`",
                )),
            },
        }
    }

    async fn caller_from_header(&self, value: &str) -> Result<Caller, Status> {
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        let rest = rest.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            if let Some((principal, expires)) = self.session_principal(rest) {
                return Ok(Caller {
                    principal,
                    session: Some(rest.to_string()),
                    expires: Some(expires),
                    client: None,
                });
            }
            if !rest.starts_with(SESSION_TOKEN_PREFIX)
                && !self.jwt.is_empty()
                && jwt::looks_like_jwt(rest)
            {
                let verified = jwt::verify(&self.jwt, rest)
                    .map_err(|e| Status::unauthenticated(e.to_string()))?;
                return Ok(Caller {
                    principal: verified.principal,
                    session: Some(rest.to_string()),
                    expires: Some(verified.expires),
                    client: None,
                });
            }
            Err(Status::unauthenticated(
                "unknown or expired token: log in again",
            ))
        } else if scheme.eq_ignore_ascii_case("basic") {
            let (principal, expires) = self.basic(rest).await?;
            Ok(Caller {
                principal,
                session: None,
                expires,
                client: None,
            })
        } else {
            Err(Status::unauthenticated(format!(
                "unsupported authorization scheme `{scheme}` (use Basic or Bearer)"
            )))
        }
    }

    /// A Basic credential: a user's password, or a JWT passed as the password.
    async fn basic(&self, value: &str) -> Result<(Principal, Option<SystemTime>), Status> {
        let (user, password) = parse_basic(value)?;
        self.credentials(user, password).await
    }

    /// A user name and password: a user's password, or a JWT as the password (user name
    /// `token` or the token's own principal).
    pub(crate) async fn credentials(
        &self,
        user: String,
        password: String,
    ) -> Result<(Principal, Option<SystemTime>), Status> {
        if !self.jwt.is_empty() && jwt::looks_like_jwt(&password) {
            let jwt::Verified { principal, expires } = jwt::verify(&self.jwt, &password)
                .map_err(|e| Status::unauthenticated(e.to_string()))?;
            if user != "token" && user != principal.id() {
                return Err(Status::unauthenticated(
                    "the user name does not match the token: use `token`, or the token's principal",
                ));
            }
            return Ok((principal, Some(expires)));
        }
        // Password hashing is deliberately slow: run it on the blocking pool, not on the
        // threads that drive queries.
        let gateway = self.gateway.clone();
        let principal = tokio::task::spawn_blocking(move || gateway.authenticate(&user, &password))
            .await
            .map_err(|_| Status::internal("authentication was interrupted"))?
            .map_err(|e| Status::unauthenticated(e.to_string()))?;
        Ok((principal, None))
    }
}

fn authorization<T>(request: &Request<T>) -> Result<Option<&str>, Status> {
    match request.metadata().get("authorization") {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| Status::unauthenticated("the authorization header is not valid text")),
    }
}

/// The principal named by a verified client certificate's common name (mutual TLS), with
/// the roles and attributes of the static user of that name.
fn certificate_principal<T>(
    gateway: &Gateway,
    request: &Request<T>,
) -> Result<Option<Principal>, Status> {
    let Some(certificates) = request.peer_certs() else {
        return Ok(None);
    };
    let Some(certificate) = certificates.first() else {
        return Ok(None);
    };
    let (_, parsed) = x509_parser::parse_x509_certificate(certificate.as_ref())
        .map_err(|_| Status::unauthenticated("the client certificate cannot be read"))?;
    let common_name = parsed
        .subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .ok_or_else(|| {
            Status::unauthenticated(
                "the client certificate has no common name to use as the principal",
            )
        })?;
    // Fail closed: a certificate proves a name, not roles or attributes; those come from
    // the user directory, and a name it does not know is refused.
    let principal = gateway.known_principal(common_name).ok_or_else(|| {
        Status::unauthenticated(format!(
            "the client certificate names `{common_name}`, which is not a known user: add it to the users file"
        ))
    })?;
    Ok(Some(principal))
}

/// `user:password` from a Basic authorization value.
pub(crate) fn parse_basic(value: &str) -> Result<(String, String), Status> {
    let encoded = value.trim();
    let decoded = LENIENT_BASE64
        .decode(encoded)
        .or_else(|_| general_purpose::URL_SAFE.decode(encoded))
        .map_err(|_| {
            Status::unauthenticated(
                "malformed Basic credentials: expected base64 of `user:password`",
            )
        })?;
    let text = String::from_utf8(decoded)
        .map_err(|_| Status::unauthenticated("malformed Basic credentials: not UTF-8"))?;
    let (user, password) = text.split_once(':').ok_or_else(|| {
        Status::unauthenticated("malformed Basic credentials: expected `user:password`")
    })?;
    Ok((user.to_string(), password.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_with_and_without_padding() {
        // "ab:c" is YWI6Yw== in padded base64.
        assert_eq!(parse_basic("YWI6Yw==").unwrap(), ("ab".into(), "c".into()));
        assert_eq!(parse_basic("YWI6Yw").unwrap(), ("ab".into(), "c".into()));
        // Passwords may contain colons; the user name may not.
        let encoded = general_purpose::STANDARD.encode("u:p:q");
        assert_eq!(parse_basic(&encoded).unwrap(), ("u".into(), "p:q".into()));
        assert!(parse_basic("!!!").is_err());
        assert!(parse_basic(&general_purpose::STANDARD.encode("nocolon")).is_err());
    }
}
