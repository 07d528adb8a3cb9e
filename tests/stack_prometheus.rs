//! End to end with real processes: `examples/rag_service` → the Collector running the shipped
//! `otel-collector.yaml` (its `spanmetrics` connector, with `tenant.id` as a dimension, and its
//! prometheus exporter) → Debian's Prometheus 2.42 scraping it with the shipped `prometheus.yml`
//! (as `collector-config/stack.sh prometheus-config` renders it for loopback, with the shipped
//! intervals) and evaluating the shipped recording rules: `tenant:span_calls:rate5m`,
//! `tenant:span_errors:rate5m` and `tenant:span_duration_seconds:p99_5m` give a series per
//! tenant.
//!
//! The binaries come from `.ci/build-stack.sh`; without them the test fails.
//! `TENANT_OTEL_SKIP_STACK=1` skips it (quick local runs). Debian's `prometheus` is required
//! (`.ci/run` installs it).

mod stack_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use stack_support::{http_get, poll, query, stack_bins, url_encode, Stack};

/// The value of each series of the instant query `expr`, by `tenant_id`.
fn by_tenant(prometheus: &str, expr: &str) -> BTreeMap<String, f64> {
    let url = format!(
        "http://{prometheus}/api/v1/query?query={}",
        url_encode(expr)
    );
    let Ok((200, body)) = http_get(&url) else {
        return BTreeMap::new();
    };
    let json: Value = serde_json::from_str(&body).expect("Prometheus answers JSON");
    json["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            (
                s["metric"]["tenant_id"].as_str().unwrap_or("").to_owned(),
                s["value"][1].as_str().unwrap().parse::<f64>().unwrap(),
            )
        })
        .collect()
}

#[test]
fn span_metrics_per_tenant_reach_prometheus_and_the_shipped_recording_rules() {
    let Some(bins) = stack_bins("stack_prometheus") else {
        return;
    };
    let stack = Stack::start(&bins);
    let (service, addr) = stack.rag_service();

    // The shipped prometheus.yml, pointed at this test's collector by the script the operator
    // uses; the rule files are the checkout's own.
    let (prometheus, prometheus_addr) = stack.prometheus("");

    // Steady traffic, so the counters rise between scrapes: rate() needs two samples that differ.
    // stack-a always succeeds; every other request of stack-b fails.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let traffic = {
        let (stop, sent, addr) = (Arc::clone(&stop), Arc::clone(&sent), addr.clone());
        std::thread::spawn(move || {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(query(&addr, "stack-a", "latency_ms=50", None), 200);
                let fail = n % 2 == 1;
                let expected = if fail { 502 } else { 200 };
                let q = format!("latency_ms=50&fail={fail}");
                assert_eq!(query(&addr, "stack-b", &q, None), expected);
                n += 1;
                sent.store(n, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(500));
            }
        })
    };

    // Span metrics flush every 15 s, the exporter batches 5 s, Prometheus scrapes and evaluates
    // every 15 s (the shipped intervals): the first rates appear after about a minute.
    let (calls, errors, p99) = poll(
        Duration::from_secs(240),
        "per-tenant span rates from the recording rules",
        || format!("{}\n--- prometheus\n{}", stack.logs(), prometheus.log()),
        || {
            assert!(
                !traffic.is_finished(),
                "the traffic stopped: a request failed"
            );
            let calls = by_tenant(&prometheus_addr, "tenant:span_calls:rate5m");
            let errors = by_tenant(&prometheus_addr, "tenant:span_errors:rate5m");
            let p99 = by_tenant(&prometheus_addr, "tenant:span_duration_seconds:p99_5m");
            let ready = ["stack-a", "stack-b"].iter().all(|t| {
                calls.get(*t).is_some_and(|v| *v > 0.0)
                    && p99.get(*t).is_some_and(|v| v.is_finite())
            }) && errors.get("stack-b").is_some_and(|v| *v > 0.0);
            ready.then_some((calls, errors, p99))
        },
    );
    stop.store(true, Ordering::Relaxed);
    traffic.join().expect("every request answered as expected");
    assert!(sent.load(Ordering::Relaxed) >= 2);

    // One series per tenant, and only the tenants that sent requests.
    let tenants: Vec<&str> = calls.keys().map(String::as_str).collect();
    assert_eq!(tenants, ["stack-a", "stack-b"], "{calls:?}");
    for (tenant, rate) in &calls {
        // About one server span a second (a request every 0.5 s plus the 50 ms LLM call).
        assert!((0.01..=5.0).contains(rate), "{tenant}: {rate} calls/s");
    }
    // stack-b fails every other request; stack-a never, and still has a zero series.
    assert_eq!(errors.keys().collect::<Vec<_>>(), ["stack-a", "stack-b"]);
    assert_eq!(errors["stack-a"], 0.0, "{errors:?}");
    let b_errors = errors["stack-b"];
    assert!(
        b_errors > 0.0 && b_errors <= calls["stack-b"],
        "stack-b: {b_errors} errors/s of {} calls/s",
        calls["stack-b"]
    );
    // Every request waits 50 ms for the LLM, so no server span is shorter; with a few spans in
    // the window one slow span on a loaded machine is the p99, hence the loose upper bound, which
    // still catches a unit error (milliseconds read as seconds).
    for (tenant, seconds) in &p99 {
        assert!((0.05..=2.5).contains(seconds), "{tenant}: p99 {seconds} s");
    }
    // The raw series keep the service as `job` (honor_labels in the shipped scrape config).
    let raw = by_tenant(
        &prometheus_addr,
        r#"sum by (tenant_id) (traces_span_metrics_calls_total{job="rag-service", span_kind="SPAN_KIND_SERVER"})"#,
    );
    assert_eq!(raw.keys().collect::<Vec<_>>(), ["stack-a", "stack-b"]);
    assert!(raw.values().all(|v| *v >= 1.0), "{raw:?}");

    println!("tenant:span_calls:rate5m {calls:?}");
    println!("tenant:span_errors:rate5m {errors:?}");
    println!("tenant:span_duration_seconds:p99_5m {p99:?}");
    println!("traces_span_metrics_calls_total (server, summed) {raw:?}");
    drop(service);
}
