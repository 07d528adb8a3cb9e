//! Many replicas through one collector, with real processes: three `examples/rag_service`
//! processes export to the Collector running the shipped `otel-collector.yaml`; Debian's
//! Prometheus scrapes its exporter with the shipped `prometheus.yml` and rules. Each replica
//! keeps series of its own (its `service.instance.id` becomes the `instance` label), and the
//! shipped recording rules compute one tenant's error ratio and burn rate from all the traffic:
//! one replica answers only successes, one only failures, one twice as many successes, so the
//! tenant's error ratio is 1/4 while no replica alone shows it.
//!
//! The binaries come from `.ci/build-stack.sh`; `TENANT_OTEL_SKIP_STACK=1` skips the test.

mod stack_support;

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use stack_support::names::instant;
use stack_support::{poll, query, stack_bins, Stack};

#[test]
fn three_replicas_keep_their_own_series_and_the_rules_see_all_their_traffic() {
    let Some(bins) = stack_bins("stack_replicas") else {
        return;
    };
    let stack = Stack::start(&bins);
    let env = [("OTEL_METRIC_EXPORT_INTERVAL", "1000")];
    let replicas: Vec<_> = (0..3).map(|_| stack.rag_service_with(&[], &env)).collect();
    let (prometheus, prometheus_addr) = stack.prometheus("");

    // Per round: replica 0 one success, replica 1 one failure, replica 2 two successes.
    let stop = Arc::new(AtomicBool::new(false));
    let traffic = {
        let stop = Arc::clone(&stop);
        let addrs: Vec<String> = replicas.iter().map(|(_, a)| a.clone()).collect();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                assert_eq!(query(&addrs[0], "rep-a", "latency_ms=5", None), 200);
                assert_eq!(
                    query(&addrs[1], "rep-a", "latency_ms=5&fail=true", None),
                    502
                );
                for _ in 0..2 {
                    assert_eq!(query(&addrs[2], "rep-a", "latency_ms=5", None), 200);
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };

    let context = || format!("{}\n--- prometheus\n{}", stack.logs(), prometheus.log());
    let (instances, ratio, burn) = poll(
        Duration::from_secs(240),
        "one tenant's series from three replicas and its rates from the rules",
        context,
        || {
            assert!(
                !traffic.is_finished(),
                "the traffic stopped: a request failed"
            );
            let series = instant(
                &prometheus_addr,
                r#"http_server_request_duration_seconds_count{tenant_id="rep-a"}"#,
            );
            let instances: BTreeSet<String> = series
                .iter()
                .map(|(labels, _)| labels.get("instance").cloned().unwrap_or_default())
                .collect();
            let one = |expr: &str| {
                instant(&prometheus_addr, expr)
                    .into_iter()
                    .find(|(labels, _)| {
                        labels.get("tenant_id").map(String::as_str) == Some("rep-a")
                    })
                    .map(|(_, v)| v)
            };
            let ratio = one("tenant:http_errors:ratio_rate5m")?;
            let burn = one("tenant:slo_burn_rate:ratio_rate5m")?;
            (instances.len() >= 3 && ratio > 0.0).then_some((instances, ratio, burn))
        },
    );
    stop.store(true, Ordering::Relaxed);
    traffic.join().expect("every request answered as expected");

    println!("instances {instances:?}; error ratio {ratio:.4}; burn rate {burn:.2}");
    // One set of series per replica, none merged, none empty-labelled.
    assert_eq!(instances.len(), 3, "{instances:?}");
    assert!(instances.iter().all(|i| !i.is_empty()), "{instances:?}");
    // A quarter of the tenant's requests failed, and only the sum over replicas says so.
    assert!((0.2..=0.3).contains(&ratio), "error ratio {ratio}");
    // The tier is unknown (objective 99.5 %): a 25 % error ratio burns the budget 50 times over.
    assert!((40.0..=60.0).contains(&burn), "burn rate {burn}");
    drop(replicas);
}
