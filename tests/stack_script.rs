//! `collector-config/stack.sh up|status|down` as an operator runs it, on free loopback ports and
//! a state directory of the test's own: the Collector, Jaeger, Debian's `prometheus` and
//! `prometheus-alertmanager` start from the shipped configuration files; Prometheus scrapes
//! every target of the shipped `prometheus.yml`, finds the Alertmanager and loads every rule
//! group of the shipped rule files; `down` stops every process it started.
//!
//! The binaries come from `.ci/build-stack.sh`; without them the test fails.
//! `TENANT_OTEL_SKIP_STACK=1` skips it (quick local runs).

mod stack_support;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::Duration;

use serde_json::Value;
use stack_support::{config_dir, free_addr, http_get, poll, stack_bins};

/// `stack.sh` with this test's ports, binaries and state directory.
struct Script {
    env: Vec<(&'static str, String)>,
    state: PathBuf,
}

impl Script {
    fn run(&self, command: &str) -> Output {
        Command::new("bash")
            .arg(config_dir().join("stack.sh"))
            .arg(command)
            .envs(self.env.iter().map(|(k, v)| (*k, v.as_str())))
            .env("TENANT_OTEL_STACK_STATE", &self.state)
            .output()
            .expect("run collector-config/stack.sh")
    }

    fn get(&self, key: &str) -> &str {
        &self.env.iter().find(|(k, _)| *k == key).unwrap().1
    }

    fn logs(&self) -> String {
        ["jaeger", "otelcol", "alertmanager", "prometheus"]
            .iter()
            .map(|c| {
                let log = std::fs::read_to_string(self.state.join(format!("{c}.log")));
                format!("--- {c}\n{}", log.unwrap_or_default())
            })
            .collect()
    }
}

impl Drop for Script {
    /// However the test ends, nothing it started outlives it.
    fn drop(&mut self) {
        let _ = self.run("down");
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn pids(state: &std::path::Path) -> Vec<u32> {
    ["jaeger", "otelcol", "alertmanager", "prometheus"]
        .iter()
        .filter_map(|c| std::fs::read_to_string(state.join(format!("{c}.pid"))).ok())
        .map(|p| p.trim().parse().unwrap())
        .collect()
}

/// The names of the rule groups in the shipped rule files.
fn shipped_rule_groups() -> BTreeSet<String> {
    let dir = config_dir().join("prometheus/rules");
    let mut names = BTreeSet::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let docs = yaml_rust2::YamlLoader::load_from_str(&std::fs::read_to_string(&path).unwrap())
            .unwrap();
        for group in docs[0]["groups"].as_vec().unwrap() {
            names.insert(group["name"].as_str().unwrap().to_owned());
        }
    }
    names
}

#[test]
fn stack_script_runs_the_shipped_configs_and_stops_everything() {
    let Some(bins) = stack_bins("stack_script") else {
        return;
    };
    let state = tempfile::tempdir().unwrap();
    let telemetry = free_addr();
    let (telemetry_host, telemetry_port) = telemetry.split_once(':').unwrap();
    let script = Script {
        env: vec![
            ("TENANT_OTEL_STACK_BIN", bins.display().to_string()),
            ("OTELCOL_OTLP_GRPC_ENDPOINT", free_addr()),
            ("OTELCOL_OTLP_HTTP_ENDPOINT", free_addr()),
            ("OTELCOL_PROMETHEUS_ENDPOINT", free_addr()),
            ("OTELCOL_HEALTH_ENDPOINT", free_addr()),
            ("OTELCOL_TELEMETRY_HOST", telemetry_host.to_owned()),
            ("OTELCOL_TELEMETRY_PORT", telemetry_port.to_owned()),
            ("JAEGER_OTLP_GRPC_ENDPOINT", free_addr()),
            ("JAEGER_QUERY_HTTP_ENDPOINT", free_addr()),
            ("JAEGER_QUERY_GRPC_ENDPOINT", free_addr()),
            ("PROMETHEUS_ENDPOINT", free_addr()),
            ("ALERTMANAGER_ENDPOINT", free_addr()),
        ],
        state: state.path().join("stack"),
    };

    // Without the binaries, `up` says how to get them and starts nothing.
    let missing = Script {
        env: vec![("TENANT_OTEL_STACK_BIN", "/nonexistent".into())],
        state: state.path().join("missing"),
    };
    let out = missing.run("up");
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(text(&out).contains(".ci/build-stack.sh"), "{}", text(&out));
    assert!(pids(&missing.state).is_empty());
    drop(missing);

    let out = script.run("up");
    assert!(
        out.status.success(),
        "up: {}\n{}",
        text(&out),
        script.logs()
    );
    let up = text(&out);
    assert_eq!(up.matches(" ready (pid ").count(), 4, "{up}");
    let out = script.run("status");
    assert!(out.status.success(), "status: {}", text(&out));
    assert_eq!(text(&out).matches(" running (pid ").count(), 4);
    // A second `up` leaves the running stack alone.
    let started = pids(&script.state);
    assert_eq!(started.len(), 4);
    let again = script.run("up");
    assert!(again.status.success(), "{}", text(&again));
    assert_eq!(text(&again).matches("already running").count(), 4);
    assert_eq!(pids(&script.state), started);

    // Prometheus scrapes every job of the shipped prometheus.yml, on loopback, and they are up.
    let prometheus = script.get("PROMETHEUS_ENDPOINT").to_owned();
    let jobs = poll(
        Duration::from_secs(90),
        "every scrape target up",
        || script.logs(),
        || {
            let (_, body) = http_get(&format!("http://{prometheus}/api/v1/targets")).ok()?;
            let json: Value = serde_json::from_str(&body).ok()?;
            let targets = json["data"]["activeTargets"].as_array()?.clone();
            let up: BTreeSet<String> = targets
                .iter()
                .filter(|t| t["health"] == "up")
                .map(|t| t["labels"]["job"].as_str().unwrap().to_owned())
                .collect();
            (up.len() == targets.len() && up.len() == 4).then_some(up)
        },
    );
    assert_eq!(
        jobs.iter().map(String::as_str).collect::<Vec<_>>(),
        [
            "alertmanager",
            "otel-collector",
            "otel-collector-exporter",
            "prometheus"
        ]
    );
    let (_, body) = http_get(&format!("http://{prometheus}/api/v1/alertmanagers")).unwrap();
    let managers: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        managers["data"]["activeAlertmanagers"],
        serde_json::json!([{
            "url": format!("http://{}/api/v2/alerts", script.get("ALERTMANAGER_ENDPOINT"))
        }])
    );
    let (_, body) = http_get(&format!("http://{prometheus}/api/v1/rules")).unwrap();
    let rules: Value = serde_json::from_str(&body).unwrap();
    let loaded: BTreeSet<String> = rules["data"]["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(loaded, shipped_rule_groups());
    assert!(loaded.len() >= 5, "{loaded:?}");

    let out = script.run("down");
    assert!(out.status.success(), "down: {}", text(&out));
    assert_eq!(
        text(&out).matches(" stopped (pid ").count(),
        4,
        "{}",
        text(&out)
    );
    for pid in started {
        // Gone, or a zombie its new parent has yet to reap.
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let state = status.lines().find(|l| l.starts_with("State:"));
        assert!(
            state.is_none_or(|s| s.contains('Z')),
            "pid {pid} still runs after down: {state:?}"
        );
    }
    let out = script.run("status");
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert_eq!(text(&out).matches(" stopped").count(), 4);
    println!(
        "stack.sh: up, status, a second up, down; scraped jobs {jobs:?}; rule groups {loaded:?}"
    );
}
