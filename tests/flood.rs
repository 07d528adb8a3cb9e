//! A flood of distinct tenant ids through every source, against every reader: the cap bounds
//! the tenant labels each one sees.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{
    InMemoryMetricExporter, InMemoryMetricExporterBuilder, PeriodicReader, SdkMeterProvider,
    Temporality,
};
use tenant_otel::{Clock, Telemetry, TenantLayer, TenantRegistry, TenantSource};
use tower::ServiceExt;

const CAP: usize = 100;
const FLOOD: usize = 3_000;

/// A source's name, the source, and a request naming a tenant through it.
type Source = (&'static str, TenantSource, fn(&str) -> Request<Body>);

/// The four client-facing sources, and a request naming tenant `id` through each.
fn sources() -> Vec<Source> {
    vec![
        ("header", TenantSource::header("x-tenant-id"), |id| {
            Request::get("/t/x/work")
                .header("x-tenant-id", id)
                .body(Body::empty())
                .unwrap()
        }),
        ("path", TenantSource::path_segment(1), |id| {
            Request::get(format!("/t/{id}/work"))
                .body(Body::empty())
                .unwrap()
        }),
        ("host", TenantSource::subdomain_of("example.com"), |id| {
            Request::get("/t/x/work")
                .header("host", format!("{id}.example.com"))
                .body(Body::empty())
                .unwrap()
        }),
        ("query", TenantSource::query("tenant"), |id| {
            Request::get(format!("/t/x/work?tenant={id}"))
                .body(Body::empty())
                .unwrap()
        }),
    ]
}

fn app(layer: TenantLayer) -> Router {
    Router::new()
        .route("/t/{tenant}/work", get(|| async { "done" }))
        .layer(layer)
}

async fn send(app: &Router, req: Request<Body>) {
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), 200);
    res.into_body().collect().await.unwrap();
}

/// Distinct `tenant_id` label values in a Prometheus scrape.
fn prometheus_tenants(text: &str) -> BTreeSet<String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split("tenant_id=\"").nth(1))
        .filter_map(|rest| rest.split('"').next())
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_prometheus_endpoint_sees_at_most_the_cap() {
    for (name, source, request) in sources() {
        let telemetry = Telemetry::builder()
            .registry(tenant_otel::TenantRegistry::builder().max_tenants(CAP))
            .prometheus_endpoint()
            .without_tracing_subscriber()
            .without_globals()
            .alerts(tenant_otel::alert::Alerts::default().manual())
            .init()
            .unwrap();
        let app = app(telemetry.layer_builder().source(source).build());
        for i in 0..FLOOD {
            send(&app, request(&format!("flood-{i}"))).await;
        }
        let res = tenant_otel::view::prometheus_response(telemetry.prometheus_registry().unwrap());
        let body = res.into_body().collect().await.unwrap().to_bytes();
        let tenants = prometheus_tenants(&String::from_utf8_lossy(&body));
        let own = tenants.iter().filter(|t| !t.starts_with("__")).count();
        println!("{name}: {} tenant labels in /metrics", tenants.len());
        assert_eq!(own, CAP, "{name}");
        assert!(tenants.len() <= CAP + 2, "{name}: {}", tenants.len());
        assert_eq!(
            telemetry.registry().overflowed_requests(),
            (FLOOD - CAP) as u64
        );
    }
}

/// Distinct `tenant.id` values of the duration histogram in the last export.
fn exported_tenants(
    provider: &SdkMeterProvider,
    exporter: &InMemoryMetricExporter,
) -> BTreeSet<String> {
    exporter.reset();
    provider.force_flush().unwrap();
    let mut tenants = BTreeSet::new();
    for rm in exporter.get_finished_metrics().unwrap() {
        for sm in rm.scope_metrics() {
            for m in sm.metrics() {
                if let (
                    "http.server.request.duration",
                    AggregatedMetrics::F64(MetricData::Histogram(h)),
                ) = (m.name(), m.data())
                {
                    for dp in h.data_points() {
                        if let Some(kv) = dp.attributes().find(|kv| kv.key.as_str() == "tenant.id")
                        {
                            tenants.insert(kv.value.to_string());
                        }
                    }
                }
            }
        }
    }
    tenants
}

#[tokio::test]
async fn delta_exports_with_reclaim_see_at_most_the_cap_per_interval() {
    for (name, source, request) in sources() {
        let clock = Clock::manual();
        let exporter = InMemoryMetricExporterBuilder::new()
            .with_temporality(Temporality::Delta)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(exporter.clone()).build())
            .build();
        let registry = TenantRegistry::builder()
            .max_tenants(CAP)
            .meter_provider(&provider)
            .clock(clock.clone())
            .reclaim_idle_after(Duration::from_secs(1))
            .build();
        let app = app(TenantLayer::builder()
            .registry(registry.clone())
            .source(source)
            .build());
        // No collection before the flood: the first export interval is held to the cap too.
        let mut own_per_export = Vec::new();
        for i in 0..FLOOD {
            if i % 50 == 0 {
                clock.advance(Duration::from_secs(2));
            }
            if i % 500 == 499 {
                let tenants = exported_tenants(&provider, &exporter);
                assert!(tenants.len() <= CAP + 2, "{name}: {}", tenants.len());
                own_per_export.push(tenants.iter().filter(|t| !t.starts_with("__")).count());
            }
            send(&app, request(&format!("flood-{i}"))).await;
        }
        println!("{name}: tenants of their own per export {own_per_export:?}");
        // 500 newcomers between two exports, far more than the cap: each export carries a full
        // cap of them, never more.
        assert_eq!(own_per_export.len(), FLOOD / 500, "{name}");
        assert!(
            own_per_export.iter().all(|&n| n == CAP),
            "{name}: {own_per_export:?}"
        );
        assert!(registry.len() <= CAP && !registry.is_empty(), "{name}");
    }
}
