//! Grants: an owner's approval of an access request, layered on top of the policy files.
//!
//! A [`GrantLayer`] is a snapshot of the grants in force at one instant (the caller reads
//! them from the governance store; this crate does no I/O), by (principal, product). A grant only ever admits a caller the files do not, and never
//! one a deny line of the files matches: with the shipped deny-overrides-allow model, a
//! grant admits when its terms exist and the files' deny-only check says no (constant time
//! in the number of grants); with any other model effect, casbin loads the grants as extra
//! `p` lines ([`policy_line`]) and decides. A caller the files already admit is
//! unaffected by grants. A grant-admitted caller sees what the product policy shows any
//! reader, narrowed grant by grant: a cell is visible only if one single grant admits both
//! its row and its column (see `resolve.rs`), never the union of one grant's rows with
//! another's columns.

use std::collections::BTreeMap;

use meshgate_api::{Grant, Millis};
use meshgate_catalog::Catalog;

use crate::PolicySources;
use crate::access::AccessControl;
use crate::error::LoadError;
use crate::template::RowFilterTemplate;

/// A grant in force with its parsed row filter.
pub(crate) type GrantTerms = (Grant, Option<RowFilterTemplate>);

/// The grants in force at one instant.
#[derive(Debug)]
pub struct GrantLayer {
    /// The policy files' lines plus one line per grant in force, only when the files'
    /// model is not deny-overrides-allow (see the module documentation).
    pub(crate) access: Option<AccessControl>,
    /// Grants in force by (principal, product), with their parsed row filters.
    pub(crate) terms: BTreeMap<(String, String), Vec<GrantTerms>>,
    /// Grants of the snapshot not in force (suspended, or expired), by (principal, product):
    /// they admit nobody, but a denial says that the caller's grant is suspended or expired
    /// rather than that they have none.
    pub(crate) lapsed: BTreeMap<(String, String), Vec<Grant>>,
    /// The store's grant generation this layer was read at.
    pub generation: i64,
    /// The first instant a grant of this layer stops being in force.
    pub valid_until: Option<Millis>,
}

impl GrantLayer {
    /// Is this layer still what the store says, at `now`?
    pub fn current(&self, generation: i64, now: Millis) -> bool {
        self.generation == generation && self.valid_until.is_none_or(|until| now < until)
    }
}

/// The casbin `p` line a grant in force contributes, next to the lines of the access rules
/// file (whose deny lines still win).
pub fn policy_line(grant: &Grant) -> Vec<String> {
    vec![
        grant.principal.clone(),
        grant.domain.clone(),
        grant.product.clone(),
        "read".into(),
        "allow".into(),
    ]
}

impl GrantLayer {
    /// The layer of `grants` (as of store generation `generation`) over policy files
    /// `sources`. A grant not in force at `now` admits nobody, whatever the snapshot says
    /// (it only explains a denial); so
    /// is a grant whose row filter does not parse (logged): it admits nobody (fail closed)
    /// rather than admitting without its filter. `files_check_denials`: the files' model is
    /// deny-overrides-allow, so casbin need not load the grants.
    pub(crate) async fn new(
        catalog: &Catalog,
        grants: Vec<Grant>,
        sources: &PolicySources,
        files_check_denials: bool,
        generation: i64,
        now: Millis,
    ) -> Result<Self, LoadError> {
        let mut terms: BTreeMap<(String, String), Vec<_>> = BTreeMap::new();
        let mut valid_until: Option<Millis> = None;
        let mut lapsed: BTreeMap<(String, String), Vec<Grant>> = BTreeMap::new();
        for grant in grants {
            if !grant.in_force(now) {
                lapsed
                    .entry((grant.principal.clone(), grant.product.clone()))
                    .or_default()
                    .push(grant);
                continue;
            }
            let filter = match grant.row_filter.as_deref().map(RowFilterTemplate::parse) {
                None => None,
                Some(Ok(template)) => Some(template),
                Some(Err(reason)) => {
                    tracing::error!(grant = %grant.id, %reason, "grant row filter does not parse; the grant admits nobody");
                    continue;
                }
            };
            valid_until = Some(valid_until.map_or(grant.valid_until, |v| v.min(grant.valid_until)));
            terms
                .entry((grant.principal.clone(), grant.product.clone()))
                .or_default()
                .push((grant, filter));
        }
        let access = if files_check_denials {
            None
        } else {
            let lines = terms
                .values()
                .flatten()
                .map(|(g, _)| policy_line(g))
                .collect();
            Some(AccessControl::load_with(sources, catalog, lines).await?)
        };
        Ok(Self {
            access,
            terms,
            lapsed,
            generation,
            valid_until,
        })
    }
}
