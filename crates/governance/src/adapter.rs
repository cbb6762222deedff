//! casbin reads the grants it enforces from the governance store through this adapter.
//!
//! Each grant in force becomes one policy line, `p, <principal>, <domain>, <product>, read,
//! allow`, next to the lines of `policies/access.csv`; deny lines there still win. The
//! adapter is read-only: grants change only through [`crate::Workflow`], never through
//! casbin's management API.

use std::sync::Arc;

use async_trait::async_trait;
use casbin::error::AdapterError;
use casbin::{Adapter, Filter, Model};

use crate::model::{Grant, Millis};
use crate::store::GovernanceStore;

/// The casbin `p` line a grant in force contributes.
pub fn policy_line(grant: &Grant) -> Vec<String> {
    vec![
        grant.principal.clone(),
        grant.domain.clone(),
        grant.product.clone(),
        "read".into(),
        "allow".into(),
    ]
}

/// A casbin adapter over the grants in force at one instant.
#[derive(Debug, Clone)]
pub struct GrantAdapter {
    store: Arc<dyn GovernanceStore>,
    at: Millis,
}

impl GrantAdapter {
    pub fn new(store: Arc<dyn GovernanceStore>, at: Millis) -> Self {
        Self { store, at }
    }
}

fn read_only() -> casbin::Error {
    AdapterError(Box::<dyn std::error::Error + Send + Sync>::from(
        "grants change through access requests, not through casbin",
    ))
    .into()
}

#[async_trait]
impl Adapter for GrantAdapter {
    async fn load_policy(&mut self, m: &mut dyn Model) -> casbin::Result<()> {
        let grants = self
            .store
            .grants_in_force(self.at)
            .await
            .map_err(|e| casbin::Error::from(AdapterError(Box::new(e))))?;
        for grant in &grants {
            m.add_policy("p", "p", policy_line(grant));
        }
        Ok(())
    }

    async fn load_filtered_policy<'a>(
        &mut self,
        m: &mut dyn Model,
        _f: Filter<'a>,
    ) -> casbin::Result<()> {
        self.load_policy(m).await
    }

    async fn save_policy(&mut self, _m: &mut dyn Model) -> casbin::Result<()> {
        Err(read_only())
    }

    async fn clear_policy(&mut self) -> casbin::Result<()> {
        Err(read_only())
    }

    fn is_filtered(&self) -> bool {
        false
    }

    async fn add_policy(&mut self, _s: &str, _p: &str, _r: Vec<String>) -> casbin::Result<bool> {
        Err(read_only())
    }

    async fn add_policies(
        &mut self,
        _s: &str,
        _p: &str,
        _r: Vec<Vec<String>>,
    ) -> casbin::Result<bool> {
        Err(read_only())
    }

    async fn remove_policy(&mut self, _s: &str, _p: &str, _r: Vec<String>) -> casbin::Result<bool> {
        Err(read_only())
    }

    async fn remove_policies(
        &mut self,
        _s: &str,
        _p: &str,
        _r: Vec<Vec<String>>,
    ) -> casbin::Result<bool> {
        Err(read_only())
    }

    async fn remove_filtered_policy(
        &mut self,
        _s: &str,
        _p: &str,
        _i: usize,
        _v: Vec<String>,
    ) -> casbin::Result<bool> {
        Err(read_only())
    }
}
