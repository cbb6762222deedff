//! Statement tickets that cannot be forged or replayed by another principal.
//!
//! A statement's ticket carries the SQL and the principal it was issued to, signed with a
//! key that exists only in this server process (HMAC-SHA256). At `DoGet` the signature and
//! the principal are checked, and the SQL is planned again under the caller's identity and
//! the policy version in force then: a ticket is never a capability to data.

use hmac::{Hmac, KeyInit, Mac};
use rand::RngCore;
use sha2::Sha256;
use tonic::Status;

const VERSION: u8 = 1;

pub(crate) struct TicketSigner {
    key: [u8; 32],
}

impl TicketSigner {
    pub(crate) fn new() -> Self {
        let mut key = [0u8; 32];
        rand::rng().fill_bytes(&mut key);
        Self { key }
    }

    fn mac(&self) -> Result<Hmac<Sha256>, Status> {
        <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .map_err(|_| Status::internal("ticket key"))
    }

    /// `version | len(principal) | principal | sql | tag`.
    pub(crate) fn sign(&self, principal: &str, sql: &str) -> Result<Vec<u8>, Status> {
        let principal_len = u16::try_from(principal.len())
            .map_err(|_| Status::invalid_argument("principal id too long"))?;
        let mut out = Vec::with_capacity(3 + principal.len() + sql.len() + 32);
        out.push(VERSION);
        out.extend_from_slice(&principal_len.to_be_bytes());
        out.extend_from_slice(principal.as_bytes());
        out.extend_from_slice(sql.as_bytes());
        let mut mac = self.mac()?;
        mac.update(&out);
        out.extend_from_slice(&mac.finalize().into_bytes());
        Ok(out)
    }

    /// The SQL of a ticket issued to `principal` by this server.
    pub(crate) fn verify(&self, ticket: &[u8], principal: &str) -> Result<String, Status> {
        let invalid = || {
            Status::invalid_argument(
                "invalid ticket: it was not issued by this server (or the server restarted); run the query again",
            )
        };
        if ticket.len() < 3 + 32 || ticket[0] != VERSION {
            return Err(invalid());
        }
        let (body, tag) = ticket.split_at(ticket.len() - 32);
        let mut mac = self.mac()?;
        mac.update(body);
        mac.verify_slice(tag).map_err(|_| invalid())?;
        let principal_len = usize::from(u16::from_be_bytes([body[1], body[2]]));
        let owner = body.get(3..3 + principal_len).ok_or_else(invalid)?;
        if owner != principal.as_bytes() {
            return Err(Status::permission_denied(
                "this ticket was issued to another principal; tickets cannot be shared or replayed",
            ));
        }
        String::from_utf8(body[3 + principal_len..].to_vec()).map_err(|_| invalid())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_for_its_principal_only() {
        let signer = TicketSigner::new();
        let ticket = signer.sign("alice", "SELECT 1").unwrap();
        assert_eq!(signer.verify(&ticket, "alice").unwrap(), "SELECT 1");
        assert_eq!(
            signer.verify(&ticket, "bob").unwrap_err().code(),
            tonic::Code::PermissionDenied
        );
    }

    #[test]
    fn tampering_and_foreign_keys_are_detected() {
        let signer = TicketSigner::new();
        let mut ticket = signer.sign("alice", "SELECT 1").unwrap();
        let last_sql_byte = ticket.len() - 33;
        ticket[last_sql_byte] = b'2';
        assert_eq!(
            signer.verify(&ticket, "alice").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
        let other = TicketSigner::new().sign("alice", "SELECT 1").unwrap();
        assert!(signer.verify(&other, "alice").is_err());
        assert!(signer.verify(b"short", "alice").is_err());
        // Rewriting the principal (same length) breaks the signature too.
        let mut stolen = signer.sign("bobby", "SELECT 1").unwrap();
        stolen[3..8].copy_from_slice(b"alice");
        assert_eq!(
            signer.verify(&stolen, "alice").unwrap_err().code(),
            tonic::Code::InvalidArgument
        );
    }
}
