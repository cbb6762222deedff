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

/// The drafts held, by ticket (generic so that its bounds can be tested without a gateway).
pub(crate) struct Drafts<T = Draft> {
    held: Mutex<HashMap<Key, (Instant, T)>>,
    keep_for: Duration,
}

impl<T> Default for Drafts<T> {
    fn default() -> Self {
        Self::keeping_for(KEEP)
    }
}

fn key(ticket: &[u8]) -> Key {
    Sha256::digest(ticket).into()
}

impl<T> Drafts<T> {
    fn keeping_for(keep_for: Duration) -> Self {
        Self {
            held: Mutex::new(HashMap::new()),
            keep_for,
        }
    }

    /// Hold `draft` for the ticket it was planned for. Drafts past their time go first (each
    /// holds its mesh and policy versions alive), then, when full, the oldest.
    pub(crate) fn keep(&self, ticket: &[u8], draft: T) {
        let now = Instant::now();
        // Dropped outside the lock: freeing a plan is work.
        let mut dropped = Vec::new();
        if let Ok(mut held) = self.held.lock() {
            let stale: Vec<Key> = held
                .iter()
                .filter(|(_, (at, _))| now.duration_since(*at) >= self.keep_for)
                .map(|(key, _)| *key)
                .collect();
            dropped.extend(stale.iter().filter_map(|key| held.remove(key)));
            if held.len() >= MAX_DRAFTS {
                let oldest = held.iter().min_by_key(|(_, (at, _))| *at).map(|(k, _)| *k);
                dropped.extend(oldest.and_then(|key| held.remove(&key)));
            }
            dropped.extend(held.insert(key(ticket), (now, draft)));
        }
        drop(dropped);
    }

    /// The draft held for `ticket`, if any and still recent; it is no longer held.
    pub(crate) fn take(&self, ticket: &[u8]) -> Option<T> {
        let (at, draft) = self.held.lock().ok()?.remove(&key(ticket))?;
        (at.elapsed() < self.keep_for).then_some(draft)
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.held.lock().map(|held| held.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_draft_is_taken_once_by_its_own_ticket() {
        let drafts = Drafts::<u32>::default();
        drafts.keep(b"ticket a", 1);
        drafts.keep(b"ticket b", 2);
        assert_eq!(drafts.take(b"ticket c"), None);
        assert_eq!(drafts.take(b"ticket a"), Some(1));
        assert_eq!(drafts.take(b"ticket a"), None, "taken once");
        // The same ticket described again holds the newer draft.
        drafts.keep(b"ticket b", 3);
        assert_eq!(drafts.take(b"ticket b"), Some(3));
    }

    #[test]
    fn drafts_are_bounded_and_the_oldest_go_first() {
        let drafts = Drafts::<usize>::default();
        for i in 0..MAX_DRAFTS + 10 {
            drafts.keep(format!("ticket {i}").as_bytes(), i);
        }
        assert_eq!(drafts.len(), MAX_DRAFTS);
        assert_eq!(drafts.take(b"ticket 0"), None);
        assert_eq!(drafts.take(b"ticket 9"), None);
        assert_eq!(drafts.take(b"ticket 10"), Some(10));
        let last = format!("ticket {}", MAX_DRAFTS + 9);
        assert_eq!(drafts.take(last.as_bytes()), Some(MAX_DRAFTS + 9));
    }

    #[test]
    fn a_draft_past_its_time_is_not_used_and_is_let_go() {
        let drafts = Drafts::<u32>::keeping_for(Duration::from_millis(20));
        drafts.keep(b"late", 1);
        drafts.keep(b"later", 2);
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(drafts.take(b"late"), None, "too old to use");
        // The next draft kept lets go of every stale one.
        drafts.keep(b"fresh", 3);
        assert_eq!(drafts.len(), 1);
        assert_eq!(drafts.take(b"fresh"), Some(3));
    }
}
