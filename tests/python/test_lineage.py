"""OpenLineage: every query's START and COMPLETE events, to a file and to a
Marquez-compatible HTTP endpoint, valid against the OpenLineage spec's JSON schemas, and
never in the way of a query.

The schemas are the spec's own files (OpenLineage.json 2-0-2 and the facet schemas), taken
from the `datafusion-openlineage` crate on crates.io, which ships them for its own tests.
"""

import io
import json
import os
import pathlib
import tarfile
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, HTTPServer

import jsonschema
import pytest
from referencing import Registry, Resource

from conftest import start_demo
from test_reference_mesh import query

CRATE = "https://static.crates.io/crates/datafusion-openlineage/datafusion-openlineage-0.0.12.crate"
SPEC_DIR = "datafusion-openlineage-0.0.12/tests/schemas/openlineage/"


def spec_schemas():
    """{$id: schema} for OpenLineage.json and every facet schema (cached)."""
    cache = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
    cache = cache / "meshgate" / "openlineage-spec"
    if not (cache / "OpenLineage.json").exists():
        data = urllib.request.urlopen(CRATE, timeout=60).read()
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as crate:
            for member in crate.getmembers():
                if member.name.startswith(SPEC_DIR) and member.name.endswith(".json"):
                    target = cache / member.name[len(SPEC_DIR):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(crate.extractfile(member).read())
    schemas = {}
    for path in cache.rglob("*.json"):
        schema = json.loads(path.read_text())
        schemas[schema["$id"]] = schema
    return schemas


def validate(event, schemas):
    """The event against RunEvent, and each facet against the schema its _schemaURL names."""
    registry = Registry().with_resources(
        (uri, Resource.from_contents(schema)) for uri, schema in schemas.items()
    )
    spec = "https://openlineage.io/spec/2-0-2/OpenLineage.json"
    assert event["schemaURL"] == spec + "#/$defs/RunEvent"
    jsonschema.Draft202012Validator(
        {"$ref": event["schemaURL"]}, registry=registry, format_checker=jsonschema.FormatChecker()
    ).validate(event)
    facets = list(event["run"]["facets"].values()) + list(event["job"]["facets"].values())
    for dataset in event["inputs"] + event["outputs"]:
        facets += list(dataset.get("facets", {}).values())
        facets += list(dataset.get("outputFacets", {}).values())
    assert facets
    for facet in facets:
        assert facet["_schemaURL"].split("#")[0] in schemas, facet["_schemaURL"]
        jsonschema.Draft202012Validator({"$ref": facet["_schemaURL"]}, registry=registry).validate(facet)


class Collector(BaseHTTPRequestHandler):
    events = []

    def do_POST(self):  # noqa: N802 (http.server's naming)
        body = self.rfile.read(int(self.headers["Content-Length"]))
        assert self.path == "/api/v1/lineage"
        Collector.events.append(json.loads(body))
        self.send_response(201)
        self.end_headers()

    def log_message(self, *args):
        pass


def wait_for(predicate, what):
    deadline = time.time() + 20
    while time.time() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"no {what} within 20 s")


def test_every_query_emits_valid_openlineage_events(mesh_data_dir, tmp_path):
    schemas = spec_schemas()
    http = HTTPServer(("127.0.0.1", 0), Collector)
    threading.Thread(target=http.serve_forever, daemon=True).start()
    events_file = tmp_path / "lineage.jsonl"
    process, address = start_demo(
        mesh_data_dir,
        "--lineage-file", str(events_file),
        "--lineage-url", f"http://127.0.0.1:{http.server_port}/api/v1/lineage",
    )
    try:
        sql = ("SELECT c.legal_name, c.tax_id, t.trader_id FROM reference.counterparties c "
               "JOIN markets.trades t USING (counterparty_id) WHERE c.lob = 'CIB' LIMIT 7")
        assert query(address, "cib-reporting", sql).num_rows == 7

        def events():
            if not events_file.exists():
                return None
            lines = [json.loads(l) for l in events_file.read_text().splitlines() if l.strip()]
            return lines if any(e["eventType"] == "COMPLETE" for e in lines) else None

        written = wait_for(events, "COMPLETE event in the file")
        run_ids = {e["run"]["runId"] for e in written}
        assert len(run_ids) == 1
        assert [e["eventType"] for e in written] == ["START", "COMPLETE"]
        for event in written:
            validate(event, schemas)
        complete = written[1]
        # The validation is real: a malformed copy fails it.
        broken = json.loads(json.dumps(complete))
        broken["outputs"][0]["facets"]["columnLineage"]["fields"]["reference.counterparties.tax_id"][
            "inputFields"][0]["transformations"][0]["masking"] = "yes"
        with pytest.raises(jsonschema.ValidationError):
            validate(broken, schemas)
        broken = json.loads(json.dumps(complete))
        broken["run"]["runId"] = "not-a-uuid"
        with pytest.raises(jsonschema.ValidationError):
            validate(broken, schemas)
        assert complete["job"] == {**complete["job"], "namespace": "mesh.consumers", "name": "cib-regulatory-report"}
        inputs = {(i["namespace"], i["name"]) for i in complete["inputs"]}
        assert inputs == {("s3://reference-counterparties", "data/counterparties"),
                          ("s3://markets-trades", "data/trades")}, inputs
        symlinks = sorted(i["facets"]["symlinks"]["identifiers"][0]["name"] for i in complete["inputs"])
        assert symlinks == ["markets.trades.trades@1.0.0", "reference.counterparties.counterparties@1.0.0"]
        fields = complete["outputs"][0]["facets"]["columnLineage"]["fields"]
        masking = {name: f["inputFields"][0]["transformations"][0]["masking"] for name, f in fields.items()}
        assert masking == {
            "reference.counterparties.legal_name": False,
            "reference.counterparties.tax_id": True,
            "reference.counterparties.lob": False,
            "reference.counterparties.counterparty_id": False,
            "markets.trades.trader_id": True,
            "markets.trades.counterparty_id": False,
        }, masking
        assert fields["reference.counterparties.tax_id"]["inputFields"][0]["transformations"][0]["description"] \
            == "tokenize(reference)"
        stats = complete["outputs"][0]["outputFacets"]["outputStatistics"]
        assert stats["rowCount"] == 7

        # The same events reached the HTTP endpoint.
        wait_for(lambda: len(Collector.events) >= 2, "events at the HTTP endpoint")
        assert [e["run"]["runId"] for e in Collector.events[:2]] == [complete["run"]["runId"]] * 2

        # With the endpoint gone, queries are not slowed down or failed by lineage.
        http.shutdown()
        http.server_close()
        started = time.time()
        counts = [query(address, "cib-reporting", "SELECT count(*) AS n FROM markets.trades").to_pylist()
                  for _ in range(3)]
        assert counts[0] == counts[1] == counts[2] and counts[0][0]["n"] > 0
        assert time.time() - started < 30
    finally:
        process.terminate()
        process.wait(timeout=30)
