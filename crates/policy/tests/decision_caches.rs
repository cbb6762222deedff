//! Why meshgate keeps no casbin decision cache. casbin-rs's `CachedEnforcer` clears its cache
//! on management-API changes but not on `load_policy`, so a revocation loaded from the policy
//! store would go unnoticed for as long as the decision stays cached. meshgate instead builds
//! a fresh, uncached `Enforcer` for every policy version (`AccessControl::load`), and every
//! query resolves against the version in force (tests/policies.rs shows a reload taking
//! effect on the very next query, prepared statements included).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use casbin::prelude::*;

const MODEL: &str = "[request_definition]
r = sub, obj, act
[policy_definition]
p = sub, obj, act
[policy_effect]
e = some(where (p.eft == allow))
[matchers]
m = r.sub == p.sub && r.obj == p.obj && r.act == p.act
";

#[tokio::test]
async fn casbins_cached_enforcer_keeps_a_revoked_decision_after_load_policy() {
    let dir = tempfile::tempdir().unwrap();
    let rules = dir.path().join("access.csv");
    std::fs::write(&rules, "p, alice, reference.counterparties, read\n").unwrap();
    let request = ("alice", "reference.counterparties", "read");

    let model = DefaultModel::from_str(MODEL).await.unwrap();
    let mut cached = CachedEnforcer::new(model, FileAdapter::new(rules.clone()))
        .await
        .unwrap();
    let model = DefaultModel::from_str(MODEL).await.unwrap();
    let mut plain = Enforcer::new(model, FileAdapter::new(rules.clone()))
        .await
        .unwrap();
    assert!(cached.enforce_mut(request).unwrap());
    assert!(plain.enforce(request).unwrap());

    // The owner revokes alice and the store is reloaded.
    std::fs::write(&rules, "").unwrap();
    cached.load_policy().await.unwrap();
    plain.load_policy().await.unwrap();
    assert!(
        cached.enforce_mut(request).unwrap(),
        "casbin-rs now clears its cache on load_policy: CachedEnforcer could be reconsidered"
    );
    assert!(
        !plain.enforce(request).unwrap(),
        "an uncached enforcer sees the revocation"
    );

    // Only clearing the cache by hand makes the revocation visible.
    cached.get_mut_cache().clear();
    assert!(!cached.enforce_mut(request).unwrap());
}
