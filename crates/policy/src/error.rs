//! Errors: load errors for operators (which file, line and rule) and denials for callers.

use std::fmt;

/// A policy that cannot be loaded. Names the file, and where known the line and rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub file: String,
    pub line: Option<usize>,
    pub rule: Option<String>,
    pub message: String,
}

impl LoadError {
    pub(crate) fn new(
        file: &str,
        line: Option<usize>,
        rule: Option<&str>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            file: file.to_string(),
            line,
            rule: rule.map(str::to_string),
            message: message.into(),
        }
    }
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        if let Some(rule) = &self.rule {
            write!(f, ": rule `{rule}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for LoadError {}

/// Why a caller may not read a table. Every variant is a denial: nothing partial is returned.
/// Messages name the product and say what to do; they never contain data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error(
        "permission denied: `{principal}` may not read product `{product}`. Request access from its owner \
         (team `{team}`: {owners}){contact}: {how}",
        how = meshgate_api::how_to_request(.product)
    )]
    NotPermitted {
        principal: String,
        product: String,
        team: String,
        owners: String,
        contact: String,
    },
    #[error(
        "permission denied: product `{product}` has no row/column policy, so nobody may read it; its owner (team `{team}`) must publish one"
    )]
    NoPolicy { product: String, team: String },
    #[error(
        "permission denied: no row filter of policy `{policy}` grants `{principal}` rows of `{table}`; \
         ask the owner of `{product}` to grant them"
    )]
    NoRowGrant {
        principal: String,
        product: String,
        table: String,
        policy: String,
    },
    #[error(
        "permission denied: policy `{policy}` cannot be resolved for `{principal}` on `{table}`: {reason}"
    )]
    Unresolvable {
        principal: String,
        table: String,
        policy: String,
        reason: String,
    },
    #[error(
        "permission denied: principal `{principal}` is not well formed and is denied everything"
    )]
    MalformedPrincipal { principal: String },
    #[error("policy engine failure while checking access to `{product}`; denying: {reason}")]
    EngineFailure { product: String, reason: String },
}
