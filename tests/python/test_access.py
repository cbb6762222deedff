"""The access loop end to end, as a consumer and an owner do it: from Python (Flight actions
with pyarrow.flight, queries with ADBC) and from the `meshgate` CLI, against `meshgate demo`.

request -> approve (narrowed) -> the very next query sees the grant -> revoke -> the very
next query, including a statement prepared while the grant was active, is refused. Then
the audit and flows as the owner and the consumer see them.
"""

import json
import os
import subprocess

import adbc_driver_manager
import pyarrow.flight as flight
import pytest

from conftest import _binary
from test_reference_mesh import connect, error_of, query

PRODUCT = "reference.counterparties"
COUNT = f"SELECT count(*) AS n, count(DISTINCT lob) AS lobs FROM {PRODUCT}"


def action(server, user, name, body):
    client = flight.FlightClient(server)
    header = client.authenticate_basic_token(user, f"{user}-pw")
    options = flight.FlightCallOptions(headers=[header])
    results = list(client.do_action(flight.Action(name, json.dumps(body).encode()), options))
    return json.loads(results[0].body.to_pybytes())


def cli(server, user, *args):
    env = dict(os.environ, MESHGATE_SERVER=server.replace("grpc://", "http://"),
               MESHGATE_USER=user, MESHGATE_PASSWORD=f"{user}-pw")
    done = subprocess.run([_binary(), *args], env=env, capture_output=True, text=True, timeout=120)
    return done.returncode, done.stdout, done.stderr


def test_the_access_loop_from_python(server):
    denied = error_of(server, "intern", COUNT)
    assert f"may not read product `{PRODUCT}`" in denied
    assert "mesh.request_access" in denied, "the error says how to ask"

    request = action(server, "intern", "mesh.request_access", {
        "product": PRODUCT, "purpose": "AWM onboarding study",
        "columns": ["counterparty_id", "lob", "country"], "valid_days": 14,
    })
    assert request["state"] == "pending"
    assert request["columns"] == [f"counterparties.{c}" for c in ("counterparty_id", "country", "lob")]

    with pytest.raises(flight.FlightError) as own:
        action(server, "intern", "mesh.approve_request", {"request_id": request["id"]})
    assert "own access request" in str(own.value)
    with pytest.raises(flight.FlightError):
        action(server, "risk-officer", "mesh.approve_request", {"request_id": request["id"]})

    decided = action(server, "ref-owner", "mesh.approve_request", {
        "request_id": request["id"], "row_filter": "lob = 'AWM'", "columns": ["counterparty_id", "lob"],
        "comment": "AWM rows only",
    })
    grant = decided["grant"]
    assert decided["request"]["state"] == "approved" and grant["state"] == "active"
    assert grant["principal"] == "intern" and grant["approved_by"] == "ref-owner"
    try:
        counted = query(server, "intern", COUNT)
        assert counted.to_pylist() == [{"n": 6000, "lobs": 1}]
        table = query(server, "intern", f"SELECT * FROM {PRODUCT} LIMIT 5")
        assert table.column_names == ["counterparty_id", "lob"]

        # A statement prepared (and run) while the grant is active...
        with connect(server, "intern") as conn, conn.cursor() as cur:
            prepared = f"SELECT count(*) AS n FROM {PRODUCT} WHERE counterparty_id > ?"
            cur.adbc_prepare(prepared)
            cur.execute(prepared, parameters=(0,))
            assert cur.fetch_arrow_table().to_pylist() == [{"n": 6000}]
            action(server, "ref-owner", "mesh.revoke_grant", {"grant_id": grant["id"], "reason": "study done"})
            # ...is refused by the very next execution after the revocation.
            with pytest.raises(adbc_driver_manager.Error) as revoked:
                cur.execute(prepared, parameters=(0,))
                cur.fetch_arrow_table()
            assert f"may not read product `{PRODUCT}`" in str(revoked.value)
    finally:
        grants = action(server, "ref-owner", "mesh.list_grants", {})
        for g in grants:
            if g["principal"] == "intern" and g["state"] in ("active", "suspended"):
                action(server, "ref-owner", "mesh.revoke_grant", {"grant_id": g["id"]})
    assert "may not read product" in error_of(server, "intern", COUNT)

    # The owner sees the consumer's requests, grants, audit and flows; the consumer their own.
    states = {g["id"]: g["state"] for g in action(server, "intern", "mesh.list_grants", {})}
    assert states[grant["id"]] == "revoked"
    audit = query(server, "ref-owner",
                  "SELECT t.grant_ids, a.decision FROM mesh_catalog.audit a "
                  "JOIN mesh_catalog.audit_tables t USING (query_id) WHERE a.principal = 'intern'").to_pylist()
    assert {"grant_ids": grant["id"], "decision": "allow"} in audit
    assert any(r["decision"] == "deny" for r in audit)
    flows = query(server, "ref-owner",
                  f"SELECT consumer_app, columns FROM mesh_catalog.flows WHERE product_id = '{PRODUCT}'").to_pylist()
    assert {"consumer_app": "intern", "columns": "counterparties.counterparty_id, counterparties.lob"} in flows
    own = query(server, "intern", "SELECT DISTINCT principal FROM mesh_catalog.audit").to_pylist()
    assert own == [{"principal": "intern"}]


def test_the_access_loop_from_the_cli(server):
    code, out, err = cli(server, "intern", "products", "search", "tax")
    assert code == 0, err
    assert PRODUCT in out and "false" in out

    code, out, err = cli(server, "intern", "access", "request", PRODUCT, "--purpose", "KYC sample",
                         "--columns", "counterparty_id,country", "--days", "7", "--output", "json")
    assert code == 0, err
    request_id = json.loads(out)["id"]

    code, out, err = cli(server, "intern", "access", "approve", request_id)
    assert code != 0 and "own access request" in err

    code, out, err = cli(server, "ref-owner", "access", "list")
    assert code == 0, err
    assert request_id in out and "pending" in out

    code, out, err = cli(server, "ref-owner", "access", "approve", request_id, "--days", "3", "-o", "json")
    assert code == 0, err
    grant_id = json.loads(out)["grant"]["id"]
    try:
        assert query(server, "intern", f"SELECT count(*) AS n FROM {PRODUCT}").to_pylist() == [{"n": 30000}]
        code, out, err = cli(server, "intern", "products", "show", PRODUCT)
        assert code == 0, err
        assert "country" in out and "legal_name" not in out, "only the granted columns are visible"
    finally:
        code, out, err = cli(server, "ref-owner", "access", "revoke", grant_id, "--reason", "sample taken",
                             "-o", "json")
        assert code == 0, err
    assert json.loads(out)["state"] == "revoked"
    assert "may not read product" in error_of(server, "intern", f"SELECT count(*) FROM {PRODUCT}")

    code, out, err = cli(server, "ref-owner", "flows", "--product", PRODUCT)
    assert code == 0, err
    assert "intern" in out
    code, out, err = cli(server, "auditor", "flows")
    assert code == 0, err


# ADBC complains when it closes a statement whose server died; that is the point here.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_killing_the_gateway_mid_stream_loses_no_audit_record(server, mesh_data_dir):
    """A second gateway over the same data directory (and so the same governance store)
    starts streaming 200,000 rows, is killed after the first batch reached the client, and
    the first gateway's auditor finds the record of that query."""
    import hashlib
    import signal

    from conftest import start_demo

    process, address = start_demo(mesh_data_dir)
    sql = "SELECT txn_id, amount, card_number FROM payments.transactions /* killed mid-stream */"
    try:
        with connect(address, "risk-officer") as conn, conn.cursor() as cur:
            cur.execute(sql)
            reader = cur.fetch_record_batch()
            first = reader.read_next_batch()
            assert first.num_rows > 0
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=30)
    except adbc_driver_manager.Error:
        pass  # the connection dies with the gateway; the batch already arrived
    finally:
        if process.poll() is None:
            process.kill()
    digest = hashlib.sha256(sql.encode()).hexdigest()
    records = query(server, "auditor",
                    "SELECT principal, decision, status, products FROM mesh_catalog.audit "
                    f"WHERE statement_sha256 = '{digest}'").to_pylist()
    assert records == [{"principal": "risk-officer", "decision": "allow", "status": "running",
                        "products": "payments.transactions"}]
