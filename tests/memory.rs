//! What an admitted tenant costs in resident memory. Run with
//! `cargo test --release --test memory -- --ignored --nocapture`; it prints, it does not judge.

use std::time::Duration;

use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use tenant_otel::{QueryOutcome, TenantRegistry};

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

#[test]
#[ignore = "measurement: prints resident memory per tenant"]
fn resident_memory_per_tenant() {
    let exporter = opentelemetry_sdk::metrics::InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter).build())
        .build();
    const N: usize = 1000;
    let registry = TenantRegistry::builder()
        .max_tenants(N)
        .meter_provider(&provider)
        .build();
    let before = rss_kib();
    for i in 0..N {
        let id = format!("tenant-{i}");
        for (route, status, ms) in [("/a", 200, 50), ("/b", 200, 5), ("/a", 500, 5000)] {
            registry.__bench_request(&id, route, status, Duration::from_millis(ms));
        }
        registry
            .start_query(id.as_str())
            .unwrap()
            .end(QueryOutcome::success().docs_retrieved(3).llm_tokens(100));
    }
    let after = rss_kib();
    println!(
        "{N} tenants (3 requests, 1 query each): {} KiB resident, {:.1} KiB per tenant",
        after - before,
        (after - before) as f64 / N as f64
    );
}
