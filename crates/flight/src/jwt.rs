//! Signed JSON Web Tokens from an identity provider, mapped to principals.
//!
//! Each configured issuer has one key (HS256 secret, or RS256/ES256 public key) and says
//! which claims carry the principal id, its roles and its attributes. A token is accepted
//! only if its signature, issuer, audience and expiry all check out; its claims then become
//! the principal exactly as a user file entry would, and nothing the client sends later can
//! change them.
//!
//! Issuers do not share one namespace: each declares the principals it may assert (ids with
//! its own prefix, or an explicit mapping from claim values), and may be limited to a list of
//! roles. A token naming a principal outside its issuer's namespace is refused, so that no
//! issuer can assert a static user, an owner it was not given, or another issuer's principal
//! (see [`check_namespaces`]).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode};
use meshgate_policy::Principal;
use serde_json::Value;
use zeroize::Zeroizing;

/// How tokens of one issuer are checked and read.
#[derive(Clone)]
pub struct JwtConfig {
    /// The `iss` tokens must carry.
    pub issuer: String,
    /// The `aud` tokens must carry (this gateway).
    pub audience: String,
    pub key: JwtKey,
    /// The claim naming the principal (default `sub`).
    pub principal_claim: String,
    /// A claim holding roles: a list of strings, or one space-separated string.
    pub roles_claim: Option<String>,
    /// Principal attribute -> claim, e.g. `lob -> lob` for row filters on `${principal.lob}`.
    pub attribute_claims: BTreeMap<String, String>,
    /// Clock skew tolerated on `exp` and `nbf`.
    pub leeway: Duration,
    /// The principals this issuer may assert.
    pub principals: PrincipalNamespace,
    /// The roles this issuer may assert; a token claiming another role is refused. `None`:
    /// any role (the issuer is trusted for roles).
    pub roles: Option<BTreeSet<String>>,
}

/// Which principal ids one issuer may assert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrincipalNamespace {
    /// Ids that start with this prefix (e.g. `okta.`); the principal claim must carry it.
    Prefix(String),
    /// Exactly these: principal claim value -> principal id.
    Mapping(BTreeMap<String, String>),
}

/// The key an issuer signs with.
#[derive(Clone)]
pub enum JwtKey {
    /// A shared secret (HS256).
    Hs256(Zeroizing<Vec<u8>>),
    /// An RSA public key in PEM (RS256).
    Rs256(String),
    /// An EC P-256 public key in PEM (ES256).
    Es256(String),
}

impl fmt::Debug for JwtConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let algorithm = match self.key {
            JwtKey::Hs256(_) => "HS256",
            JwtKey::Rs256(_) => "RS256",
            JwtKey::Es256(_) => "ES256",
        };
        f.debug_struct("JwtConfig")
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .field("algorithm", &algorithm)
            .field("principal_claim", &self.principal_claim)
            .field("roles_claim", &self.roles_claim)
            .field("attribute_claims", &self.attribute_claims)
            .field("principals", &self.principals)
            .field("roles", &self.roles)
            .finish_non_exhaustive()
    }
}

/// Why a token was not accepted. Deliberately coarse: the caller learns what to do, not
/// which check an attacker's token failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token has expired: get a new one from your identity provider")]
    Expired,
    #[error(
        "the token is not accepted (its signature, issuer or audience does not match this gateway's configuration)"
    )]
    Rejected,
    #[error("the token is valid but its claims do not name a usable principal: {0}")]
    Claims(String),
}

pub(crate) struct JwtVerifier {
    config: JwtConfig,
    key: DecodingKey,
    validation: Validation,
}

impl JwtVerifier {
    pub(crate) fn new(config: JwtConfig) -> Result<Self, String> {
        match &config.principals {
            PrincipalNamespace::Prefix(prefix) if !is_principal_text(prefix) => {
                return Err(format!(
                    "issuer {}: `principal_prefix` must be non-empty and use only letters, digits \
                     and -_.@ (an empty prefix would let the issuer assert any principal)",
                    config.issuer
                ));
            }
            PrincipalNamespace::Mapping(map) if map.is_empty() => {
                return Err(format!(
                    "issuer {}: its principal mapping is empty, so it could assert nobody",
                    config.issuer
                ));
            }
            _ => {}
        }
        let (algorithm, key) = match &config.key {
            JwtKey::Hs256(secret) => {
                if secret.len() < 32 {
                    return Err(format!(
                        "issuer {}: an HS256 secret needs at least 32 bytes",
                        config.issuer
                    ));
                }
                (Algorithm::HS256, DecodingKey::from_secret(secret))
            }
            JwtKey::Rs256(pem) => (
                Algorithm::RS256,
                DecodingKey::from_rsa_pem(pem.as_bytes())
                    .map_err(|e| format!("issuer {}: bad RSA public key: {e}", config.issuer))?,
            ),
            JwtKey::Es256(pem) => (
                Algorithm::ES256,
                DecodingKey::from_ec_pem(pem.as_bytes())
                    .map_err(|e| format!("issuer {}: bad EC public key: {e}", config.issuer))?,
            ),
        };
        let mut validation = Validation::new(algorithm);
        validation.set_issuer(&[&config.issuer]);
        validation.set_audience(&[&config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = config.leeway.as_secs();
        validation.validate_nbf = true;
        Ok(Self {
            config,
            key,
            validation,
        })
    }

    fn verify(&self, token: &str) -> Result<Verified, TokenError> {
        let data =
            decode::<Value>(token, &self.key, &self.validation).map_err(|e| match e.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                _ => TokenError::Rejected,
            })?;
        // `exp` is required and was checked by `decode`.
        let exp = data
            .claims
            .get("exp")
            .and_then(Value::as_u64)
            .ok_or(TokenError::Rejected)?;
        Ok(Verified {
            principal: principal_from_claims(&self.config, &data.claims)?,
            expires: UNIX_EPOCH + Duration::from_secs(exp),
        })
    }
}

/// A token that checked out: whom it names, and until when.
pub(crate) struct Verified {
    pub(crate) principal: Principal,
    /// The token's `exp`; a session opened with it ends then too.
    pub(crate) expires: SystemTime,
}

/// Check a token against every configured issuer.
pub(crate) fn verify(verifiers: &[JwtVerifier], token: &str) -> Result<Verified, TokenError> {
    let mut error = TokenError::Rejected;
    for verifier in verifiers {
        match verifier.verify(token) {
            Ok(principal) => return Ok(principal),
            // An expired token of a known issuer says more than "rejected" by the others.
            Err(e @ (TokenError::Expired | TokenError::Claims(_))) => error = e,
            Err(TokenError::Rejected) => {}
        }
    }
    Err(error)
}

/// Issuers must not share principals with each other or with the static users: two prefixes
/// where one starts with the other, a mapping onto an id another issuer may assert, or a
/// static user inside a prefix is a configuration error. A mapping may name a static user:
/// the operator wrote that identity down; a prefix covers ids nobody listed.
pub(crate) fn check_namespaces(
    configs: &[JwtConfig],
    static_users: &[String],
) -> Result<(), String> {
    for (i, a) in configs.iter().enumerate() {
        if let PrincipalNamespace::Prefix(prefix) = &a.principals
            && let Some(user) = static_users.iter().find(|u| u.starts_with(prefix.as_str()))
        {
            return Err(format!(
                "issuer {}: its principal prefix `{prefix}` covers the static user `{user}`; \
                 choose a prefix no user name starts with",
                a.issuer
            ));
        }
        for b in &configs[i + 1..] {
            let overlap = match (&a.principals, &b.principals) {
                (PrincipalNamespace::Prefix(x), PrincipalNamespace::Prefix(y)) => {
                    x.starts_with(y.as_str()) || y.starts_with(x.as_str())
                }
                (PrincipalNamespace::Prefix(p), PrincipalNamespace::Mapping(m))
                | (PrincipalNamespace::Mapping(m), PrincipalNamespace::Prefix(p)) => {
                    m.values().any(|id| id.starts_with(p.as_str()))
                }
                (PrincipalNamespace::Mapping(x), PrincipalNamespace::Mapping(y)) => {
                    x.values().any(|id| y.values().any(|other| other == id))
                }
            };
            if overlap {
                return Err(format!(
                    "issuers {} and {} may assert the same principals; give each its own prefix \
                     or mapping",
                    a.issuer, b.issuer
                ));
            }
        }
    }
    Ok(())
}

/// Whether a string has the shape of a JWT (three base64url parts).
pub(crate) fn looks_like_jwt(text: &str) -> bool {
    let parts: Vec<&str> = text.split('.').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        })
}

fn claim_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn is_principal_text(text: &str) -> bool {
    !text.is_empty()
        && text
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

fn principal_from_claims(config: &JwtConfig, claims: &Value) -> Result<Principal, TokenError> {
    let claimed = claims
        .get(&config.principal_claim)
        .and_then(claim_text)
        .ok_or_else(|| TokenError::Claims(format!("no `{}` claim", config.principal_claim)))?;
    let outside = || {
        TokenError::Claims(format!(
            "issuer `{}` may not assert this principal (it is outside the issuer's namespace)",
            config.issuer
        ))
    };
    let id = match &config.principals {
        PrincipalNamespace::Prefix(prefix) => {
            if claimed.len() <= prefix.len() || !claimed.starts_with(prefix.as_str()) {
                return Err(outside());
            }
            claimed
        }
        PrincipalNamespace::Mapping(map) => map.get(&claimed).cloned().ok_or_else(outside)?,
    };
    let mut principal = Principal::new(id);
    if let Some(claim) = &config.roles_claim {
        let roles: Vec<String> = match claims.get(claim) {
            Some(Value::Array(items)) => items.iter().filter_map(claim_text).collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        };
        for role in roles {
            if config
                .roles
                .as_ref()
                .is_some_and(|allowed| !allowed.contains(&role))
            {
                return Err(TokenError::Claims(format!(
                    "issuer `{}` may not assert the role `{role}`",
                    config.issuer
                )));
            }
            principal = principal.with_role(role);
        }
    }
    for (attribute, claim) in &config.attribute_claims {
        if let Some(value) = claims.get(claim).and_then(claim_text) {
            principal = principal.with_attribute(attribute, value);
        }
    }
    if !principal.is_well_formed() {
        return Err(TokenError::Claims(
            "the principal or a role uses characters other than letters, digits and -_.@".into(),
        ));
    }
    Ok(principal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header, encode};

    fn config() -> JwtConfig {
        JwtConfig {
            issuer: "https://idp.example".into(),
            audience: "meshgate".into(),
            key: JwtKey::Hs256(Zeroizing::new(b"0123456789abcdef0123456789abcdef".to_vec())),
            principal_claim: "sub".into(),
            roles_claim: Some("roles".into()),
            attribute_claims: [("lob".to_string(), "lob".to_string())].into(),
            leeway: Duration::from_secs(5),
            principals: PrincipalNamespace::Prefix("svc-".into()),
            roles: None,
        }
    }

    fn token(claims: Value) -> String {
        encode(
            &Header::default(),
            &claims,
            &EncodingKey::from_secret(b"0123456789abcdef0123456789abcdef"),
        )
        .unwrap()
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn check(verifiers: &[JwtVerifier], token: &str) -> Result<Principal, TokenError> {
        verify(verifiers, token).map(|v| v.principal)
    }

    #[test]
    fn claims_become_the_principal() {
        let verifiers = vec![JwtVerifier::new(config()).unwrap()];
        let t = token(serde_json::json!({
            "sub": "svc-cib", "iss": "https://idp.example", "aud": "meshgate", "exp": now() + 600,
            "roles": ["lob-system"], "lob": "CIB"
        }));
        assert!(looks_like_jwt(&t));
        let verified = verify(&verifiers, &t).unwrap();
        assert!(verified.expires > SystemTime::now() + Duration::from_secs(590));
        let principal = verified.principal;
        assert_eq!(principal.id(), "svc-cib");
        assert!(principal.roles().contains("lob-system"));
        assert_eq!(principal.attribute("lob"), Some("CIB"));
    }

    #[test]
    fn expiry_issuer_audience_and_signature_are_checked() {
        let verifiers = vec![JwtVerifier::new(config()).unwrap()];
        let base = serde_json::json!({"sub": "svc-x", "iss": "https://idp.example", "aud": "meshgate", "exp": now() + 600});
        let with = |key: &str, value: Value| {
            let mut claims = base.clone();
            claims[key] = value;
            token(claims)
        };
        assert_eq!(
            check(&verifiers, &with("exp", (now() - 600).into())),
            Err(TokenError::Expired)
        );
        assert_eq!(
            check(&verifiers, &with("iss", "https://evil.example".into())),
            Err(TokenError::Rejected)
        );
        assert_eq!(
            check(&verifiers, &with("aud", "someone-else".into())),
            Err(TokenError::Rejected)
        );
        let forged = encode(
            &Header::default(),
            &base,
            &EncodingKey::from_secret(b"not-the-secret-not-the-secret-xx"),
        )
        .unwrap();
        assert_eq!(check(&verifiers, &forged), Err(TokenError::Rejected));
        let mut no_exp = base.clone();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert_eq!(check(&verifiers, &token(no_exp)), Err(TokenError::Rejected));
        assert!(matches!(
            check(&verifiers, &with("sub", "svc-a b".into())),
            Err(TokenError::Claims(_))
        ));
        assert!(!looks_like_jwt("cib-reporting-pw"));
    }

    #[test]
    fn an_issuer_asserts_only_its_own_principals_and_roles() {
        let base = serde_json::json!({"iss": "https://idp.example", "aud": "meshgate", "exp": now() + 600});
        let with_sub = |sub: &str, roles: &[&str]| {
            let mut claims = base.clone();
            claims["sub"] = sub.into();
            claims["roles"] = serde_json::json!(roles);
            token(claims)
        };
        let prefixed = vec![JwtVerifier::new(config()).unwrap()];
        assert_eq!(
            check(&prefixed, &with_sub("svc-cib", &[])).unwrap().id(),
            "svc-cib"
        );
        for outside in ["ref-owner", "svc-", "xsvc-cib"] {
            assert!(
                matches!(
                    check(&prefixed, &with_sub(outside, &[])),
                    Err(TokenError::Claims(_))
                ),
                "{outside}"
            );
        }
        let mapped = vec![
            JwtVerifier::new(JwtConfig {
                principals: PrincipalNamespace::Mapping(
                    [("00u1abc".to_string(), "cib-reporting".to_string())].into(),
                ),
                roles: Some(["lob-system".to_string()].into()),
                ..config()
            })
            .unwrap(),
        ];
        assert_eq!(
            check(&mapped, &with_sub("00u1abc", &["lob-system"]))
                .unwrap()
                .id(),
            "cib-reporting"
        );
        assert!(matches!(
            check(&mapped, &with_sub("cib-reporting", &[])),
            Err(TokenError::Claims(_))
        ));
        assert!(matches!(
            check(&mapped, &with_sub("00u1abc", &["reference-owner"])),
            Err(TokenError::Claims(_))
        ));
        // An empty prefix (any principal) does not configure.
        assert!(
            JwtVerifier::new(JwtConfig {
                principals: PrincipalNamespace::Prefix(String::new()),
                ..config()
            })
            .is_err()
        );
    }

    #[test]
    fn issuers_and_static_users_do_not_share_principals() {
        let with = |issuer: &str, principals: PrincipalNamespace| JwtConfig {
            issuer: issuer.into(),
            principals,
            ..config()
        };
        let prefix = |p: &str| PrincipalNamespace::Prefix(p.into());
        let users = ["ref-owner".to_string(), "cib-reporting".to_string()];
        assert!(
            check_namespaces(
                &[with("a", prefix("okta.")), with("b", prefix("svc-"))],
                &users
            )
            .is_ok()
        );
        assert!(check_namespaces(&[with("a", prefix("ref"))], &users).is_err());
        assert!(
            check_namespaces(
                &[with("a", prefix("svc-")), with("b", prefix("svc-batch."))],
                &users
            )
            .is_err()
        );
        let mapping = PrincipalNamespace::Mapping([("x".to_string(), "svc-x".to_string())].into());
        assert!(
            check_namespaces(&[with("a", prefix("svc-")), with("b", mapping)], &users).is_err()
        );
        let to_user =
            PrincipalNamespace::Mapping([("x".to_string(), "ref-owner".to_string())].into());
        assert!(check_namespaces(&[with("a", to_user)], &users).is_ok());
    }
}
