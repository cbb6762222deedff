"""A product's lifecycle as a Python consumer meets it through ADBC: a deprecated product's
warning arrives in the result's schema metadata, and a retired product is refused with its
reason.
"""

import shutil

import adbc_driver_manager
import pytest

from conftest import REPO, connect, start_meshgate


@pytest.fixture(scope="module")
def lifecycle_server(server, mesh_data_dir, tmp_path_factory):
    """`meshgate serve` over the session demo's lakes, with counterparties deprecated and
    payments retired (`server` first, so the lakes exist)."""
    root = tmp_path_factory.mktemp("lifecycle")
    products = root / "products"
    shutil.copytree(REPO / "products", products)
    for name, status in [
        ("reference.counterparties", "status: deprecated\ncustomProperties: [{property: sunset, value: 2999-12-31}]"),
        ("payments.transactions", "status: retired"),
    ]:
        contract = products / f"{name}.yaml"
        contract.write_text(contract.read_text().replace("status: active", status, 1))
    (root / "master.key").write_text("cd" * 32)
    (root / "meshgate.toml").write_text(
        f'products = "{products}"\npolicies = "{REPO}/policies"\nusers = "{REPO}/policies/users.toml"\n'
        f'master_key_file = "master.key"\nstate = "state/meshgate.db"\nquality_interval = "0s"\n'
        f'[storage.default]\nkind = "local"\npath = "{mesh_data_dir}/s3/{{bucket}}"\n'
    )
    process, address = start_meshgate(
        "serve", "--listen", "127.0.0.1:0", "--config", str(root / "meshgate.toml")
    )
    yield address
    process.terminate()
    process.wait(timeout=30)


def test_a_deprecated_products_warning_reaches_adbc_and_a_retired_one_is_refused(lifecycle_server):
    with connect(lifecycle_server, "risk-officer") as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) AS n FROM reference.counterparties")
        table = cur.fetch_arrow_table()
        assert table.column("n").to_pylist() == [30000]
        warnings = (table.schema.metadata or {}).get(b"meshgate.warnings", b"").decode()
        assert (
            "product `reference.counterparties` (version 1.0.0) is deprecated and served until 2999-12-31 (UTC);"
            " ask its owner (team `reference-data`) what replaces it"
        ) in warnings

        cur.execute("SELECT count(*) AS n FROM markets.trades")
        assert b"meshgate.warnings" not in (cur.fetch_arrow_table().schema.metadata or {})

        with pytest.raises(adbc_driver_manager.Error) as raised:
            cur.execute("SELECT count(*) FROM payments.transactions")
            cur.fetch_arrow_table()
        assert "product `payments.transactions` is no longer served" in str(raised.value)
