"""SQLAlchemy 2 over the ADBC Flight SQL driver (`sqlalchemy-adbc`, the dialect notebooks and
Superset can use): engine creation, reflection per principal (equal to what Flight
`GetObjects` lists), a reflected table queried through Core with grouping and a bound
parameter, and a denied product refused with its reason.

`sqlalchemy-adbc` 0.3 reads the URL password as a bearer token; a user with a password
passes `username` and `password` in the query string, which go to the ADBC driver as they
are. Its `get_table_names` keeps only tables whose type is `table` in lower case, and
Flight SQL servers (meshgate included, as JDBC expects) say `TABLE`, so it lists none: the
README says so; reflection by name works.
"""

import pytest
from sqlalchemy import MetaData, Table, bindparam, create_engine, func, select

from conftest import assert_reflection_matches, connect


def engine_for(server, user):
    host_port = server.removeprefix("grpc://")
    return create_engine(
        f"adbc+flightsql://{host_port}?tls=false&username={user}&password={user}-pw"
    )


def test_reflection_is_what_get_objects_lists_for_each_principal(server):
    # Not `get_table_names`: this dialect lists none from Flight SQL servers (module doc).
    assert_reflection_matches(server, engine_for, table_names=False)


def test_a_reflected_table_is_queried_through_core(server):
    engine = engine_for(server, "cib-reporting")
    counterparties = Table("counterparties", MetaData(), autoload_with=engine, schema="reference")
    assert "internal_rating" not in counterparties.c, "hidden from cib-reporting"
    query = (
        select(counterparties.c.lob, func.count().label("n"))
        .where(counterparties.c.counterparty_id > bindparam("lowest"))
        .group_by(counterparties.c.lob)
    )
    with engine.connect() as conn:
        rows = conn.execute(query, {"lowest": 100}).fetchall()
    with connect(server, "cib-reporting") as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT lob, count(*) FROM reference.counterparties WHERE counterparty_id > 100 GROUP BY lob"
        )
        assert [tuple(r) for r in rows] == cur.fetchall()
    assert [r[0] for r in rows] == ["CIB"], "only CIB's rows"


def test_a_denied_product_is_refused_with_its_reason(server):
    engine = engine_for(server, "cib-reporting")
    with engine.connect() as conn, pytest.raises(Exception, match="may not read product `payments.transactions`"):
        conn.exec_driver_sql("SELECT count(*) FROM payments.transactions").fetchall()
