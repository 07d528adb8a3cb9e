//! End to end with real processes: `examples/rag_service` pushes its metrics over OTLP/HTTP
//! straight to Prometheus 3's OTLP receiver (`--web.enable-otlp-receiver`), running the shipped
//! `prometheus-otlp.yml` as `collector-config/stack.sh` renders it with `PROMETHEUS=prometheus3`.
//! The names and `tenant_id` values Prometheus stores equal those of the service's own
//! `/metrics` (so the shipped rules and dashboards work on this path too), and the shipped
//! recording rules, evaluated at the shipped interval on the pushed series alone, return a
//! series per tenant with plausible values.
//!
//! Straight to Prometheus rather than through the collector's `otlphttp` exporter: it is what a
//! user without a collector does (one variable in the service), and a user with the shipped
//! collector already has its prometheus exporter, which tests/stack_metric_names.rs covers.
//!
//! The binaries come from `.ci/build-stack.sh` (`prometheus3` among them); without them the test
//! fails. `TENANT_OTEL_SKIP_STACK=1` skips it (quick local runs), and so does
//! `TENANT_OTEL_SKIP_PROMETHEUS3=1`, which leaves Prometheus 3 out of the build.

mod stack_support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stack_support::names::{by_tenant, differences, instant, names_in_exposition, names_of};
use stack_support::{config_dir, free_addr, http_get, poll, query, rag_service, stack_bins_with};
use stack_support::{Process, Prometheus};
use yaml_rust2::{Yaml, YamlLoader};

fn load(file: &str) -> Yaml {
    let path = config_dir().join("prometheus").join(file);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{file}: {e}"));
    YamlLoader::load_from_str(&text).unwrap().remove(0)
}

/// The Prometheus 3 file is the Debian one plus `otlp:`: scrape jobs, rules and alerting cannot
/// drift apart between the two paths.
#[test]
fn prometheus_otlp_yml_is_prometheus_yml_plus_the_otlp_section() {
    let (Yaml::Hash(mut otlp_file), plain) = (load("prometheus-otlp.yml"), load("prometheus.yml"))
    else {
        panic!("prometheus-otlp.yml is a mapping");
    };
    let otlp = otlp_file
        .remove(&Yaml::String("otlp".to_owned()))
        .expect("an otlp: section");
    assert_eq!(Yaml::Hash(otlp_file), plain);
    assert_eq!(
        otlp["translation_strategy"].as_str(),
        Some("UnderscoreEscapingWithSuffixes"),
        "the collector's prometheus exporter's strategy"
    );
    assert_eq!(
        otlp["promote_all_resource_attributes"].as_bool(),
        Some(true)
    );
}

#[test]
fn metrics_pushed_over_otlp_to_prometheus_3_carry_the_names_of_the_services_own_endpoint() {
    // The switch that leaves Prometheus 3 out of .ci/build-stack.sh leaves its test out too.
    if std::env::var("TENANT_OTEL_SKIP_PROMETHEUS3").as_deref() == Ok("1") {
        println!("stack_prometheus3_otlp: skipped (TENANT_OTEL_SKIP_PROMETHEUS3=1)");
        return;
    }
    let Some(bins) = stack_bins_with("stack_prometheus3_otlp", &["prometheus3"]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let prometheus3 = bins.join("prometheus3");
    let (prometheus, prometheus_addr) = Prometheus {
        prometheus3: Some(&prometheus3),
        ..Prometheus::default()
    }
    .start(dir.path());
    let version = std::process::Command::new(&prometheus3)
        .arg("--version")
        .output()
        .unwrap();
    let version = String::from_utf8_lossy(&version.stdout);
    assert!(version.contains("version 3."), "{version}");

    // Metrics only (no traces or logs endpoint), every second instead of every minute; mn-a has
    // a tier, so tenant.info and the SLA gauges have a series for it.
    let otlp = format!("http://{prometheus_addr}/api/v1/otlp/v1/metrics");
    let (service, addr) = rag_service(
        dir.path(),
        &free_addr(),
        &["--tier", "mn-a=premium"],
        &[
            ("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT", &otlp),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"),
            ("OTEL_METRIC_EXPORT_INTERVAL", "1000"),
        ],
    );
    let logs = |service: &Process| {
        format!(
            "--- rag_service\n{}\n--- prometheus 3\n{}",
            service.log(),
            prometheus.log()
        )
    };

    // Steady traffic: mn-a succeeds, every other request of mn-b fails, and one request a round
    // has no tenant (rejected, counted without a tenant_id).
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let (stop, addr) = (Arc::clone(&stop), addr.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(query(&addr, "mn-a", "latency_ms=20", None), 200);
                let fail = n % 2 == 1;
                let q = format!("latency_ms=20&fail={fail}");
                assert_eq!(query(&addr, "mn-b", &q, None), if fail { 502 } else { 200 });
                let url = format!("http://{addr}/query");
                let (status, _) = stack_support::http("POST", &url, &[], "{}").unwrap();
                assert_eq!(status, 400, "a request without a tenant");
                n += 1;
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };

    // Prometheus has only what was pushed (job = service.name); the service's own /metrics is
    // read directly. A series new on one side may lag a second on the other: compare until
    // they agree.
    let started = Instant::now();
    let (pushed, direct) = poll(
        Duration::from_secs(120),
        "the same tenant-otel metric names and tenant_id values pushed and on /metrics",
        || {
            let pushed = names_of(&prometheus_addr, "rag-service");
            let direct = http_get(&format!("http://{addr}/metrics"))
                .map(|(_, body)| names_in_exposition(&body))
                .unwrap_or_default();
            format!(
                "pushed against /metrics:\n{}\n{}",
                differences(&pushed, &direct).join("\n"),
                logs(&service)
            )
        },
        || {
            assert!(
                !traffic.is_finished(),
                "the traffic stopped: a request failed"
            );
            let pushed = names_of(&prometheus_addr, "rag-service");
            let (200, body) = http_get(&format!("http://{addr}/metrics")).ok()? else {
                return None;
            };
            let direct = names_in_exposition(&body);
            let both = |name: &str| {
                pushed.get(name).is_some_and(|t| {
                    t.contains(&Some("mn-a".into())) && t.contains(&Some("mn-b".into()))
                })
            };
            let recorded =
                both("http_server_request_duration_seconds_count") && both("rag_queries_total");
            (recorded && pushed == direct).then_some((pushed, direct))
        },
    );
    let agreed_in = started.elapsed();
    assert_eq!(pushed, direct);
    let (a, b) = (Some("mn-a".to_owned()), Some("mn-b".to_owned()));
    for name in [
        "http_server_request_duration_seconds_bucket",
        "http_server_request_duration_seconds_count",
        "http_server_request_duration_seconds_sum",
        "rag_queries_total",
        "rag_query_duration_seconds_count",
    ] {
        assert_eq!(
            pushed.get(name),
            Some(&BTreeSet::from([a.clone(), b.clone()])),
            "{name}"
        );
    }
    assert_eq!(
        pushed.get("tenant_info"),
        Some(&BTreeSet::from([a.clone()]))
    );
    assert_eq!(
        pushed.get("tenant_requests_rejected_total"),
        Some(&BTreeSet::from([None]))
    );

    // The shipped recording rules at the shipped 15 s interval, on the pushed series alone.
    let rules = poll(
        Duration::from_secs(120),
        "the shipped recording rules give a series per tenant",
        || logs(&service),
        || {
            let requests = by_tenant(&prometheus_addr, "tenant:http_requests:rate5m");
            let success = by_tenant(&prometheus_addr, "tenant:http_success:ratio_rate5m");
            let queries = by_tenant(&prometheus_addr, "tenant:rag_queries:rate5m");
            // The tier rule is in another group, evaluated on its own schedule: wait for it too.
            let tiered = instant(&prometheus_addr, "tenant:tier:info")
                .iter()
                .any(|(l, _)| {
                    l.get("tenant_id").map(String::as_str) == Some("mn-a")
                        && l.get("tier").map(String::as_str) == Some("premium")
                });
            let ready = tiered
                && [&requests, &success, &queries]
                    .iter()
                    .all(|m| m.contains_key("mn-a") && m.contains_key("mn-b"));
            ready.then_some((requests, success, queries))
        },
    );
    stop.store(true, Ordering::Relaxed);
    traffic.join().expect("every request answered as expected");
    let (requests, success, queries) = rules;
    assert_eq!(requests.keys().collect::<Vec<_>>(), ["mn-a", "mn-b"]);
    // Two requests a second at most. rate() over 5m extrapolates from the few seconds of samples
    // there are (the first evaluations give about 0.07/s), so the floor is "some" and the two
    // tenants, sent the same number of requests, must agree.
    for rates in [&requests, &queries] {
        let (a, b) = (rates["mn-a"], rates["mn-b"]);
        assert!(a > 0.0 && a <= 5.0 && b > 0.0 && b <= 5.0, "{rates:?}");
        assert!((a - b).abs() <= 0.25 * a.max(b), "{rates:?}");
    }
    assert_eq!(success.get("mn-a"), Some(&1.0), "{success:?}");
    assert!(
        success.get("mn-b").is_some_and(|r| (0.2..=0.8).contains(r)),
        "{success:?}"
    );
    let tiers = instant(&prometheus_addr, "tenant:tier:info");
    assert!(
        tiers.iter().any(
            |(l, _)| l.get("tenant_id").map(String::as_str) == Some("mn-a")
                && l.get("tier").map(String::as_str) == Some("premium")
        ),
        "{tiers:?}"
    );

    println!(
        "{version}\n{} tenant-otel names, the same pushed over OTLP and on /metrics after \
         {agreed_in:.1?}:",
        pushed.len()
    );
    for (name, tenants) in &pushed {
        println!("  {name} {tenants:?}");
    }
    println!("tenant:http_requests:rate5m {requests:?}");
    println!("tenant:http_success:ratio_rate5m {success:?}");
    println!("tenant:rag_queries:rate5m {queries:?}");
    println!("tenant:tier:info {tiers:?}");
    drop(service);
}
