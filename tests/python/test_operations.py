"""The operations side, as the platform team's tools read it.

`meshgate demo --http 127.0.0.1:0 --log-format json`: `/metrics` parses with the official
Prometheus client's text parser and its counters move as queries run and are refused;
`/healthz` and `/readyz` answer; every log line is one JSON object. Then the sinks are
grepped: no row value a query returned, no literal of a statement and no key material
appears in the metrics or the logs.
"""

import json
import re
import subprocess
import threading
import urllib.error
import urllib.request

import adbc_driver_flightsql.dbapi as flightsql
import adbc_driver_manager
import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import _binary

# A literal that only ever appears in a statement's text.
SECRET_LITERAL = "zz-literal-7c1e9b"
# The public demo master key's hex form must not appear anywhere either.
DEMO_KEY_PHRASE = "meshgate demo master key"


@pytest.fixture(scope="module")
def gateway(mesh_data_dir, tmp_path_factory):
    logs = tmp_path_factory.mktemp("ops") / "stderr.jsonl"
    with open(logs, "w") as log_file:
        process = subprocess.Popen(
            [_binary(), "--log-format", "json", "demo", "--listen", "127.0.0.1:0",
             "--http", "127.0.0.1:0", "--data-dir", str(mesh_data_dir)],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            cwd="/",
        )
        addresses = {}
        found = threading.Event()

        def read():
            for line in process.stdout:
                if m := re.match(r"operations on http://(\S+)", line):
                    addresses["ops"] = m.group(1)
                if m := re.match(r"listening on (\S+)", line):
                    addresses["flight"] = m.group(1)
                    found.set()

        threading.Thread(target=read, daemon=True).start()
        if not found.wait(timeout=300):
            process.kill()
            raise RuntimeError("meshgate demo did not start: " + logs.read_text())
        yield addresses, logs
        process.terminate()
        process.wait(timeout=30)


def get(ops, path):
    try:
        with urllib.request.urlopen(f"http://{ops}{path}", timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def metrics(ops):
    status, text = get(ops, "/metrics")
    assert status == 200
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            samples[key] = sample.value
    return text, samples


def total(samples, name, **labels):
    return sum(
        v for (n, ls), v in samples.items()
        if n == name and all(dict(ls).get(k) == want for k, want in labels.items())
    )


def connect(flight, user):
    return flightsql.connect(
        f"grpc://{flight}", db_kwargs={"username": user, "password": f"{user}-pw"},
        autocommit=True,
    )


def test_metrics_parse_and_move_and_no_sink_carries_a_value(gateway):
    addresses, logs = gateway
    ops, flight = addresses["ops"], addresses["flight"]
    assert get(ops, "/healthz") == (200, "ok\n")
    status, body = get(ops, "/readyz")
    assert status == 200 and json.loads(body)["ready"] is True

    _, before = metrics(ops)
    returned = []
    with connect(flight, "cib-reporting") as conn, conn.cursor() as cur:
        cur.execute(
            "SELECT counterparty_id, legal_name, contact_email FROM reference.counterparties "
            f"WHERE legal_name <> '{SECRET_LITERAL}' ORDER BY counterparty_id LIMIT 20"
        )
        for row in cur.fetchall():
            returned.extend(str(v) for v in row if isinstance(v, str) and len(v) > 3)
    with connect(flight, "intern") as conn, conn.cursor() as cur:
        with pytest.raises(adbc_driver_manager.Error):
            cur.execute(f"SELECT * FROM payments.transactions WHERE card_number = '{SECRET_LITERAL}'")
    text, after = metrics(ops)

    # The counters moved: one query answered, one refused for want of a grant, and the RPCs
    # that carried them, with the time they took.
    assert total(after, "meshgate_queries_total", status="ok") > total(before, "meshgate_queries_total", status="ok")
    assert total(after, "meshgate_denials_total", reason="no_grant") == total(before, "meshgate_denials_total", reason="no_grant") + 1
    # ADBC prepares every statement: CreatePreparedStatement, then GetFlightInfo and DoGet.
    assert total(after, "meshgate_rpcs_total", method="DoAction", command="CreatePreparedStatement") >= 2
    assert total(after, "meshgate_rpcs_total", method="DoGet", status="ok") >= 1
    assert total(after, "meshgate_rows_returned_total") >= total(before, "meshgate_rows_returned_total") + 20
    assert total(after, "meshgate_query_duration_seconds_count") > total(before, "meshgate_query_duration_seconds_count")
    assert total(after, "meshgate_storage_requests_total", product="reference.counterparties") > 0
    assert ("meshgate_queries_running", ()) in after

    # Labels come from closed sets: no principal, no statement, no value.
    label_values = {v for (_, labels) in after for (_, v) in labels}
    for principal in ["cib-reporting", "intern"]:
        assert principal not in label_values

    log_text = logs.read_text()
    for line in log_text.splitlines():
        json.loads(line)  # every log line is one JSON object
    assert returned, "the query returned names to look for"
    for sink, content in [("metrics", text), ("logs", log_text)]:
        assert SECRET_LITERAL not in content, f"a statement literal reached the {sink}"
        assert DEMO_KEY_PHRASE not in content
        for value in returned:
            assert value not in content, f"the row value {value!r} reached the {sink}"
