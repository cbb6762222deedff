-- meshgate governance store, version 2: how a query touched each product table it names.
-- `read`: its sealed scan read the table's data; `metadata`: the query showed the caller the
-- table's description or plan (EXPLAIN, DESCRIBE, information_schema) and read no data;
-- `denied`: the caller named the table and was refused.
ALTER TABLE audit_tables ADD COLUMN access TEXT NOT NULL DEFAULT 'read'
    CHECK (access IN ('read', 'metadata', 'denied'));
