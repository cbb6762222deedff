//! Who is asking: an authenticated principal with roles and attributes.
//!
//! Principals come only from authentication (a user directory, later signed tokens) or from
//! the host program of an embedded gateway. Nothing in a query can change them.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

/// An authenticated caller.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Principal {
    id: String,
    roles: BTreeSet<String>,
    attributes: BTreeMap<String, String>,
}

impl fmt::Debug for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Principal")
            .field("id", &self.id)
            .field("roles", &self.roles)
            .field("attributes", &self.attributes)
            .finish()
    }
}

/// Characters allowed in principal ids and role names. Narrow on purpose: these names are
/// matched against policy subjects, and separators or look-alikes must not sneak in.
pub(crate) fn is_valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 128
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'))
}

impl Principal {
    /// A principal with an id and no roles or attributes.
    ///
    /// Ids may use ASCII letters, digits and `-_.@`; anything else yields a principal that is
    /// denied everywhere (see [`Principal::is_well_formed`]).
    pub fn new(id: impl Into<String>) -> Self {
        Self {
            id: id.into(),
            roles: BTreeSet::new(),
            attributes: BTreeMap::new(),
        }
    }

    /// Add a role granted by authentication (matched by policy subjects `role:<name>`).
    pub fn with_role(mut self, role: impl Into<String>) -> Self {
        self.roles.insert(role.into());
        self
    }

    /// Add an attribute (e.g. `lob = CIB`); row filters refer to it as `${principal.lob}`.
    pub fn with_attribute(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.attributes.insert(name.into(), value.into());
        self
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    pub fn roles(&self) -> &BTreeSet<String> {
        &self.roles
    }

    pub fn attributes(&self) -> &BTreeMap<String, String> {
        &self.attributes
    }

    /// An attribute's value; `id` is always available as the principal's id.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        match name {
            "id" => Some(&self.id),
            _ => self.attributes.get(name).map(String::as_str),
        }
    }

    /// False if the id or a role uses characters policies cannot name; such principals are
    /// denied everything rather than matched approximately.
    pub fn is_well_formed(&self) -> bool {
        is_valid_name(&self.id) && self.roles.iter().all(|r| is_valid_name(r))
    }
}
