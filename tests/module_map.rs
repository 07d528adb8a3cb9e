//! The module map reads top-down: no file of a folder under `src/` imports, directly or through
//! its siblings, a file that imports it back, and no top-level module takes part in a cycle. And
//! the modules a request goes through hold no lock.
//!
//! Read from the source text: `use super::x`, `super::x::`, `crate::folder::x` and their `{...}`
//! groups, between the sibling files (and sub-folders) of one folder. A name the folder's
//! `mod.rs` re-exports from a sibling (`pub use x::Name`) counts as that sibling. `mod.rs`
//! itself is the folder's table of contents: what it declares and re-exports is not an edge, and
//! a file using an item defined in `mod.rs` is not one either. Comments and the `mod tests` at
//! the end of a file are left out: doc links and unit tests are not the module map.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// Folders skipped (none: every folder reads top-down).
const SKIPPED_FOLDERS: &[&str] = &[];

/// Files on the request path allowed a lock (none).
const LOCKS_BEING_REMOVED: &[&str] = &[];

/// The modules a request (or a query) runs through, from its tenant's lookup to its record.
const REQUEST_PATH: &[&str] = &[
    "classify.rs",
    "instruments",
    "layer",
    "propagation",
    "protect",
    "query",
    "registry",
    "sampling",
    "stats",
    "tenant",
];

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The source of a file without comments and without its trailing unit-test module.
fn code_of(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let text = match text.find("#[cfg(test)]\nmod tests") {
        Some(at) => &text[..at],
        None => &text[..],
    };
    text.lines()
        .map(|line| match line.find("//") {
            Some(at) => &line[..at],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn is_ident(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_'
}

/// The paths written after `at` in `s`, groups expanded: `a::{b, c::d as e}` gives `[a, b]`,
/// `[a, c, d]` (aliases dropped: the last segment names what is imported). Returns them with
/// the byte position where parsing stopped.
fn parse_paths(s: &[u8], mut at: usize) -> (Vec<Vec<String>>, usize) {
    let skip_ws = |at: &mut usize| {
        while *at < s.len() && (s[*at] as char).is_whitespace() {
            *at += 1;
        }
    };
    skip_ws(&mut at);
    if at < s.len() && s[at] == b'{' {
        at += 1;
        let mut out = Vec::new();
        loop {
            skip_ws(&mut at);
            if at >= s.len() {
                return (out, at);
            }
            if s[at] == b'}' {
                return (out, at + 1);
            }
            if s[at] == b',' {
                at += 1;
                continue;
            }
            let (paths, next) = parse_paths(s, at);
            if next == at {
                // Something this reader does not know: step over it.
                at += 1;
            } else {
                at = next;
            }
            out.extend(paths);
        }
    }
    let start = at;
    while at < s.len() && (is_ident(s[at] as char) || s[at] == b'*') {
        at += 1;
    }
    if at == start {
        return (Vec::new(), at);
    }
    let seg = String::from_utf8_lossy(&s[start..at]).into_owned();
    if s[at..].starts_with(b"::") {
        let (rest, end) = parse_paths(s, at + 2);
        let out = rest
            .into_iter()
            .map(|mut p| {
                p.insert(0, seg.clone());
                p
            })
            .collect::<Vec<_>>();
        return (if out.is_empty() { vec![vec![seg]] } else { out }, end);
    }
    // `x as y`: the alias is what the importing file calls it.
    let mut look = at;
    skip_ws(&mut look);
    if s[look..].starts_with(b"as ") {
        look += 3;
        skip_ws(&mut look);
        let alias_start = look;
        while look < s.len() && is_ident(s[look] as char) {
            look += 1;
        }
        let alias = String::from_utf8_lossy(&s[alias_start..look]).into_owned();
        return (vec![vec![seg, format!("as {alias}")]], look);
    }
    (vec![vec![seg]], at)
}

/// Every path written after `prefix` (at a word boundary) in `code`.
fn paths_after(code: &str, prefix: &str) -> Vec<Vec<String>> {
    let bytes = code.as_bytes();
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(found) = code[from..].find(prefix) {
        let at = from + found;
        from = at + prefix.len();
        if at > 0 && is_ident(bytes[at - 1] as char) {
            continue;
        }
        out.extend(parse_paths(bytes, at + prefix.len()).0);
    }
    out
}

/// The modules of a folder: its `.rs` files but `mod.rs`, and its sub-folders with a `mod.rs`.
fn modules_of(dir: &Path) -> BTreeMap<String, Vec<PathBuf>> {
    let mut out = BTreeMap::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let name = path.file_stem().unwrap().to_string_lossy().into_owned();
        if path.is_dir() && path.join("mod.rs").exists() {
            out.insert(name, files_under(&path));
        } else if path.extension().is_some_and(|e| e == "rs") && name != "mod" && name != "lib" {
            out.insert(name, vec![path]);
        }
    }
    out
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    out
}

/// Names `mod.rs` re-exports from a sibling: `pub use entry::{Outcome, TenantEntry}` maps
/// `Outcome` and `TenantEntry` to `entry`.
fn reexports(mod_rs: &Path, siblings: &BTreeMap<String, Vec<PathBuf>>) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if !mod_rs.exists() {
        return out;
    }
    for path in paths_after(&code_of(mod_rs), "use ") {
        let Some(first) = path.first().filter(|f| siblings.contains_key(*f)) else {
            continue;
        };
        let Some(last) = path.last() else { continue };
        let name = last.strip_prefix("as ").unwrap_or(last);
        if name != "*" && path.len() > 1 {
            out.insert(name.to_owned(), first.clone());
        }
    }
    out
}

/// The sibling a path names, directly or through a re-export of `mod.rs`.
fn sibling_of(
    path: &[String],
    me: &str,
    siblings: &BTreeMap<String, Vec<PathBuf>>,
    reexported: &BTreeMap<String, String>,
) -> Option<String> {
    let first = path.first()?;
    let target = if siblings.contains_key(first) {
        first.clone()
    } else {
        reexported.get(first)?.clone()
    };
    (target != me).then_some(target)
}

/// The import graph between the sibling modules of the folder `dir` (named `folder` in
/// `crate::` paths).
fn folder_graph(dir: &Path, folder: &str) -> Graph {
    let siblings = modules_of(dir);
    let reexported = reexports(&dir.join("mod.rs"), &siblings);
    let mut graph = Graph::new();
    for (me, files) in &siblings {
        let edges = graph.entry(me.clone()).or_default();
        for file in files {
            let code = code_of(file);
            // In a sub-folder, `super::` is that sub-folder's parent's business, not ours.
            let own_file = file.parent() == Some(dir);
            let mut paths = paths_after(&code, &format!("crate::{folder}::"));
            if own_file {
                paths.extend(paths_after(&code, "super::"));
            }
            for path in paths {
                if let Some(target) = sibling_of(&path, me, &siblings, &reexported) {
                    edges.insert(target);
                }
            }
        }
    }
    graph
}

/// The import graph between the top-level modules, from `crate::x` paths.
fn top_level_graph(src: &Path) -> Graph {
    let modules = modules_of(src);
    let mut graph = Graph::new();
    for (me, files) in &modules {
        let edges = graph.entry(me.clone()).or_default();
        for file in files {
            for path in paths_after(&code_of(file), "crate::") {
                if let Some(first) = path
                    .first()
                    .filter(|f| *f != me && modules.contains_key(*f))
                {
                    edges.insert(first.clone());
                }
            }
        }
    }
    graph
}

/// The strongly connected components of more than one node (Tarjan), each sorted.
fn circles(graph: &Graph) -> Vec<Vec<String>> {
    struct Walk<'g> {
        graph: &'g Graph,
        index: BTreeMap<&'g str, usize>,
        low: BTreeMap<&'g str, usize>,
        stack: Vec<&'g str>,
        on_stack: BTreeSet<&'g str>,
        out: Vec<Vec<String>>,
    }
    impl<'g> Walk<'g> {
        fn visit(&mut self, v: &'g str) {
            let i = self.index.len();
            self.index.insert(v, i);
            self.low.insert(v, i);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_owned());
                    if w == v {
                        break;
                    }
                }
                if component.len() > 1 {
                    component.sort();
                    self.out.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.out
}

/// The crate's `src/`, or the tree `TENANT_OTEL_MAP_SRC` names (to read another revision's).
fn src() -> PathBuf {
    match std::env::var_os("TENANT_OTEL_MAP_SRC") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
    }
}

#[test]
fn no_file_of_a_folder_imports_in_a_circle() {
    let src = src();
    let mut found = Vec::new();
    let mut folders = 0;
    let mut edges = 0;
    for entry in fs::read_dir(&src).unwrap().flatten() {
        let dir = entry.path();
        if !dir.is_dir() {
            continue;
        }
        let folder = dir.file_name().unwrap().to_string_lossy().into_owned();
        let graph = folder_graph(&dir, &folder);
        folders += 1;
        edges += graph.values().map(BTreeSet::len).sum::<usize>();
        if SKIPPED_FOLDERS.contains(&folder.as_str()) {
            continue;
        }
        for circle in circles(&graph) {
            found.push(format!("{folder}/{{{}}}.rs", circle.join(",")));
        }
    }
    // The reader must have seen the crate: a dozen folders, and imports between their files.
    assert!(
        folders >= 10,
        "only {folders} folders under {}",
        src.display()
    );
    assert!(
        edges >= 20,
        "only {edges} imports between sibling files: the reader is broken"
    );
    assert!(found.is_empty(), "import circles inside folders: {found:?}");
}

#[test]
fn no_top_level_module_is_in_a_cycle() {
    let graph = top_level_graph(&src());
    assert!(graph.len() >= 10, "{} top-level modules", graph.len());
    let edges: usize = graph.values().map(BTreeSet::len).sum();
    assert!(
        edges >= 20,
        "only {edges} imports between top-level modules"
    );
    let found = circles(&graph);
    assert!(found.is_empty(), "top-level module cycles: {found:?}");
}

/// No `Mutex` or `RwLock` in the modules a request runs through: per-tenant state is atomics,
/// lock-free maps, and configuration swapped whole (`arc-swap`), so two requests never wait on
/// each other, whether of two tenants or of many tenants sharing `__overflow__`.
#[test]
fn no_lock_on_the_request_path() {
    let src = src();
    let mut files = 0;
    let mut found = Vec::new();
    for module in REQUEST_PATH {
        let path = src.join(module);
        let paths = if path.is_dir() {
            files_under(&path)
        } else {
            vec![path]
        };
        for file in paths {
            files += 1;
            let name = file
                .strip_prefix(&src)
                .unwrap()
                .to_string_lossy()
                .into_owned();
            if LOCKS_BEING_REMOVED.contains(&name.as_str()) {
                continue;
            }
            let code = code_of(&file);
            for lock in ["Mutex", "RwLock"] {
                let uses = code.matches(lock).count();
                if uses > 0 {
                    found.push(format!("{name}: {lock} x{uses}"));
                }
            }
        }
    }
    assert!(files >= 40, "only {files} files on the request path");
    assert!(found.is_empty(), "locks on the request path: {found:?}");
}

/// The reader itself, on text whose graph is known.
#[test]
fn the_reader_finds_paths_groups_and_aliases() {
    let code = "use super::{entry::TenantEntry, handle::{self, Tenant}, Inner};\n\
                use crate::layer::body::TenantBody;\n\
                let x = super::reclaim::LIVE;\n\
                use super::observe::{register as register_observers};";
    let got = paths_after(code, "super::");
    assert_eq!(
        got,
        [
            vec!["entry", "TenantEntry"],
            vec!["handle", "self"],
            vec!["handle", "Tenant"],
            vec!["Inner"],
            vec!["reclaim", "LIVE"],
            vec!["observe", "register", "as register_observers"],
        ]
    );
    assert_eq!(
        paths_after(code, "crate::layer::"),
        [vec!["body", "TenantBody"]]
    );
    let mut graph = Graph::new();
    for (a, b) in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "d"), ("e", "d")] {
        graph.entry(a.into()).or_default().insert(b.into());
        graph.entry(b.into()).or_default();
    }
    assert_eq!(circles(&graph), [vec!["a", "b", "c"]]);
}
