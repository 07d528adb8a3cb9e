//! A soak run (ignored by default; about a minute): loopback load at 1,000 steady tenants plus a
//! churn of new ones through a cap of 1,000 with idle reclaim, then checks that nothing failed,
//! resident memory stayed flat after the warm-up, newcomers kept being admitted, and every
//! completed request is in the exported request counts.
//!
//! ```sh
//! cargo test --all-features --test soak -- --ignored --nocapture
//! SOAK_SECS=600 cargo test --all-features --release --test soak -- --ignored --nocapture
//! TENANT_OTEL_QUICK=1 cargo test --all-features --test soak -- --ignored   # a few seconds
//! ```

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, Empty};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::exporter::PushMetricExporter;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider, Temporality};
use tenant_otel::{TenantLayer, TenantRegistry};

/// Resident memory of this process, in bytes.
fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

/// A delta exporter that only adds up the requests in `http.server.request.duration`, so the
/// test holds no exports in memory and cannot miss one between reading and clearing.
#[derive(Debug, Clone, Default)]
struct CountRequests(Arc<AtomicU64>);

impl PushMetricExporter for CountRequests {
    async fn export(&self, metrics: &ResourceMetrics) -> OTelSdkResult {
        for sm in metrics.scope_metrics() {
            for m in sm.metrics() {
                if m.name() != "http.server.request.duration" {
                    continue;
                }
                if let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() {
                    let n: u64 = h.data_points().map(|dp| dp.count()).sum();
                    self.0.fetch_add(n, Ordering::Relaxed);
                }
            }
        }
        Ok(())
    }
    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }
    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
    fn temporality(&self) -> Temporality {
        Temporality::Delta
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a minute of load: run with --ignored"]
async fn a_minute_of_churning_tenants_stays_flat_and_fully_counted() {
    let quick = std::env::var("TENANT_OTEL_QUICK").is_ok_and(|v| !v.is_empty() && v != "0");
    let secs: u64 = std::env::var("SOAK_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if quick { 4 } else { 60 });
    let exporter = CountRequests::default();
    let meter = SdkMeterProvider::builder()
        .with_reader(
            PeriodicReader::builder(exporter.clone())
                .with_interval(if quick {
                    Duration::from_secs(1)
                } else {
                    Duration::from_secs(5)
                })
                .build(),
        )
        .build();
    // In the short form, idle tenants go sooner, so the few seconds still see slots reused.
    let idle = if quick {
        Duration::from_millis(500)
    } else {
        Duration::from_secs(2)
    };
    let registry = TenantRegistry::builder()
        .max_tenants(1_000)
        .meter_provider(&meter)
        .reclaim_idle_after(idle)
        .build();
    let app = Router::new()
        .route("/work", get(|| async { "done" }))
        .layer(TenantLayer::builder().registry(registry.clone()).build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let completed = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let churn = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for worker in 0..8u64 {
        let (completed, failed, stop, churn) = (
            Arc::clone(&completed),
            Arc::clone(&failed),
            Arc::clone(&stop),
            Arc::clone(&churn),
        );
        workers.push(tokio::spawn(async move {
            let client =
                hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                    .build_http::<Empty<bytes::Bytes>>();
            let mut i = worker;
            while !stop.load(Ordering::Relaxed) {
                i += 8;
                // Nine requests in ten from the steady tenants, one from a newcomer.
                let tenant = if i % 10 == 0 {
                    format!("new-{}", churn.fetch_add(1, Ordering::Relaxed))
                } else {
                    format!("steady-{}", i % 1_000)
                };
                let req = http::Request::get(format!("http://{addr}/work"))
                    .header("x-tenant-id", tenant)
                    .body(Empty::new())
                    .unwrap();
                match client.request(req).await {
                    Ok(res) if res.status() == 200 => {
                        res.into_body().collect().await.unwrap();
                        completed.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }

    let started = Instant::now();
    let warm_up = if quick {
        Duration::from_secs(1)
    } else {
        Duration::from_secs(secs / 6).max(Duration::from_secs(5))
    };
    tokio::time::sleep(warm_up).await;
    let rss_warm = rss();
    let mut rss_max = rss_warm;
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        rss_max = rss_max.max(rss());
    }
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.await.unwrap();
    }
    let (completed, failed) = (
        completed.load(Ordering::Relaxed),
        failed.load(Ordering::Relaxed),
    );
    // The server records a request as its response body ends, which may land just after the
    // client has read it: export until every completed request is counted, or a deadline.
    let deadline = Instant::now() + Duration::from_secs(10);
    let exported = loop {
        let provider = meter.clone();
        tokio::task::spawn_blocking(move || provider.force_flush())
            .await
            .unwrap()
            .unwrap();
        let exported = exporter.0.load(Ordering::Relaxed);
        if exported >= completed || Instant::now() >= deadline {
            break exported;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let admitted_later = registry
        .tenants()
        .iter()
        .filter(|t| t.id().as_str().starts_with("new-"))
        .count();
    println!(
        "{secs} s: {completed} requests ({:.0}/s), {} new tenants, RSS {:.1} MB after warm-up, \
         {:.1} MB at most, {} tenants held ({admitted_later} newcomers)",
        completed as f64 / secs as f64,
        churn.load(Ordering::Relaxed),
        rss_warm as f64 / 1e6,
        rss_max as f64 / 1e6,
        registry.len()
    );
    assert_eq!(failed, 0);
    // Load did run: a loopback request takes well under a millisecond, so a few seconds serve
    // thousands, a tenth of them from newcomers.
    assert!(completed >= 1_000, "only {completed} requests completed");
    assert!(churn.load(Ordering::Relaxed) >= 100);
    assert_eq!(
        exported, completed,
        "every completed request is counted once"
    );
    assert!(registry.len() <= 1_000);
    // Flat: the cap bounds the tenants held, whatever the churn. A generous margin for the
    // allocator's own slack.
    assert!(
        rss_max <= rss_warm + rss_warm / 4 + 8 * 1024 * 1024,
        "RSS grew from {rss_warm} to {rss_max}"
    );
}
