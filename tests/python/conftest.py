"""Starts `meshgate demo` on a free port for the whole test session.

The binary comes from $MESHGATE_BIN (set by tests/run-all.sh) or the default cargo target
directory. The mesh is generated into a fresh temporary directory, so these tests also
check that the demo works from scratch.
"""

import os
import pathlib
import re
import subprocess
import threading
import time

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]


def _binary() -> str:
    if os.environ.get("MESHGATE_BIN"):
        return os.environ["MESHGATE_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    return str(pathlib.Path(target) / "debug" / "meshgate")


@pytest.fixture(scope="session")
def mesh_data_dir(tmp_path_factory):
    """The session server's data directory (lakes and governance store)."""
    return tmp_path_factory.mktemp("mesh")


def connect(server, user, password=None):
    """An ADBC Flight SQL connection to `server` as `user` (password `<user>-pw` unless given)."""
    import adbc_driver_flightsql.dbapi as flightsql

    return flightsql.connect(
        server, db_kwargs={"username": user, "password": password or f"{user}-pw"}, autocommit=True
    )


def start_meshgate(*args, cwd=None):
    """`meshgate <args>` (which must listen on port 0) until it prints `listening on`:
    (process, grpc address). Its output is read on in the background."""
    process = subprocess.Popen(
        [_binary(), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        cwd=cwd,
    )
    output = []
    address = None
    found = threading.Event()

    def read():
        nonlocal address
        for line in process.stdout:
            output.append(line)
            match = re.match(r"listening on (\S+)", line)
            if match and address is None:
                address = match.group(1)
                found.set()

    # Tests that need another line of the output (an address) read it here.
    process.meshgate_output = output
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if not found.wait(timeout=300):
        process.kill()
        raise RuntimeError(f"meshgate {args[0]} did not start:\n" + "".join(output))
    return process, f"grpc://{address}"


def start_demo(data_dir, *extra):
    """`meshgate demo` on a free port over `data_dir`: (process, grpc address)."""
    # The demo must not depend on the current directory.
    return start_meshgate(
        "demo", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), *extra, cwd="/"
    )


def start_demo_with_http(data_dir):
    """`meshgate demo` with its HTTP listener (console, /metrics) on a free port too:
    (process, grpc address, http URL without a trailing slash)."""
    process, grpc = start_demo(data_dir, "--http", "127.0.0.1:0")
    url = None
    for _ in range(100):
        url = next(
            (m.group(1) for m in (re.search(r"console on (http://\S+?)/? ", line) for line in process.meshgate_output) if m),
            None,
        )
        if url:
            break
        time.sleep(0.1)
    if not url:
        process.kill()
        raise RuntimeError("meshgate demo printed no console address:\n" + "".join(process.meshgate_output))
    return process, grpc, url


@pytest.fixture(scope="session")
def server(mesh_data_dir):
    process, address = start_demo(mesh_data_dir)
    yield address
    stop(process)


def stop(process):
    """Stop a process `start_meshgate` started: SIGTERM (it drains), then SIGKILL after 30 s."""
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()


def visible_objects(server, user):
    """What Flight `GetObjects` lists for `user` through ADBC: {schema: {table: [columns]}},
    product schemas only (the mesh catalog's own tables are every caller's). The dialects'
    reflection is compared with it."""
    with connect(server, user) as conn:
        listing = conn.adbc_get_objects(depth="columns").read_all().to_pylist()
    out = {}
    for catalog in listing:
        for schema in catalog["catalog_db_schemas"] or []:
            if schema["db_schema_name"] == "mesh_catalog":
                continue
            tables = out.setdefault(schema["db_schema_name"], {})
            for table in schema["db_schema_tables"] or []:
                tables[table["table_name"]] = [c["column_name"] for c in table["table_columns"] or []]
    return out


USERS = ["cib-reporting", "ccb-fraud", "risk-officer", "ref-owner", "auditor", "intern"]


def assert_reflection_matches(server, engine_for, table_names=True):
    """SQLAlchemy's reflection through `engine_for(server, user)` equals what `GetObjects`
    lists for every principal: schemas, (with `table_names`) tables, and each table's
    columns in order. Both SQLAlchemy dialects' tests use it."""
    from sqlalchemy import inspect

    for user in USERS:
        expected = visible_objects(server, user)
        inspector = inspect(engine_for(server, user))
        schemas = set(inspector.get_schema_names()) - {"mesh_catalog"}
        assert schemas == {s for s, tables in expected.items() if tables}, user
        for schema, tables in expected.items():
            if table_names:
                assert sorted(inspector.get_table_names(schema=schema)) == sorted(tables), f"{user}: {schema}"
            for table, columns in tables.items():
                reflected = [c["name"] for c in inspector.get_columns(table, schema=schema)]
                assert reflected == columns, f"{user}: {schema}.{table}"
