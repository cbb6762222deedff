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

/// Why a caller the access rules do not admit is not admitted: what they can do about it
/// differs (ask for access, ask for a resumption, ask again, or ask for the rule to change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAdmitted {
    /// Neither the access rules nor a grant in force admit them.
    NoGrant,
    /// A deny line of the access rules matches them; no grant can open the product.
    DeniedByRule {
        rules_file: String,
        /// Their grant in force that the rule overrides, if any.
        grant: Option<String>,
    },
    /// Their grant is suspended by the owner.
    GrantSuspended {
        grant: String,
        reason: Option<String>,
    },
    /// Their grant ran out.
    GrantExpired {
        grant: String,
        at: meshgate_api::Millis,
    },
}

impl Denial {
    /// A short, stable name of why: a metric label, never carrying who or what.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::NotPermitted { why, .. } => match **why {
                NotAdmitted::NoGrant => "no_grant",
                NotAdmitted::DeniedByRule { .. } => "denied_by_rule",
                NotAdmitted::GrantSuspended { .. } => "grant_suspended",
                NotAdmitted::GrantExpired { .. } => "grant_expired",
            },
            Self::NoPolicy { .. } => "no_policy",
            Self::NoRowGrant { .. } => "no_row_grant",
            Self::Unresolvable { .. } => "unresolvable_policy",
            Self::MalformedPrincipal { .. } => "malformed_principal",
            Self::EngineFailure { .. } => "policy_engine_failure",
            Self::Retired { .. } => "retired",
        }
    }
}

fn not_permitted(principal: &str, product: &str, owner: &str, why: &NotAdmitted) -> String {
    let how = meshgate_api::how_to_request(product);
    match why {
        NotAdmitted::NoGrant => format!(
            "permission denied: `{principal}` may not read product `{product}`. Request access from {owner}: {how}"
        ),
        NotAdmitted::DeniedByRule { rules_file, grant } => {
            let grant = grant
                .as_ref()
                .map(|g| {
                    format!(" (their grant `{g}` is active, but a deny rule wins over any grant)")
                })
                .unwrap_or_default();
            format!(
                "permission denied: `{principal}` may not read product `{product}`: a deny rule of the access rules \
                 (`{rules_file}`) closes it to them{grant}. A grant cannot open it; only a change of that rule can: \
                 ask the governance team or {owner}"
            )
        }
        NotAdmitted::GrantSuspended { grant, reason } => {
            let reason = reason
                .as_ref()
                .map(|r| format!(" (reason: {r})"))
                .unwrap_or_default();
            format!(
                "permission denied: `{principal}`'s grant `{grant}` on product `{product}` is suspended{reason}. \
                 Ask {owner} to resume it"
            )
        }
        NotAdmitted::GrantExpired { grant, at } => format!(
            "permission denied: `{principal}`'s grant `{grant}` on product `{product}` expired at {}. \
                 Request access again from {owner}: {how}",
            meshgate_api::iso8601(*at)
        ),
    }
}

/// Why a caller may not read a table. Every variant is a denial: nothing partial is returned.
/// Messages name the product and say what to do; they never contain data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denial {
    #[error("{}", not_permitted(.principal, .product, .owner, .why))]
    NotPermitted {
        principal: String,
        product: String,
        /// Who decides, and how to reach them: `its owner (team `t`: a, b) via #channel`.
        owner: String,
        why: Box<NotAdmitted>,
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
    /// The product is no longer served (`retired`, or deprecated past its sunset).
    #[error("product `{product}` is no longer served: {reason}")]
    Retired { product: String, reason: String },
}

impl Denial {
    /// Every [`Denial::kind`].
    pub const KINDS: &'static [&'static str] = &[
        "not-permitted",
        "no-policy",
        "no-row-grant",
        "unresolvable",
        "malformed-principal",
        "engine-failure",
        "retired",
    ];

    /// The kind of denial, stable for golden decision files and tools.
    pub fn kind(&self) -> &'static str {
        match self {
            Denial::NotPermitted { .. } => "not-permitted",
            Denial::NoPolicy { .. } => "no-policy",
            Denial::NoRowGrant { .. } => "no-row-grant",
            Denial::Unresolvable { .. } => "unresolvable",
            Denial::MalformedPrincipal { .. } => "malformed-principal",
            Denial::EngineFailure { .. } => "engine-failure",
            Denial::Retired { .. } => "retired",
        }
    }
}
