//! What the test modules share: the Flight SQL test server and clients, access grants
//! through the workflow, the raw files and protections re-implemented independently,
//! each principal's policy as literal views, a test certificate authority, and Substrait plans
//! made and sent as clients make and send them.

pub mod cluster;
pub mod flight;
pub mod grants;
pub mod pki;
pub mod postgres;
pub mod substrait;
pub mod truth;
pub mod views;

/// The tests crate's directory (`crates/cli`), from cargo at run time: a test binary from a
/// build cache shared with a checkout at another path keeps that path compiled in.
pub fn manifest_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
        || env!("CARGO_MANIFEST_DIR").into(),
        std::path::PathBuf::from,
    )
}

/// Every sealed scan of a physical plan as (`domain.table`, the resolved policy it enforces,
/// the keys of the dynamic filters accepted inside it), in plan order.
pub fn sealed_scans(
    plan: &std::sync::Arc<dyn datafusion::physical_plan::ExecutionPlan>,
) -> Vec<(String, meshgate::policy::ResolvedTablePolicy, Vec<String>)> {
    let mut out = Vec::new();
    let mut plans = vec![std::sync::Arc::clone(plan)];
    while let Some(plan) = plans.pop() {
        let any: &dyn std::any::Any = plan.as_ref();
        if let Some(scan) = any.downcast_ref::<meshgate::engine::ProtectedScanExec>() {
            let policy = scan.policy().expect("planned by this gateway").clone();
            out.push((
                format!("{}.{}", policy.domain, policy.table),
                policy,
                scan.dynamic_filter_keys(),
            ));
        }
        plans.extend(plan.children().into_iter().rev().cloned());
    }
    out
}
