//! Records to and from table rows, shared by the SQLite and PostgreSQL stores: both keep the
//! same tables and columns (times as milliseconds in 64-bit integers, lists as JSON text), so
//! a record is bound and read back by one piece of code whichever store holds it.

use std::collections::BTreeMap;

use sqlx::query::Query;
use sqlx::{ColumnIndex, Database, Decode, Encode, Row, Type};

use crate::error::StoreError;
use meshgate_api::{
    AccessRequest, AuditColumn, AuditOutcome, AuditRecord, AuditTable, Decision, Grant,
    QueryStatus, StoredAudit,
};

/// Typed reads of a row's columns by name, for any sqlx row.
pub(crate) trait Fields {
    fn text(&self, column: &str) -> Result<String, StoreError>;
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError>;
    fn int(&self, column: &str) -> Result<i64, StoreError>;
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError>;
}

impl<R> Fields for R
where
    R: Row,
    for<'c> &'c str: ColumnIndex<R>,
    for<'r> String: Decode<'r, R::Database> + Type<R::Database>,
    for<'r> i64: Decode<'r, R::Database> + Type<R::Database>,
{
    fn text(&self, column: &str) -> Result<String, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn opt_text(&self, column: &str) -> Result<Option<String>, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn int(&self, column: &str) -> Result<i64, StoreError> {
        Ok(self.try_get(column)?)
    }
    fn opt_int(&self, column: &str) -> Result<Option<i64>, StoreError> {
        Ok(self.try_get(column)?)
    }
}

pub(crate) fn to_json(list: &Option<Vec<String>>) -> Option<String> {
    list.as_ref().map(|l| list_json(l))
}

pub(crate) fn from_json(text: Option<String>) -> Result<Option<Vec<String>>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("a list `{t}`: {e}")))
    })
    .transpose()
}

pub(crate) fn list_json(list: &[String]) -> String {
    serde_json::to_string(list).unwrap_or_else(|_| "[]".into())
}

fn parse<T: std::str::FromStr<Err = String>>(text: String) -> Result<T, StoreError> {
    text.parse().map_err(StoreError::Corrupt)
}

fn unsigned(value: Option<i64>) -> Option<u64> {
    value.map(|v| u64::try_from(v).unwrap_or(0))
}

pub(crate) fn signed(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// The status a new audit record starts in.
pub(crate) fn initial_status(decision: Decision) -> QueryStatus {
    match decision {
        Decision::Allow => QueryStatus::Running,
        Decision::Deny => QueryStatus::Denied,
        Decision::Error => QueryStatus::Failed,
    }
}

/// The columns of `access_requests`, in the order [`bind_request`] binds them.
pub(crate) const INSERT_REQUEST: &str = "INSERT INTO access_requests (id, requester, product, \
     columns, purpose, valid_days, state, created_at, expires_at, decided_at, decided_by, \
     decision_comment, grant_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

/// The columns of `grants`, in the order [`bind_grant`] binds them.
pub(crate) const INSERT_GRANT: &str = "INSERT INTO grants (id, request_id, principal, product, \
     domain, columns, row_filter, purpose, state, approved_by, created_at, valid_until, \
     changed_at, changed_by, change_reason) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)";

/// The columns of `audit`, in the order [`bind_audit`] binds them.
pub(crate) const INSERT_AUDIT: &str = "INSERT INTO audit (query_id, started_at, principal, app, \
     client, method, statement_sha256, statement, policy_version, decision, status, error, \
     replica) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13)";

pub(crate) const INSERT_AUDIT_TABLE: &str = "INSERT INTO audit_tables (query_id, product, tbl, \
     access, policy_id, row_filters, grant_ids) VALUES ($1, $2, $3, $4, $5, $6, $7)";

pub(crate) const INSERT_AUDIT_COLUMN: &str = "INSERT INTO audit_columns (query_id, product, tbl, \
     col, treatment, rule) VALUES ($1, $2, $3, $4, $5, $6)";

/// `insert` (one of the `INSERT_AUDIT*` statements) for `rows` rows at once: its `VALUES`
/// tuple repeated, placeholders numbered on (`($1, $2), ($3, $4)`), so that a batch of audit
/// records is written in a few statements instead of one per row.
fn insert_rows(insert: &str, rows: usize) -> String {
    let (head, arity) = insert_arity(insert);
    format!("{head} VALUES {}", values(arity, rows))
}

/// `rows` tuples of `arity` placeholders, numbered on: `($1, $2), ($3, $4)`.
fn values(arity: usize, rows: usize) -> String {
    let mut sql = String::with_capacity(rows * arity * 5 + 8);
    for row in 0..rows {
        sql.push_str(if row == 0 { "(" } else { ", (" });
        for column in 0..arity {
            if column > 0 {
                sql.push_str(", ");
            }
            sql.push_str(&format!("${}", row * arity + column + 1));
        }
        sql.push(')');
    }
    sql
}

/// How many rows of `arity` placeholders one statement may carry: SQLite builds before 3.32
/// take at most 999 parameters per statement (PostgreSQL 65,535).
fn per_statement(arity: usize) -> usize {
    (999 / arity.max(1)).max(1)
}

/// An `INSERT ... VALUES (...)` statement's head and the number of placeholders in its tuple.
fn insert_arity(insert: &str) -> (&str, usize) {
    let (head, tuple) = insert.split_once(" VALUES ").unwrap_or((insert, ""));
    (head, tuple.matches('$').count())
}

pub(crate) const DECIDE_REQUEST: &str = "UPDATE access_requests SET state = $1, decided_at = $2, \
     decided_by = $3, decision_comment = $4, grant_id = $5 WHERE id = $6 AND state = $7";

pub(crate) const UPDATE_GRANT: &str = "UPDATE grants SET state = $1, valid_until = $2, \
     changed_at = $3, changed_by = $4, change_reason = $5 WHERE id = $6 AND state = $7";

pub(crate) const EXPIRE_REQUESTS: &str = "UPDATE access_requests SET state = 'expired', \
     decided_at = $1 WHERE state = 'pending' AND expires_at <= $1";

pub(crate) const EXPIRE_GRANTS: &str = "UPDATE grants SET state = 'expired', changed_at = $1, \
     changed_by = 'meshgate', change_reason = 'valid_until passed' \
     WHERE state IN ('active', 'suspended') AND valid_until <= $1";

pub(crate) const BUMP_GENERATION: &str =
    "UPDATE grant_generation SET value = value + 1 WHERE id = 1";

pub(crate) const GENERATION: &str = "SELECT value FROM grant_generation WHERE id = 1";

pub(crate) const GRANTS_IN_FORCE: &str =
    "SELECT * FROM grants WHERE state = 'active' AND valid_until > $1 ORDER BY id";

/// `$1`: now, `$2`: the start of the lapsed window.
pub(crate) const LAPSED_GRANTS: &str = "SELECT * FROM grants WHERE state = 'suspended' \
     OR (state IN ('active', 'expired') AND valid_until <= $1 AND valid_until > $2) ORDER BY id";

/// Placeholders per outcome in [`finish_queries`], in the order [`bind_outcome`] binds them.
const FINISH_QUERIES_ARITY: usize = 8;

/// One statement that writes `rows` outcomes onto their records, so that a commit's
/// outcomes cost the store one statement, not one each.
/// `VALUES` names its columns `column1`... in both SQLite and PostgreSQL; a query's outcome
/// is written once, so no record matches two tuples.
fn finish_queries(rows: usize) -> String {
    format!(
        "UPDATE audit SET status = v.column1, rows_returned = v.column2, \
         bytes_returned = v.column3, duration_ms = v.column4, finished_at = v.column5, \
         error = COALESCE(v.column6, audit.error), workers = v.column7 \
         FROM (VALUES {}) AS v WHERE audit.query_id = v.column8",
        values(FINISH_QUERIES_ARITY, rows)
    )
}

/// One statement's worth of a batch of audit writes (see [`AuditBatch::statements`]).
pub(crate) enum AuditRows<'a> {
    Records(&'a [&'a AuditRecord]),
    Tables(&'a [(&'a str, &'a AuditTable)]),
    Columns(&'a [(&'a str, &'a AuditTable, &'a AuditColumn)]),
    Outcomes(&'a [(&'a str, &'a AuditOutcome)]),
}

impl<'a> AuditRows<'a> {
    /// The statement.
    pub(crate) fn statement(&self) -> String {
        match self {
            Self::Records(r) => insert_rows(INSERT_AUDIT, r.len()),
            Self::Tables(t) => insert_rows(INSERT_AUDIT_TABLE, t.len()),
            Self::Columns(c) => insert_rows(INSERT_AUDIT_COLUMN, c.len()),
            Self::Outcomes(o) => finish_queries(o.len()),
        }
    }

    /// `q` with this statement's arguments bound.
    pub(crate) fn bind<Q: Binds<'a>>(&self, q: Q) -> Q {
        match self {
            Self::Records(r) => r.iter().fold(q, |q, a| bind_audit(q, a)),
            Self::Tables(t) => t.iter().fold(q, |q, (id, t)| bind_audit_table(q, id, t)),
            Self::Columns(c) => c
                .iter()
                .fold(q, |q, (id, t, c)| bind_audit_column(q, id, t, c)),
            Self::Outcomes(o) => o.iter().fold(q, |q, (id, o)| bind_outcome(q, id, o)),
        }
    }
}

/// A batch's records, their tables and columns, and outcomes, to be written together.
pub(crate) struct AuditBatch<'a> {
    records: Vec<&'a AuditRecord>,
    tables: Vec<(&'a str, &'a AuditTable)>,
    columns: Vec<(&'a str, &'a AuditTable, &'a AuditColumn)>,
    outcomes: Vec<(&'a str, &'a AuditOutcome)>,
}

impl<'a> AuditBatch<'a> {
    pub(crate) fn new(batch: &'a [crate::group_commit::AuditWrite]) -> Self {
        use crate::group_commit::AuditWrite;
        let records: Vec<&AuditRecord> = batch
            .iter()
            .filter_map(|w| match w {
                AuditWrite::Start(a) => Some(a),
                AuditWrite::End(..) => None,
            })
            .collect();
        let tables: Vec<(&str, &AuditTable)> = records
            .iter()
            .flat_map(|a| a.tables.iter().map(|t| (a.query_id.as_str(), t)))
            .collect();
        let columns = tables
            .iter()
            .flat_map(|(id, t)| t.columns.iter().map(move |c| (*id, *t, c)))
            .collect();
        let outcomes = batch
            .iter()
            .filter_map(|w| match w {
                AuditWrite::End(id, o) => Some((id.as_str(), o)),
                AuditWrite::Start(..) => None,
            })
            .collect();
        Self {
            records,
            tables,
            columns,
            outcomes,
        }
    }

    /// The statements that write the batch, in order: records first, then their tables and
    /// columns, then the outcomes (each follows its own record, in this batch or an earlier
    /// one), each statement within the 999 placeholders older SQLite builds take (see
    /// [`per_statement`]).
    pub(crate) fn statements(&self) -> Vec<AuditRows<'_>> {
        let mut out = Vec::new();
        out.extend(
            self.records
                .chunks(per_statement(insert_arity(INSERT_AUDIT).1))
                .map(AuditRows::Records),
        );
        out.extend(
            self.tables
                .chunks(per_statement(insert_arity(INSERT_AUDIT_TABLE).1))
                .map(AuditRows::Tables),
        );
        out.extend(
            self.columns
                .chunks(per_statement(insert_arity(INSERT_AUDIT_COLUMN).1))
                .map(AuditRows::Columns),
        );
        out.extend(
            self.outcomes
                .chunks(per_statement(FINISH_QUERIES_ARITY))
                .map(AuditRows::Outcomes),
        );
        out
    }
}

/// A query whose arguments every store binds the same way.
pub(crate) trait Binds<'q> {
    fn text(self, value: &'q str) -> Self;
    fn opt_text(self, value: Option<&'q str>) -> Self;
    fn owned_opt_text(self, value: Option<String>) -> Self;
    fn int(self, value: i64) -> Self;
    fn opt_int(self, value: Option<i64>) -> Self;
}

impl<'q, DB> Binds<'q> for Query<'q, DB, <DB as Database>::Arguments<'q>>
where
    DB: Database,
    &'q str: Encode<'q, DB> + Type<DB>,
    Option<&'q str>: Encode<'q, DB> + Type<DB>,
    Option<String>: Encode<'q, DB> + Type<DB>,
    i64: Encode<'q, DB> + Type<DB>,
    Option<i64>: Encode<'q, DB> + Type<DB>,
{
    fn text(self, value: &'q str) -> Self {
        self.bind(value)
    }
    fn opt_text(self, value: Option<&'q str>) -> Self {
        self.bind(value)
    }
    fn owned_opt_text(self, value: Option<String>) -> Self {
        self.bind(value)
    }
    fn int(self, value: i64) -> Self {
        self.bind(value)
    }
    fn opt_int(self, value: Option<i64>) -> Self {
        self.bind(value)
    }
}

pub(crate) fn bind_request<'q, Q: Binds<'q>>(q: Q, r: &'q AccessRequest) -> Q {
    q.text(&r.id)
        .text(&r.requester)
        .text(&r.product)
        .owned_opt_text(to_json(&r.columns))
        .text(&r.purpose)
        .int(i64::from(r.valid_days))
        .text(r.state.as_str())
        .int(r.created_at)
        .int(r.expires_at)
        .opt_int(r.decided_at)
        .opt_text(r.decided_by.as_deref())
        .opt_text(r.decision_comment.as_deref())
        .opt_text(r.grant_id.as_deref())
}

pub(crate) fn bind_grant<'q, Q: Binds<'q>>(q: Q, g: &'q Grant) -> Q {
    q.text(&g.id)
        .opt_text(g.request_id.as_deref())
        .text(&g.principal)
        .text(&g.product)
        .text(&g.domain)
        .owned_opt_text(to_json(&g.columns))
        .opt_text(g.row_filter.as_deref())
        .text(&g.purpose)
        .text(g.state.as_str())
        .text(&g.approved_by)
        .int(g.created_at)
        .int(g.valid_until)
        .int(g.changed_at)
        .text(&g.changed_by)
        .opt_text(g.change_reason.as_deref())
}

/// [`DECIDE_REQUEST`]'s arguments.
pub(crate) fn bind_decision<'q, Q: Binds<'q>>(q: Q, r: &'q AccessRequest, expected: &'q str) -> Q {
    q.text(r.state.as_str())
        .opt_int(r.decided_at)
        .opt_text(r.decided_by.as_deref())
        .opt_text(r.decision_comment.as_deref())
        .opt_text(r.grant_id.as_deref())
        .text(&r.id)
        .text(expected)
}

/// [`UPDATE_GRANT`]'s arguments.
pub(crate) fn bind_grant_update<'q, Q: Binds<'q>>(q: Q, g: &'q Grant, expected: &'q str) -> Q {
    q.text(g.state.as_str())
        .int(g.valid_until)
        .int(g.changed_at)
        .text(&g.changed_by)
        .opt_text(g.change_reason.as_deref())
        .text(&g.id)
        .text(expected)
}

pub(crate) fn bind_audit<'q, Q: Binds<'q>>(q: Q, a: &'q AuditRecord) -> Q {
    q.text(&a.query_id)
        .int(a.started_at)
        .text(&a.principal)
        .opt_text(a.app.as_deref())
        .opt_text(a.client.as_deref())
        .text(&a.method)
        .text(&a.statement_sha256)
        .opt_text(a.statement.as_deref())
        .text(&a.policy_version)
        .text(a.decision.as_str())
        .text(initial_status(a.decision).as_str())
        .opt_text(a.error.as_deref())
        .opt_text(a.replica.as_deref())
}

pub(crate) fn bind_audit_table<'q, Q: Binds<'q>>(q: Q, query_id: &'q str, t: &'q AuditTable) -> Q {
    q.text(query_id)
        .text(&t.product)
        .text(&t.table)
        .text(t.access.as_str())
        .opt_text(t.policy_id.as_deref())
        .owned_opt_text(Some(list_json(&t.row_filters)))
        .owned_opt_text(Some(list_json(&t.grant_ids)))
}

pub(crate) fn bind_audit_column<'q, Q: Binds<'q>>(
    q: Q,
    query_id: &'q str,
    t: &'q AuditTable,
    c: &'q AuditColumn,
) -> Q {
    q.text(query_id)
        .text(&t.product)
        .text(&t.table)
        .text(&c.name)
        .text(&c.treatment)
        .opt_text(c.rule.as_deref())
}

/// One outcome's arguments in [`finish_queries`].
pub(crate) fn bind_outcome<'q, Q: Binds<'q>>(
    q: Q,
    query_id: &'q str,
    o: &'q meshgate_api::AuditOutcome,
) -> Q {
    q.text(o.status.as_str())
        .int(signed(o.rows_returned))
        .int(signed(o.bytes_returned))
        .int(signed(o.duration_ms))
        .int(meshgate_api::now_millis())
        .opt_text(o.error.as_deref())
        .owned_opt_text((!o.workers.is_empty()).then(|| list_json(&o.workers)))
        .text(query_id)
}

pub(crate) fn request_from(row: &impl Fields) -> Result<AccessRequest, StoreError> {
    Ok(AccessRequest {
        id: row.text("id")?,
        requester: row.text("requester")?,
        product: row.text("product")?,
        columns: from_json(row.opt_text("columns")?)?,
        purpose: row.text("purpose")?,
        valid_days: u32::try_from(row.int("valid_days")?).unwrap_or(0),
        state: parse(row.text("state")?)?,
        created_at: row.int("created_at")?,
        expires_at: row.int("expires_at")?,
        decided_at: row.opt_int("decided_at")?,
        decided_by: row.opt_text("decided_by")?,
        decision_comment: row.opt_text("decision_comment")?,
        grant_id: row.opt_text("grant_id")?,
    })
}

pub(crate) fn grant_from(row: &impl Fields) -> Result<Grant, StoreError> {
    Ok(Grant {
        id: row.text("id")?,
        request_id: row.opt_text("request_id")?,
        principal: row.text("principal")?,
        product: row.text("product")?,
        domain: row.text("domain")?,
        columns: from_json(row.opt_text("columns")?)?,
        row_filter: row.opt_text("row_filter")?,
        purpose: row.text("purpose")?,
        state: parse(row.text("state")?)?,
        approved_by: row.text("approved_by")?,
        created_at: row.int("created_at")?,
        valid_until: row.int("valid_until")?,
        changed_at: row.int("changed_at")?,
        changed_by: row.text("changed_by")?,
        change_reason: row.opt_text("change_reason")?,
    })
}

/// One page of the audit log from its three tables' rows (each in write order): the records,
/// with their tables and columns, oldest first as `audit` is ordered.
pub(crate) fn audit_page(
    audit: &[impl Fields],
    tables: &[impl Fields],
    columns: &[impl Fields],
) -> Result<Vec<StoredAudit>, StoreError> {
    let mut by_table: BTreeMap<(String, String, String), Vec<AuditColumn>> = BTreeMap::new();
    for row in columns {
        by_table
            .entry((
                row.text("query_id")?,
                row.text("product")?,
                row.text("tbl")?,
            ))
            .or_default()
            .push(AuditColumn {
                name: row.text("col")?,
                treatment: row.text("treatment")?,
                rule: row.opt_text("rule")?,
            });
    }
    let mut by_query: BTreeMap<String, Vec<AuditTable>> = BTreeMap::new();
    for row in tables {
        let query_id = row.text("query_id")?;
        let product = row.text("product")?;
        let table = row.text("tbl")?;
        let cols = by_table
            .remove(&(query_id.clone(), product.clone(), table.clone()))
            .unwrap_or_default();
        by_query.entry(query_id).or_default().push(AuditTable {
            product,
            table,
            access: parse(row.text("access")?)?,
            policy_id: row.opt_text("policy_id")?,
            row_filters: from_json(row.opt_text("row_filters")?)?.unwrap_or_default(),
            grant_ids: from_json(row.opt_text("grant_ids")?)?.unwrap_or_default(),
            columns: cols,
        });
    }
    audit
        .iter()
        .map(|row| {
            let query_id = row.text("query_id")?;
            Ok(StoredAudit {
                record: AuditRecord {
                    tables: by_query.remove(&query_id).unwrap_or_default(),
                    query_id,
                    started_at: row.int("started_at")?,
                    principal: row.text("principal")?,
                    app: row.opt_text("app")?,
                    client: row.opt_text("client")?,
                    method: row.text("method")?,
                    statement_sha256: row.text("statement_sha256")?,
                    statement: row.opt_text("statement")?,
                    policy_version: row.text("policy_version")?,
                    decision: parse(row.text("decision")?)?,
                    error: row.opt_text("error")?,
                    replica: row.opt_text("replica")?,
                },
                status: parse(row.text("status")?)?,
                rows_returned: unsigned(row.opt_int("rows_returned")?),
                bytes_returned: unsigned(row.opt_int("bytes_returned")?),
                duration_ms: unsigned(row.opt_int("duration_ms")?),
                finished_at: row.opt_int("finished_at")?,
                workers: from_json(row.opt_text("workers")?)?.unwrap_or_default(),
            })
        })
        .collect()
}

/// The arguments of a viewer's rule: (sees everything, their id, the products they decide
/// as a JSON array).
pub(crate) fn visibility(visible: Option<&crate::VisibleTo>) -> (bool, String, String) {
    match visible {
        None => (true, String::new(), "[]".to_string()),
        Some(v) => (false, v.principal.clone(), list_json(&v.products)),
    }
}

/// An audit read's filter as the page queries bind it.
pub(crate) struct AuditBinds {
    pub(crate) principal: Option<String>,
    pub(crate) since: Option<i64>,
    pub(crate) until: Option<i64>,
    pub(crate) app: Option<String>,
    pub(crate) decision: Option<String>,
    pub(crate) product: Option<String>,
    /// `None`: no limit.
    pub(crate) limit: Option<i64>,
}

pub(crate) fn audit_filter(filter: &crate::AuditFilter) -> AuditBinds {
    AuditBinds {
        principal: filter.principal.clone(),
        since: filter.since,
        until: filter.until,
        app: filter.app.clone(),
        decision: filter.decision.clone(),
        product: filter.product.clone(),
        limit: filter.limit.map(|l| i64::try_from(l).unwrap_or(i64::MAX)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn multi_row_inserts_number_their_placeholders_on() {
        assert_eq!(
            insert_rows("INSERT INTO t (a, b) VALUES ($1, $2)", 3),
            "INSERT INTO t (a, b) VALUES ($1, $2), ($3, $4), ($5, $6)"
        );
        assert_eq!(per_statement(insert_arity(INSERT_AUDIT).1), 999 / 13);
        assert_eq!(insert_rows(INSERT_AUDIT_COLUMN, 1), INSERT_AUDIT_COLUMN);
    }

    #[test]
    fn a_batchs_outcomes_are_one_statement_within_sqlites_placeholder_limit() {
        let outcome = AuditOutcome {
            status: QueryStatus::Ok,
            rows_returned: 1,
            bytes_returned: 1,
            duration_ms: 1,
            error: None,
            workers: Vec::new(),
        };
        let writes: Vec<_> = (0..200)
            .map(|i| crate::group_commit::AuditWrite::End(format!("q{i}"), outcome.clone()))
            .collect();
        let batch = AuditBatch::new(&writes);
        let statements: Vec<String> = batch
            .statements()
            .iter()
            .map(AuditRows::statement)
            .collect();
        // 124 outcomes of 8 placeholders fit under 999, the other 76 in a second statement.
        assert_eq!(statements.len(), 2);
        assert!(statements[0].starts_with("UPDATE audit SET status = v.column1"));
        assert!(statements[0].contains("(VALUES ($1, $2, $3, $4, $5, $6, $7, $8), ($9, "));
        assert!(statements[0].ends_with("$992)) AS v WHERE audit.query_id = v.column8"));
        assert!(statements[1].ends_with("$608)) AS v WHERE audit.query_id = v.column8"));
    }
}
