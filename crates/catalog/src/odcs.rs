//! Import and export in the open standards: one ODCS v3.1 contract per product table plus
//! a small ODPS v1.0 product file naming them (its `outputPorts`), the shape catalogs such
//! as DataHub, OpenMetadata and datacontract-cli exchange.
//!
//! meshgate keeps a product as one contract whose `schema` lists every table. Export splits
//! it: each table's contract is the product's contract with its own `id`
//! (`<product>.<table>`) and that table alone in `schema`. Import joins them back. Both
//! work on the YAML trees, not on meshgate's model, so every field survives, including
//! fields meshgate does not read; an import is checked by loading it as a product before
//! it is written.

use serde_yaml::{Mapping, Value};

use crate::{Catalog, CatalogError};

/// A file to write: its name and text.
pub type File = (String, String);

fn err(file: &str, message: impl Into<String>) -> CatalogError {
    CatalogError::Invalid {
        file: file.to_string(),
        at: String::new(),
        message: message.into(),
    }
}

fn mapping<'a>(value: &'a Value, file: &str) -> Result<&'a Mapping, CatalogError> {
    value
        .as_mapping()
        .ok_or_else(|| err(file, "expected a YAML mapping"))
}

fn text(map: &Mapping, key: &str, file: &str) -> Result<String, CatalogError> {
    map.get(key)
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| err(file, format!("`{key}` is missing or not a string")))
}

fn to_yaml(value: &Value, file: &str) -> Result<String, CatalogError> {
    serde_yaml::to_string(value).map_err(|e| err(file, e.to_string()))
}

fn parse(file: &str, text: &str) -> Result<Value, CatalogError> {
    serde_yaml::from_str(text).map_err(|e| CatalogError::Parse {
        file: file.to_string(),
        message: e.to_string(),
    })
}

/// Split one product manifest into an ODPS product file and one ODCS contract per table.
pub fn export(file: &str, manifest: &str) -> Result<Vec<File>, CatalogError> {
    // Only valid products are exported.
    Catalog::from_sources([(file, manifest)])?;
    let root = parse(file, manifest)?;
    let map = mapping(&root, file)?;
    let product = text(map, "id", file)?;
    let tables = map
        .get("schema")
        .and_then(Value::as_sequence)
        .ok_or_else(|| err(file, "`schema` lists no tables"))?;
    let mut files = Vec::new();
    let mut ports = Vec::new();
    for table in tables {
        let name = text(mapping(table, file)?, "name", file)?;
        let contract_id = format!("{product}.{name}");
        let mut contract = map.clone();
        contract.insert("id".into(), contract_id.clone().into());
        contract.insert("schema".into(), Value::Sequence(vec![table.clone()]));
        files.push((
            format!("{contract_id}.odcs.yaml"),
            to_yaml(&Value::Mapping(contract), file)?,
        ));
        let mut port = Mapping::new();
        port.insert("name".into(), name.into());
        if let Some(version) = map.get("version") {
            port.insert("version".into(), version.clone());
        }
        port.insert("contractId".into(), contract_id.into());
        ports.push(Value::Mapping(port));
    }
    let mut odps = Mapping::new();
    odps.insert("apiVersion".into(), "v1.0.0".into());
    odps.insert("kind".into(), "DataProduct".into());
    odps.insert("id".into(), product.clone().into());
    for key in ["name", "status", "domain", "description"] {
        if let Some(value) = map.get(key) {
            odps.insert(key.into(), value.clone());
        }
    }
    odps.insert("outputPorts".into(), Value::Sequence(ports));
    files.insert(
        0,
        (
            format!("{product}.odps.yaml"),
            to_yaml(&Value::Mapping(odps), file)?,
        ),
    );
    Ok(files)
}

/// Join ODPS product files and their ODCS contracts (in any order) into product manifests:
/// `(product id, manifest text)`. A contract no product file names is a product of its own
/// (meshgate's own one-contract shape). Every result loads as a product.
pub fn import(files: &[File]) -> Result<Vec<File>, CatalogError> {
    let mut products = Vec::new();
    let mut contracts: Vec<(String, Value)> = Vec::new();
    for (name, text_) in files {
        let value = parse(name, text_)?;
        match mapping(&value, name)?.get("kind").and_then(Value::as_str) {
            Some("DataProduct") => products.push((name.clone(), value)),
            Some("DataContract") => contracts.push((name.clone(), value)),
            other => {
                return Err(err(
                    name,
                    format!("expected kind DataProduct or DataContract, found {other:?}"),
                ));
            }
        }
    }
    let contract_id = |v: &Value| {
        v.as_mapping()
            .and_then(|m| m.get("id"))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let mut used = vec![false; contracts.len()];
    let mut out = Vec::new();
    for (file, odps) in &products {
        let map = mapping(odps, file)?;
        let product = text(map, "id", file)?;
        let ports = map
            .get("outputPorts")
            .and_then(Value::as_sequence)
            .ok_or_else(|| err(file, "`outputPorts` names no contracts"))?;
        let mut joined: Option<Mapping> = None;
        let mut tables = Vec::new();
        for port in ports {
            let wanted = text(mapping(port, file)?, "contractId", file)?;
            let index = contracts
                .iter()
                .position(|(_, c)| contract_id(c).as_deref() == Some(&wanted))
                .ok_or_else(|| err(file, format!("no contract with id `{wanted}` was given")))?;
            used[index] = true;
            let (contract_file, contract) = &contracts[index];
            let mut contract = mapping(contract, contract_file)?.clone();
            let schema = contract
                .get("schema")
                .and_then(|s| s.as_sequence().cloned())
                .unwrap_or_default();
            tables.extend(schema);
            // `insert` on existing keys keeps their place, so the joined manifest keeps
            // the contracts' field order.
            contract.insert("id".into(), product.clone().into());
            contract.insert("schema".into(), Value::Sequence(Vec::new()));
            match &joined {
                None => joined = Some(contract),
                Some(first) if *first == contract => {}
                Some(first) => {
                    let differing = first
                        .iter()
                        .find(|(k, v)| contract.get(*k) != Some(*v))
                        .map(|(k, _)| k.as_str().unwrap_or("?").to_string())
                        .or_else(|| {
                            contract
                                .keys()
                                .find(|k| !first.contains_key(*k))
                                .map(|k| k.as_str().unwrap_or("?").to_string())
                        })
                        .unwrap_or_default();
                    return Err(err(
                        contract_file,
                        format!(
                            "the contracts of product `{product}` disagree on `{differing}`; \
                             product-level fields must be the same in each"
                        ),
                    ));
                }
            }
        }
        let mut manifest =
            joined.ok_or_else(|| err(file, format!("product `{product}` has no contracts")))?;
        manifest.insert("schema".into(), Value::Sequence(tables));
        out.push((product, to_yaml(&Value::Mapping(manifest), file)?));
    }
    for ((file, contract), used) in contracts.iter().zip(used) {
        if !used {
            let id = contract_id(contract).ok_or_else(|| err(file, "`id` is missing"))?;
            out.push((id, to_yaml(contract, file)?));
        }
    }
    for (product, manifest) in &out {
        Catalog::from_sources([(format!("{product} (imported)"), manifest.as_str())])?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn reference() -> Vec<(String, String)> {
        // Where cargo runs the test from, not where it was compiled: a build cache shared by
        // several checkouts may hold a binary compiled in another one.
        let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(
            || env!("CARGO_MANIFEST_DIR").into(),
            std::path::PathBuf::from,
        );
        let dir = manifest.join("../../products");
        let mut out: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
            .map(|p| {
                (
                    p.file_name().unwrap().to_string_lossy().to_string(),
                    std::fs::read_to_string(p).unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn tree(text: &str) -> Value {
        serde_yaml::from_str(text).unwrap()
    }

    #[test]
    fn the_reference_manifests_round_trip_field_for_field() {
        for (file, text) in reference() {
            let exported = export(&file, &text).unwrap();
            assert!(exported[0].0.ends_with(".odps.yaml"));
            let odps = tree(&exported[0].1);
            assert_eq!(odps["apiVersion"], Value::from("v1.0.0"));
            assert_eq!(odps["kind"], Value::from("DataProduct"));
            for (name, contract) in &exported[1..] {
                let contract = tree(contract);
                assert!(name.ends_with(".odcs.yaml"));
                assert_eq!(contract["apiVersion"], Value::from("v3.1.0"));
                assert_eq!(contract["schema"].as_sequence().unwrap().len(), 1);
            }
            let imported = import(&exported).unwrap();
            assert_eq!(imported.len(), 1);
            assert_eq!(tree(&imported[0].1), tree(&text), "{file}");
            // And again: export of the import is the same files.
            assert_eq!(export(&file, &imported[0].1).unwrap(), exported);
        }
    }

    #[test]
    fn unknown_fields_survive_import_and_export() {
        let (file, text) = reference().remove(0);
        let exported = export(&file, &text).unwrap();
        // Another tool adds fields at every level of a contract.
        let mut contract = tree(&exported[1].1);
        contract["x-tool-revision"] = Value::from(7);
        contract["schema"][0]["quality"] =
            tree("[{metric: rowCount, mustBeGreaterThan: 0, dimension: completeness}]");
        contract["schema"][0]["properties"][0]["authoritativeDefinitions"] =
            tree("[{type: businessDefinition, url: 'https://wiki.example/id'}]");
        let edited = vec![
            exported[0].clone(),
            (
                exported[1].0.clone(),
                serde_yaml::to_string(&contract).unwrap(),
            ),
        ];
        let imported = import(&edited).unwrap();
        let manifest = tree(&imported[0].1);
        assert_eq!(manifest["x-tool-revision"], Value::from(7));
        assert_eq!(
            manifest["schema"][0]["quality"][0]["metric"],
            Value::from("rowCount")
        );
        let again = export(&imported[0].0, &imported[0].1).unwrap();
        assert_eq!(tree(&again[1].1), contract);
    }

    #[test]
    fn imports_are_checked_before_anything_is_written() {
        let (file, text) = reference().remove(0);
        let exported = export(&file, &text).unwrap();
        let typo = exported[1].1.replace("tags:", "tagz:");
        let err = import(&[exported[0].clone(), (exported[1].0.clone(), typo)])
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `tags`"), "{err}");
        let err = import(&exported[..1]).unwrap_err().to_string();
        assert!(err.contains("no contract with id"), "{err}");
    }
}
