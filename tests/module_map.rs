//! The files inside a folder read top-down: no file imports one that imports it back, directly
//! or around a circle, so a folder's module map can be read from its leaves up (as
//! tower-http's `trace/` is).
//!
//! Read from the sources: a file's imports are its `use super::name` and `super::name::` paths.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The folders whose files must import top-down.
const FOLDERS: [&str; 4] = ["init", "client", "alert", "view"];

/// File → the sibling files it uses.
fn imports(folder: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(folder).expect("the folder") {
        let path = entry.unwrap().path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if path.extension().is_some_and(|e| e == "rs") && name != "mod" {
            files.insert(name.to_owned(), std::fs::read_to_string(&path).unwrap());
        }
    }
    let names: BTreeSet<String> = files.keys().cloned().collect();
    files
        .iter()
        .map(|(name, source)| {
            // Unit tests (`mod tests`, at the end of a file) may reach anywhere.
            let code = source.split("#[cfg(test)]").next().unwrap_or(source);
            let used = names
                .iter()
                .filter(|other| *other != name)
                .filter(|other| {
                    code.contains(&format!("super::{other}::"))
                        || code.contains(&format!("super::{other};"))
                        || code.contains(&format!("super::{{{other}"))
                })
                .cloned()
                .collect();
            (name.clone(), used)
        })
        .collect()
}

/// A circle of imports, if there is one.
fn circle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|p| p == node) {
            let mut found = path[at..].to_vec();
            found.push(node.to_owned());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, graph, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_owned());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut Vec::new(), &mut done))
}

fn src() -> PathBuf {
    // Overridable to check another checkout of the sources.
    std::env::var_os("TENANT_OTEL_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn files_in_a_folder_import_top_down() {
    let mut circles = Vec::new();
    for folder in FOLDERS {
        let graph = imports(&src().join(folder));
        assert!(graph.len() >= 2, "{folder}: {} files found", graph.len());
        if let Some(found) = circle(&graph) {
            circles.push(format!("{folder}/: {}", found.join(" -> ")));
        }
    }
    assert!(circles.is_empty(), "import circles: {circles:#?}");
}

#[test]
fn a_circle_is_found() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", vec!["b"]),
        ("b", vec!["c"]),
        ("c", vec!["a"]),
        ("d", vec![]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_eq!(circle(&graph).unwrap(), ["a", "b", "c", "a"]);
    let acyclic: BTreeMap<String, BTreeSet<String>> = [("a", vec!["b"]), ("b", vec![])]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.into_iter().map(str::to_owned).collect()))
        .collect();
    assert_eq!(circle(&acyclic), None);
}
