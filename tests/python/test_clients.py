"""The clients consumers already use, against the reference mesh, for several principals.

- the ADBC Flight SQL driver through DB-API: bound parameters (one row and several),
  `adbc_get_objects` with filters, `adbc_get_table_schema`, `adbc_get_info`, table types,
  and the read-only refusal of `executemany`;
- pyarrow's own Flight client speaking Flight SQL by hand (Basic token, raw protobuf
  commands), which is what minimal clients in other languages do;
- Polars reading through an ADBC connection.
"""

import adbc_driver_manager
import polars as pl
import pyarrow as pa
import pyarrow.flight as flight
import pytest

from conftest import connect

SQL_COMMAND = "type.googleapis.com/arrow.flight.protocol.sql.{}"


def cib_ids_below(limit):
    """Counterparty ids below `limit` whose LOB is CIB (id % 10 in 0..=4), per the reference mesh."""
    return sum(1 for i in range(1, limit) if i % 10 <= 4)


# ---------------------------------------------------------------------------------------
# ADBC (DB-API)


@pytest.mark.parametrize(
    "user, lob, expected",
    [
        ("risk-officer", "CIB", cib_ids_below(100)),
        ("cib-reporting", "CIB", cib_ids_below(100)),
        # The row filter holds whatever the parameters say.
        ("cib-reporting", "CCB", 0),
        ("ccb-fraud", "CIB", 0),
    ],
)
def test_cursor_execute_binds_parameters_under_each_callers_policy(server, user, lob, expected):
    with connect(server, user) as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) AS n FROM reference.counterparties WHERE lob = ? AND counterparty_id < ?",
            (lob, 100),
        )
        assert cur.fetchone() == (expected,)


def test_several_parameter_rows_run_once_each_in_order(server):
    rows = pa.record_batch([pa.array([3, 1, 2])], names=["id"])
    with connect(server, "risk-officer") as conn, conn.cursor() as cur:
        cur.execute("SELECT counterparty_id, lob FROM reference.counterparties WHERE counterparty_id = ?", rows)
        table = cur.fetch_arrow_table()
    assert table.to_pylist() == [
        {"counterparty_id": 3, "lob": "CIB"},
        {"counterparty_id": 1, "lob": "CIB"},
        {"counterparty_id": 2, "lob": "CIB"},
    ]


def test_dollar_placeholders_work_too(server):
    with connect(server, "ccb-fraud") as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT count(*) FROM payments.transactions WHERE counterparty_id = $1 OR counterparty_id = $2",
            (5, 15),
        )
        (n,) = cur.fetchone()
    with connect(server, "risk-officer") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM payments.transactions WHERE counterparty_id IN (5, 15)")
        assert cur.fetchone() == (n,)
    assert n > 0


def test_executemany_is_refused_as_a_write(server):
    with connect(server, "risk-officer") as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error) as raised:
            cur.executemany("SELECT 1 WHERE 1 = ?", [(1,), (2,)])
    assert "read-only" in str(raised.value)


def test_table_schema_is_the_callers_view_with_column_metadata(server):
    with connect(server, "risk-officer") as conn:
        risk = conn.adbc_get_table_schema("counterparties", db_schema_filter="reference", catalog_filter="mesh")
    with connect(server, "cib-reporting") as conn:
        cib = conn.adbc_get_table_schema("counterparties", db_schema_filter="reference")
        with pytest.raises(adbc_driver_manager.Error):
            conn.adbc_get_table_schema("transactions", db_schema_filter="payments")
    assert "internal_rating" in risk.names
    assert "internal_rating" not in cib.names
    field = cib.field("counterparty_id")
    assert field.type == pa.int64()
    meta = {k.decode(): v.decode() for k, v in field.metadata.items()}
    assert meta["ARROW:FLIGHT:SQL:TYPE_NAME"] == "BIGINT"
    assert meta["ARROW:FLIGHT:SQL:SCHEMA_NAME"] == "reference"
    assert meta["ARROW:FLIGHT:SQL:TABLE_NAME"] == "counterparties"
    assert meta["ARROW:FLIGHT:SQL:IS_READ_ONLY"] == "1"
    assert "Stable counterparty identifier" in meta["ARROW:FLIGHT:SQL:REMARKS"]
    assert cib.field("legal_name").type == pa.string()


def test_get_objects_filters_by_pattern_and_shows_only_visible_tables(server):
    def tables(user, **filters):
        with connect(server, user) as conn:
            listing = conn.adbc_get_objects(**filters).read_all().to_pylist()
        return sorted(
            f"{schema['db_schema_name']}.{table['table_name']}"
            for catalog in listing
            for schema in catalog["catalog_db_schemas"] or []
            for table in schema["db_schema_tables"] or []
        )

    assert tables("risk-officer", depth="tables", table_name_filter="count%") == ["reference.counterparties"]
    assert tables("risk-officer", depth="tables", db_schema_filter="pay%") == ["payments.transactions"]
    assert tables("ccb-fraud", depth="tables", table_name_filter="%a%", table_types_filter=["TABLE", "VIEW"]) == [
        "payments.transactions",
        "reference.counterparties",
    ]
    # The mesh catalog's own tables are listed for every caller.
    assert tables("intern", depth="tables", db_schema_filter="mesh_catalog", table_name_filter="%flow%") == [
        "mesh_catalog.flows",
    ]
    assert tables("cib-reporting", depth="tables", db_schema_filter="payments") == []
    assert tables("risk-officer", depth="tables", catalog_filter="other") == []


def test_info_and_table_types(server):
    with connect(server, "auditor") as conn:
        info = conn.adbc_get_info()
        types = conn.adbc_get_table_types()
    assert info["vendor_name"] == "meshgate"
    assert info["vendor_version"]
    assert types == ["SYSTEM TABLE", "TABLE", "VIEW"]


# ---------------------------------------------------------------------------------------
# pyarrow Flight, Flight SQL by hand


def _varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(number, payload: bytes):
    """A length-delimited protobuf field."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def command(name, *fields):
    """google.protobuf.Any wrapping a Flight SQL command whose fields are all strings."""
    body = b"".join(_field(number, value.encode()) for number, value in fields)
    return _field(1, SQL_COMMAND.format(name).encode()) + _field(2, body)


def pyarrow_query(server, user, descriptor_command):
    client = flight.FlightClient(server)
    header = client.authenticate_basic_token(user, f"{user}-pw")
    options = flight.FlightCallOptions(headers=[header])
    info = client.get_flight_info(flight.FlightDescriptor.for_command(descriptor_command), options)
    assert len(info.endpoints) == 1 and not info.endpoints[0].locations
    table = client.do_get(info.endpoints[0].ticket, options).read_all()
    assert table.schema.remove_metadata() == info.schema.remove_metadata()
    client.close()
    return table


def test_pyarrow_flight_runs_statements_per_principal(server):
    sql = "SELECT lob, count(*) AS n FROM reference.counterparties GROUP BY lob ORDER BY lob"
    statement = command("CommandStatementQuery", (1, sql))
    assert pyarrow_query(server, "risk-officer", statement).to_pylist() == [
        {"lob": "AWM", "n": 6_000},
        {"lob": "CCB", "n": 9_000},
        {"lob": "CIB", "n": 15_000},
    ]
    assert pyarrow_query(server, "ccb-fraud", statement).to_pylist() == [{"lob": "CCB", "n": 9_000}]


def test_pyarrow_flight_metadata_commands(server):
    catalogs = pyarrow_query(server, "cib-reporting", command("CommandGetCatalogs"))
    assert catalogs.column("catalog_name").to_pylist() == ["mesh"]
    tables = pyarrow_query(server, "cib-reporting", command("CommandGetTables", (1, "mesh")))
    listed = zip(tables["db_schema_name"].to_pylist(), tables["table_name"].to_pylist())
    assert sorted(t for t in listed if t[0] != "mesh_catalog") == [
        ("markets", "trades"),
        ("reference", "counterparties"),
    ]


def test_pyarrow_flight_refuses_without_credentials_and_with_a_wrong_password(server):
    client = flight.FlightClient(server)
    statement = flight.FlightDescriptor.for_command(command("CommandStatementQuery", (1, "SELECT 1")))
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.get_flight_info(statement)
    with pytest.raises(flight.FlightUnauthenticatedError):
        client.authenticate_basic_token("risk-officer", "guess")
    client.close()


# ---------------------------------------------------------------------------------------
# Polars


@pytest.mark.parametrize(
    "user, expected",
    [
        ("risk-officer", {"AWM": 6_000, "CCB": 9_000, "CIB": 15_000}),
        ("cib-reporting", {"CIB": 15_000}),
    ],
)
def test_polars_reads_through_adbc(server, user, expected):
    with connect(server, user) as conn:
        frame = pl.read_database(
            "SELECT lob, count(*) AS n FROM reference.counterparties GROUP BY lob", connection=conn
        )
    assert isinstance(frame, pl.DataFrame)
    assert dict(zip(frame["lob"].to_list(), frame["n"].to_list())) == expected


def test_polars_gets_masked_values_and_arrow_types(server):
    with connect(server, "risk-officer") as conn:
        frame = pl.read_database(
            "SELECT txn_id, amount, card_number, booked_at FROM payments.transactions ORDER BY txn_id LIMIT 5",
            connection=conn,
        )
    assert frame.height == 5
    assert frame.schema["amount"] == pl.Decimal(18, 2)
    assert frame.schema["booked_at"] == pl.Datetime("us", "UTC")
    assert all(card.startswith("************") for card in frame["card_number"])
