//! The public API's shape, read from the sources: every public item has exactly one path, and the
//! crate root holds only what a user starts with.
//!
//! The module tree is followed from `src/lib.rs` through its `mod` declarations; a module is
//! public when it and all its parents are declared `pub mod`. A path exists for a name in a
//! public module that defines it as `pub` or re-exports it with `pub use` (restricted
//! visibilities such as `pub(crate)` are not public).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// At most this many names at the root: the layer, the tenant, sources, `init`, the client
/// layer, the registry, their builders and errors.
const MAX_ROOT_NAMES: usize = 25;

struct Module {
    path: String,
    public: bool,
    file: PathBuf,
}

/// The top-level statements of a file, one per entry, comments and attributes dropped and
/// multi-line `use` lists joined. Only what starts at column 0 is a top-level statement (the
/// crate is `rustfmt`-formatted), so items inside `impl` blocks and inline `mod tests` are left
/// out.
fn statements(source: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut pending: Option<String> = None;
    for line in source.lines() {
        if let Some(mut stmt) = pending.take() {
            stmt.push(' ');
            stmt.push_str(line.trim());
            if line.trim_end().ends_with(';') {
                out.push(stmt);
            } else {
                pending = Some(stmt);
            }
            continue;
        }
        if line.starts_with(' ') || line.starts_with("//") || line.starts_with('#') {
            continue;
        }
        let is_use = line.starts_with("pub use ") || line.starts_with("pub(crate) use ");
        if is_use && !line.trim_end().ends_with(';') {
            pending = Some(line.trim().to_owned());
        } else {
            out.push(line.trim().to_owned());
        }
    }
    out
}

/// The names a `use` tree brings in: `a::{b, c::d as e, f::{g, self}}` gives `b`, `e`, `g`, `f`.
fn use_names(tree: &str) -> Vec<String> {
    fn leaves(tree: &str, out: &mut Vec<String>) {
        let tree = tree.trim();
        if let Some(open) = tree.find('{') {
            let prefix = tree[..open].trim_end_matches("::");
            let inner = &tree[open + 1..tree.rfind('}').expect("a closing brace")];
            let mut depth = 0;
            let mut start = 0;
            for (i, c) in inner.char_indices() {
                match c {
                    '{' => depth += 1,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        leaf_or_self(prefix, &inner[start..i], out);
                        start = i + 1;
                    }
                    _ => {}
                }
            }
            leaf_or_self(prefix, &inner[start..], out);
        } else if let Some((_, alias)) = tree.split_once(" as ") {
            out.push(alias.trim().to_owned());
        } else {
            let last = tree.rsplit("::").next().unwrap_or(tree).trim();
            assert_ne!(
                last, "*",
                "glob re-exports hide which names are public: {tree}"
            );
            out.push(last.to_owned());
        }
    }
    fn leaf_or_self(prefix: &str, part: &str, out: &mut Vec<String>) {
        match part.trim() {
            "" => {}
            "self" => out.push(prefix.rsplit("::").next().unwrap_or(prefix).to_owned()),
            part => leaves(part, out),
        }
    }
    let mut out = Vec::new();
    leaves(tree.trim_end_matches(';'), &mut out);
    out
}

/// Every module of the crate, from `src/lib.rs` down.
fn modules(src: &Path) -> Vec<Module> {
    let mut all = Vec::new();
    let mut todo = vec![Module {
        path: String::new(),
        public: true,
        file: src.join("lib.rs"),
    }];
    while let Some(module) = todo.pop() {
        let source = std::fs::read_to_string(&module.file).expect("a module file");
        let dir = if module.path.is_empty() || module.file.ends_with("mod.rs") {
            module.file.parent().unwrap().to_path_buf()
        } else {
            module.file.with_extension("")
        };
        for stmt in statements(&source) {
            let (public, rest) = if let Some(rest) = stmt.strip_prefix("pub mod ") {
                (true, rest)
            } else if let Some(rest) = stmt.strip_prefix("mod ") {
                (false, rest)
            } else if let Some(rest) = stmt.strip_prefix("pub(crate) mod ") {
                (false, rest)
            } else {
                continue;
            };
            let Some(name) = rest.strip_suffix(';') else {
                continue; // an inline module (`mod tests { .. }`)
            };
            let file = if dir.join(format!("{name}.rs")).exists() {
                dir.join(format!("{name}.rs"))
            } else {
                dir.join(name).join("mod.rs")
            };
            let path = if module.path.is_empty() {
                name.to_owned()
            } else {
                format!("{}::{name}", module.path)
            };
            todo.push(Module {
                path,
                public: module.public && public,
                file,
            });
        }
        all.push(module);
    }
    all
}

/// Name → every public path to it.
fn public_paths(src: &Path) -> BTreeMap<String, Vec<String>> {
    const ITEMS: [&str; 9] = [
        "pub struct ",
        "pub enum ",
        "pub trait ",
        "pub type ",
        "pub static ",
        "pub union ",
        "pub const fn ",
        "pub async fn ",
        "pub fn ",
    ];
    let mut paths: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for module in modules(src).into_iter().filter(|m| m.public) {
        let source = std::fs::read_to_string(&module.file).unwrap();
        let mut add = |name: &str| {
            let path = if module.path.is_empty() {
                name.to_owned()
            } else {
                format!("{}::{name}", module.path)
            };
            paths.entry(name.to_owned()).or_default().push(path);
        };
        for stmt in statements(&source) {
            if let Some(tree) = stmt.strip_prefix("pub use ") {
                use_names(tree).iter().for_each(|n| add(n));
                continue;
            }
            let rest = ITEMS
                .iter()
                .find_map(|p| stmt.strip_prefix(p))
                .or_else(|| stmt.strip_prefix("pub const "));
            if let Some(rest) = rest {
                let end = rest
                    .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                add(&rest[..end]);
            }
        }
    }
    paths
}

fn src() -> PathBuf {
    // Overridable to check another checkout of the sources.
    std::env::var_os("TENANT_OTEL_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"))
}

#[test]
fn every_public_item_has_exactly_one_path() {
    let paths = public_paths(&src());
    // Lower bound: the parser found the API (the layer, the registry, the alert engine, ...).
    assert!(
        paths.len() >= 60,
        "only {} public names found: the parser lost its way",
        paths.len()
    );
    for expected in ["TenantLayer", "TenantRegistry", "init", "AlertEvent"] {
        assert!(paths.contains_key(expected), "{expected} not found");
    }
    let several: Vec<_> = paths.values().filter(|p| p.len() > 1).collect();
    assert!(
        several.is_empty(),
        "{} of {} public names have more than one path: {several:#?}",
        several.len(),
        paths.len()
    );
}

#[test]
fn the_root_holds_only_what_a_user_starts_with() {
    let paths = public_paths(&src());
    let root: Vec<_> = paths
        .values()
        .flatten()
        .filter(|p| !p.contains("::"))
        .collect();
    assert!(
        root.len() >= 10,
        "{} root names: the parser lost its way",
        root.len()
    );
    assert!(
        root.len() <= MAX_ROOT_NAMES,
        "{} names at the root (at most {MAX_ROOT_NAMES}): {root:?}",
        root.len()
    );
    for starter in [
        "TenantLayer",
        "TenantSource",
        "TenantId",
        "init",
        "Telemetry",
    ] {
        assert!(
            root.iter().any(|p| p.as_str() == starter),
            "{starter} not at the root"
        );
    }
}

#[test]
fn use_trees_are_read_whole() {
    assert_eq!(
        use_names("a::{b, c::d as e, f::{g, self}};"),
        ["b", "e", "g", "f"]
    );
    assert_eq!(use_names("x::y::Z;"), ["Z"]);
}

/// The `pub fn`s of `impl {ty} { .. }` blocks anywhere under `src`, but the one that builds.
fn setters(src: &Path, ty: &str) -> Vec<String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    let mut files = Vec::new();
    walk(src, &mut files);
    let header = format!("impl {ty} {{");
    let mut names = Vec::new();
    for file in files {
        let source = std::fs::read_to_string(file).unwrap();
        let mut inside = false;
        for line in source.lines() {
            if line == header {
                inside = true;
            } else if inside && line == "}" {
                inside = false;
            } else if let Some(rest) = line.strip_prefix("    pub fn ").filter(|_| inside) {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !matches!(name.as_str(), "build" | "init") {
                    names.push(name);
                }
            }
        }
    }
    names
}

/// Related switches are grouped into one configuration value each (`Edge`, `Alerts`, the
/// registry's builder), as tower-http groups its hooks: the builders were 18 and 24 switches.
#[test]
fn builders_take_one_value_per_capability() {
    for (ty, most, anchor) in [
        ("TenantLayerBuilder", 12, "edge"),
        ("TelemetryBuilder", 15, "alerts"),
    ] {
        let names = setters(&src(), ty);
        assert!(names.len() >= 5, "{ty}: the parser found only {names:?}");
        assert!(
            names.iter().any(|n| n == anchor),
            "{ty}: no {anchor} in {names:?}"
        );
        assert!(
            names.len() <= most,
            "{ty} has {} switches (at most {most}): {names:?}",
            names.len()
        );
    }
}
