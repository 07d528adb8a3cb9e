//! Tenants that come and go in a long-lived process: under delta temporality, idle tenants give
//! their slot back and their series stop being exported; busy and registered ones keep theirs.

use std::collections::BTreeSet;
use std::time::Duration;

use opentelemetry::Value;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, InMemoryMetricExporterBuilder, PeriodicReader, SdkMeterProvider,
    Temporality,
};
use tenant_otel::{TenantInfo, TenantRegistry};

/// The `tenant.id` values of the duration histogram in the last collection.
fn exported_tenants(
    provider: &SdkMeterProvider,
    exporter: &InMemoryMetricExporter,
) -> BTreeSet<String> {
    exporter.reset();
    provider.force_flush().unwrap();
    let mut ids = BTreeSet::new();
    for rm in exporter.get_finished_metrics().unwrap() {
        for sm in rm.scope_metrics() {
            for m in sm.metrics() {
                if m.name() != "http.server.request.duration" {
                    continue;
                }
                if let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() {
                    for dp in h.data_points() {
                        for kv in dp.attributes() {
                            if kv.key.as_str() == "tenant.id" {
                                if let Value::String(s) = &kv.value {
                                    ids.insert(s.to_string());
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    ids
}

fn request(registry: &TenantRegistry, id: &str) -> String {
    registry.__bench_request(id, "/r", 200, Duration::from_millis(5));
    registry.resolve(id).metric_label().to_owned()
}

#[test]
fn idle_tenants_give_their_slot_back_under_delta_temporality() {
    let exporter = InMemoryMetricExporterBuilder::new()
        .with_temporality(Temporality::Delta)
        .build();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let registry = TenantRegistry::builder()
        .max_tenants(3)
        .meter_provider(&provider)
        .reclaim_idle_after(Duration::from_millis(1000))
        .build();
    registry
        .register_tenant("pinned", TenantInfo::new("Pinned Co", "premium", "eu"))
        .unwrap();

    assert_eq!(request(&registry, "pinned"), "pinned");
    assert_eq!(request(&registry, "a"), "a");
    assert_eq!(request(&registry, "b"), "b");
    // `busy` has a query in flight through the quiet period.
    let busy_query = registry.start_query("b");
    assert_eq!(request(&registry, "c"), "__overflow__", "cap reached");
    assert_eq!(
        exported_tenants(&provider, &exporter),
        ["__overflow__", "a", "b", "pinned"]
            .map(String::from)
            .into()
    );

    std::thread::sleep(Duration::from_millis(1200));
    // `a` went quiet: `c` takes its slot. `b` is busy and `pinned` registered: both stay.
    assert_eq!(request(&registry, "c"), "c");
    let mut labels: Vec<_> = registry
        .tenants()
        .iter()
        .map(|t| t.id().to_string())
        .collect();
    labels.sort();
    assert_eq!(labels, ["b", "c", "pinned"]);
    drop(busy_query);

    // Delta: the last collection holds only what was recorded since the one before, and `a`'s
    // series is gone from the SDK with its bound instruments.
    assert_eq!(
        exported_tenants(&provider, &exporter),
        ["c"].map(String::from).into()
    );
    // A tenant coming back later is admitted again; one sweep frees every idle slot at once.
    std::thread::sleep(Duration::from_millis(1200));
    registry.resolve("d");
    registry.resolve("e");
    assert_eq!(
        request(&registry, "a"),
        "__overflow__",
        "the cap still holds"
    );
    let mut labels: Vec<_> = registry
        .tenants()
        .iter()
        .map(|t| t.id().to_string())
        .collect();
    labels.sort();
    assert_eq!(labels, ["d", "e", "pinned"]);
}

#[test]
fn without_reclaiming_a_slot_is_kept_for_good() {
    let registry = TenantRegistry::builder().max_tenants(1).build();
    assert_eq!(request(&registry, "a"), "a");
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(request(&registry, "b"), "__overflow__");
}
