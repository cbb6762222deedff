-- meshgate governance store on PostgreSQL, version 1: access requests, grants, the audit log.
-- The same tables and columns as the SQLite store's versions 1 and 2. Times are milliseconds
-- since the Unix epoch (UTC); lists are JSON arrays in text. `seq` keeps write order, which
-- SQLite's rowid gives for free.

CREATE TABLE access_requests (
    id               TEXT PRIMARY KEY,
    requester        TEXT NOT NULL,
    product          TEXT NOT NULL,
    columns          TEXT,               -- NULL: the whole product
    purpose          TEXT NOT NULL,
    valid_days       BIGINT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'rejected', 'cancelled', 'expired')),
    created_at       BIGINT NOT NULL,
    expires_at       BIGINT NOT NULL,    -- an undecided request expires then
    decided_at       BIGINT,
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
    created_at    BIGINT NOT NULL,
    valid_until   BIGINT NOT NULL,
    changed_at    BIGINT NOT NULL,
    changed_by    TEXT NOT NULL,
    change_reason TEXT
);
CREATE INDEX grants_product ON grants (product);
CREATE INDEX grants_principal ON grants (principal);
CREATE INDEX grants_in_force ON grants (state, valid_until);

-- Bumped in the same transaction as every grant change: each replica tells with one read
-- whether the grants it enforces are current.
CREATE TABLE grant_generation (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    value BIGINT NOT NULL
);
INSERT INTO grant_generation (id, value) VALUES (1, 0);

CREATE TABLE audit (
    seq              BIGSERIAL UNIQUE,
    query_id         TEXT PRIMARY KEY,
    started_at       BIGINT NOT NULL,
    principal        TEXT NOT NULL,
    app              TEXT,
    client           TEXT,
    method           TEXT NOT NULL,
    statement_sha256 TEXT NOT NULL,
    statement        TEXT,               -- only when the gateway is configured to keep it
    policy_version   TEXT NOT NULL,
    decision         TEXT NOT NULL CHECK (decision IN ('allow', 'deny', 'error')),
    status           TEXT NOT NULL CHECK (status IN ('running', 'ok', 'failed', 'denied', 'cancelled')),
    rows_returned    BIGINT,
    bytes_returned   BIGINT,
    duration_ms      BIGINT,
    finished_at      BIGINT,
    error            TEXT
);
CREATE INDEX audit_started_at ON audit (started_at, seq);
CREATE INDEX audit_principal ON audit (principal);

-- One row per product table a query touched; `access`: read, metadata or denied.
CREATE TABLE audit_tables (
    seq         BIGSERIAL UNIQUE,
    query_id    TEXT NOT NULL REFERENCES audit (query_id),
    product     TEXT NOT NULL,
    tbl         TEXT NOT NULL,
    access      TEXT NOT NULL DEFAULT 'read' CHECK (access IN ('read', 'metadata', 'denied')),
    policy_id   TEXT,
    row_filters TEXT NOT NULL,           -- rule ids
    grant_ids   TEXT NOT NULL,
    PRIMARY KEY (query_id, product, tbl)
);
CREATE INDEX audit_tables_product ON audit_tables (product, query_id);

-- One row per column a query read, with the treatment it was read under.
CREATE TABLE audit_columns (
    seq       BIGSERIAL UNIQUE,
    query_id  TEXT NOT NULL REFERENCES audit (query_id),
    product   TEXT NOT NULL,
    tbl       TEXT NOT NULL,
    col       TEXT NOT NULL,
    treatment TEXT NOT NULL,
    rule      TEXT,
    PRIMARY KEY (query_id, product, tbl, col)
);
