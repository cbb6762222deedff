//! The engine's and the policy crate's modules form a stack: each imports only from modules
//! below it, so a reader can start at the bottom and every change has a direction. This test
//! reads the sources and fails on any import cycle, naming it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// `crate::<module>` references of one source file, comments left out. A `use crate::{..}`
/// group may span lines (rustfmt wraps long ones), so the file is read as one text.
fn imports(source: &str) -> BTreeSet<String> {
    let code: String = source
        .lines()
        .map(|line| line.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n");
    let leading_name = |text: &str| -> String {
        text.trim()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    let mut rest = code.as_str();
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        match rest.strip_prefix('{') {
            Some(group) => {
                let end = group.find('}').unwrap_or(group.len());
                out.extend(
                    group[..end]
                        .split(',')
                        .map(leading_name)
                        .filter(|n| !n.is_empty()),
                );
            }
            None => {
                out.insert(leading_name(rest));
            }
        }
    }
    out
}

/// Each module of a flat crate (`src/<module>.rs`) and the crate modules it imports.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut modules = BTreeMap::new();
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_none_or(|e| e != "rs") || name == "lib" {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        modules.insert(name.to_string(), imports(&source));
    }
    let names: BTreeSet<String> = modules.keys().cloned().collect();
    for (name, deps) in &mut modules {
        deps.retain(|d| d != name && names.contains(d));
    }
    modules
}

/// A cycle of the graph, if it has one.
fn cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for dep in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(dep, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn assert_stack(krate: &str) {
    let src = crate::support::manifest_dir()
        .join("..")
        .join(krate)
        .join("src");
    let graph = graph(&src);
    assert!(graph.len() > 5, "no modules found under {}", src.display());
    if let Some(cycle) = cycle(&graph) {
        panic!(
            "crates/{krate}: modules import each other: {} (a module may import only from \
             modules below it; see ARCHITECTURE.md)",
            cycle.join(" -> ")
        );
    }
}

#[test]
fn the_engine_modules_form_a_stack() {
    assert_stack("engine");
}

#[test]
fn the_policy_modules_form_a_stack() {
    assert_stack("policy");
}

/// The names under `[dependencies]` of a manifest (normal dependencies only).
fn normal_dependencies(manifest: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            inside = line == "[dependencies]";
        } else if inside && let Some((name, _)) = line.split_once('=') {
            out.push(name.trim().to_string());
        }
    }
    out
}

/// An embedder depends on `meshgate` and compiles no command line, no S3 server and no demo
/// data: neither it nor any workspace crate it depends on (transitively) names them.
#[test]
fn the_library_compiles_no_command_line_no_s3_server_and_no_demo() {
    let crates = crate::support::manifest_dir().join("..");
    let dir_of = |package: &str| match package {
        "meshgate" => "meshgate".to_string(),
        other => other.trim_start_matches("meshgate-").to_string(),
    };
    let mut seen = BTreeSet::new();
    let mut todo = vec!["meshgate".to_string()];
    while let Some(package) = todo.pop() {
        if !seen.insert(package.clone()) {
            continue;
        }
        let manifest =
            std::fs::read_to_string(crates.join(dir_of(&package)).join("Cargo.toml")).unwrap();
        for dependency in normal_dependencies(&manifest) {
            assert!(
                ![
                    "clap",
                    "s3s",
                    "s3s-fs",
                    "meshgate-lake-server",
                    "meshgate-reference"
                ]
                .contains(&dependency.as_str()),
                "{package} depends on {dependency}, which the embeddable library must not compile"
            );
            if dependency.starts_with("meshgate") {
                todo.push(dependency);
            }
        }
    }
    assert!(seen.contains("meshgate-engine"), "walked {seen:?}");
}

/// Policy is pure: `(principal, table, grant snapshot) -> resolved policy`. It reads no
/// store (no governance crate, no sqlx) and knows the grant record only through the API
/// contract, which itself depends on serde alone.
#[test]
fn policy_reads_no_store_and_the_api_contract_depends_on_serde_alone() {
    let crates = crate::support::manifest_dir().join("..");
    let dependencies = |dir: &str| {
        normal_dependencies(&std::fs::read_to_string(crates.join(dir).join("Cargo.toml")).unwrap())
    };
    let policy = dependencies("policy");
    for store in ["meshgate-governance", "sqlx"] {
        assert!(
            !policy.iter().any(|d| d == store),
            "policy depends on {store}: {policy:?}"
        );
    }
    assert!(policy.iter().any(|d| d == "meshgate-api"), "{policy:?}");
    let api = dependencies("api");
    assert!(
        api.iter()
            .all(|d| ["serde", "serde_json", "thiserror"].contains(&d.as_str())),
        "{api:?}"
    );
}

#[test]
fn the_cycle_check_finds_a_cycle() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
    .collect();
    assert_eq!(cycle(&graph).unwrap(), ["a", "b", "c", "a"]);
    assert_eq!(
        imports(
            "use crate::{lockdown, shape};\nuse crate::error::X; // crate::nope\nuse crate::{\n    names::CATALOG,\n    plan,\n};"
        ),
        ["error", "lockdown", "names", "plan", "shape"]
            .into_iter()
            .map(str::to_string)
            .collect()
    );
}

/// `unsafe` is denied in every crate (the workspace's lints, which each crate takes); the one
/// place allowed to lift that is the call into the SHA-NI lanes of tokenization, after the CPU
/// was seen to have the extensions (`crates/protect/src/token/lanes.rs`, ARCHITECTURE.md).
#[test]
fn unsafe_code_is_allowed_in_one_place_only() {
    let root = crate::support::manifest_dir().join("../..");
    let workspace = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    assert!(
        workspace.contains("unsafe_code = \"deny\"")
            || workspace.contains("unsafe_code = \"forbid\""),
        "the workspace no longer denies unsafe code"
    );
    let mut allowed = Vec::new();
    let mut manifests = 0;
    let mut todo: Vec<_> = ["crates", "benches", "examples", "tests"]
        .iter()
        .map(|d| root.join(d))
        .collect();
    while let Some(dir) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry.unwrap().path();
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            if path.is_dir() {
                if !["target", "node_modules", ".venv"].contains(&name) {
                    todo.push(path);
                }
            } else if name == "Cargo.toml" {
                let manifest = std::fs::read_to_string(&path).unwrap();
                assert!(
                    manifest.contains("[lints]\nworkspace = true"),
                    "{} does not take the workspace's lints",
                    path.display()
                );
                manifests += 1;
            } else if name.ends_with(".rs") {
                let source = std::fs::read_to_string(&path).unwrap();
                let lifts = [
                    "allow(unsafe_code)",
                    "expect(unsafe_code)",
                    "warn(unsafe_code)",
                ]
                .iter()
                .map(|attribute| source.matches(attribute).count())
                .sum::<usize>();
                if lifts > 0 && !path.ends_with("tests/layers.rs") {
                    let relative = path.strip_prefix(&root).unwrap_or(&path);
                    allowed.push((relative.display().to_string(), lifts));
                }
            }
        }
    }
    assert!(manifests > 10, "found {manifests} crate manifests");
    assert_eq!(
        allowed,
        [("crates/protect/src/token/lanes.rs".to_string(), 1)],
        "unsafe code is allowed outside the one reviewed place"
    );
}
