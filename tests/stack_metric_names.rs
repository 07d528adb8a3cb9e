//! End to end with real processes: the two ways a service's metrics reach Prometheus give the
//! same names. `examples/rag_service` exports OTLP to the Collector running the shipped
//! `otel-collector.yaml`, whose prometheus exporter Debian's Prometheus scrapes with the shipped
//! `prometheus.yml` (job `rag-service`, from service.name, kept by honor_labels); the same
//! Prometheus also scrapes the service's own `/metrics` directly (job `rag-service-direct`, the
//! commented-out job of the shipped `prometheus.yml`). The shipped rules only work on either path
//! if both carry the same tenant-otel metric names, each with the same `tenant_id` values (or
//! none on both).
//!
//! The binaries come from `.ci/build-stack.sh`; without them the test fails.
//! `TENANT_OTEL_SKIP_STACK=1` skips it (quick local runs). Debian's `prometheus` is required.

mod stack_support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use stack_support::names::{differences, names_of, Names};
use stack_support::{http_get, poll, query, stack_bins, Stack};

/// The scrape pools of the two paths: the collector's exporter, the service's own endpoint.
const SCRAPE_POOLS: [&str; 2] = ["otel-collector-exporter", "rag-service-direct"];

/// When Prometheus last scraped each target, by scrape pool (RFC 3339, as its API gives it).
fn last_scrapes(prometheus: &str) -> BTreeMap<String, String> {
    let Ok((200, body)) = http_get(&format!("http://{prometheus}/api/v1/targets")) else {
        return BTreeMap::new();
    };
    let json: Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
    json["data"]["activeTargets"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| t["lastScrape"].is_string())
        .map(|t| {
            (
                t["scrapePool"].as_str().unwrap_or("").to_owned(),
                t["lastScrape"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[test]
fn metrics_through_the_collector_carry_the_names_and_tenants_of_the_services_own_endpoint() {
    let Some(bins) = stack_bins("stack_metric_names") else {
        return;
    };
    let stack = Stack::start(&bins);
    // Metrics leave every second instead of every minute; mn-a has a tier, so tenant.info and
    // the SLA gauges have a series for it.
    let (service, addr) = stack.rag_service_with(
        &["--tier", "mn-a=premium"],
        &[("OTEL_METRIC_EXPORT_INTERVAL", "1000")],
    );
    let direct_job = format!(
        "  - job_name: rag-service-direct\n    metrics_path: /metrics\n    scrape_interval: 15s\n    \
         static_configs:\n      - targets: [\"{addr}\"]\n"
    );
    let (prometheus, prometheus_addr) = stack.prometheus(&direct_job);

    // Steady traffic, so every instrument records on both paths: mn-a succeeds, every other
    // request of mn-b fails, and one request a round has no tenant (rejected, counted without
    // a tenant_id).
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

    // The collector batches 5 s and Prometheus scrapes every 15 s (the shipped intervals): both
    // jobs have their series within a minute or so. The direct path is a few seconds ahead (no
    // export interval, no batch), so a series new on one side (an alert's first firing) may be
    // missing on the other for a scrape: the sides are compared until they agree, once, and
    // again after both jobs were scraped anew, so a name that shows up later on one side only
    // is caught too.
    let started = Instant::now();
    let agree = |since: Option<&BTreeMap<String, String>>| {
        let what = match since {
            None => "the same tenant-otel metric names and tenant_id values on both jobs",
            Some(_) => "the same names on both jobs again, after a new scrape of each",
        };
        poll(
            Duration::from_secs(240),
            what,
            || {
                let collector = names_of(&prometheus_addr, "rag-service");
                let direct = names_of(&prometheus_addr, "rag-service-direct");
                format!(
                    "differences:\n{}\n--- through the collector {collector:#?}\n--- direct \
                     {direct:#?}\n{}\n--- prometheus\n{}",
                    differences(&collector, &direct).join("\n"),
                    stack.logs(),
                    prometheus.log()
                )
            },
            || {
                assert!(
                    !traffic.is_finished(),
                    "the traffic stopped: a request failed"
                );
                let scrapes = last_scrapes(&prometheus_addr);
                if since.is_some_and(|before| {
                    SCRAPE_POOLS
                        .iter()
                        .any(|pool| scrapes.get(*pool) == before.get(*pool))
                }) {
                    return None;
                }
                let collector = names_of(&prometheus_addr, "rag-service");
                let direct = names_of(&prometheus_addr, "rag-service-direct");
                let both_tenants = |n: &Names, name: &str| {
                    n.get(name).is_some_and(|t| {
                        t.contains(&Some("mn-a".into())) && t.contains(&Some("mn-b".into()))
                    })
                };
                let recorded = [
                    "http_server_request_duration_seconds_count",
                    "rag_queries_total",
                ]
                .iter()
                .all(|name| both_tenants(&collector, name) && both_tenants(&direct, name));
                (recorded && collector == direct).then_some((collector, scrapes))
            },
        )
    };
    let (first, scrapes) = agree(None);
    let first_in = started.elapsed();
    let (names, _) = agree(Some(&scrapes));
    let settled_in = started.elapsed();
    // Series stay (metric_expiration 10m): the second look has at least what the first had.
    for (name, tenants) in &first {
        assert!(
            names.get(name).is_some_and(|t| t.is_superset(tenants)),
            "{name}: {tenants:?} then {:?}",
            names.get(name)
        );
    }
    stop.store(true, Ordering::Relaxed);
    traffic.join().expect("every request answered as expected");

    // The contract's names the traffic must have produced, each with the tenants it must carry.
    let expect = |name: &str, tenants: &[Option<&str>]| {
        let want: BTreeSet<Option<String>> = tenants.iter().map(|t| t.map(str::to_owned)).collect();
        assert_eq!(names.get(name), Some(&want), "{name}: {names:#?}");
    };
    let (a, b) = (Some("mn-a"), Some("mn-b"));
    for name in [
        "http_server_request_duration_seconds_bucket",
        "http_server_request_duration_seconds_count",
        "http_server_request_duration_seconds_sum",
        "rag_queries_total",
        "rag_query_duration_seconds_count",
    ] {
        expect(name, &[a, b]);
    }
    expect("tenant_info", &[a]);
    expect("tenant_requests_rejected_total", &[None]);
    // Nothing but the two tenants (and no tenant) anywhere.
    for (name, tenants) in &names {
        assert!(
            tenants.iter().all(|t| [a, b, None].contains(&t.as_deref())),
            "{name}: {tenants:?}"
        );
    }

    println!(
        "{} tenant-otel metric names, the same on both paths after {first_in:.1?} and again, \
         after a new scrape of each, after {settled_in:.1?}:",
        names.len()
    );
    for (name, tenants) in &names {
        println!("  {name} {tenants:?}");
    }
    drop(service);
}
