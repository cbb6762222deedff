//! Stage signatures: a keyed MAC over each request a gateway (or a worker, for a shuffle)
//! sends a worker, so that a worker runs only what one of its gateways planned.
//!
//! The MAC covers the request's path, an expiry and the request's first gRPC message as sent
//! on the wire, whatever it holds: for a stage that is the encoded plan with its sealed scans,
//! the task it is for and the workers it reads from, so a plan whose policy filter was removed
//! on the way, or one sent for another task, does not verify. The key is derived from the
//! master secret that gateways and workers share (`MasterKey::signing_key`), never sent.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use meshgate_protect::{KeyOrigin, MasterKey};
use sha2::Sha256;
use zeroize::Zeroizing;

/// The header carrying the signature (hex).
pub const SIGNATURE_HEADER: &str = "x-meshgate-stage-signature";
/// The header carrying the expiry (seconds since the Unix epoch).
pub const EXPIRES_HEADER: &str = "x-meshgate-stage-expires";

/// How long a signed request stays valid by default.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);

/// Why a request is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("the request is not signed")]
    Unsigned,
    #[error("the request's signature does not verify (forged or altered on the way)")]
    Forged,
    #[error("the request expired {0} s ago (replayed, or the clocks disagree)")]
    Expired(u64),
    #[error("the request claims an expiry too far ahead")]
    TooFarAhead,
    #[error("the request was already received (replayed)")]
    Replayed,
    #[error("the request's first message is malformed")]
    Malformed,
}

/// Signs and verifies what travels between gateways and workers.
#[derive(Clone)]
pub struct StageSigner {
    key: Zeroizing<[u8; 32]>,
    ttl: Duration,
}

impl std::fmt::Debug for StageSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StageSigner")
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// Distributed execution needs a key every node derives alike.
#[derive(Debug, thiserror::Error)]
#[error(
    "distributed execution needs a master key shared by the gateways and their workers \
     (set MESHGATE_MASTER_KEY or a key file); the public demo key cannot sign stages"
)]
pub struct DemoKey;

impl StageSigner {
    /// The signer every gateway and worker holding `master_key` derives alike.
    pub fn new(master_key: &MasterKey, ttl: Duration) -> Result<Self, DemoKey> {
        if master_key.origin() == KeyOrigin::Demo {
            return Err(DemoKey);
        }
        Ok(Self {
            key: master_key.signing_key("distributed-stages"),
            ttl,
        })
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn mac(&self, path: &str, expires: u64, message: &[u8]) -> Hmac<Sha256> {
        let mut mac = match <Hmac<Sha256> as KeyInit>::new_from_slice(self.key.as_ref()) {
            Ok(mac) => mac,
            Err(_) => unreachable!("HMAC takes a key of any length"),
        };
        for part in [b"meshgate-stage-v1".as_slice(), path.as_bytes()] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.update(&expires.to_be_bytes());
        mac.update(&(message.len() as u64).to_be_bytes());
        mac.update(message);
        mac
    }

    /// The (expiry, signature) headers of a request to `path` whose first message is
    /// `message`, valid for this signer's time to live.
    pub fn sign(&self, path: &str, message: &[u8]) -> (String, String) {
        let expires = now() + self.ttl.as_secs();
        self.sign_until(path, message, expires)
    }

    /// [`StageSigner::sign`] with an explicit expiry (tests replay expired requests with it).
    pub fn sign_until(&self, path: &str, message: &[u8], expires: u64) -> (String, String) {
        let tag = self.mac(path, expires, message).finalize().into_bytes();
        (expires.to_string(), hex::encode(tag))
    }

    /// Whether `signature` and `expires` (header values, `None` when missing) sign `message`
    /// sent to `path`, now.
    pub fn verify(
        &self,
        path: &str,
        message: &[u8],
        expires: Option<&str>,
        signature: Option<&str>,
    ) -> Result<(), Refusal> {
        let (Some(expires), Some(signature)) = (expires, signature) else {
            return Err(Refusal::Unsigned);
        };
        let expires: u64 = expires.parse().map_err(|_| Refusal::Forged)?;
        let signature = hex::decode(signature).map_err(|_| Refusal::Forged)?;
        self.mac(path, expires, message)
            .verify_slice(&signature)
            .map_err(|_| Refusal::Forged)?;
        let now = now();
        if expires < now {
            return Err(Refusal::Expired(now - expires));
        }
        // A signature valid far into the future could be replayed for that long.
        if expires > now + self.ttl.as_secs() + CLOCK_SKEW.as_secs() {
            return Err(Refusal::TooFarAhead);
        }
        Ok(())
    }
}

/// How far ahead of this node's clock a peer's may run.
const CLOCK_SKEW: Duration = Duration::from_secs(30);

pub(crate) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer(byte: u8) -> StageSigner {
        StageSigner::new(
            &MasterKey::from_bytes(&[byte; 32]).expect("a key"),
            DEFAULT_TTL,
        )
        .expect("not the demo key")
    }

    #[test]
    fn a_signature_verifies_only_for_its_path_message_expiry_and_key() {
        let s = signer(1);
        let (expires, sig) = s.sign("/p", b"plan");
        assert_eq!(s.verify("/p", b"plan", Some(&expires), Some(&sig)), Ok(()));
        assert_eq!(
            s.verify("/p", b"plan!", Some(&expires), Some(&sig)),
            Err(Refusal::Forged)
        );
        assert_eq!(
            s.verify("/q", b"plan", Some(&expires), Some(&sig)),
            Err(Refusal::Forged)
        );
        let later = (expires.parse::<u64>().expect("a number") + 1).to_string();
        assert_eq!(
            s.verify("/p", b"plan", Some(&later), Some(&sig)),
            Err(Refusal::Forged)
        );
        assert_eq!(
            signer(2).verify("/p", b"plan", Some(&expires), Some(&sig)),
            Err(Refusal::Forged)
        );
        assert_eq!(
            s.verify("/p", b"plan", None, Some(&sig)),
            Err(Refusal::Unsigned)
        );
        let (old, sig) = s.sign_until("/p", b"plan", now() - 5);
        assert_eq!(
            s.verify("/p", b"plan", Some(&old), Some(&sig)),
            Err(Refusal::Expired(5))
        );
        let (ahead, sig) = s.sign_until("/p", b"plan", now() + 3600);
        assert_eq!(
            s.verify("/p", b"plan", Some(&ahead), Some(&sig)),
            Err(Refusal::TooFarAhead)
        );
    }

    #[test]
    fn the_demo_key_cannot_sign_stages() {
        assert!(StageSigner::new(&MasterKey::demo(), DEFAULT_TTL).is_err());
    }
}
