//! Statements `GetFlightInfo` planned, held until their ticket is redeemed by `DoGet`, so
//! that a query is planned once rather than twice (clients call the two back to back).
//!
//! This is a cache of work, never of a decision: a draft is only a starting point that the
//! engine checks again when the ticket is redeemed (`Session::query_drafted`: same
//! principal, same mesh and policy version with the grants in force then), and anything
//! it does not find here, or finds stale, is planned afresh. Drafts are taken once, kept
//! only briefly and only for short statements, and bounded in number, so that a caller who
//! asks for FlightInfo and never redeems it holds little memory and cannot crowd the
//! cache for long.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use meshgate_engine::Draft;
use sha2::{Digest, Sha256};

type Key = [u8; 32];

/// How long a draft waits for its `DoGet` (clients redeem at once).
const KEEP: Duration = Duration::from_secs(10);
/// The most drafts held at once.
const MAX_DRAFTS: usize = 256;
/// The longest statement whose draft is kept: a plan's size follows its statement's.
pub(crate) const MAX_STATEMENT_BYTES: usize = 8 << 10;

#[derive(Default)]
pub(crate) struct Drafts {
    held: Mutex<HashMap<Key, (Instant, Draft)>>,
}

fn key(ticket: &[u8]) -> Key {
    Sha256::digest(ticket).into()
}

impl Drafts {
    /// Hold `draft` for the ticket it was planned for.
    pub(crate) fn keep(&self, ticket: &[u8], draft: Draft) {
        let now = Instant::now();
        // Dropped outside the lock: freeing a plan is work.
        let mut dropped = Vec::new();
        if let Ok(mut held) = self.held.lock() {
            if held.len() >= MAX_DRAFTS {
                let stale: Vec<Key> = held
                    .iter()
                    .filter(|(_, (at, _))| now.duration_since(*at) >= KEEP)
                    .map(|(key, _)| *key)
                    .collect();
                dropped.extend(stale.iter().filter_map(|key| held.remove(key)));
            }
            if held.len() >= MAX_DRAFTS {
                let oldest = held.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| *k);
                dropped.extend(oldest.and_then(|key| held.remove(&key)));
            }
            dropped.extend(held.insert(key(ticket), (now, draft)));
        }
        drop(dropped);
    }

    /// The draft held for `ticket`, if any and still recent; it is no longer held.
    pub(crate) fn take(&self, ticket: &[u8]) -> Option<Draft> {
        let (at, draft) = self.held.lock().ok()?.remove(&key(ticket))?;
        (at.elapsed() < KEEP).then_some(draft)
    }
}
