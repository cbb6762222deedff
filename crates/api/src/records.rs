//! The records of governance: access requests, grants, audit records and flows, as the store
//! keeps them and as every front door (Flight actions, `mesh_catalog`, the CLI) returns them.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type Millis = i64;

/// Now, in [`Millis`].
pub fn now_millis() -> Millis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

pub const DAY_MILLIS: Millis = 24 * 60 * 60 * 1000;

/// `at` as ISO 8601 in UTC (`2026-11-30T12:03:25.000Z`): how every front door shows a time.
pub fn iso8601(at: Millis) -> String {
    let days = at.div_euclid(DAY_MILLIS);
    let in_day = at.rem_euclid(DAY_MILLIS);
    // Howard Hinnant's days-to-civil algorithm (proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, ms) = (
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000,
    );
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
}

macro_rules! state_enum {
    ($(#[$doc:meta])* $name:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "lowercase")]
        pub enum $name { $($variant),+ }

        impl $name {
            pub fn as_str(self) -> &'static str {
                match self { $(Self::$variant => $text),+ }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($text => Ok(Self::$variant),)+
                    other => Err(format!("unknown {} `{other}`", stringify!($name))),
                }
            }
        }
    };
}

state_enum! {
    /// An access request's life: `pending` until the owner decides (`approved`, `rejected`),
    /// the requester withdraws it (`cancelled`) or nobody decides in time (`expired`).
    RequestState { Pending => "pending", Approved => "approved", Rejected => "rejected",
                   Cancelled => "cancelled", Expired => "expired" }
}

state_enum! {
    /// A grant's life: `active` (enforced), `suspended` (not enforced, can be resumed),
    /// `revoked` and `expired` (final).
    GrantState { Active => "active", Suspended => "suspended", Revoked => "revoked",
                 Expired => "expired" }
}

state_enum! {
    /// What the gateway decided about a query.
    Decision { Allow => "allow", Deny => "deny", Error => "error" }
}

state_enum! {
    /// How a query touched a product table: `read` its data through the sealed scan, only
    /// `metadata` (EXPLAIN, DESCRIBE, information_schema: the table's shape or plan, no
    /// rows), or named it and was `denied`. Only reads are data flows.
    TableAccess { Read => "read", Metadata => "metadata", Denied => "denied" }
}

state_enum! {
    /// Where a query stands in the audit log. `running` is written before the first batch
    /// leaves; a record still `running` after a crash is a query whose results may have
    /// been (partly) sent.
    QueryStatus { Running => "running", Ok => "ok", Failed => "failed", Denied => "denied",
                  Cancelled => "cancelled" }
}

/// A consumer's request for access to a product.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRequest {
    pub id: String,
    pub requester: String,
    pub product: String,
    /// `table.column` names asked for; `None` for the whole product.
    pub columns: Option<Vec<String>>,
    pub purpose: String,
    /// How long the access is wanted for, in days.
    pub valid_days: u32,
    pub state: RequestState,
    pub created_at: Millis,
    /// An undecided request expires at this time.
    pub expires_at: Millis,
    pub decided_at: Option<Millis>,
    pub decided_by: Option<String>,
    pub decision_comment: Option<String>,
    /// The grant an approval created.
    pub grant_id: Option<String>,
}

/// An owner's decision that a principal may read a product, enforced while `active` and
/// before `valid_until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grant {
    pub id: String,
    pub request_id: Option<String>,
    pub principal: String,
    pub product: String,
    pub domain: String,
    /// `table.column` names the grant shows; `None` for every column the product policy shows.
    pub columns: Option<Vec<String>>,
    /// A SQL predicate over the product table's columns narrowing the rows; `None` for all
    /// rows the product policy shows.
    pub row_filter: Option<String>,
    pub purpose: String,
    pub state: GrantState,
    pub approved_by: String,
    pub created_at: Millis,
    pub valid_until: Millis,
    pub changed_at: Millis,
    pub changed_by: String,
    pub change_reason: Option<String>,
}

impl Grant {
    /// Enforced at `now`?
    pub fn in_force(&self, now: Millis) -> bool {
        self.state == GrantState::Active && now < self.valid_until
    }
}

/// The audit record of one query, written before its first result batch leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub query_id: String,
    pub started_at: Millis,
    pub principal: String,
    pub app: Option<String>,
    pub client: Option<String>,
    /// How the query arrived (`library`, `DoGet`, `GetFlightInfo`, ...).
    pub method: String,
    pub statement_sha256: String,
    pub statement: Option<String>,
    pub policy_version: String,
    pub decision: Decision,
    pub tables: Vec<AuditTable>,
    pub error: Option<String>,
    /// The gateway replica that answered (`replica` in `meshgate.toml`): with several replicas
    /// on one store, which process ran the query under which policy version.
    #[serde(default)]
    pub replica: Option<String>,
}

impl AuditRecord {
    /// The consumer application: the caller's `app` attribute, or the principal itself for
    /// callers without one (a person at a SQL prompt).
    pub fn consumer_app(&self) -> String {
        self.app.clone().unwrap_or_else(|| self.principal.clone())
    }
}

/// One product table a query touched, and how the caller's policy shaped it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditTable {
    pub product: String,
    pub table: String,
    pub access: TableAccess,
    /// `<product>@v<version>`; `None` when the query was denied before a policy applied.
    pub policy_id: Option<String>,
    /// Ids of the row-filter rules applied.
    pub row_filters: Vec<String>,
    /// Grants that admitted the caller.
    pub grant_ids: Vec<String>,
    /// The columns read, in table order.
    pub columns: Vec<AuditColumn>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditColumn {
    pub name: String,
    /// `clear`, `mask(email)`, `tokenize(reference)`, ...
    pub treatment: String,
    /// The rule that decided the treatment; `None` when the global default did.
    pub rule: Option<String>,
}

/// How a query ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditOutcome {
    pub status: QueryStatus,
    pub rows_returned: u64,
    pub bytes_returned: u64,
    pub duration_ms: u64,
    pub error: Option<String>,
    /// The workers a distributed query's stages ran on (empty: it ran in the gateway).
    #[serde(default)]
    pub workers: Vec<String>,
}

/// An audit record as stored: the record and, once the query ended, its outcome.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAudit {
    pub record: AuditRecord,
    pub status: QueryStatus,
    pub rows_returned: Option<u64>,
    pub bytes_returned: Option<u64>,
    pub duration_ms: Option<u64>,
    pub finished_at: Option<Millis>,
    /// The workers a distributed query's stages ran on (empty: it ran in the gateway alone).
    #[serde(default)]
    pub workers: Vec<String>,
}

impl StoredAudit {
    /// Products this record touches.
    pub fn products(&self) -> impl Iterator<Item = &str> {
        self.record.tables.iter().map(|t| t.product.as_str())
    }
}

/// A data flow: one product's data reaching one consumer application, aggregated over the
/// allowed queries in the audit log.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flow {
    pub product: String,
    pub consumer_app: String,
    /// Principals that ran the queries.
    pub principals: Vec<String>,
    /// `table.column` names read.
    pub columns: Vec<String>,
    /// `table.column: treatment` for every column read under a treatment other than clear.
    pub treatments: Vec<String>,
    pub queries: u64,
    pub rows: u64,
    pub first_access: Millis,
    pub last_access: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_read_as_iso_8601_utc() {
        assert_eq!(iso8601(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso8601(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso8601(1_795_953_805_123), "2026-11-29T12:03:25.123Z");
        assert_eq!(iso8601(-1), "1969-12-31T23:59:59.999Z");
    }
}

/// One quality rule's latest check, as `mesh.check_quality` returns it to a product's owner
/// (`mesh_catalog.quality` has the same fields).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QualityCheck {
    pub product: String,
    pub version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<String>,
    pub rule: String,
    /// What the rule expects, e.g. `nullValues = 0 rows`.
    pub expectation: String,
    /// `passed`, `breached`, `failed`, `not_checked` or `pending`.
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured: Option<f64>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub detail: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked_at: Option<Millis>,
}
