"""SQLAlchemy 1.4 over `flightsql-dbapi` (InfluxData's dialect, the one Superset uses with
Flight SQL): `datafusion://user:password@host:port?insecure=True`. Reflection per principal
equals what Flight `GetObjects` lists; a reflected table is queried through Core with
grouping and a bound value; a denied product is refused with its reason. Runs in a venv
of its own (tests/run-all.sh): the dialect needs SQLAlchemy 1.4, the main venv has 2.
"""

import pytest
from sqlalchemy import MetaData, Table, bindparam, create_engine, func, select

from conftest import assert_reflection_matches, connect


def engine_for(server, user):
    host_port = server.removeprefix("grpc://")
    return create_engine(f"datafusion://{user}:{user}-pw@{host_port}?insecure=True")


def test_reflection_is_what_get_objects_lists_for_each_principal(server):
    assert_reflection_matches(server, engine_for)


def test_a_reflected_table_is_queried_through_core(server):
    engine = engine_for(server, "cib-reporting")
    counterparties = Table("counterparties", MetaData(), autoload_with=engine, schema="reference")
    assert "internal_rating" not in counterparties.c, "hidden from cib-reporting"
    # The dialect renders bound values into the statement's text (literal binds), so a value
    # is bound when the expression is built; one given only at execution becomes NULL.
    query = (
        select(counterparties.c.lob, func.count().label("n"))
        .where(counterparties.c.counterparty_id > bindparam("lowest", 100))
        .group_by(counterparties.c.lob)
    )
    with engine.connect() as conn:
        rows = conn.execute(query).fetchall()
    with connect(server, "cib-reporting") as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT lob, count(*) FROM reference.counterparties WHERE counterparty_id > 100 GROUP BY lob"
        )
        assert [tuple(r) for r in rows] == cur.fetchall()


def test_a_denied_product_is_refused_with_its_reason(server):
    engine = engine_for(server, "cib-reporting")
    with engine.connect() as conn, pytest.raises(Exception, match="may not read product `payments.transactions`"):
        conn.execute("SELECT count(*) FROM payments.transactions").fetchall()
