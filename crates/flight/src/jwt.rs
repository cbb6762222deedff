//! Signed JSON Web Tokens from an identity provider, mapped to principals.
//!
//! Each configured issuer has one key (HS256 secret, or RS256/ES256 public key) and says
//! which claims carry the principal id, its roles and its attributes. A token is accepted
//! only if its signature, issuer, audience and expiry all check out; its claims then become
//! the principal exactly as a user file entry would, and nothing the client sends later can
//! change them.

use std::collections::BTreeMap;
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

fn principal_from_claims(config: &JwtConfig, claims: &Value) -> Result<Principal, TokenError> {
    let id = claims
        .get(&config.principal_claim)
        .and_then(claim_text)
        .ok_or_else(|| TokenError::Claims(format!("no `{}` claim", config.principal_claim)))?;
    let mut principal = Principal::new(id);
    if let Some(claim) = &config.roles_claim {
        let roles: Vec<String> = match claims.get(claim) {
            Some(Value::Array(items)) => items.iter().filter_map(claim_text).collect(),
            Some(Value::String(s)) => s.split_whitespace().map(str::to_string).collect(),
            _ => Vec::new(),
        };
        for role in roles {
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
        let base = serde_json::json!({"sub": "x", "iss": "https://idp.example", "aud": "meshgate", "exp": now() + 600});
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
            check(&verifiers, &with("sub", "a b".into())),
            Err(TokenError::Claims(_))
        ));
        assert!(!looks_like_jwt("cib-reporting-pw"));
    }
}
