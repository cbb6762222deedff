-- meshgate governance store, version 1: access requests, grants, the audit log.
-- Times are milliseconds since the Unix epoch (UTC). Lists are JSON arrays.

CREATE TABLE access_requests (
    id               TEXT PRIMARY KEY,
    requester        TEXT NOT NULL,
    product          TEXT NOT NULL,
    columns          TEXT,               -- NULL: the whole product
    purpose          TEXT NOT NULL,
    valid_days       INTEGER NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'cancelled', 'expired')),
    created_at       INTEGER NOT NULL,
    expires_at       INTEGER NOT NULL,   -- an undecided request expires then
    decided_at       INTEGER,
    decided_by       TEXT,
    decision_comment TEXT,
    grant_id         TEXT
);
CREATE INDEX access_requests_product ON access_requests (product);
CREATE INDEX access_requests_requester ON access_requests (requester);

CREATE TABLE grants (
    id            TEXT PRIMARY KEY,
    request_id    TEXT REFERENCES access_requests (id),
    principal     TEXT NOT NULL,
    product       TEXT NOT NULL,
    domain        TEXT NOT NULL,
    columns       TEXT,                  -- NULL: every column the product policy shows
    row_filter    TEXT,                  -- NULL: every row the product policy shows
    purpose       TEXT NOT NULL,
    state         TEXT NOT NULL CHECK (state IN ('active', 'suspended', 'revoked', 'expired')),
    approved_by   TEXT NOT NULL,
    created_at    INTEGER NOT NULL,
    valid_until   INTEGER NOT NULL,
    changed_at    INTEGER NOT NULL,
    changed_by    TEXT NOT NULL,
    change_reason TEXT
);
CREATE INDEX grants_product ON grants (product);
CREATE INDEX grants_principal ON grants (principal);

-- Bumped in the same transaction as every grant change, so that each gateway (and later each
-- replica) can tell with one read whether the grants it enforces are current.
CREATE TABLE grant_generation (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value INTEGER NOT NULL
);
INSERT INTO grant_generation (id, value) VALUES (1, 0);

CREATE TABLE audit (
    query_id         TEXT PRIMARY KEY,
    started_at       INTEGER NOT NULL,
    principal        TEXT NOT NULL,
    app              TEXT,
    client           TEXT,
    method           TEXT NOT NULL,
    statement_sha256 TEXT NOT NULL,
    statement        TEXT,               -- only when the gateway is configured to keep it
    policy_version   TEXT NOT NULL,
    decision         TEXT NOT NULL CHECK (decision IN ('allow', 'deny', 'error')),
    status           TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'denied', 'cancelled')),
    rows_returned    INTEGER,
    bytes_returned   INTEGER,
    duration_ms      INTEGER,
    finished_at      INTEGER,
    error            TEXT
);
CREATE INDEX audit_started_at ON audit (started_at);
CREATE INDEX audit_principal ON audit (principal);

-- One row per product table a query touched.
CREATE TABLE audit_tables (
    query_id    TEXT NOT NULL REFERENCES audit (query_id),
    product     TEXT NOT NULL,
    tbl         TEXT NOT NULL,
    policy_id   TEXT,
    row_filters TEXT NOT NULL,           -- rule ids
    grant_ids   TEXT NOT NULL,
    PRIMARY KEY (query_id, product, tbl)
);
CREATE INDEX audit_tables_product ON audit_tables (product);

-- One row per column a query read, with the treatment it was read under.
CREATE TABLE audit_columns (
    query_id  TEXT NOT NULL REFERENCES audit (query_id),
    product   TEXT NOT NULL,
    tbl       TEXT NOT NULL,
    col       TEXT NOT NULL,
    treatment TEXT NOT NULL,
    rule      TEXT,
    PRIMARY KEY (query_id, product, tbl, col)
);
