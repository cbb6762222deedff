"""`meshgate products export/import`: the reference products as ODPS product files plus one
ODCS contract per table, valid against the official ODCS v3.1 JSON schema, and back again
field for field, including fields meshgate does not read."""

import json
import pathlib
import subprocess
from importlib import resources

import jsonschema
import yaml

from conftest import REPO, _binary

PRODUCTS = ["markets.trades", "payments.transactions", "reference.counterparties"]


def meshgate(*args):
    done = subprocess.run([_binary(), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def odcs_schema():
    text = resources.files("open_data_contract_standard").joinpath("schema.json").read_text()
    return json.loads(text)


def test_export_is_valid_odcs_and_import_round_trips(tmp_path):
    schema = odcs_schema()
    assert "v3.1.0" in schema["properties"]["apiVersion"]["enum"]
    out = tmp_path / "exported"
    for product in PRODUCTS:
        meshgate("products", "export", product, "--products-dir", str(REPO / "products"), "--out", str(out))
    contracts = sorted(out.glob("*.odcs.yaml"))
    assert [c.name for c in contracts] == [
        "markets.trades.trades.odcs.yaml",
        "payments.transactions.transactions.odcs.yaml",
        "reference.counterparties.counterparties.odcs.yaml",
    ]
    for contract in contracts:
        jsonschema.Draft201909Validator(schema).validate(yaml.safe_load(contract.read_text()))
    odps = yaml.safe_load((out / "reference.counterparties.odps.yaml").read_text())
    assert odps["kind"] == "DataProduct" and odps["apiVersion"] == "v1.0.0"
    assert odps["outputPorts"] == [
        {"name": "counterparties", "version": "1.0.0", "contractId": "reference.counterparties.counterparties"}
    ]

    # Another tool edits a contract, adding fields meshgate does not read.
    edited = out / "reference.counterparties.counterparties.odcs.yaml"
    contract = yaml.safe_load(edited.read_text())
    # (meshgate reads the quality rules it can run; the other tool's rule must survive too.)
    contract["schema"][0]["quality"] = contract["schema"][0].get("quality", []) + [
        {"metric": "rowCount", "mustBeGreaterThan": 0}
    ]
    contract["schema"][0]["properties"][0]["authoritativeDefinitions"] = [
        {"type": "businessDefinition", "url": "https://wiki.example/counterparty-id"}
    ]
    edited.write_text(yaml.safe_dump(contract, sort_keys=False))
    jsonschema.Draft201909Validator(schema).validate(contract)

    imported = tmp_path / "products"
    meshgate("products", "import", *map(str, sorted(out.glob("*.yaml"))), "--products-dir", str(imported))
    for product in PRODUCTS:
        original = yaml.safe_load((REPO / "products" / f"{product}.yaml").read_text())
        back = yaml.safe_load((imported / f"{product}.yaml").read_text())
        if product == "reference.counterparties":
            assert back["schema"][0]["quality"] == contract["schema"][0]["quality"]
            assert back["schema"][0]["properties"][0]["authoritativeDefinitions"][0]["url"].endswith("counterparty-id")
            assert back["schema"][0]["quality"].pop() == {"metric": "rowCount", "mustBeGreaterThan": 0}
            del back["schema"][0]["properties"][0]["authoritativeDefinitions"]
        assert back == original, product

    # A misspelt protection field is refused, not kept.
    contract["schema"][0]["properties"][4]["tagz"] = contract["schema"][0]["properties"][4].pop("tags")
    edited.write_text(yaml.safe_dump(contract, sort_keys=False))
    done = subprocess.run([_binary(), "products", "import", *map(str, sorted(out.glob("*.yaml"))),
                           "--products-dir", str(tmp_path / "refused")], capture_output=True, text=True)
    assert done.returncode != 0 and "did you mean `tags`" in done.stderr
    assert not (tmp_path / "refused").exists()


def test_product_init_writes_a_valid_odcs_contract(tmp_path):
    """The blueprint's contract is ODCS v3.1 as written, and exports as ODCS too."""
    schema = odcs_schema()
    meshgate("product", "init", "payments.refunds", "--mesh", str(tmp_path))
    contract = yaml.safe_load((tmp_path / "products" / "payments.refunds.yaml").read_text())
    jsonschema.Draft201909Validator(schema).validate(contract)
    assert contract["team"]["name"] == "payments-data"
    assert contract["support"][0]["channel"] == "#payments-data"
    # Every column is classified or tagged: none is sensitive by accident.
    for column in contract["schema"][0]["properties"]:
        assert "classification" in column or column.get("tags"), column["name"]
    out = tmp_path / "exported"
    meshgate("products", "export", "payments.refunds", "--products-dir", str(tmp_path / "products"), "--out", str(out))
    for exported in out.glob("*.odcs.yaml"):
        jsonschema.Draft201909Validator(schema).validate(yaml.safe_load(exported.read_text()))
