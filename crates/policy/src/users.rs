//! Static users (the demo's principals, or a small deployment's service accounts).
//!
//! ```toml
//! [[user]]
//! name = "cib-reporting"
//! password = "$argon2id$v=19$m=19456,t=2,p=1$..."   # never the clear password
//! roles = []
//! attributes = { lob = "CIB", app = "cib-regulatory-report" }
//! ```
//!
//! Passwords are stored as argon2id PHC strings; `meshgate hash-password` makes them.

use std::collections::BTreeMap;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use serde::Deserialize;

use crate::error::LoadError;
use crate::principal::{Principal, is_valid_name};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersFile {
    #[serde(default, rename = "user")]
    users: Vec<toml::Spanned<UserEntry>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserEntry {
    name: String,
    password: String,
    #[serde(default)]
    roles: Vec<String>,
    #[serde(default)]
    attributes: BTreeMap<String, String>,
}

struct User {
    principal: Principal,
    password_hash: String,
}

/// The static user directory.
#[derive(Default)]
pub struct UserDirectory {
    users: BTreeMap<String, User>,
}

impl std::fmt::Debug for UserDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDirectory")
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A failed login. Deliberately one variant: callers learn nothing about which part was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("authentication failed: unknown user or wrong password")]
pub struct AuthError;

/// A fixed hash verified when the user does not exist, so unknown and known users take
/// about the same time to refuse.
const DUMMY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$cDRpmaLsxxOQV4Og3pzmXQ$KCj+vZ8t3Q5fXzuCYt9otKjh/Tp16PxaNzZv0yW9Qns";

impl UserDirectory {
    pub fn parse(file: &str, text: &str) -> Result<Self, LoadError> {
        let parsed: UsersFile = toml::from_str(text).map_err(|e| toml_error(file, text, &e))?;
        let mut users = BTreeMap::new();
        for spanned in parsed.users {
            let line = line_of(text, spanned.span().start);
            let entry = spanned.into_inner();
            let err =
                |message: String| LoadError::new(file, Some(line), Some(&entry.name), message);
            if !is_valid_name(&entry.name) {
                return Err(err("user names use letters, digits and -_.@".into()));
            }
            PasswordHash::new(&entry.password).map_err(|e| {
                err(format!(
                    "`password` must be an argon2 PHC hash (see `meshgate hash-password`): {e}"
                ))
            })?;
            let mut principal = Principal::new(&entry.name);
            for role in &entry.roles {
                if !is_valid_name(role) {
                    return Err(err(format!(
                        "role `{role}` uses characters other than letters, digits and -_.@"
                    )));
                }
                principal = principal.with_role(role);
            }
            for (name, value) in &entry.attributes {
                if name == "id"
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                {
                    return Err(err(format!(
                        "attribute name `{name}` must be lowercase letters, digits or `_` (and not `id`)"
                    )));
                }
                principal = principal.with_attribute(name, value);
            }
            if users
                .insert(
                    entry.name.clone(),
                    User {
                        principal,
                        password_hash: entry.password.clone(),
                    },
                )
                .is_some()
            {
                return Err(err("user is listed twice".into()));
            }
        }
        Ok(Self { users })
    }

    /// Check a user name and password; the principal on success.
    pub fn authenticate(&self, name: &str, password: &str) -> Result<Principal, AuthError> {
        let (hash, principal) = match self.users.get(name) {
            Some(user) => (user.password_hash.as_str(), Some(&user.principal)),
            None => (DUMMY_HASH, None),
        };
        let hash = PasswordHash::new(hash).map_err(|_| AuthError)?;
        let verified = Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok();
        match (verified, principal) {
            (true, Some(principal)) => Ok(principal.clone()),
            _ => Err(AuthError),
        }
    }

    /// A known user's principal, without a password (for tokens issued earlier).
    pub fn principal(&self, name: &str) -> Option<&Principal> {
        self.users.get(name).map(|u| &u.principal)
    }

    /// The users' names (principal ids), for checks that no other identity source can
    /// assert them.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.users.keys().map(String::as_str)
    }

    pub fn len(&self) -> usize {
        self.users.len()
    }

    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }
}

/// Hash a password for a users file (argon2id, default parameters, random salt).
pub fn hash_password(password: &str) -> Result<String, String> {
    let mut salt_bytes = [0u8; 16];
    getrandom(&mut salt_bytes)?;
    let salt = SaltString::encode_b64(&salt_bytes).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| e.to_string())
}

fn getrandom(buf: &mut [u8]) -> Result<(), String> {
    use rand::TryRngCore;
    rand::rngs::OsRng
        .try_fill_bytes(buf)
        .map_err(|e| format!("no randomness for the salt: {e}"))
}

pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(1, |before| before.matches('\n').count() + 1)
}

pub(crate) fn toml_error(file: &str, text: &str, error: &toml::de::Error) -> LoadError {
    let line = error.span().map(|s| line_of(text, s.start));
    LoadError::new(file, line, None, error.message().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authenticates_with_hashed_passwords_only() {
        let hash = hash_password("s3cret").unwrap();
        let text = format!(
            "[[user]]\nname = \"ann\"\npassword = \"{hash}\"\nroles = [\"risk\"]\nattributes = {{ lob = \"CIB\" }}\n"
        );
        let users = UserDirectory::parse("users.toml", &text).unwrap();
        let principal = users.authenticate("ann", "s3cret").unwrap();
        assert_eq!(principal.attribute("lob"), Some("CIB"));
        assert!(principal.roles().contains("risk"));
        assert_eq!(users.authenticate("ann", "wrong"), Err(AuthError));
        assert_eq!(users.authenticate("bob", "s3cret"), Err(AuthError));
    }

    #[test]
    fn clear_text_passwords_are_a_load_error_with_a_line() {
        let text = "# users\n[[user]]\nname = \"ann\"\npassword = \"hunter2\"\n";
        let err = UserDirectory::parse("users.toml", text).unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(
            err.to_string().contains("users.toml:2: rule `ann`"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = UserDirectory::parse("users.toml", "[[user]]\nname = \"a\"\npasswd = \"x\"\n")
            .unwrap_err();
        assert!(
            err.message.contains("passwd") || err.message.contains("unknown"),
            "{err}"
        );
    }
}
