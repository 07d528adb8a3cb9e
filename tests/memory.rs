//! What an admitted tenant costs in resident memory, held to a bound. Ignored by default (it
//! reads the process's RSS, which other tests running beside it would disturb). Run with
//! `cargo test --release --all-features --test memory -- --ignored --nocapture`; with
//! `TENANT_OTEL_QUICK=1` it admits fewer tenants and still asserts the bound.

use std::time::Duration;

use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use tenant_otel::query::QueryOutcome;
use tenant_otel::TenantRegistry;

/// Resident memory per admitted tenant stays below this. Measured at about 36 KiB at 1,000
/// tenants in a release build and 50 KiB in a debug one: the per-tenant latency histograms and
/// SLO rings are most of it. Four times the release figure leaves room for the allocator's slack
/// and a debug build, and still catches a per-tenant structure that grows by an order of
/// magnitude.
const MAX_KIB_PER_TENANT: f64 = 144.0;

/// And above this: a tenant's SLO rings and statistics alone are several KiB, so less means the
/// measurement saw nothing.
const MIN_KIB_PER_TENANT: f64 = 1.0;

/// Resident memory of this process in KiB, if the platform says.
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

#[test]
#[ignore = "reads the process's resident memory: run alone, with --ignored"]
fn resident_memory_per_tenant_stays_bounded() {
    let quick = std::env::var("TENANT_OTEL_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let n: usize = if quick { 250 } else { 1_000 };
    let exporter = opentelemetry_sdk::metrics::InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter).build())
        .build();
    let registry = TenantRegistry::builder()
        .max_tenants(n)
        .meter_provider(&provider)
        .build();
    let Some(before) = rss_kib() else {
        eprintln!("no /proc/self/status here: nothing to measure");
        return;
    };
    for i in 0..n {
        let id = format!("tenant-{i}");
        for (route, status, ms) in [("/a", 200, 50), ("/b", 200, 5), ("/a", 500, 5000)] {
            registry.__bench_request(&id, route, status, Duration::from_millis(ms));
        }
        registry
            .start_query(id.as_str())
            .unwrap()
            .end(QueryOutcome::success().docs_retrieved(3).llm_tokens(100));
    }
    let after = rss_kib().expect("read before, so readable after");
    let admitted = registry.len();
    // RSS can shrink between two readings (pages given back): then it grew by nothing.
    let grown = after.saturating_sub(before);
    let per_tenant = grown as f64 / admitted.max(1) as f64;
    println!(
        "{admitted} tenants (3 requests, 1 query each): {grown} KiB resident, \
         {per_tenant:.1} KiB per tenant"
    );
    assert_eq!(admitted, n, "every tenant within the cap is admitted");
    assert!(
        per_tenant >= MIN_KIB_PER_TENANT,
        "{per_tenant:.1} KiB per tenant: the measurement saw nothing"
    );
    assert!(
        per_tenant <= MAX_KIB_PER_TENANT,
        "{per_tenant:.1} KiB per tenant, over {MAX_KIB_PER_TENANT}"
    );
}
