//! What one request through `TenantLayer` costs over a bare axum `Router`, called in process as
//! a tower service (`GET /hello`, body read), with an always-on sampler and exporters that
//! discard. The side-by-side comparison with peer layers, in instructions and allocations per
//! request, is `benches/peers` (see the README's performance section).
//!
//! `cargo bench --bench layer`

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use criterion::{criterion_group, criterion_main, Criterion};
use http::Request;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use tenant_otel::propagation::TenantSpanProcessor;
use tenant_otel::{TenantLayer, TenantRegistry};
use tower::ServiceExt;

#[path = "support/discard.rs"]
mod discard;
use discard::{DiscardMetrics, DiscardSpans};

fn router() -> Router {
    Router::new().route("/hello", get(|| async { "hello" }))
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // One processor, as `init()` wires it: the tenant processor wrapping the exporting one.
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(TenantSpanProcessor::wrap(
            BatchSpanProcessor::builder(DiscardSpans).build(),
        ))
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(DiscardMetrics).build())
        .build();

    let tenants: Vec<String> = (0..100).map(|i| format!("tenant-{i}")).collect();
    let request = |i: usize| {
        Request::get("/hello")
            .header("x-tenant-id", tenants[i % tenants.len()].as_str())
            .body(Body::empty())
            .unwrap()
    };

    let mut group = c.benchmark_group("request");
    let bare = router();
    let mut i = 0;
    group.bench_function("bare_router", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(async {
                let res = bare.clone().oneshot(request(i)).await.unwrap();
                axum::body::to_bytes(res.into_body(), usize::MAX)
                    .await
                    .unwrap()
            })
        })
    });

    let registry = TenantRegistry::builder()
        .meter_provider(&meter_provider)
        .build();
    let full = router().layer(
        TenantLayer::builder()
            .tracer_provider(&tracer_provider)
            .registry(registry)
            .build(),
    );
    group.bench_function("tenant_layer_span_baggage_metrics", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(async {
                let res = full.clone().oneshot(request(i)).await.unwrap();
                axum::body::to_bytes(res.into_body(), usize::MAX)
                    .await
                    .unwrap()
            })
        })
    });

    // No server spans: the tenant lookup, baggage, the metrics and the in-process view.
    let metrics_only = router().layer(
        TenantLayer::builder()
            .without_spans()
            .registry(
                TenantRegistry::builder()
                    .meter_provider(&meter_provider)
                    .build(),
            )
            .build(),
    );
    group.bench_function("tenant_layer_metrics_only", |b| {
        b.iter(|| {
            i += 1;
            rt.block_on(async {
                let res = metrics_only.clone().oneshot(request(i)).await.unwrap();
                axum::body::to_bytes(res.into_body(), usize::MAX)
                    .await
                    .unwrap()
            })
        })
    });
    group.finish();
    let _ = tracer_provider.shutdown();
    let _ = meter_provider.shutdown();
}

criterion_group!(benches, bench);
criterion_main!(benches);
