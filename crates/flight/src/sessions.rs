//! What a replica remembers of sessions: the options each has set, and the tokens closed
//! before their end.
//!
//! Session tokens themselves are signed and carry their principal and end (see `auth.rs`),
//! so any replica accepts them; this is only what cannot be in a token. A session never
//! outlives the credential it came from: every entry carries the absolute instant its
//! credential ends (a password login's session TTL, a JWT's `exp`). The store is bounded
//! twice, so that no caller can grow it without limit: per principal (logging in again and
//! again evicts that principal's oldest entries, nobody else's) and in total (beyond it the
//! entry closest to its end goes first).

use std::collections::{HashMap, VecDeque};
use std::time::SystemTime;

use meshgate_policy::Principal;

use crate::session_options::SessionOptions;

/// Sessions one principal may hold at once.
pub(crate) const MAX_SESSIONS_PER_PRINCIPAL: usize = 64;
/// Sessions the server holds at once.
pub(crate) const MAX_SESSIONS: usize = 100_000;

#[derive(Debug)]
struct Entry {
    principal: Principal,
    /// When the session ends, whatever is presented after.
    expires: SystemTime,
    /// Closed by its caller: the token no longer authenticates on this replica.
    closed: bool,
    options: SessionOptions,
}

/// The sessions of one server.
#[derive(Debug)]
pub(crate) struct Sessions {
    entries: HashMap<String, Entry>,
    /// Each principal's session keys, oldest first.
    by_principal: HashMap<String, VecDeque<String>>,
    per_principal: usize,
    total: usize,
}

impl Default for Sessions {
    fn default() -> Self {
        Self::with_bounds(MAX_SESSIONS_PER_PRINCIPAL, MAX_SESSIONS)
    }
}

impl Sessions {
    pub(crate) fn with_bounds(per_principal: usize, total: usize) -> Self {
        Self {
            entries: HashMap::new(),
            by_principal: HashMap::new(),
            per_principal: per_principal.max(1),
            total: total.max(1),
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries.len()
    }

    /// Record a session under `key` for `principal` until `expires`: its options, or
    /// (`closed`) that it was closed.
    pub(crate) fn insert(
        &mut self,
        key: String,
        principal: Principal,
        expires: SystemTime,
        closed: bool,
        options: SessionOptions,
    ) {
        let now = SystemTime::now();
        self.remove(&key);
        let id = principal.id().to_string();
        // This principal's own oldest sessions make room first.
        while self.by_principal.get(&id).map_or(0, VecDeque::len) >= self.per_principal {
            let oldest = self.by_principal.get_mut(&id).and_then(VecDeque::pop_front);
            match oldest {
                Some(oldest) => {
                    self.entries.remove(&oldest);
                }
                None => break,
            }
        }
        if self.entries.len() >= self.total {
            self.purge(now);
        }
        while self.entries.len() >= self.total {
            let soonest = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.expires)
                .map(|(k, _)| k.clone());
            match soonest {
                Some(soonest) => self.remove(&soonest),
                None => break,
            }
        }
        self.by_principal
            .entry(id)
            .or_default()
            .push_back(key.clone());
        self.entries.insert(
            key,
            Entry {
                principal,
                expires,
                closed,
                options,
            },
        );
    }

    /// Was the session under `token` closed here?
    pub(crate) fn is_closed(&self, token: &str) -> bool {
        self.entries.get(token).is_some_and(|e| e.closed)
    }

    /// The options of a live session.
    pub(crate) fn options(&self, key: &str) -> Option<&SessionOptions> {
        self.entries
            .get(key)
            .filter(|e| !e.closed && e.expires > SystemTime::now())
            .map(|e| &e.options)
    }

    /// Set the options of a live session; `false` if there is none under `key`.
    pub(crate) fn set_options(&mut self, key: &str, options: SessionOptions) -> bool {
        match self.entries.get_mut(key) {
            Some(entry) if !entry.closed && entry.expires > SystemTime::now() => {
                entry.options = options;
                true
            }
            _ => false,
        }
    }

    pub(crate) fn remove(&mut self, key: &str) {
        if let Some(entry) = self.entries.remove(key) {
            let id = entry.principal.id();
            if let Some(keys) = self.by_principal.get_mut(id) {
                keys.retain(|k| k != key);
                if keys.is_empty() {
                    self.by_principal.remove(id);
                }
            }
        }
    }

    /// Forget every session that has ended.
    fn purge(&mut self, now: SystemTime) {
        let ended: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.expires <= now)
            .map(|(k, _)| k.clone())
            .collect();
        for key in ended {
            self.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn later(seconds: u64) -> SystemTime {
        SystemTime::now() + Duration::from_secs(seconds)
    }

    #[test]
    fn a_principal_holds_a_bounded_number_of_sessions_and_evicts_only_its_own() {
        let mut sessions = Sessions::with_bounds(3, 100);
        let other = Principal::new("other");
        sessions.insert(
            "o".into(),
            other,
            later(60),
            false,
            SessionOptions::default(),
        );
        let busy = Principal::new("busy");
        for i in 0..10 {
            sessions.insert(
                format!("b{i}"),
                busy.clone(),
                later(60),
                false,
                SessionOptions::default(),
            );
        }
        assert_eq!(sessions.len(), 4);
        assert!(
            sessions.options("o").is_some(),
            "another principal's session stays"
        );
        assert!(sessions.options("b0").is_none(), "the oldest went first");
        assert!(sessions.options("b9").is_some());
    }

    #[test]
    fn the_store_is_bounded_in_total_and_ended_sessions_go_first() {
        let mut sessions = Sessions::with_bounds(10, 4);
        for i in 0..3 {
            sessions.insert(
                format!("s{i}"),
                Principal::new(format!("p{i}")),
                later(60 + i),
                false,
                SessionOptions::default(),
            );
        }
        sessions.insert(
            "ended".into(),
            Principal::new("q"),
            SystemTime::now() - Duration::from_secs(1),
            false,
            SessionOptions::default(),
        );
        assert!(
            sessions.options("ended").is_none(),
            "an ended session authenticates nobody"
        );
        sessions.insert(
            "new".into(),
            Principal::new("r"),
            later(60),
            false,
            SessionOptions::default(),
        );
        assert_eq!(sessions.len(), 4);
        assert!(
            sessions.options("s0").is_some(),
            "the ended session made room"
        );
        sessions.insert(
            "newer".into(),
            Principal::new("t"),
            later(60),
            false,
            SessionOptions::default(),
        );
        assert_eq!(sessions.len(), 4);
        assert!(
            sessions.options("s0").is_none(),
            "then the one closest to its end"
        );
        assert!(sessions.options("newer").is_some());
    }

    #[test]
    fn a_closed_session_is_remembered_and_keeps_no_options() {
        let mut sessions = Sessions::default();
        sessions.insert(
            "t".into(),
            Principal::new("svc"),
            later(60),
            false,
            SessionOptions::default(),
        );
        assert!(!sessions.is_closed("t") && sessions.options("t").is_some());
        sessions.insert(
            "t".into(),
            Principal::new("svc"),
            later(60),
            true,
            SessionOptions::default(),
        );
        assert!(sessions.is_closed("t") && sessions.options("t").is_none());
        assert!(!sessions.set_options("t", SessionOptions::default()));
    }
}
