//! What the README tells a new user, checked against the crate: the `Cargo.toml` lines of its
//! install section (each version requirement is the one the crate is built and tested with,
//! each feature exists), the Prometheus scrape job (`promtool check config`), and the knobs
//! `rag_service --help` shows. The README's Rust snippets are compiled as doc tests
//! (`src/lib.rs`), against the same versions.

mod processes;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

fn read(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The fenced blocks of `markdown` whose info string is `lang`.
fn blocks(markdown: &str, lang: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match (&mut current, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) if info.trim() == lang => current = Some(String::new()),
            (Some(block), Some(_)) => {
                out.push(std::mem::take(block));
                current = None;
            }
            (Some(block), None) => {
                block.push_str(line);
                block.push('\n');
            }
            (None, _) => {}
        }
    }
    out
}

/// A dependency line: its version requirement and features.
#[derive(Debug, Clone, Default, PartialEq)]
struct Dep {
    version: Option<String>,
    features: Vec<String>,
}

/// The value of `key = "..."` inside an inline table.
fn string_field(table: &str, key: &str) -> Option<String> {
    let at = table.find(&format!("{key} = \""))? + key.len() + 4;
    let rest = &table[at..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// `name = "1"` or `name = { version = "1", features = ["a"] }`, comments left out: the one
/// form per line that the README and `Cargo.toml` use.
fn parse_dep(line: &str) -> Option<(String, Dep)> {
    let line = line.split(" #").next()?.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let (name, value) = line.split_once('=')?;
    let value = value.trim();
    let dep = if let Some(version) = value.strip_prefix('"') {
        Dep {
            version: Some(version.trim_end_matches('"').to_owned()),
            features: Vec::new(),
        }
    } else {
        let features = value
            .find("features = [")
            .map(|at| {
                let list = &value[at + "features = [".len()..];
                list[..list.find(']').unwrap()]
                    .split(',')
                    .map(|f| f.trim().trim_matches('"').to_owned())
                    .filter(|f| !f.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        Dep {
            version: string_field(value, "version"),
            features,
        }
    };
    Some((name.trim().to_owned(), dep))
}

/// Every dependency under `[dependencies]` in the README's TOML blocks, block by block.
fn readme_dependencies() -> Vec<Vec<(String, Dep)>> {
    blocks(&read("README.md"), "toml")
        .iter()
        .filter(|b| b.lines().any(|l| l.trim() == "[dependencies]"))
        .map(|b| {
            b.lines()
                .skip_while(|l| l.trim() != "[dependencies]")
                .skip(1)
                .take_while(|l| !l.trim_start().starts_with('['))
                .filter_map(parse_dep)
                .collect()
        })
        .collect()
}

/// `Cargo.toml`'s sections, each a map of its dependency-like lines (`[features]` included:
/// its lines read as names with lists).
fn manifest() -> BTreeMap<String, BTreeMap<String, Vec<Dep>>> {
    let mut sections: BTreeMap<String, BTreeMap<String, Vec<Dep>>> = BTreeMap::new();
    let mut section = String::new();
    for line in read("Cargo.toml").lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            section = trimmed.trim_matches(['[', ']']).to_owned();
            continue;
        }
        if let Some((name, dep)) = parse_dep(line) {
            sections
                .entry(section.clone())
                .or_default()
                .entry(name)
                .or_default()
                .push(dep);
        }
    }
    sections
}

/// Whether `version` (`0.1.0`) meets the caret requirement `req` (`0.1`, `1`, `0.1.0`).
fn caret_matches(req: &str, version: &str) -> bool {
    let req: Vec<u64> = req.split('.').map(|p| p.parse().unwrap()).collect();
    let ver: Vec<u64> = version.split('.').map(|p| p.parse().unwrap()).collect();
    // The leftmost non-zero part of the requirement (or its last part) must match; the parts
    // after it may be higher.
    let fixed = req.iter().position(|&p| p != 0).unwrap_or(req.len() - 1);
    let lower_ok = ver[..req.len()] >= req[..];
    lower_ok && ver[..=fixed] == req[..=fixed]
}

#[test]
fn the_install_section_asks_for_what_the_crate_is_built_with() {
    let manifest = manifest();
    let package = &manifest["package"];
    let own_version = package["version"][0].version.clone().unwrap();
    let features = &manifest["features"];
    let blocks = readme_dependencies();
    assert!(blocks.len() >= 2, "an install block and a clients block");
    let mut checked = 0;
    for deps in &blocks {
        for (name, dep) in deps {
            let req = dep
                .version
                .as_deref()
                .unwrap_or_else(|| panic!("{name}: no version in the README"));
            if name == "tenant-otel" {
                assert!(
                    caret_matches(req, &own_version),
                    "README asks for tenant-otel {req}; the crate is {own_version}"
                );
                for f in &dep.features {
                    assert!(
                        features.contains_key(f) && !f.starts_with("__"),
                        "README names feature {f:?}, which tenant-otel does not have"
                    );
                }
            } else {
                // What the crate is built against, or its tests and examples (the snippets
                // are compiled with those).
                let ours: Vec<String> = ["dependencies", "dev-dependencies"]
                    .iter()
                    .filter_map(|s| manifest.get(*s)?.get(name))
                    .flatten()
                    .filter_map(|d| d.version.clone())
                    .collect();
                assert!(
                    !ours.is_empty(),
                    "README names {name}, which Cargo.toml does not: its version is unchecked"
                );
                assert!(
                    ours.iter().any(|v| v == req),
                    "README asks for {name} {req:?}; Cargo.toml has {ours:?}"
                );
            }
            checked += 1;
        }
    }
    // The first block is what the first example needs.
    let first: BTreeMap<_, _> = blocks[0].iter().cloned().collect();
    for needed in ["tenant-otel", "axum", "tokio"] {
        assert!(first.contains_key(needed), "{needed} in the install block");
    }
    assert!(first["tenant-otel"].features.contains(&"axum".to_owned()));
    let clients: BTreeMap<_, _> = blocks[1].iter().cloned().collect();
    for needed in ["reqwest", "reqwest-middleware", "hyper-util", "tonic"] {
        assert!(
            clients.contains_key(needed),
            "{needed} in the clients block"
        );
    }
    assert!(clients["tenant-otel"]
        .features
        .contains(&"reqwest".to_owned()));
    assert!(checked >= 15, "{checked} dependency lines checked");

    let rust = package["rust-version"][0].version.clone().unwrap();
    assert!(
        read("README.md").contains(&format!("Rust {rust} or newer")),
        "the README states rust-version {rust}"
    );
}

#[test]
fn the_requirement_check_tells_versions_apart() {
    assert!(caret_matches("0.1", "0.1.0"));
    assert!(caret_matches("0.1", "0.1.7"));
    assert!(!caret_matches("0.2", "0.1.0"));
    assert!(!caret_matches("0.1.3", "0.1.0"));
    assert!(caret_matches("1", "1.4.0"));
    assert!(!caret_matches("2", "1.4.0"));
    assert_eq!(
        parse_dep(r#"tower = { version = "0.5", features = ["util"] }  # tower"#),
        Some((
            "tower".to_owned(),
            Dep {
                version: Some("0.5".to_owned()),
                features: vec!["util".to_owned()]
            }
        ))
    );
}

/// The README's scrape job for a service's own `/metrics`, and the commented one in the
/// project's `prometheus.yml`: the same job, and Prometheus accepts it.
#[test]
fn the_scrape_job_for_a_services_metrics_is_valid_prometheus_config() {
    let readme = blocks(&read("README.md"), "yaml");
    let job = readme
        .iter()
        .find(|b| b.contains("metrics_path: /metrics"))
        .expect("the README's scrape job");
    let shipped: String = read("collector-config/prometheus/prometheus.yml")
        .lines()
        .skip_while(|l| !l.contains("# - job_name: rag-service"))
        .take_while(|l| l.trim_start().starts_with('#'))
        .map(|l| {
            // Uncommented: the marker goes, the indentation and any comment after it stay.
            let body = l.trim_start();
            let body = body
                .strip_prefix("# ")
                .unwrap_or(body.trim_start_matches('#'));
            format!("{}{body}\n", &l[..l.len() - l.trim_start().len()])
        })
        .collect();
    let normalize = |s: &str| -> Vec<String> {
        s.lines()
            .map(|l| l.split(" #").next().unwrap().trim().to_owned())
            .filter(|l| !l.is_empty() && l != "scrape_configs:")
            .collect()
    };
    assert!(!shipped.is_empty(), "the commented job in prometheus.yml");
    assert_eq!(normalize(job), normalize(&shipped));

    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(&config, job).unwrap();
    let out = Command::new("promtool")
        .args(["check", "config"])
        .arg(&config)
        .output()
        .expect("promtool (apt-get install prometheus)");
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `rag_service --help` shows how to make a tenant fail or crawl, as the README says.
#[test]
fn rag_service_help_shows_the_knobs() {
    let out = Command::new(processes::example("rag_service"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for expected in ["fail=true", "latency_ms=N", "x-tenant-id: globex", "--tier"] {
        assert!(help.contains(expected), "{expected:?} not in\n{help}");
    }
    let readme = read("README.md");
    for expected in ["?fail=true", "?latency_ms=", "--help"] {
        assert!(readme.contains(expected), "{expected:?} not in the README");
    }
}
