//! Resolutions already made with one [`PolicySet`](crate::PolicySet), so that the same
//! caller reading the same table again is not resolved again (casbin's enforcement and the
//! binding of every rule are a measurable share of a point query).
//!
//! Safe because a policy set is immutable: a reload, a publish or a change of the grants in
//! force builds a new set with an empty memo, so nothing is ever answered from an older
//! version (unlike casbin's `CachedEnforcer`, see `tests/decision_caches.rs`). The key is
//! the whole principal (id, roles and attributes): a caller whose token carries other
//! attributes is resolved afresh; so is each version of a product (versions share an id).
//! Bounded: when full it starts over, so no number of
//! principals or tables grows it without limit.

use std::collections::HashMap;
use std::sync::Mutex;

use crate::principal::Principal;

/// At most this many resolutions are kept per policy set.
const CAPACITY: usize = 16_384;

/// The caller, the product's id and version, the table.
type Key = (Principal, String, String, String);

/// Resolutions (`R`: a resolved policy or a denial) by caller and table.
pub(crate) struct Resolutions<R> {
    map: Mutex<HashMap<Key, R>>,
}

impl<R> Default for Resolutions<R> {
    fn default() -> Self {
        Self {
            map: Mutex::default(),
        }
    }
}

impl<R> std::fmt::Debug for Resolutions<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.map.lock().map_or(0, |m| m.len());
        f.debug_struct("Resolutions").field("kept", &kept).finish()
    }
}

impl<R: Clone> Resolutions<R> {
    /// The resolution of `principal` reading `table` of `product` at `version`, made by
    /// `resolve` the first time and remembered.
    pub(crate) fn get_or(
        &self,
        principal: &Principal,
        (product, version, table): (&str, &str, &str),
        resolve: impl FnOnce() -> R,
    ) -> R {
        let key = (
            principal.clone(),
            product.to_string(),
            version.to_string(),
            table.to_string(),
        );
        if let Some(hit) = self.map.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return hit;
        }
        // Resolved outside the lock: two callers may both resolve, with the same result.
        let resolution = resolve();
        if let Ok(mut map) = self.map.lock() {
            if map.len() >= CAPACITY {
                map.clear();
            }
            map.insert(key, resolution.clone());
        }
        resolution
    }

    /// How many resolutions are kept (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.lock().map_or(0, |m| m.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_memo_starts_over() {
        let memo = Resolutions::<Result<(), String>>::default();
        for n in 0..CAPACITY + 1 {
            let _ = memo.get_or(&Principal::new(format!("p{n}")), ("x", "1", "t"), || {
                Err("denied".into())
            });
        }
        assert_eq!(memo.len(), 1);
    }
}
