"""Substrait plans from Python: DataFusion's Python producer writes the plan over the schemas
the caller sees, and the ADBC driver sends it (bytes to `execute` are a Substrait plan; the
driver prepares it with CreatePreparedSubstraitPlan). The gateway must answer exactly what the
same SQL answers, rows, masks and tokens included, and refuse it as it refuses the SQL.
"""

import adbc_driver_manager
import pyarrow as pa
import pytest

from conftest import connect

QUERIES = [
    "SELECT lob, count(*) AS n, min(tax_id) AS first_token, max(contact_email) AS email "
    "FROM reference.counterparties GROUP BY lob ORDER BY lob",
    "SELECT p.lob, count(*) AS n, max(p.card_number) AS card FROM payments.transactions p "
    "WHERE p.amount > 100 GROUP BY p.lob ORDER BY p.lob",
]
TABLES = {"reference": ["counterparties"], "payments": ["transactions"]}


def producer_context(server, user):
    """A DataFusion context with the products' schemas as `user` sees them (for a product
    they may not read, as risk-officer sees it, as an attacker would write the plan), empty,
    as a client sets it up from GetTables."""
    from datafusion import SessionContext

    ctx = SessionContext()
    for schema, tables in TABLES.items():
        ctx.sql(f"CREATE SCHEMA {schema}").collect()
        for table in tables:
            for who in (user, "risk-officer"):
                with connect(server, who) as conn:
                    try:
                        arrow = conn.adbc_get_table_schema(table, db_schema_filter=schema)
                        break
                    except adbc_driver_manager.Error:
                        continue
            ctx.register_record_batches(f"{schema}.{table}", [[pa.RecordBatch.from_pylist([], schema=arrow)]])
    return ctx


def plan_of(ctx, sql):
    from datafusion.substrait import Producer

    return Producer.to_substrait_plan(ctx.sql(sql).logical_plan(), ctx).encode()


@pytest.mark.parametrize("user", ["cib-reporting", "ccb-fraud", "risk-officer", "intern"])
def test_a_plan_from_python_answers_what_its_sql_answers(server, user):
    ctx = producer_context(server, user)
    with connect(server, user) as conn, conn.cursor() as cur:
        for sql in QUERIES:
            plan = plan_of(ctx, sql)
            assert b"counterparties" in plan or b"transactions" in plan
            try:
                cur.execute(sql)
                expected = cur.fetchall()
            except adbc_driver_manager.Error as refused:
                with pytest.raises(adbc_driver_manager.Error) as raised:
                    cur.execute(plan)
                    cur.fetchall()
                # The same reason: the product named, how to ask for access.
                assert "permission denied" in str(raised.value) and "permission denied" in str(refused)
                continue
            cur.execute(plan)
            assert cur.fetchall() == expected, (user, sql)


def test_a_plan_over_a_hidden_column_is_refused(server):
    """A plan written over risk-officer's schema names `internal_rating`, which cib-reporting
    does not have: refused, as naming it in SQL is."""
    ctx = producer_context(server, "risk-officer")
    plan = plan_of(ctx, "SELECT count(*) AS n FROM reference.counterparties")
    with connect(server, "risk-officer") as conn, conn.cursor() as cur:
        cur.execute(plan)
        assert cur.fetchall() == [(30000,)]
    with connect(server, "cib-reporting") as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error, match="internal_rating"):
            cur.execute(plan)
            cur.fetchall()
