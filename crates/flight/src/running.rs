//! Queries in flight: what `CancelFlightInfo` / `CancelQuery` can stop, and what a graceful
//! shutdown waits for.
//!
//! Queries are found by the ticket that started them (a digest of it; tickets are signed
//! and bound to their principal, so only the principal who holds a ticket can name it).
//! A ticket cancelled before its `DoGet` starts is remembered for a while, so that the
//! cancellation is not lost to a race with the client's own `DoGet`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use meshgate_engine::CancellationToken;
use sha2::{Digest, Sha256};
use tonic::Status;

type Key = [u8; 32];

/// How long a cancelled ticket stays refused.
const REMEMBER_CANCELLED: Duration = Duration::from_secs(3600);
/// Bounds the memory of cancelled tickets.
const MAX_REMEMBERED: usize = 10_000;

struct Entry {
    id: u64,
    principal: String,
    cancel: CancellationToken,
}

#[derive(Default)]
struct State {
    running: HashMap<Key, Vec<Entry>>,
    cancelled: HashMap<Key, (String, Instant)>,
}

/// The registry of running queries.
#[derive(Default)]
pub(crate) struct Running {
    state: Mutex<State>,
    next: AtomicU64,
    draining: AtomicBool,
}

fn key(ticket: &[u8]) -> Key {
    Sha256::digest(ticket).into()
}

/// A running query's place in the registry; dropping it (when the stream ends or the
/// client goes away) removes the query.
pub(crate) struct Registration {
    running: Arc<Running>,
    key: Key,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.running.remove(&self.key, self.id);
    }
}

/// What a cancellation request found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cancelled {
    /// Running queries were stopped.
    Stopped,
    /// Nothing was running; the ticket is refused from now on.
    Remembered,
}

impl Running {
    /// Register a query started by `ticket`, unless that ticket was cancelled.
    pub(crate) fn start(
        self: &Arc<Self>,
        ticket: &[u8],
        principal: &str,
        cancel: CancellationToken,
    ) -> Result<Registration, Status> {
        if self.draining() {
            return Err(draining_status());
        }
        let key = key(ticket);
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut state = self
            .state
            .lock()
            .map_err(|_| Status::internal("query registry"))?;
        if let Some((owner, at)) = state.cancelled.get(&key)
            && owner == principal
            && at.elapsed() < REMEMBER_CANCELLED
        {
            return Err(Status::cancelled(
                "this query was cancelled; run the statement again for a new ticket",
            ));
        }
        state.running.entry(key).or_default().push(Entry {
            id,
            principal: principal.to_string(),
            cancel,
        });
        Ok(Registration {
            running: Arc::clone(self),
            key,
            id,
        })
    }

    fn remove(&self, key: &Key, id: u64) {
        if let Ok(mut state) = self.state.lock()
            && let Some(entries) = state.running.get_mut(key)
        {
            entries.retain(|e| e.id != id);
            if entries.is_empty() {
                state.running.remove(key);
            }
        }
    }

    /// Cancel the queries `principal` started with `ticket` (the caller has checked that
    /// the ticket is theirs), and refuse the ticket from now on.
    pub(crate) fn cancel(&self, ticket: &[u8], principal: &str) -> Cancelled {
        let key = key(ticket);
        let Ok(mut state) = self.state.lock() else {
            return Cancelled::Remembered;
        };
        let mut stopped = false;
        if let Some(entries) = state.running.get(&key) {
            for entry in entries.iter().filter(|e| e.principal == principal) {
                entry.cancel.cancel();
                stopped = true;
            }
        }
        if state.cancelled.len() >= MAX_REMEMBERED {
            state
                .cancelled
                .retain(|_, (_, at)| at.elapsed() < REMEMBER_CANCELLED);
            if state.cancelled.len() >= MAX_REMEMBERED {
                state.cancelled.clear();
            }
        }
        state
            .cancelled
            .insert(key, (principal.to_string(), Instant::now()));
        if stopped {
            Cancelled::Stopped
        } else {
            Cancelled::Remembered
        }
    }

    /// Queries running now.
    pub(crate) fn count(&self) -> usize {
        self.state
            .lock()
            .map(|s| s.running.values().map(Vec::len).sum())
            .unwrap_or(0)
    }

    /// Stop every running query (the drain period is over).
    pub(crate) fn cancel_all(&self) {
        if let Ok(state) = self.state.lock() {
            for entry in state.running.values().flatten() {
                entry.cancel.cancel();
            }
        }
    }

    /// From now on, new calls are refused with UNAVAILABLE.
    pub(crate) fn start_draining(&self) {
        self.draining.store(true, Ordering::SeqCst);
    }

    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

pub(crate) fn draining_status() -> Status {
    Status::unavailable(
        "the gateway is shutting down and takes no new requests; retry (another instance may answer)",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cancels_only_the_owners_running_query() {
        let running = Arc::new(Running::default());
        let alice = CancellationToken::new();
        let bob = CancellationToken::new();
        let a = running.start(b"t1", "alice", alice.clone()).unwrap();
        let _b = running.start(b"t1", "bob", bob.clone()).unwrap();
        assert_eq!(running.count(), 2);
        assert_eq!(running.cancel(b"t1", "alice"), Cancelled::Stopped);
        assert!(alice.is_cancelled());
        assert!(!bob.is_cancelled());
        drop(a);
        assert_eq!(running.count(), 1);
    }

    #[test]
    fn a_ticket_cancelled_early_is_refused_later() {
        let running = Arc::new(Running::default());
        assert_eq!(running.cancel(b"t2", "alice"), Cancelled::Remembered);
        let refused = running
            .start(b"t2", "alice", CancellationToken::new())
            .err()
            .unwrap();
        assert_eq!(refused.code(), tonic::Code::Cancelled);
        // Other tickets still run; draining refuses everything new.
        let registration = running
            .start(b"t3", "alice", CancellationToken::new())
            .unwrap();
        assert_eq!(running.count(), 1);
        drop(registration);
        assert_eq!(running.count(), 0);
        running.start_draining();
        let refused = running
            .start(b"t3", "alice", CancellationToken::new())
            .err()
            .unwrap();
        assert_eq!(refused.code(), tonic::Code::Unavailable);
    }
}
