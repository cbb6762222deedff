//! Authentication: Basic credentials in the handshake, Bearer tokens on every call.
//!
//! The handshake accepts `authorization: Basic <base64(user:password)>` (with or without
//! base64 padding: ADBC's Go driver omits it) and answers with `authorization: Bearer <token>`
//! in the response headers, where JDBC and ADBC look for it. Every other call must carry that
//! Bearer token (or, for clients that re-send credentials, Basic again).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::{DecodePaddingMode, general_purpose};
use meshgate_engine::Gateway;
use meshgate_policy::Principal;
use rand::RngCore;
use tonic::Status;
use tonic::metadata::MetadataMap;

/// Standard base64 that accepts input with or without padding.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// How long a Bearer token issued by the handshake stays valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(8 * 60 * 60);

/// Bearer tokens issued by this server, held in memory (never derived from credentials).
#[derive(Default)]
pub(crate) struct Tokens {
    issued: Mutex<HashMap<String, (Principal, Instant)>>,
}

impl Tokens {
    pub(crate) fn issue(&self, principal: Principal) -> String {
        let mut bytes = [0u8; 32];
        rand::rng().fill_bytes(&mut bytes);
        let token = URL_SAFE_NO_PAD.encode(bytes);
        let now = Instant::now();
        if let Ok(mut issued) = self.issued.lock() {
            issued.retain(|_, (_, expires)| *expires > now);
            issued.insert(token.clone(), (principal, now + TOKEN_TTL));
        }
        token
    }

    fn principal(&self, token: &str) -> Option<Principal> {
        let issued = self.issued.lock().ok()?;
        let (principal, expires) = issued.get(token)?;
        (*expires > Instant::now()).then(|| principal.clone())
    }
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

fn authorization(metadata: &MetadataMap) -> Result<Option<&str>, Status> {
    match metadata.get("authorization") {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| Status::unauthenticated("the authorization header is not valid text")),
    }
}

/// Authenticate with Basic credentials (the handshake, and clients that resend them).
///
/// Password hashing is deliberately slow, so it runs on the blocking pool, not on the
/// threads that drive queries.
pub(crate) async fn basic_login(gateway: &Gateway, value: &str) -> Result<Principal, Status> {
    let (user, password) = parse_basic(value)?;
    let gateway = gateway.clone();
    tokio::task::spawn_blocking(move || gateway.authenticate(&user, &password))
        .await
        .map_err(|_| Status::internal("authentication was interrupted"))?
        .map_err(|e| Status::unauthenticated(e.to_string()))
}

/// The principal behind a call's credentials.
pub(crate) async fn authenticate(
    gateway: &Gateway,
    tokens: &Tokens,
    metadata: &MetadataMap,
) -> Result<Principal, Status> {
    let Some(value) = authorization(metadata)? else {
        return Err(Status::unauthenticated(
            "no credentials: log in with a user name and password (Basic, via the handshake) or send `authorization: Bearer <token>`",
        ));
    };
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("bearer") {
        tokens
            .principal(rest.trim())
            .ok_or_else(|| Status::unauthenticated("unknown or expired token: log in again"))
    } else if scheme.eq_ignore_ascii_case("basic") {
        basic_login(gateway, rest).await
    } else {
        Err(Status::unauthenticated(format!(
            "unsupported authorization scheme `{scheme}` (use Basic or Bearer)"
        )))
    }
}

/// The Basic value of a handshake's authorization header.
pub(crate) fn handshake_basic(metadata: &MetadataMap) -> Result<&str, Status> {
    let value = authorization(metadata)?.ok_or_else(|| {
        Status::unauthenticated(
            "the handshake needs `authorization: Basic <base64(user:password)>`",
        )
    })?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        Ok(rest)
    } else {
        Err(Status::unauthenticated(
            "the handshake needs Basic credentials",
        ))
    }
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

    #[test]
    fn tokens_map_to_their_principal_only() {
        let tokens = Tokens::default();
        let a = tokens.issue(Principal::new("a"));
        let b = tokens.issue(Principal::new("b"));
        assert_ne!(a, b);
        assert_eq!(tokens.principal(&a).unwrap().id(), "a");
        assert_eq!(tokens.principal(&b).unwrap().id(), "b");
        assert!(tokens.principal("forged").is_none());
    }
}
