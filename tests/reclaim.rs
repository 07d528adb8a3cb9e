//! Tenants that come and go in a long-lived process: under delta temporality, idle tenants give
//! their slot back and their series stop being exported; busy and registered ones keep theirs.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Bytes;
use futures_util::FutureExt;
use http_body_util::Empty;
use opentelemetry::Value;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, InMemoryMetricExporterBuilder, PeriodicReader, SdkMeterProvider,
    Temporality,
};
use std::convert::Infallible;
use tenant_otel::{Tenant, TenantInfo, TenantLayer, TenantRegistry};
use tower::{service_fn, Layer, ServiceExt};

/// The `tenant.id` of a data point.
fn tenant<'a>(mut attrs: impl Iterator<Item = &'a opentelemetry::KeyValue>) -> Option<String> {
    attrs
        .find(|kv| kv.key.as_str() == "tenant.id")
        .and_then(|kv| match &kv.value {
            Value::String(s) => Some(s.to_string()),
            _ => None,
        })
}

/// The `tenant.id` values of the duration histogram and of the active-requests counter in the
/// last collection.
fn exported_tenants(
    provider: &SdkMeterProvider,
    exporter: &InMemoryMetricExporter,
) -> (BTreeSet<String>, BTreeSet<String>) {
    exporter.reset();
    provider.force_flush().unwrap();
    let (mut durations, mut active) = (BTreeSet::new(), BTreeSet::new());
    for rm in exporter.get_finished_metrics().unwrap() {
        for sm in rm.scope_metrics() {
            for m in sm.metrics() {
                match (m.name(), m.data()) {
                    (
                        "http.server.request.duration",
                        AggregatedMetrics::F64(MetricData::Histogram(h)),
                    ) => durations.extend(h.data_points().filter_map(|dp| tenant(dp.attributes()))),
                    ("http.server.active_requests", AggregatedMetrics::I64(MetricData::Sum(s))) => {
                        active.extend(s.data_points().filter_map(|dp| tenant(dp.attributes())))
                    }
                    _ => {}
                }
            }
        }
    }
    (durations, active)
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// The tenants that have their own label, sorted.
fn labels(registry: &TenantRegistry) -> Vec<String> {
    let mut labels: Vec<_> = registry
        .tenants()
        .iter()
        .map(|t| t.id().to_string())
        .collect();
    labels.sort();
    labels
}

/// One request through the layer; returns the metric label it was recorded under.
fn request(registry: &TenantRegistry, id: &str) -> String {
    let service = TenantLayer::builder()
        .registry(registry.clone())
        .without_spans()
        // The extension, as code that reads it from there gets it.
        .tenant_in_extensions()
        .build()
        .layer(service_fn(|req: http::Request<()>| async move {
            let label = req.extensions().get::<Tenant>().unwrap().metric_label();
            let res = http::Response::builder()
                .header("x-label", label)
                // An empty body: the request is recorded as the response head goes out.
                .body(Empty::<Bytes>::new())
                .unwrap();
            Ok::<_, Infallible>(res)
        }));
    let req = http::Request::builder()
        .header("x-tenant-id", id)
        .body(())
        .unwrap();
    let res = service.oneshot(req).now_or_never().unwrap().unwrap();
    res.headers()["x-label"].to_str().unwrap().to_owned()
}

#[test]
fn idle_tenants_give_their_slot_back_under_delta_temporality() {
    let exporter = InMemoryMetricExporterBuilder::new()
        .with_temporality(Temporality::Delta)
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let clock = tenant_otel::Clock::manual();
    let registry = TenantRegistry::builder()
        .max_tenants(3)
        .meter_provider(&provider)
        .clock(clock.clone())
        .reclaim_idle_after(Duration::from_millis(1000))
        .build();
    registry
        .register_tenant("pinned", TenantInfo::new("Pinned Co", "premium", "eu"))
        .unwrap();

    assert_eq!(request(&registry, "pinned"), "pinned");
    assert_eq!(request(&registry, "a"), "a");
    assert_eq!(request(&registry, "b"), "b");
    // `busy` has a query in flight through the quiet period.
    let busy_query = registry.start_query("b").unwrap();
    assert_eq!(request(&registry, "c"), "__overflow__", "cap reached");
    let (durations, active) = exported_tenants(&provider, &exporter);
    assert_eq!(durations, set(&["__overflow__", "a", "b", "pinned"]));
    assert_eq!(active, set(&["__overflow__", "a", "b", "pinned"]));

    clock.advance(Duration::from_millis(1200));
    // `a` went quiet: `c` takes its slot. `b` is busy and `pinned` registered: both stay.
    assert_eq!(request(&registry, "c"), "c");
    assert_eq!(labels(&registry), ["b", "c", "pinned"]);
    drop(busy_query);

    // Delta: the last collection holds only what was recorded since the one before, and `a`'s
    // series are gone from the SDK with its entry: the in-flight counter, which the SDK keeps
    // cumulative under delta too, included.
    let (durations, active) = exported_tenants(&provider, &exporter);
    assert_eq!(durations, set(&["c"]));
    assert_eq!(active, set(&["__overflow__", "b", "c", "pinned"]));
    // A tenant coming back later is admitted again; one sweep frees every idle slot at once.
    clock.advance(Duration::from_millis(1200));
    registry.resolve("d").unwrap();
    registry.resolve("e").unwrap();
    assert_eq!(
        request(&registry, "a"),
        "__overflow__",
        "the cap still holds"
    );
    assert_eq!(labels(&registry), ["d", "e", "pinned"]);
}

#[test]
fn without_reclaiming_a_slot_is_kept_for_good() {
    let clock = tenant_otel::Clock::manual();
    let registry = TenantRegistry::builder()
        .max_tenants(1)
        .clock(clock.clone())
        .build();
    assert_eq!(request(&registry, "a"), "a");
    clock.advance(Duration::from_secs(3600));
    assert_eq!(request(&registry, "b"), "__overflow__");
}

/// Tenants that churn faster than metrics are exported: a slot given back within an export
/// interval must not be reused in it, or one export carries many times the cap.
#[test]
fn churned_tenants_never_exceed_the_cap_in_one_export_interval() {
    let clock = tenant_otel::Clock::manual();
    let exporter = InMemoryMetricExporterBuilder::new()
        .with_temporality(Temporality::Delta)
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let registry = TenantRegistry::builder()
        .max_tenants(100)
        .meter_provider(&provider)
        .clock(clock.clone())
        .reclaim_idle_after(Duration::from_secs(1))
        .build();
    // A first collection, as a periodic reader makes soon after start.
    exported_tenants(&provider, &exporter);

    let mut next = 0;
    let mut admitted_per_interval = Vec::new();
    for _interval in 0..5 {
        // Within one export interval, 20 waves of 100 new tenants, each idle long enough to be
        // reclaimed by the next wave.
        for _wave in 0..20 {
            clock.advance(Duration::from_secs(2));
            for _ in 0..100 {
                request(&registry, &format!("t{next}"));
                next += 1;
            }
        }
        let (durations, active) = exported_tenants(&provider, &exporter);
        let own: BTreeSet<_> = durations
            .iter()
            .filter(|t| !t.starts_with("__"))
            .cloned()
            .collect();
        assert!(own.len() <= 100, "{} tenants in one export", own.len());
        assert!(durations.len() <= 102 && active.len() <= 102);
        admitted_per_interval.push(own.len());
        assert!(registry.len() <= 100);
    }
    // Reclaim still works: each interval after the first admits a full cap of newcomers.
    assert!(
        admitted_per_interval.iter().all(|&n| n == 100),
        "{admitted_per_interval:?}"
    );
}

/// The first export interval runs from start to the first collection: the cap bounds it too,
/// however many tenants churned through before any reader collected.
#[test]
fn the_first_export_after_start_is_capped_too() {
    let clock = tenant_otel::Clock::manual();
    let exporter = InMemoryMetricExporterBuilder::new()
        .with_temporality(Temporality::Delta)
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let registry = TenantRegistry::builder()
        .max_tenants(100)
        .meter_provider(&provider)
        .clock(clock.clone())
        .reclaim_idle_after(Duration::from_secs(1))
        .build();
    // 20,000 ids in waves of 100, each wave idle long enough to be reclaimed by the next, all
    // before the periodic reader's first collection.
    for wave in 0..200 {
        clock.advance(Duration::from_secs(2));
        for i in 0..100 {
            request(&registry, &format!("w{wave}-{i}"));
        }
    }
    let (durations, active) = exported_tenants(&provider, &exporter);
    let own = durations.iter().filter(|t| !t.starts_with("__")).count();
    println!(
        "export #0: {own} tenant labels of their own, {} in all",
        durations.len()
    );
    assert!(own > 0, "the first export carries the admitted tenants");
    assert!(own <= 100, "{own} tenants in the first export");
    assert!(durations.len() <= 102 && active.len() <= 102);
    assert!(
        durations.contains("__overflow__"),
        "the rest went to overflow"
    );

    // The interval closed: the next one admits a full cap of newcomers again.
    clock.advance(Duration::from_secs(2));
    for i in 0..200 {
        request(&registry, &format!("next-{i}"));
    }
    let (durations, _) = exported_tenants(&provider, &exporter);
    let own = durations.iter().filter(|t| t.starts_with("next-")).count();
    assert_eq!(own, 100, "{durations:?}");
}

/// A slot is held for the export that has not happened yet only where a reader will make it.
#[test]
fn a_slot_waits_for_the_next_collection_only_where_a_reader_collects() {
    let exporter = InMemoryMetricExporterBuilder::new()
        .with_temporality(Temporality::Delta)
        .build();
    let with_reader = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let without_reader = SdkMeterProvider::builder().build();
    for (provider, read) in [(&with_reader, true), (&without_reader, false)] {
        let clock = tenant_otel::Clock::manual();
        let registry = TenantRegistry::builder()
            .max_tenants(1)
            .meter_provider(provider)
            .clock(clock.clone())
            .reclaim_idle_after(Duration::from_secs(1))
            .build();
        assert_eq!(request(&registry, "a"), "a");
        clock.advance(Duration::from_secs(2));
        let expected = if read { "__overflow__" } else { "b" };
        assert_eq!(
            request(&registry, "b"),
            expected,
            "read by a reader: {read}"
        );
        if read {
            // The collection closes `a`'s interval: its slot is free again.
            exported_tenants(provider, &exporter);
            assert_eq!(request(&registry, "b"), "b");
        }
    }
}

#[test]
fn a_prometheus_endpoint_is_kept_only_when_asked_and_never_with_reclaim() {
    let plain = tenant_otel::Telemetry::builder()
        .without_tracing_subscriber()
        .without_globals()
        .alerts(tenant_otel::alert::Alerts::default().manual())
        .init()
        .unwrap();
    assert!(plain.prometheus_registry().is_none());
    let asked = tenant_otel::Telemetry::builder()
        .prometheus_endpoint()
        .without_tracing_subscriber()
        .without_globals()
        .alerts(tenant_otel::alert::Alerts::default().manual())
        .init()
        .unwrap();
    assert!(asked.prometheus_registry().is_some());
    let conflict = tenant_otel::Telemetry::builder()
        .prometheus_endpoint()
        .registry(
            tenant_otel::TenantRegistry::builder().reclaim_idle_after(Duration::from_secs(60)),
        )
        .without_tracing_subscriber()
        .without_globals()
        .alerts(tenant_otel::alert::Alerts::default().manual())
        .init()
        .unwrap_err();
    assert!(matches!(conflict, tenant_otel::InitError::Conflict(_)));
    assert!(conflict.to_string().contains("Prometheus"), "{conflict}");
}
