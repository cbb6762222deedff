"""The reference mesh through Flight SQL with the ADBC driver (DB-API), as a consumer sees it.

Checks the rows of docs/reference-mesh.md's "What each principal sees" for cib-reporting,
risk-officer and intern (and token agreement across principals), plus per-caller metadata.
"""

import re

import adbc_driver_manager
import pyarrow as pa
import pytest

from conftest import connect

TOKEN = re.compile(r"^tok_[A-Za-z0-9_-]{43}$")
MASKED_EMAIL = re.compile(r"^\*\*\*@[a-z]+-[a-z]+\.example$")
COUNTERPARTY_COLUMNS = [
    "counterparty_id", "legal_name", "lob", "country", "tax_id", "contact_email", "onboarded_on",
]


def query(server, user, sql) -> pa.Table:
    with connect(server, user) as conn, conn.cursor() as cur:
        cur.execute(sql)
        return cur.fetch_arrow_table()


def error_of(server, user, sql) -> str:
    with connect(server, user) as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as raised:
            cur.execute(sql)
            cur.fetch_arrow_table()
        return str(raised.value)


def test_cib_reporting_sees_cib_counterparties_protected(server):
    table = query(server, "cib-reporting", "SELECT * FROM reference.counterparties")
    assert table.num_rows == 15_000
    assert table.column_names == COUNTERPARTY_COLUMNS
    assert set(table.column("lob").to_pylist()) == {"CIB"}
    assert all(TOKEN.match(t) for t in table.column("tax_id").to_pylist())
    assert all(MASKED_EMAIL.match(e) for e in table.column("contact_email").to_pylist())
    # Strings arrive as plain `string`, readable by clients without view-type support.
    assert table.schema.field("legal_name").type == pa.string()
    assert table.schema.field("onboarded_on").type == pa.date32()


def test_cib_reporting_cannot_name_the_hidden_column(server):
    message = error_of(server, "cib-reporting", "SELECT internal_rating FROM reference.counterparties")
    assert "internal_rating" in message


def test_cib_reporting_trades_and_denials(server):
    trades = query(server, "cib-reporting", "SELECT * FROM markets.trades")
    expected = query(server, "risk-officer", "SELECT count(*) AS n FROM markets.trades WHERE lob = 'CIB'")
    assert trades.num_rows == expected.column("n")[0].as_py()
    assert set(trades.column("lob").to_pylist()) == {"CIB"}
    assert all(TOKEN.match(t) for t in trades.column("trader_id").to_pylist())
    message = error_of(server, "cib-reporting", "SELECT * FROM payments.transactions")
    assert "payments.transactions" in message and "Request access" in message


def test_risk_officer_sees_everything_with_its_protections(server):
    counterparties = query(server, "risk-officer", "SELECT * FROM reference.counterparties")
    assert counterparties.num_rows == 30_000
    assert counterparties.column_names == COUNTERPARTY_COLUMNS[:6] + ["internal_rating", "onboarded_on"]
    assert set(counterparties.column("internal_rating").to_pylist()) <= {"AAA", "AA", "A", "BBB", "BB", "B", "CCC"}
    assert all(TOKEN.match(t) for t in counterparties.column("tax_id").to_pylist())
    assert all(MASKED_EMAIL.match(e) for e in counterparties.column("contact_email").to_pylist())

    transactions = query(server, "risk-officer", "SELECT * FROM payments.transactions")
    assert transactions.num_rows == 200_000
    assert all(re.match(r"^\*{12}\d{4}$", c) for c in transactions.column("card_number").to_pylist())
    assert transactions.schema.field("amount").type == pa.decimal128(18, 2)
    assert transactions.schema.field("booked_at").type == pa.timestamp("us", tz="UTC")

    trades = query(server, "risk-officer", "SELECT * FROM markets.trades")
    assert trades.num_rows == 50_000
    assert all(re.match(r"^T\d{5}$", t) for t in trades.column("trader_id").to_pylist())


def test_tokens_agree_across_principals(server):
    sql = "SELECT counterparty_id, tax_id FROM reference.counterparties WHERE counterparty_id IN (10, 20, 30) ORDER BY 1"
    cib = query(server, "cib-reporting", sql).to_pylist()
    risk = query(server, "risk-officer", sql).to_pylist()
    clear = query(server, "ref-owner", sql).to_pylist()
    assert len(cib) == 3 and cib == risk
    assert all(c["tax_id"] != t["tax_id"] for c, t in zip(clear, cib))


@pytest.mark.parametrize("product", ["reference.counterparties", "payments.transactions", "markets.trades"])
def test_intern_is_denied_every_product(server, product):
    message = error_of(server, "intern", f"SELECT * FROM {product}")
    assert f"`{product}`" in message and "Request access" in message


def test_metadata_shows_each_caller_only_its_tables_and_columns(server):
    def objects(user):
        with connect(server, user) as conn:
            listing = conn.adbc_get_objects(depth="all", catalog_filter="mesh").read_all().to_pylist()
        tables = {}
        for catalog in listing:
            for schema in catalog["catalog_db_schemas"] or []:
                if schema["db_schema_name"] == "mesh_catalog":
                    continue  # the mesh catalog's own tables, listed for everyone (test_access.py)
                for table in schema["db_schema_tables"] or []:
                    columns = [c["column_name"] for c in table["table_columns"] or []]
                    tables[f"{schema['db_schema_name']}.{table['table_name']}"] = columns
        return tables

    cib = objects("cib-reporting")
    assert sorted(cib) == ["markets.trades", "reference.counterparties"]
    assert cib["reference.counterparties"] == COUNTERPARTY_COLUMNS
    risk = objects("risk-officer")
    assert sorted(risk) == ["markets.trades", "payments.transactions", "reference.counterparties"]
    assert "internal_rating" in risk["reference.counterparties"]
    assert objects("intern") == {}


def test_wrong_password_is_refused(server):
    with pytest.raises(adbc_driver_manager.Error) as raised:
        with connect(server, "cib-reporting", "not-the-password") as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
    assert "authentication failed" in str(raised.value).lower() or "unauthenticated" in str(raised.value).lower()
