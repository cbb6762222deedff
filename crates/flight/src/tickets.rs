//! Tickets and prepared-statement handles that cannot be forged or replayed by another
//! principal.
//!
//! A handle carries what the server needs to run it again (the SQL, bound parameters) and
//! the principal it was issued to, signed (HMAC-SHA256) with a key derived from the master
//! secret, so any replica sharing that secret accepts it and nothing else can make one. When
//! used, the signature and the principal are checked, and the statement is planned again
//! under the caller's identity and the policy version in force then: a handle is never a
//! capability to data. Session tokens are signed the same way, as their own kind.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use tonic::Status;

const VERSION: u8 = 2;

/// What a handle is for; a handle of one kind is never accepted as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    Statement = 1,
    Prepared = 2,
    Session = 3,
}

pub(crate) struct TicketSigner {
    key: [u8; 32],
}

impl TicketSigner {
    /// A signer with a random key: its handles are accepted by this process only.
    #[cfg(test)]
    pub(crate) fn new() -> Self {
        use rand::RngCore;
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self { key }
    }

    pub(crate) fn with_key(key: &[u8; 32]) -> Self {
        Self { key: *key }
    }

    fn mac(&self) -> Result<Hmac<Sha256>, Status> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .map_err(|_| Status::internal("ticket key"))
    }

    /// `version | kind | principal | fields... | tag`, each variable part length-prefixed.
    pub(crate) fn sign(
        &self,
        kind: Kind,
        principal: &str,
        fields: &[&[u8]],
    ) -> Result<Vec<u8>, Status> {
        let mut out = vec![VERSION, kind as u8];
        for part in std::iter::once(principal.as_bytes()).chain(fields.iter().copied()) {
            let len = u32::try_from(part.len())
                .map_err(|_| Status::invalid_argument("handle too large"))?;
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(part);
        }
        let mut mac = self.mac()?;
        mac.update(&out);
        out.extend_from_slice(&mac.finalize().into_bytes());
        Ok(out)
    }

    /// The fields of a handle of `kind` issued to `principal` by this gateway.
    pub(crate) fn verify(
        &self,
        kind: Kind,
        handle: &[u8],
        principal: &str,
    ) -> Result<Vec<Vec<u8>>, Status> {
        let (owner, fields) = self.open(kind, handle).ok_or_else(|| {
            Status::invalid_argument(
                "invalid ticket or handle: it was not issued by this gateway (or its master key changed); run the statement again",
            )
        })?;
        if owner != principal {
            return Err(Status::permission_denied(
                "this ticket or handle was issued to another principal; they cannot be shared or replayed",
            ));
        }
        Ok(fields)
    }

    /// The principal and fields of a handle of `kind` this gateway signed; `None` for
    /// anything else (another kind, another key, tampered, truncated).
    pub(crate) fn open(&self, kind: Kind, handle: &[u8]) -> Option<(String, Vec<Vec<u8>>)> {
        if handle.len() < 2 + 32 || handle[0] != VERSION || handle[1] != kind as u8 {
            return None;
        }
        let (body, tag) = handle.split_at(handle.len() - 32);
        let mut mac = self.mac().ok()?;
        mac.update(body);
        mac.verify_slice(tag).ok()?;
        let mut parts = Vec::new();
        let mut rest = &body[2..];
        while !rest.is_empty() {
            let len_bytes: [u8; 4] = rest.get(..4)?.try_into().ok()?;
            let len = u32::from_be_bytes(len_bytes) as usize;
            let part = rest.get(4..4 + len)?;
            parts.push(part.to_vec());
            rest = &rest[4 + len..];
        }
        let mut parts = parts.into_iter();
        let owner = String::from_utf8(parts.next()?).ok()?;
        Some((owner, parts.collect()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_for_its_principal_and_kind_only() {
        let signer = TicketSigner::new();
        let ticket = signer
            .sign(Kind::Statement, "alice", &[b"SELECT 1"])
            .unwrap();
        assert_eq!(
            signer.verify(Kind::Statement, &ticket, "alice").unwrap(),
            vec![b"SELECT 1".to_vec()]
        );
        assert_eq!(
            signer
                .verify(Kind::Statement, &ticket, "bob")
                .unwrap_err()
                .code(),
            tonic::Code::PermissionDenied
        );
        assert_eq!(
            signer
                .verify(Kind::Prepared, &ticket, "alice")
                .unwrap_err()
                .code(),
            tonic::Code::InvalidArgument
        );
        let handle = signer
            .sign(Kind::Prepared, "alice", &[b"SELECT $1", b""])
            .unwrap();
        assert_eq!(
            signer.verify(Kind::Prepared, &handle, "alice").unwrap(),
            vec![b"SELECT $1".to_vec(), Vec::new()]
        );
    }

    #[test]
    fn tampering_and_foreign_keys_are_detected() {
        let signer = TicketSigner::new();
        let mut ticket = signer
            .sign(Kind::Statement, "alice", &[b"SELECT 1"])
            .unwrap();
        let last_sql_byte = ticket.len() - 33;
        ticket[last_sql_byte] = b'2';
        assert_eq!(
            signer
                .verify(Kind::Statement, &ticket, "alice")
                .unwrap_err()
                .code(),
            tonic::Code::InvalidArgument
        );
        let other = TicketSigner::new()
            .sign(Kind::Statement, "alice", &[b"SELECT 1"])
            .unwrap();
        assert!(signer.verify(Kind::Statement, &other, "alice").is_err());
        assert!(signer.verify(Kind::Statement, b"short", "alice").is_err());
        // Rewriting the principal (same length) breaks the signature too.
        let mut stolen = signer
            .sign(Kind::Statement, "bobby", &[b"SELECT 1"])
            .unwrap();
        stolen[6..11].copy_from_slice(b"alice");
        assert_eq!(
            signer
                .verify(Kind::Statement, &stolen, "alice")
                .unwrap_err()
                .code(),
            tonic::Code::InvalidArgument
        );
    }
}
