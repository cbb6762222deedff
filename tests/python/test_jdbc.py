"""The real Arrow Flight SQL JDBC driver against meshgate (the Maven project in tests/jdbc).

This module starts what the Java tests need and runs them once per driver version:

- a `meshgate demo` of its own, with its operations port (the cancel tests watch
  `meshgate_queries_running` there);
- a `meshgate serve` over the same lakes serving TLS with a certificate from a CA made here,
  and a bearer token of `risk-officer` it issued, for the TLS and token tests;
- what ADBC sees for every principal of the reference mesh (tables, columns, rows, refusals),
  which the driver must see too.

Maven's repository lives in ~/.cache/meshgate/m2 (or $MESHGATE_M2).
"""

import datetime
import decimal
import os
import re
import shutil
import subprocess

import adbc_driver_manager
import pytest

from conftest import REPO, USERS, connect, start_demo_with_http, start_meshgate, stop, visible_objects

# 19.0.0 is the newest release; 18.3.0 is the newest DBeaver 26.1.3+ can load (arrow-java#728).
DRIVERS = ["18.3.0", "19.0.0"]
PRODUCT_TABLES = {
    "reference.counterparties": "counterparty_id",
    "payments.transactions": "txn_id",
    "markets.trades": "trade_id",
}


@pytest.fixture(scope="module")
def jdbc_demo(tmp_path_factory):
    """A demo of its own: (data dir, grpc address, /metrics URL)."""
    data_dir = tmp_path_factory.mktemp("jdbc-mesh")
    process, grpc, ops = start_demo_with_http(data_dir)
    yield data_dir, grpc, f"{ops}/metrics"
    stop(process)


def _openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def tls_gateway(jdbc_demo, tmp_path_factory):
    """`meshgate serve` with TLS over the demo's lakes: (port, CA file, risk-officer's token,
    the CA in a Java trust store)."""
    data_dir = jdbc_demo[0]
    root = tmp_path_factory.mktemp("jdbc-tls")
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=meshgate jdbc test CA", cwd=root)
    _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
             "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=localhost", cwd=root)
    (root / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", "server.pem", "-days", "2", "-extfile", "san.ext", cwd=root)
    # The same CA as a Java trust store, for the driver's trustStore option.
    subprocess.run(["keytool", "-importcert", "-noprompt", "-alias", "mesh-ca", "-file", "ca.pem",
                    "-keystore", "trust.jks", "-storepass", "meshgate"], cwd=root, check=True, capture_output=True)
    (root / "master.key").write_text("ab" * 32)
    (root / "meshgate.toml").write_text(
        f'products = "{REPO}/products"\npolicies = "{REPO}/policies"\nusers = "{REPO}/policies/users.toml"\n'
        f'master_key_file = "master.key"\nstate = "state/meshgate.db"\nquality_interval = "0s"\n'
        f'[tls]\ncert = "server.pem"\nkey = "server.key"\n'
        f'[storage.default]\nkind = "local"\npath = "{data_dir}/s3/{{bucket}}"\n'
    )
    process, address = start_meshgate(
        "serve", "--listen", "127.0.0.1:0", "--http", "off", "--config", str(root / "meshgate.toml")
    )
    port = int(address.rsplit(":", 1)[1])

    import pyarrow.flight as flight

    client = flight.FlightClient(f"grpc+tls://localhost:{port}", tls_root_certs=(root / "ca.pem").read_bytes())
    _, value = client.authenticate_basic_token("risk-officer", "risk-officer-pw")
    token = value.decode().removeprefix("Bearer ")
    client.close()
    yield port, root / "ca.pem", token, root / "trust.jks"
    stop(process)


def render(value):
    """One value as the Java side renders it (MeshgateJdbc.render)."""
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return format(decimal.Decimal(value), "f")
    if isinstance(value, decimal.Decimal):
        return format(value, "f")
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=datetime.timezone.utc)
        epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
        return str((value - epoch) // datetime.timedelta(microseconds=1))
    if isinstance(value, datetime.date):
        return value.isoformat()
    return str(value)


def gateway_message(error):
    """The gateway's own text in an ADBC error, without the driver's prefix and suffix."""
    text = str(error).splitlines()[0]
    text = re.sub(r"^[A-Z_]+: (\[FlightSQL\] )?", "", text)
    return re.sub(r"\s*\(\w+; \w+\)$", "", text)


def write_expected(server, path):
    """What ADBC sees for every principal, in the format tests/jdbc's Expected.java reads."""
    lines = []
    for user in USERS:
        for schema, tables in sorted(visible_objects(server, user).items()):
            for table, columns in sorted(tables.items()):
                lines.append(f"O\t{user}\t{schema}\t{table}\t{','.join(columns)}")
        queries = []
        for table, key in PRODUCT_TABLES.items():
            queries.append(f"SELECT * FROM {table} ORDER BY {key} LIMIT 5")
            queries.append(f"SELECT lob, count(*) AS n FROM {table} GROUP BY lob ORDER BY lob")
        with connect(server, user) as conn, conn.cursor() as cur:
            for number, sql in enumerate(queries):
                lines.append(f"Q\t{user}\t{number}\t{sql}")
                try:
                    cur.execute(sql)
                    rows = cur.fetch_arrow_table().to_pylist()
                except adbc_driver_manager.Error as error:
                    lines.append(f"D\t{user}\t{number}\t{gateway_message(error)}")
                    continue
                for row in rows:
                    lines.append("\t".join(["R", user, str(number), *(render(v) for v in row.values())]))
    path.write_text("\n".join(lines) + "\n")
    return lines


def _maven():
    found = shutil.which("mvn")
    if not found:
        pytest.fail("no Maven: install it (Debian: apt-get install maven) and Java 17, then run tests/run-all.sh")
    return found


@pytest.mark.parametrize("driver", DRIVERS)
def test_the_jdbc_driver_conformance_suite(driver, jdbc_demo, tls_gateway, tmp_path):
    _, grpc, metrics = jdbc_demo
    expected = tmp_path / "expected.tsv"
    lines = write_expected(grpc, expected)
    # The file says something for every principal: tables for those with access, refusals
    # for the rest.
    assert {line.split("\t")[1] for line in lines} == set(USERS)
    assert any(line.startswith("D\tintern\t") for line in lines)
    assert any(line.startswith("R\tcib-reporting\t") for line in lines)

    port, ca, token, truststore = tls_gateway
    repo_local = os.environ.get("MESHGATE_M2", os.path.expanduser("~/.cache/meshgate/m2"))
    command = [
        _maven(), "-B", "--no-transfer-progress", "-f", str(REPO / "tests/jdbc/pom.xml"),
        # -U: a driver version missing before is looked for again.
        "-U", f"-Dmaven.repo.local={repo_local}",
        f"-Ddriver.version={driver}",
        f"-Dmeshgate.url=jdbc:arrow-flight-sql://{grpc.removeprefix('grpc://')}",
        f"-Dmeshgate.metrics={metrics}",
        f"-Dmeshgate.tls.url=jdbc:arrow-flight-sql://localhost:{port}/",
        f"-Dmeshgate.tls.ca={ca}",
        f"-Dmeshgate.tls.token={token}",
        f"-Dmeshgate.tls.truststore={truststore}",
        f"-Dmeshgate.expected={expected}",
        # Each version compiles into its own directory: a run never reuses another's classes.
        f"-Dbuild.dir={tmp_path / 'target'}",
        "test",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=1200)
    output = result.stdout + result.stderr
    missing = re.search(
        rf"(Could not find artifact org\.apache\.arrow:flight-sql-jdbc-driver:jar:{re.escape(driver)}"
        rf"|org\.apache\.arrow:flight-sql-jdbc-driver:jar:{re.escape(driver)} was not found)",
        output,
    )
    if result.returncode != 0 and missing:
        pytest.skip(
            f"flight-sql-jdbc-driver {driver} is not in the Maven repository this machine reaches "
            "(Maven Central's mirror here lists up to 18.3.0): its tests did not run"
        )
    assert result.returncode == 0, output[-20000:]
    runs = [tuple(map(int, m)) for m in re.findall(r"Tests run: (\d+), Failures: (\d+), Errors: (\d+), Skipped: (\d+)$", output, re.M)]
    assert runs, output[-5000:]
    total, failures, errors, skipped = runs[-1]
    assert total >= 20 and failures == errors == skipped == 0, output[-5000:]
