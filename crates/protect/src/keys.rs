//! Key material for tokenization.
//!
//! One master secret (from the environment or a key file, never from a policy file) is the
//! only secret an operator manages. Each token domain gets its own key, derived with
//! HKDF-SHA256, so tokens join within a domain and cannot be linked across domains:
//!
//! ```text
//! key(domain) = HKDF-SHA256(ikm = master, salt = "meshgate.tokenize.v1", info = "token-domain:" || domain)
//! ```

use std::fmt;

use hkdf::Hkdf;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Where the master secret comes from when none is configured explicitly.
pub const MASTER_KEY_ENV: &str = "MESHGATE_MASTER_KEY";

const HKDF_SALT: &[u8] = b"meshgate.tokenize.v1";
const SIGNING_SALT: &[u8] = b"meshgate.signing.v1";
const KEY_ID_SALT: &[u8] = b"meshgate.key-id.v1";

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "master key in {source_name} must be hex-encoded, at least 32 bytes (64 hex characters)"
    )]
    Malformed { source_name: String },
    #[error("cannot read master key file {path}: {message}")]
    File { path: String, message: String },
    #[error(
        "no master key: set {MASTER_KEY_ENV} (64+ hex characters) or configure a key file; \
         tokenization refuses to run without one"
    )]
    Missing,
}

/// The master secret all token keys derive from. Its bytes never appear in `Debug` output.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<Vec<u8>>,
    origin: KeyOrigin,
}

/// Where a master key came from (shown to operators instead of the key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    Environment,
    File,
    /// The fixed, public key of `meshgate demo`. Tokens made with it protect nothing.
    Demo,
    Explicit,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MasterKey")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

impl MasterKey {
    /// A key from raw bytes (at least 32).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        if bytes.len() < 32 {
            return Err(KeyError::Malformed {
                source_name: "the given bytes".into(),
            });
        }
        Ok(Self {
            bytes: Zeroizing::new(bytes.to_vec()),
            origin: KeyOrigin::Explicit,
        })
    }

    fn from_hex(text: &str, source_name: &str, origin: KeyOrigin) -> Result<Self, KeyError> {
        let bytes = Zeroizing::new(hex::decode(text.trim()).map_err(|_| KeyError::Malformed {
            source_name: source_name.into(),
        })?);
        if bytes.len() < 32 {
            return Err(KeyError::Malformed {
                source_name: source_name.into(),
            });
        }
        Ok(Self { bytes, origin })
    }

    /// A new random key (32 bytes from a CSPRNG seeded by the operating system), hex-encoded as
    /// [`MasterKey::from_file`] and [`MASTER_KEY_ENV`] read it: what `meshgate keygen` writes.
    pub fn generate_hex() -> Zeroizing<String> {
        use rand::RngCore;
        let mut bytes = Zeroizing::new([0u8; 32]);
        rand::rng().fill_bytes(bytes.as_mut());
        Zeroizing::new(hex::encode(bytes.as_ref()))
    }

    /// Read the key from [`MASTER_KEY_ENV`]. `Ok(None)` when the variable is not set.
    pub fn from_env() -> Result<Option<Self>, KeyError> {
        match std::env::var(MASTER_KEY_ENV) {
            Ok(text) => Self::from_hex(&text, MASTER_KEY_ENV, KeyOrigin::Environment).map(Some),
            Err(_) => Ok(None),
        }
    }

    /// Read a hex-encoded key from a file.
    pub fn from_file(path: &std::path::Path) -> Result<Self, KeyError> {
        let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| KeyError::File {
            path: path.display().to_string(),
            message: e.to_string(),
        })?);
        Self::from_hex(&text, &path.display().to_string(), KeyOrigin::File)
    }

    /// The demo key: SHA-256 of a public phrase. Anyone can recompute it, so `meshgate demo`
    /// says so on start-up; never use it for real data.
    pub fn demo() -> Self {
        let bytes = Sha256::digest(b"meshgate demo master key - public, never use for real data");
        Self {
            bytes: Zeroizing::new(bytes.to_vec()),
            origin: KeyOrigin::Demo,
        }
    }

    pub fn origin(&self) -> KeyOrigin {
        self.origin
    }

    /// A key for signing what the gateway hands out and takes back (statement tickets,
    /// prepared handles, session tokens), one per `purpose`. Derived from the master secret,
    /// so every replica sharing that secret accepts what another issued; separate from every
    /// token domain's key (another salt). The demo key is public, so under it each process
    /// draws a random key instead: a demo's handles never outlive it, and nobody can forge
    /// one from the published phrase.
    pub fn signing_key(&self, purpose: &str) -> Zeroizing<[u8; 32]> {
        let mut okm = Zeroizing::new([0u8; 32]);
        if self.origin == KeyOrigin::Demo {
            use rand::RngCore;
            rand::rng().fill_bytes(okm.as_mut());
            return okm;
        }
        let hk = Hkdf::<Sha256>::new(Some(SIGNING_SALT), &self.bytes);
        if hk.expand(purpose.as_bytes(), okm.as_mut()).is_err() {
            unreachable!("HKDF expand of 32 bytes");
        }
        okm
    }

    /// A public name of this master key: 8 bytes derived under their own salt, which tell
    /// nothing about the key or any key derived from it. A plan sent to a worker carries it,
    /// so a worker holding another master key refuses instead of tokenizing differently.
    pub fn key_id(&self) -> String {
        let hk = Hkdf::<Sha256>::new(Some(KEY_ID_SALT), &self.bytes);
        let mut okm = [0u8; 8];
        if hk.expand(b"key-id", &mut okm).is_err() {
            unreachable!("HKDF expand of 8 bytes");
        }
        hex::encode(okm)
    }

    /// The key of one token domain.
    pub fn token_key(&self, domain: &str) -> TokenKey {
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), &self.bytes);
        let mut okm = Zeroizing::new([0u8; 32]);
        let info = format!("token-domain:{domain}");
        // 32 bytes is far below HKDF-SHA256's 8160-byte limit, so expand cannot fail.
        if hk.expand(info.as_bytes(), okm.as_mut()).is_err() {
            unreachable!("HKDF expand of 32 bytes");
        }
        TokenKey {
            domain: domain.to_string(),
            bytes: okm,
        }
    }
}

/// The HMAC key of one token domain.
#[derive(Clone)]
pub struct TokenKey {
    domain: String,
    bytes: Zeroizing<[u8; 32]>,
}

impl TokenKey {
    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub(crate) fn bytes(&self) -> &[u8; 32] {
        &self.bytes
    }
}

impl fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenKey")
            .field("domain", &self.domain)
            .finish_non_exhaustive()
    }
}

impl PartialEq for TokenKey {
    fn eq(&self, other: &Self) -> bool {
        self.domain == other.domain && *self.bytes == *other.bytes
    }
}
impl Eq for TokenKey {}

impl std::hash::Hash for TokenKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // The domain is enough to spread buckets; equality still compares the key.
        self.domain.hash(state);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_never_contains_key_bytes() {
        let key = MasterKey::demo();
        let token_key = key.token_key("reference");
        let shown = format!("{key:?} {token_key:?}");
        assert!(!shown.contains(&hex::encode(&*key.bytes)));
        assert!(!shown.contains(&hex::encode(*token_key.bytes)));
        assert!(shown.contains("reference"));
    }

    #[test]
    fn domains_get_different_keys() {
        let key = MasterKey::demo();
        assert_ne!(
            key.token_key("reference").bytes(),
            key.token_key("payments").bytes()
        );
        assert_eq!(
            key.token_key("reference").bytes(),
            key.token_key("reference").bytes()
        );
    }

    #[test]
    fn signing_keys_are_shared_by_one_secret_and_never_derived_from_the_demo_key() {
        let key = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        let same = MasterKey::from_bytes(&[7u8; 32]).unwrap();
        assert_eq!(*key.signing_key("tickets"), *same.signing_key("tickets"));
        assert_ne!(*key.signing_key("tickets"), *key.signing_key("sessions"));
        assert_ne!(
            key.signing_key("reference").as_ref(),
            key.token_key("reference").bytes()
        );
        let demo = MasterKey::demo();
        assert_ne!(
            *demo.signing_key("tickets"),
            *MasterKey::demo().signing_key("tickets")
        );
    }

    #[test]
    fn generated_keys_load_and_differ() {
        let (a, b) = (MasterKey::generate_hex(), MasterKey::generate_hex());
        assert_eq!(a.len(), 64);
        assert_ne!(*a, *b);
        assert!(MasterKey::from_hex(&a, "test", KeyOrigin::File).is_ok());
    }

    #[test]
    fn short_or_non_hex_keys_are_refused() {
        assert!(MasterKey::from_hex("abcd", "test", KeyOrigin::Explicit).is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32), "test", KeyOrigin::Explicit).is_err());
        assert!(MasterKey::from_hex(&"ab".repeat(32), "test", KeyOrigin::Explicit).is_ok());
    }
}
