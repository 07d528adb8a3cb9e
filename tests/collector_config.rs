//! Checks of the operator configuration in `collector-config/`, run with the real Prometheus and
//! Alertmanager tools (`promtool`, `amtool`, `alertmanager`). A missing tool fails the test: a
//! configuration that was never checked must not pass as checked.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::io::ErrorKind;
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use yaml_rust2::{Yaml, YamlLoader};

const INSTALL_HINT: &str = "apt-get install prometheus prometheus-alertmanager";

/// The Prometheus series of the telemetry contract (shared/telemetry-contract.md, Prometheus column).
const CONTRACT_SERIES: &[&str] = &[
    "http_server_request_duration_seconds_bucket",
    "http_server_request_duration_seconds_sum",
    "http_server_request_duration_seconds_count",
    "http_server_active_requests",
    "rpc_server_call_duration_seconds_bucket",
    "rpc_server_call_duration_seconds_sum",
    "rpc_server_call_duration_seconds_count",
    "rag_queries_total",
    "rag_query_duration_seconds_bucket",
    "rag_query_duration_seconds_sum",
    "rag_query_duration_seconds_count",
    "rag_active_queries",
    "rag_docs_retrieved_bucket",
    "rag_docs_retrieved_sum",
    "rag_docs_retrieved_count",
    "rag_llm_tokens_total",
    "rag_quota_usage_percent",
    "tenant_info",
    "tenant_sla_error_budget_remaining_ratio",
    "tenant_sla_burn_rate",
    "tenant_resource_share_ratio",
    "tenant_cardinality_overflow_total",
];

/// What the collector's spanmetrics connector produces (namespace traces.span.metrics, unit s).
/// Only the recording rules may read these; dashboards go through the rules.
const SPANMETRICS_SERIES: &[&str] = &[
    "traces_span_metrics_calls_total",
    "traces_span_metrics_duration_seconds_bucket",
    "traces_span_metrics_duration_seconds_sum",
    "traces_span_metrics_duration_seconds_count",
];

/// Components of the OpenTelemetry Collector contrib distribution (otelcol-contrib) that a config
/// here may use. Not the full list: the ones an operator plausibly reaches for. A name outside it
/// is a typo or a component the contrib image does not ship.
const CONTRIB_RECEIVERS: &[&str] = &[
    "otlp",
    "prometheus",
    "hostmetrics",
    "jaeger",
    "zipkin",
    "filelog",
    "kafka",
    "k8s_cluster",
    "kubeletstats",
    "docker_stats",
    "httpcheck",
];
const CONTRIB_PROCESSORS: &[&str] = &[
    "memory_limiter",
    "batch",
    "tail_sampling",
    "probabilistic_sampler",
    "resource",
    "attributes",
    "transform",
    "filter",
    "k8sattributes",
    "resourcedetection",
    "groupbytrace",
    "groupbyattrs",
    "cumulativetodelta",
    "deltatocumulative",
    "metricstransform",
    "span",
    "redaction",
];
const CONTRIB_EXPORTERS: &[&str] = &[
    "otlp",
    "otlphttp",
    "prometheus",
    "prometheusremotewrite",
    "debug",
    "file",
    "kafka",
    "zipkin",
    "loadbalancing",
];
const CONTRIB_CONNECTORS: &[&str] = &[
    "spanmetrics",
    "forward",
    "servicegraph",
    "count",
    "routing",
    "exceptions",
    "sum",
];
const CONTRIB_EXTENSIONS: &[&str] = &[
    "health_check",
    "pprof",
    "zpages",
    "basicauth",
    "bearertokenauth",
    "oauth2client",
    "file_storage",
    "headers_setter",
];

fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("collector-config")
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("paths in the repository are UTF-8")
}

/// Runs a tool; a tool that is not installed is a failure that says how to install it.
fn run(tools: &[&str], args: &[&str]) -> Output {
    for tool in tools {
        match Command::new(tool).args(args).output() {
            Ok(out) => return out,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => panic!("cannot run {tool}: {e}"),
        }
    }
    panic!(
        "{} not found on PATH; install it with `{INSTALL_HINT}`",
        tools.join(" or ")
    )
}

fn promtool(args: &[&str]) -> Output {
    run(&["promtool"], args)
}

fn amtool(args: &[&str]) -> Output {
    run(&["amtool"], args)
}

fn text(out: &Output) -> String {
    format!(
        "exit: {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn load_yaml(path: &Path) -> Yaml {
    let src = fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut docs = YamlLoader::load_from_str(&src)
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()));
    assert_eq!(
        docs.len(),
        1,
        "{} should hold one YAML document",
        path.display()
    );
    docs.remove(0)
}

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yml" | "yaml")))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no YAML files in {}", dir.display());
    files
}

fn rule_files() -> Vec<PathBuf> {
    yaml_files(&config_dir().join("prometheus/rules"))
}

fn promtool_test_files() -> Vec<PathBuf> {
    yaml_files(&config_dir().join("prometheus/tests"))
}

fn str_of<'a>(y: &'a Yaml, what: &str) -> &'a str {
    y.as_str()
        .unwrap_or_else(|| panic!("{what} should be a string, found {y:?}"))
}

fn vec_of<'a>(y: &'a Yaml, what: &str) -> &'a Vec<Yaml> {
    y.as_vec()
        .unwrap_or_else(|| panic!("{what} should be a list, found {y:?}"))
}

fn keys_of(y: &Yaml) -> Vec<String> {
    y.as_hash()
        .map(|h| {
            h.keys()
                .filter_map(|k| k.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Every rule of the rules files, as (file, rule).
fn all_rules() -> Vec<(PathBuf, Yaml)> {
    let mut rules = Vec::new();
    for file in rule_files() {
        let doc = load_yaml(&file);
        for group in vec_of(&doc["groups"], "groups") {
            for rule in vec_of(&group["rules"], "rules") {
                rules.push((file.clone(), rule.clone()));
            }
        }
    }
    rules
}

fn recorded_names() -> BTreeSet<String> {
    all_rules()
        .iter()
        .filter_map(|(_, r)| r["record"].as_str().map(str::to_owned))
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Metric names in PromQL

const PROMQL_KEYWORDS: &[&str] = &[
    "and",
    "or",
    "unless",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "offset",
    "bool",
    "inf",
    "nan",
    "atan2",
];
/// Keywords followed by a parenthesised list of label names, not of expressions.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// The metric names a PromQL expression selects: identifiers that are not functions, aggregations,
/// keywords, label names (in `{...}` or in `by (...)` lists), strings, numbers or durations.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let chars: Vec<char> = expr.chars().collect();
    let mut names = BTreeSet::new();
    let mut braces = 0usize;
    let mut i = 0;
    let next_non_space = |mut j: usize| {
        while j < chars.len() && chars[j].is_whitespace() {
            j += 1;
        }
        j
    };
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                if chars[i] == '\\' && c != '`' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
        } else if c == '#' {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '{' {
            braces += 1;
            i += 1;
        } else if c == '}' {
            braces = braces.saturating_sub(1);
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            // Numbers and durations (5m, 1h30m, 1e3, 0x1f).
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
            {
                i += 1;
            }
        } else if c.is_ascii_alphabetic() || c == '_' || c == ':' {
            let start = i;
            while i < chars.len()
                && (chars[i].is_ascii_alphanumeric() || chars[i] == '_' || chars[i] == ':')
            {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let after = next_non_space(i);
            let lower = word.to_ascii_lowercase();
            if braces > 0 {
                // A label name inside a selector.
            } else if LABEL_LIST_KEYWORDS.contains(&lower.as_str()) {
                if chars.get(after) == Some(&'(') {
                    i = after;
                    while i < chars.len() && chars[i] != ')' {
                        i += 1;
                    }
                    i += 1;
                }
            } else if PROMQL_KEYWORDS.contains(&lower.as_str()) {
                // Operator or modifier.
            } else if chars.get(after) == Some(&'(') || followed_by_grouping(&chars[after..]) {
                // Function, or aggregation (`sum by (...) (...)`).
            } else {
                names.insert(word);
            }
        } else {
            i += 1;
        }
    }
    names
}

fn followed_by_grouping(rest: &[char]) -> bool {
    let word: String = rest
        .iter()
        .take_while(|c| c.is_ascii_alphanumeric() || **c == '_')
        .collect();
    let word = word.to_ascii_lowercase();
    (word == "by" || word == "without")
        && rest[word.len()..].iter().find(|c| !c.is_whitespace()) == Some(&'(')
}

#[test]
fn metric_name_extraction_sees_through_promql_syntax() {
    let expr = r#"sum by (tenant_id, le) (rate(http_server_request_duration_seconds_bucket{http_route=~"/v1/.*", le!="+Inf"}[5m] offset 1h))
        / on (tenant_id) group_left (tier) tenant:tier:info
        or label_replace(vector(1), "tier", "$1 not_a_metric", "", "") > bool 0.5
        unless topk(3, bogus_metric_total) * 1e3"#;
    let expected: BTreeSet<String> = [
        "http_server_request_duration_seconds_bucket",
        "tenant:tier:info",
        "bogus_metric_total",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    assert_eq!(metric_names(expr), expected);
}

// ---------------------------------------------------------------------------------------------
// Prometheus

#[test]
fn promtool_check_config_follows_rule_files() {
    let config = config_dir().join("prometheus/prometheus.yml");
    let out = promtool(&["check", "config", path_str(&config)]);
    let report = text(&out);
    assert!(
        out.status.success(),
        "promtool check config failed\n{report}"
    );
    for file in rule_files() {
        let name = file.file_name().unwrap().to_str().unwrap();
        assert!(
            report.contains(name),
            "prometheus.yml does not load {name} (rule_files glob)\n{report}"
        );
    }
}

#[test]
fn promtool_check_rules() {
    let files = rule_files();
    let mut args = vec!["check", "rules"];
    args.extend(files.iter().map(|f| path_str(f)));
    let out = promtool(&args);
    assert!(
        out.status.success(),
        "promtool check rules failed\n{}",
        text(&out)
    );
    let rules = all_rules();
    let alerts = rules
        .iter()
        .filter(|(_, r)| !r["alert"].is_badvalue())
        .count();
    println!("{} rules, {} of them alerts", rules.len(), alerts);
    assert!(alerts >= 7, "expected at least 7 alerts, found {alerts}");
}

#[test]
fn promtool_unit_tests_pass() {
    for file in promtool_test_files() {
        let out = promtool(&["test", "rules", path_str(&file)]);
        assert!(
            out.status.success(),
            "promtool test rules {} failed\n{}",
            file.display(),
            text(&out)
        );
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("SUCCESS"),
            "{}",
            text(&out)
        );
    }
}

#[test]
fn promtool_unit_tests_can_fail() {
    // The averaging-blindness test must go red when a healthy tenant alerts: lower the success
    // threshold of TenantSuccessRateLow so that every tenant matches, and run the same test file.
    let dir = tempfile::tempdir().expect("temporary directory");
    fs::create_dir(dir.path().join("rules")).unwrap();
    fs::create_dir(dir.path().join("tests")).unwrap();
    for file in rule_files() {
        let src = fs::read_to_string(&file).unwrap();
        let src = src.replace(
            "tenant:http_success:ratio_rate5m < 0.95",
            "tenant:http_success:ratio_rate5m <= 1",
        );
        fs::write(
            dir.path().join("rules").join(file.file_name().unwrap()),
            src,
        )
        .unwrap();
    }
    let test = config_dir().join("prometheus/tests/averaging_blindness_test.yml");
    let copy = dir.path().join("tests/averaging_blindness_test.yml");
    fs::copy(&test, &copy).unwrap();
    let out = promtool(&["test", "rules", path_str(&copy)]);
    let report = text(&out);
    assert!(
        !out.status.success(),
        "a broken threshold went unnoticed\n{report}"
    );
    assert!(
        report.contains("tenant-01"),
        "the failure should name a healthy tenant\n{report}"
    );
}

#[test]
fn every_alert_carries_routing_labels_and_is_tested_both_ways() {
    let mut alerts = BTreeMap::new();
    for (file, rule) in all_rules() {
        let Some(name) = rule["alert"].as_str() else {
            continue;
        };
        let where_ = format!("{name} in {}", file.display());
        let labels = &rule["labels"];
        let severity = str_of(&labels["severity"], &format!("severity of {where_}"));
        assert!(
            ["page", "ticket"].contains(&severity),
            "{where_}: severity {severity}"
        );
        str_of(&labels["objective"], &format!("objective of {where_}"));
        let expr = str_of(&rule["expr"], "expr");
        // tenant_id and tier come from the expression (joined through tenant_info) or are static.
        let static_routing = !labels["tenant_id"].is_badvalue() && !labels["tier"].is_badvalue();
        let joined = expr.contains("group_left (tier) tenant:tier:info")
            || expr.contains("tenant:slo_burn_rate:");
        assert!(static_routing || joined, "{where_}: no tenant_id/tier");
        let ann = &rule["annotations"];
        assert!(
            !str_of(&ann["summary"], "summary").is_empty(),
            "{where_}: summary"
        );
        assert!(
            str_of(&ann["runbook_url"], "runbook_url").starts_with("https://"),
            "{where_}: runbook_url"
        );
        alerts.insert(name.to_owned(), (false, false));
    }

    // Which alerts the unit tests expect to fire, and to stay silent. Every expected firing alert
    // carries tenant_id, tier and severity: promtool compares label sets exactly, so the real
    // alerts carry them too.
    let mut cases = 0;
    for file in promtool_test_files() {
        let doc = load_yaml(&file);
        for group in vec_of(&doc["tests"], "tests") {
            let Some(tests) = group["alert_rule_test"].as_vec() else {
                continue;
            };
            for case in tests {
                cases += 1;
                let name = str_of(&case["alertname"], "alertname");
                let entry = alerts
                    .get_mut(name)
                    .unwrap_or_else(|| panic!("{} tests unknown alert {name}", file.display()));
                let expected = case["exp_alerts"].as_vec().cloned().unwrap_or_default();
                if expected.is_empty() {
                    entry.1 = true;
                }
                for alert in &expected {
                    entry.0 = true;
                    for label in ["tenant_id", "tier", "severity"] {
                        assert!(
                            !alert["exp_labels"][label].is_badvalue(),
                            "{}: expected {name} without {label}",
                            file.display()
                        );
                    }
                }
            }
        }
    }
    println!("{} alerts, {cases} alert_rule_test cases", alerts.len());
    for (name, (fires, silent)) in &alerts {
        assert!(fires, "no unit test expects {name} to fire");
        assert!(silent, "no unit test expects {name} to stay silent");
    }
}

#[test]
fn rules_read_only_contract_metrics() {
    let recorded = recorded_names();
    let allowed: BTreeSet<&str> = CONTRACT_SERIES
        .iter()
        .chain(SPANMETRICS_SERIES)
        .copied()
        .chain(recorded.iter().map(String::as_str))
        .collect();
    for (file, rule) in all_rules() {
        let expr = str_of(&rule["expr"], "expr");
        for name in metric_names(expr) {
            assert!(
                allowed.contains(name.as_str()),
                "{}: `{name}` is neither a contract series nor a recording rule, in:\n{expr}",
                file.display()
            );
        }
    }
}

#[test]
fn slo_objectives_per_tier() {
    let mut objectives = BTreeMap::new();
    for (_, rule) in all_rules() {
        if rule["record"].as_str() == Some("tier:slo_objective:ratio") {
            let tier = str_of(&rule["labels"]["tier"], "tier").to_owned();
            objectives.insert(tier, str_of(&rule["expr"], "expr").to_owned());
        }
    }
    for (tier, expr) in [
        ("free", "vector(0.99)"),
        ("standard", "vector(0.995)"),
        ("premium", "vector(0.999)"),
    ] {
        assert_eq!(
            objectives.get(tier).map(String::as_str),
            Some(expr),
            "objective of {tier}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Alertmanager

fn alertmanager_config() -> PathBuf {
    config_dir().join("alertmanager/alertmanager.yml")
}

#[test]
fn amtool_check_config() {
    let config = alertmanager_config();
    let out = amtool(&["check-config", path_str(&config)]);
    assert!(
        out.status.success(),
        "amtool check-config failed\n{}",
        text(&out)
    );
}

fn route_test(receivers: &str, labels: &[&str]) -> Output {
    let config = alertmanager_config();
    let file_arg = format!("--config.file={}", path_str(&config));
    let verify = format!("--verify.receivers={receivers}");
    let mut args = vec![
        "config",
        "routes",
        "test",
        file_arg.as_str(),
        verify.as_str(),
    ];
    args.extend_from_slice(labels);
    amtool(&args)
}

#[test]
fn alertmanager_routes_by_tier_and_tenant() {
    let cases: &[(&str, &[&str])] = &[
        (
            "premium-page",
            &[
                "tenant_id=acme",
                "tier=premium",
                "severity=page",
                "objective=availability",
            ],
        ),
        (
            "premium-ticket",
            &[
                "tenant_id=acme",
                "tier=premium",
                "severity=ticket",
                "objective=quota",
            ],
        ),
        (
            "standard-page",
            &[
                "tenant_id=initech",
                "tier=standard",
                "severity=page",
                "objective=latency",
            ],
        ),
        (
            "standard-ticket",
            &[
                "tenant_id=initech",
                "tier=standard",
                "severity=ticket",
                "objective=fairness",
            ],
        ),
        (
            "free-alerts",
            &[
                "tenant_id=hobby",
                "tier=free",
                "severity=page",
                "objective=availability",
            ],
        ),
        (
            "free-alerts",
            &[
                "tenant_id=hobby",
                "tier=free",
                "severity=ticket",
                "objective=quota",
            ],
        ),
        // A tenant with its own receiver, and the tier's on-call as well.
        (
            "tenant-finance,premium-page",
            &[
                "tenant_id=finance",
                "tier=premium",
                "severity=page",
                "objective=availability",
            ],
        ),
        (
            "tenant-finance,premium-ticket",
            &[
                "tenant_id=finance",
                "tier=premium",
                "severity=ticket",
                "objective=quota",
            ],
        ),
        // A tenant whose tickets go to its own team only; its pages still reach the tier on-call.
        (
            "tenant-globex-tickets",
            &[
                "tenant_id=globex",
                "tier=standard",
                "severity=ticket",
                "objective=quota",
            ],
        ),
        (
            "standard-page",
            &[
                "tenant_id=globex",
                "tier=standard",
                "severity=page",
                "objective=latency",
            ],
        ),
        (
            "platform-cardinality",
            &[
                "alertname=TenantCardinalityOverflow",
                "tenant_id=__overflow__",
                "tier=platform",
                "severity=ticket",
            ],
        ),
        (
            "platform-default",
            &[
                "tenant_id=newcomer",
                "tier=unknown",
                "severity=page",
                "objective=availability",
            ],
        ),
    ];
    for (receivers, labels) in cases {
        let out = route_test(receivers, labels);
        assert!(
            out.status.success(),
            "{labels:?} should go to {receivers}\n{}",
            text(&out)
        );
    }
    println!("{} amtool route cases", cases.len() + 1);
    // The check itself can fail: a free-tier page is not the premium on-call's.
    let out = route_test(
        "premium-page",
        &["tenant_id=hobby", "tier=free", "severity=page"],
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "amtool should reject a wrong receiver\n{}",
        text(&out)
    );
}

struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_alertmanager(port: u16, storage: &Path) -> KillOnDrop {
    let config = alertmanager_config();
    let args = [
        format!("--config.file={}", path_str(&config)),
        format!("--storage.path={}", path_str(storage)),
        format!("--web.listen-address=127.0.0.1:{port}"),
        "--cluster.listen-address=".to_owned(),
    ];
    for bin in ["prometheus-alertmanager", "alertmanager"] {
        match Command::new(bin)
            .args(&args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
        {
            Ok(child) => return KillOnDrop(child),
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => panic!("cannot start {bin}: {e}"),
        }
    }
    panic!("prometheus-alertmanager (or alertmanager) not found on PATH; install it with `{INSTALL_HINT}`")
}

fn alert_keys(json: &[u8]) -> BTreeSet<(String, String, String)> {
    let alerts: serde_json::Value = serde_json::from_slice(json).unwrap_or_else(|e| {
        panic!(
            "amtool output is not JSON ({e}): {}",
            String::from_utf8_lossy(json)
        )
    });
    alerts
        .as_array()
        .expect("a JSON list of alerts")
        .iter()
        .map(|a| {
            let l = &a["labels"];
            let s = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (s("alertname"), s("tenant_id"), s("objective"))
        })
        .collect()
}

#[test]
fn alertmanager_page_inhibits_ticket_of_same_tenant_and_objective() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let storage = tempfile::tempdir().expect("temporary directory");
    let mut am = spawn_alertmanager(port, storage.path());
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = am.0.try_wait().unwrap() {
            panic!("alertmanager exited with {status}");
        }
        assert!(
            Instant::now() < deadline,
            "alertmanager did not listen on {port}"
        );
        sleep(Duration::from_millis(100));
    }
    let url = format!("--alertmanager.url=http://127.0.0.1:{port}");
    // Listening is not yet serving the API: wait until a query answers.
    loop {
        let out = amtool(&[url.as_str(), "alert", "query", "-o", "json"]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "alertmanager API not ready\n{}",
            text(&out)
        );
        sleep(Duration::from_millis(200));
    }
    let alerts: &[&[&str]] = &[
        &[
            "TenantErrorBudgetBurnPage",
            "tenant_id=finance",
            "tier=premium",
            "severity=page",
            "objective=availability",
        ],
        &[
            "TenantErrorBudgetBurnTicket",
            "tenant_id=finance",
            "tier=premium",
            "severity=ticket",
            "objective=availability",
        ],
        &[
            "TenantQuotaNearlyExhausted",
            "tenant_id=finance",
            "tier=premium",
            "severity=ticket",
            "objective=quota",
        ],
        &[
            "TenantErrorBudgetBurnTicket",
            "tenant_id=acme",
            "tier=premium",
            "severity=ticket",
            "objective=availability",
        ],
    ];
    for labels in alerts {
        let mut args = vec![url.as_str(), "alert", "add"];
        args.extend_from_slice(labels);
        let out = amtool(&args);
        assert!(
            out.status.success(),
            "amtool alert add {labels:?}\n{}",
            text(&out)
        );
    }
    let ticket = |tenant: &str, objective: &str| {
        (
            "TenantErrorBudgetBurnTicket".to_owned(),
            tenant.to_owned(),
            objective.to_owned(),
        )
    };
    let expected_inhibited: BTreeSet<_> = [ticket("finance", "availability")].into_iter().collect();
    let mut inhibited = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(20);
    while inhibited != expected_inhibited && Instant::now() < deadline {
        sleep(Duration::from_millis(200));
        let out = amtool(&[url.as_str(), "alert", "query", "--inhibited", "-o", "json"]);
        assert!(out.status.success(), "{}", text(&out));
        inhibited = alert_keys(&out.stdout);
    }
    assert_eq!(
        inhibited, expected_inhibited,
        "only finance's availability ticket is inhibited"
    );

    let out = amtool(&[url.as_str(), "alert", "query", "-o", "json"]);
    assert!(out.status.success(), "{}", text(&out));
    let active = alert_keys(&out.stdout);
    let expected_active: BTreeSet<_> = [
        (
            "TenantErrorBudgetBurnPage".to_owned(),
            "finance".to_owned(),
            "availability".to_owned(),
        ),
        (
            "TenantQuotaNearlyExhausted".to_owned(),
            "finance".to_owned(),
            "quota".to_owned(),
        ),
        ticket("acme", "availability"),
    ]
    .into_iter()
    .collect();
    assert_eq!(
        active, expected_active,
        "a page silences neither other objectives nor other tenants"
    );
    drop(am);
}

// ---------------------------------------------------------------------------------------------
// Grafana

fn dashboards() -> Vec<(PathBuf, serde_json::Value)> {
    let dir = config_dir().join("grafana/dashboards");
    let mut out = Vec::new();
    for entry in fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) == Some("json") {
            let src = fs::read_to_string(&path).unwrap();
            let json = serde_json::from_str(&src)
                .unwrap_or_else(|e| panic!("{} is not valid JSON: {e}", path.display()));
            out.push((path, json));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(out.len(), 3, "three dashboards: platform, tenant, route");
    out
}

fn walk_panels<'a>(panels: &'a serde_json::Value, out: &mut Vec<&'a serde_json::Value>) {
    for p in panels.as_array().into_iter().flatten() {
        out.push(p);
        walk_panels(&p["panels"], out);
    }
}

fn panels(dash: &serde_json::Value) -> Vec<&serde_json::Value> {
    let mut out = Vec::new();
    walk_panels(&dash["panels"], &mut out);
    out
}

/// Every PromQL expression of a dashboard: panel targets, and the selectors of `label_values`
/// variable queries.
fn dashboard_exprs(dash: &serde_json::Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for panel in panels(dash) {
        for target in panel["targets"].as_array().into_iter().flatten() {
            if let Some(expr) = target["expr"].as_str() {
                exprs.push(expr.to_owned());
            }
        }
    }
    for var in dash["templating"]["list"].as_array().into_iter().flatten() {
        let query = var["query"]["query"]
            .as_str()
            .or(var["query"].as_str())
            .unwrap_or_default();
        if let Some(inner) = query
            .strip_prefix("label_values(")
            .and_then(|q| q.strip_suffix(')'))
        {
            if let Some((selector, _label)) = inner.rsplit_once(',') {
                exprs.push(selector.trim().to_owned());
            }
        } else if !query.is_empty() {
            exprs.push(query.to_owned());
        }
    }
    exprs
}

/// Replaces Grafana variables with values PromQL accepts: durations for the interval and range
/// variables, a plain value for the others.
fn substitute_grafana_vars(expr: &str) -> String {
    let mut out = String::new();
    let mut rest = expr;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos + 1..];
        let (name, len) = if let Some(braced) = after.strip_prefix('{') {
            let end = braced.find('}').expect("unterminated ${");
            (braced[..end].split(':').next().unwrap(), end + 2)
        } else {
            let end = after
                .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(after.len());
            (&after[..end], end)
        };
        assert!(!name.is_empty(), "a lone $ in {expr}");
        if name.starts_with("__") && (name.contains("interval") || name.contains("range")) {
            out.push_str("5m");
        } else {
            out.push_str("grafana_value");
        }
        rest = &after[len..];
    }
    out.push_str(rest);
    out
}

fn check_exprs_with_promtool(exprs: &[String]) -> Output {
    let dir = tempfile::tempdir().expect("temporary directory");
    let mut yaml = String::from("groups:\n  - name: dashboard-expressions\n    rules:\n");
    for (i, expr) in exprs.iter().enumerate() {
        let quoted = serde_json::to_string(expr).unwrap();
        yaml.push_str(&format!(
            "      - record: dashboard:expr_{i}\n        expr: {quoted}\n"
        ));
    }
    let file = dir.path().join("dashboard-exprs.yml");
    fs::write(&file, yaml).unwrap();
    promtool(&["check", "rules", path_str(&file)])
}

#[test]
fn dashboard_promql_parses_and_uses_contract_names() {
    let recorded = recorded_names();
    let allowed: BTreeSet<&str> = CONTRACT_SERIES
        .iter()
        .copied()
        .chain(recorded.iter().map(String::as_str))
        .collect();
    let mut all = Vec::new();
    for (path, dash) in dashboards() {
        let exprs = dashboard_exprs(&dash);
        assert!(
            exprs.len() >= 5,
            "{}: only {} expressions",
            path.display(),
            exprs.len()
        );
        for expr in exprs {
            let expr = substitute_grafana_vars(&expr);
            let names = metric_names(&expr);
            assert!(!names.is_empty(), "{}: no metric in {expr}", path.display());
            for name in names {
                assert!(
                    allowed.contains(name.as_str()),
                    "{}: `{name}` is neither a contract series nor a recording rule, in:\n{expr}",
                    path.display()
                );
            }
            all.push(expr);
        }
    }
    let out = check_exprs_with_promtool(&all);
    assert!(
        out.status.success(),
        "dashboard PromQL does not parse\n{}",
        text(&out)
    );
    println!("{} dashboard expressions checked", all.len());

    // The check can fail: one unbalanced expression makes promtool reject the file.
    let mut broken = all.clone();
    broken.push("sum(rate(http_server_request_duration_seconds_count[5m])".to_owned());
    assert!(
        !check_exprs_with_promtool(&broken).status.success(),
        "promtool accepted broken PromQL"
    );
}

fn dashboard_by_uid(uid: &str) -> serde_json::Value {
    dashboards()
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| d["uid"] == uid)
        .unwrap_or_else(|| panic!("no dashboard with uid {uid}"))
}

/// Every link URL of a dashboard: dashboard links, panel links and field data links.
fn link_urls(dash: &serde_json::Value) -> Vec<String> {
    let mut urls = Vec::new();
    fn collect(v: &serde_json::Value, urls: &mut Vec<String>) {
        match v {
            serde_json::Value::Object(map) => {
                for (k, val) in map {
                    if k == "url" {
                        if let Some(s) = val.as_str() {
                            urls.push(s.to_owned());
                        }
                    }
                    collect(val, urls);
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|i| collect(i, urls)),
            _ => {}
        }
    }
    collect(dash, &mut urls);
    urls
}

#[test]
fn dashboards_link_to_each_other_and_to_tenant_traces() {
    let uids = [
        "tenant-otel-platform",
        "tenant-otel-tenant",
        "tenant-otel-route",
    ];
    for uid in uids {
        let dash = dashboard_by_uid(uid);
        let urls = link_urls(&dash);
        for other in uids.iter().filter(|o| **o != uid) {
            assert!(
                urls.iter().any(|u| u.starts_with(&format!("/d/{other}/"))),
                "{uid} does not link to {other}"
            );
        }
        // Every link into a dashboard names one that exists.
        for url in urls.iter().filter(|u| u.starts_with("/d/")) {
            let target = url.trim_start_matches("/d/").split('/').next().unwrap();
            assert!(
                uids.contains(&target),
                "{uid} links to unknown dashboard {target}"
            );
        }
    }

    let tenant = dashboard_by_uid("tenant-otel-tenant");
    let vars = tenant["templating"]["list"].as_array().unwrap();
    let tenant_var = vars
        .iter()
        .find(|v| v["name"] == "tenant")
        .expect("$tenant variable");
    assert!(
        tenant_var["query"]["query"]
            .as_str()
            .unwrap_or_default()
            .contains("tenant_id"),
        "$tenant ranges over tenant_id"
    );
    let urls = link_urls(&tenant);
    assert!(
        urls.iter().any(|u| u.starts_with("/explore")
            && u.contains(r#""datasource":"jaeger""#)
            && u.contains("tenant.id=${tenant}")),
        "the tenant drill-down links to Jaeger traces filtered by tenant.id"
    );
    // Links from the tenant drill-down to the routes carry the tenant along.
    assert!(urls
        .iter()
        .any(|u| u.starts_with("/d/tenant-otel-route/") && u.contains("var-tenant=${tenant}")));
    // The platform table and series link each tenant to its drill-down.
    let platform = dashboard_by_uid("tenant-otel-platform");
    assert!(link_urls(&platform)
        .iter()
        .any(|u| u.starts_with("/d/tenant-otel-tenant/")
            && u.contains("var-tenant=${__data.fields.")));

    // Averaging blindness: the platform average and the worst tenant's p99 in one panel.
    let exprs: Vec<Vec<String>> = panels(&platform)
        .iter()
        .map(|p| {
            p["targets"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|t| t["expr"].as_str().map(str::to_owned))
                .collect()
        })
        .collect();
    assert!(exprs.iter().any(|e| e
        .iter()
        .any(|x| x.contains("platform:http_request_duration_seconds:avg_5m"))
        && e.iter()
            .any(|x| x.contains("platform:tenant_http_request_duration_seconds:max_p99_5m"))));

    // Datasources the dashboards use are provisioned, with the uids the dashboards name.
    let ds = load_yaml(&config_dir().join("grafana/provisioning/datasources/datasources.yml"));
    let provisioned: BTreeMap<String, String> = vec_of(&ds["datasources"], "datasources")
        .iter()
        .map(|d| {
            (
                str_of(&d["uid"], "uid").to_owned(),
                str_of(&d["type"], "type").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        provisioned.get("prometheus").map(String::as_str),
        Some("prometheus")
    );
    assert_eq!(
        provisioned.get("jaeger").map(String::as_str),
        Some("jaeger")
    );
    for (path, dash) in dashboards() {
        for panel in panels(&dash) {
            if let Some(uid) = panel["datasource"]["uid"].as_str() {
                assert!(
                    provisioned.contains_key(uid),
                    "{}: datasource {uid}",
                    path.display()
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// OpenTelemetry Collector and compose

fn component_type(id: &str) -> &str {
    id.split('/').next().unwrap()
}

#[test]
fn collector_pipelines_are_consistent() {
    let cfg = load_yaml(&config_dir().join("otel-collector.yaml"));
    let sections = [
        ("receivers", CONTRIB_RECEIVERS),
        ("processors", CONTRIB_PROCESSORS),
        ("exporters", CONTRIB_EXPORTERS),
        ("connectors", CONTRIB_CONNECTORS),
        ("extensions", CONTRIB_EXTENSIONS),
    ];
    let mut defined: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (section, known) in sections {
        let ids = keys_of(&cfg[section]);
        for id in &ids {
            assert!(
                known.contains(&component_type(id)),
                "{section}: `{id}` is not a component of the contrib distribution"
            );
        }
        defined.insert(section, ids.into_iter().collect());
    }
    for ext in vec_of(&cfg["service"]["extensions"], "service.extensions") {
        let ext = str_of(ext, "extension");
        assert!(
            defined["extensions"].contains(ext),
            "extension {ext} is not defined"
        );
    }

    let pipelines = cfg["service"]["pipelines"]
        .as_hash()
        .expect("service.pipelines");
    let mut used: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let mut connector_as_exporter: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut connector_as_receiver: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, pipeline) in pipelines {
        let name = str_of(name, "pipeline name").to_owned();
        let signal = component_type(&name).to_owned();
        assert!(
            ["traces", "metrics", "logs"].contains(&signal.as_str()),
            "pipeline {name}"
        );
        for (role, section) in [
            ("receivers", "receivers"),
            ("processors", "processors"),
            ("exporters", "exporters"),
        ] {
            let ids: Vec<String> = pipeline[role]
                .as_vec()
                .map(|v| v.iter().map(|i| str_of(i, role).to_owned()).collect())
                .unwrap_or_default();
            if role != "processors" {
                assert!(!ids.is_empty(), "pipeline {name} has no {role}");
            }
            for id in ids {
                let is_connector = role != "processors" && defined["connectors"].contains(&id);
                assert!(
                    defined[section].contains(&id) || is_connector,
                    "pipeline {name} uses {role} `{id}`, which is not defined"
                );
                if is_connector {
                    let map = if role == "exporters" {
                        &mut connector_as_exporter
                    } else {
                        &mut connector_as_receiver
                    };
                    map.entry(id.clone()).or_default().push(name.clone());
                    used.entry("connectors").or_default().insert(id);
                } else {
                    used.entry(section).or_default().insert(id);
                }
            }
        }
        // Data from outside meets memory_limiter first; data from a connector already has.
        let external_input = pipeline["receivers"]
            .as_vec()
            .into_iter()
            .flatten()
            .any(|r| !defined["connectors"].contains(str_of(r, "receiver")));
        if external_input {
            let first = pipeline["processors"].as_vec().and_then(|p| p.first());
            assert_eq!(
                first.and_then(Yaml::as_str),
                Some("memory_limiter"),
                "memory_limiter first in {name}"
            );
        }
    }
    for (section, ids) in &defined {
        if *section == "extensions" {
            continue;
        }
        for id in ids {
            assert!(
                used.get(section).is_some_and(|u| u.contains(id)),
                "{section}: `{id}` is defined but no pipeline uses it"
            );
        }
    }
    for id in &defined["connectors"] {
        assert!(
            connector_as_exporter.contains_key(id),
            "connector {id} is never an exporter"
        );
        assert!(
            connector_as_receiver.contains_key(id),
            "connector {id} is never a receiver"
        );
    }

    // spanmetrics: traces in, metrics out, tenant.id as a dimension, and it sees every span
    // (its feeding pipeline does no sampling).
    let spanmetrics = &cfg["connectors"]["spanmetrics"];
    let dims: Vec<&str> = vec_of(&spanmetrics["dimensions"], "spanmetrics.dimensions")
        .iter()
        .map(|d| str_of(&d["name"], "dimension name"))
        .collect();
    assert!(
        dims.contains(&"tenant.id"),
        "spanmetrics dimensions {dims:?} lack tenant.id"
    );
    assert_eq!(
        str_of(&spanmetrics["histogram"]["unit"], "histogram.unit"),
        "s",
        "_seconds like the contract"
    );
    for p in &connector_as_exporter["spanmetrics"] {
        assert!(p.starts_with("traces"), "spanmetrics fed by {p}");
        let procs = pipelines.get(&Yaml::String(p.clone())).expect("pipeline")["processors"]
            .as_vec()
            .cloned()
            .unwrap_or_default();
        assert!(
            !procs
                .iter()
                .any(|x| x.as_str().is_some_and(|s| s.contains("sampl"))),
            "spanmetrics must see spans before sampling ({p})"
        );
    }
    for p in &connector_as_receiver["spanmetrics"] {
        assert!(p.starts_with("metrics"), "spanmetrics feeds {p}");
    }

    // Tail sampling keeps errors and slow traces, plus a share of the rest, and feeds Jaeger.
    let policies = vec_of(
        &cfg["processors"]["tail_sampling"]["policies"],
        "tail_sampling.policies",
    );
    let types: BTreeSet<&str> = policies
        .iter()
        .map(|p| str_of(&p["type"], "policy type"))
        .collect();
    for t in ["status_code", "latency", "probabilistic"] {
        assert!(types.contains(t), "tail_sampling lacks a {t} policy");
    }
    let status = policies
        .iter()
        .find(|p| p["type"].as_str() == Some("status_code"))
        .unwrap();
    assert!(
        vec_of(&status["status_code"]["status_codes"], "status_codes")
            .contains(&Yaml::String("ERROR".into()))
    );
    let mut jaeger_fed_by_sampler = false;
    for (name, pipeline) in pipelines {
        let procs: Vec<&str> = pipeline["processors"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(Yaml::as_str)
            .collect();
        let exps: Vec<&str> = pipeline["exporters"]
            .as_vec()
            .into_iter()
            .flatten()
            .filter_map(Yaml::as_str)
            .collect();
        if exps.contains(&"otlp/jaeger") {
            assert!(
                procs.contains(&"tail_sampling"),
                "{name:?} sends to Jaeger unsampled"
            );
            jaeger_fed_by_sampler = true;
        }
        if exps.contains(&"prometheus") {
            assert!(str_of(name, "pipeline").starts_with("metrics"));
        }
    }
    assert!(
        jaeger_fed_by_sampler,
        "no pipeline exports traces to Jaeger"
    );
    // The compose service unless JAEGER_OTLP_ENDPOINT says otherwise (collector-config/stack.sh
    // and the stack_* tests run the same file on loopback).
    assert_eq!(
        str_of(&cfg["exporters"]["otlp/jaeger"]["endpoint"], "endpoint"),
        "${env:JAEGER_OTLP_ENDPOINT:-jaeger:4317}"
    );
    let prom = &cfg["exporters"]["prometheus"];
    assert_eq!(
        prom["resource_to_telemetry_conversion"]["enabled"].as_bool(),
        Some(true)
    );
    // The contract's names: dots to underscores, unit suffixes, `_total`. The strategy is named:
    // the collector ignores the older `add_metric_suffixes` (deprecated since contrib v0.132),
    // so a check of that key checked nothing.
    assert_eq!(
        prom["translation_strategy"].as_str(),
        Some("UnderscoreEscapingWithSuffixes"),
        "contract names need underscores and the unit suffixes"
    );
    assert!(
        prom["add_metric_suffixes"].is_badvalue(),
        "add_metric_suffixes is ignored by the collector; translation_strategy decides"
    );
    let protocols = keys_of(&cfg["receivers"]["otlp"]["protocols"]);
    assert!(protocols.contains(&"grpc".to_owned()) && protocols.contains(&"http".to_owned()));
}

#[test]
fn compose_mounts_files_that_exist() {
    let dir = config_dir();
    let compose = load_yaml(&dir.join("docker-compose.yml"));
    let services = keys_of(&compose["services"]);
    for (service, image) in [
        ("otel-collector", "otel/opentelemetry-collector-contrib:"),
        ("jaeger", "jaegertracing/jaeger:2."),
        ("prometheus", "prom/prometheus:"),
        ("alertmanager", "prom/alertmanager:"),
        ("grafana", "grafana/grafana:"),
    ] {
        assert!(
            services.contains(&service.to_owned()),
            "compose lacks {service}"
        );
        let img = str_of(&compose["services"][service]["image"], "image");
        assert!(img.starts_with(image), "{service} runs {img}");
    }
    let mut mounts = 0;
    for service in &services {
        for volume in compose["services"][service.as_str()]["volumes"]
            .as_vec()
            .into_iter()
            .flatten()
        {
            let source = str_of(volume, "volume").split(':').next().unwrap();
            if source.starts_with("./") {
                assert!(
                    dir.join(source).exists(),
                    "{service} mounts {source}, which does not exist"
                );
                mounts += 1;
            }
        }
    }
    assert!(mounts >= 6, "only {mounts} configuration mounts");
    // The hostnames the configurations use are compose services.
    let prometheus = fs::read_to_string(dir.join("prometheus/prometheus.yml")).unwrap();
    let collector = fs::read_to_string(dir.join("otel-collector.yaml")).unwrap();
    assert!(prometheus.contains("otel-collector:8889") && prometheus.contains("alertmanager:9093"));
    assert!(collector.contains("jaeger:4317"));
}
