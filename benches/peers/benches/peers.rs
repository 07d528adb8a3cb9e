//! What one request costs through tenant-otel and through the peer tower/axum OpenTelemetry
//! layers, measured in one criterion run so that every figure comes from the same machine, build
//! and kind of run.
//!
//! The harness is the one of the root crate's `benches/layer.rs`: an axum `Router` with
//! `GET /hello` answering "hello", called in process as a tower service (`oneshot` on a
//! current-thread tokio runtime, body read with `axum::body::to_bytes`), an `x-tenant-id` header
//! cycling over 100 tenants, the SDK's default sampler (every root span is sampled) and span and
//! metric exporters that discard. Each variant is one benchmark in the group `request`:
//!
//! - `bare_router`: no instrumentation, the baseline;
//! - `tower_http_trace_tracing_otel`: tower-http's `TraceLayer::new_for_http()`, its `tracing`
//!   spans and events turned into OpenTelemetry spans by tracing-opentelemetry;
//! - `axum_tracing_opentelemetry`: `OtelAxumLayer`, through tracing-opentelemetry;
//! - `instrumentation_tower_metrics`: opentelemetry-instrumentation-tower's server layer with
//!   its spans switched off, so HTTP metrics only;
//! - `tower_otel_trace_metrics`: tower-otel's HTTP trace layer (through tracing-opentelemetry) and
//!   its HTTP metrics layer;
//! - `tenant_otel_everything`: `TenantLayer` with server spans, baggage, tenant-labelled metrics
//!   and the in-process view, `TenantSpanProcessor` on the tracer provider;
//! - `tenant_otel_metrics_only`: the same without server spans.
//!
//! The `tracing` subscriber (a registry whose only layer is tracing-opentelemetry) is installed
//! with `tracing::subscriber::set_default` around each variant that needs one, and only there:
//! the baseline and tenant-otel run without a subscriber, as in `benches/layer.rs`. The peers
//! that read global OpenTelemetry state find the W3C trace-context and baggage propagator
//! (tenant-otel's default) and the same meter provider as tenant-otel.
//!
//! From the repository root:
//!
//! ```sh
//! cargo bench -p tenant-otel-peer-bench --bench peers -- --warm-up-time 2 --measurement-time 5
//! ```
//!
//! Medians land in `target/criterion/request/<variant>/new/estimates.json`.

use axum::body::Body;
use axum::http::Request;
use axum::routing::get;
use axum::Router;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion};
use opentelemetry::metrics::MeterProvider as _;
use opentelemetry::propagation::TextMapCompositePropagator;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::metrics::{PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};
use opentelemetry_sdk::trace::SdkTracerProvider;
use tenant_otel::{TenantLayer, TenantRegistry, TenantSpanProcessor};
use tokio::runtime::Runtime;
use tower::ServiceExt;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt;

#[path = "../../support/discard.rs"]
mod discard;
use discard::{DiscardMetrics, DiscardSpans};

fn router() -> Router {
    Router::new().route("/hello", get(|| async { "hello" }))
}

/// Every variant is measured by this one loop, so they differ only in the router they get.
struct Harness<'a> {
    rt: Runtime,
    tenants: Vec<String>,
    i: usize,
    group: BenchmarkGroup<'a, WallTime>,
}

impl Harness<'_> {
    fn bench(&mut self, name: &str, app: Router) {
        let Harness {
            rt,
            tenants,
            i,
            group,
        } = self;
        group.bench_function(name, |b| {
            b.iter(|| {
                *i += 1;
                let req = Request::get("/hello")
                    .header("x-tenant-id", tenants[*i % tenants.len()].as_str())
                    .body(Body::empty())
                    .unwrap();
                rt.block_on(async {
                    let res = app.clone().oneshot(req).await.unwrap();
                    axum::body::to_bytes(res.into_body(), usize::MAX)
                        .await
                        .unwrap()
                })
            })
        });
    }
}

/// The subscriber the tracing-based peers document: their `tracing` spans become OpenTelemetry
/// spans on `provider`. Scoped to the calling thread, which is the one that runs the requests.
fn tracing_otel(provider: &SdkTracerProvider) -> DefaultGuard {
    let subscriber = tracing_subscriber::registry()
        .with(tracing_opentelemetry::layer().with_tracer(provider.tracer("peer-bench")));
    tracing::subscriber::set_default(subscriber)
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    // The peers get a provider of their own: `TenantSpanProcessor` is tenant-otel's cost only.
    let peer_tracer_provider = SdkTracerProvider::builder()
        .with_batch_exporter(DiscardSpans)
        .build();
    let tracer_provider = SdkTracerProvider::builder()
        .with_span_processor(TenantSpanProcessor::new())
        .with_batch_exporter(DiscardSpans)
        .build();
    let meter_provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(DiscardMetrics).build())
        .build();
    // opentelemetry-instrumentation-tower takes its meter from the global provider only, and the
    // trace-context peers extract with the global propagator, a no-op until set.
    opentelemetry::global::set_meter_provider(meter_provider.clone());
    opentelemetry::global::set_text_map_propagator(TextMapCompositePropagator::new(vec![
        Box::new(TraceContextPropagator::new()),
        Box::new(BaggagePropagator::new()),
    ]));

    let mut h = Harness {
        rt,
        tenants: (0..100).map(|i| format!("tenant-{i}")).collect(),
        i: 0,
        group: c.benchmark_group("request"),
    };

    h.bench("bare_router", router());

    {
        let _subscriber = tracing_otel(&peer_tracer_provider);
        h.bench(
            "tower_http_trace_tracing_otel",
            router().layer(tower_http::trace::TraceLayer::new_for_http()),
        );
    }

    {
        let _subscriber = tracing_otel(&peer_tracer_provider);
        h.bench(
            "axum_tracing_opentelemetry",
            router().layer(axum_tracing_opentelemetry::middleware::OtelAxumLayer::default()),
        );
    }

    h.bench(
        "instrumentation_tower_metrics",
        router().layer(
            opentelemetry_instrumentation_tower::http::server::LayerBuilder::builder()
                .with_tracing(false)
                .build()
                .unwrap(),
        ),
    );

    {
        let _subscriber = tracing_otel(&peer_tracer_provider);
        let meter = meter_provider.meter("peer-bench");
        h.bench(
            "tower_otel_trace_metrics",
            router()
                .layer(tower_otel::metrics::HttpLayer::server(&meter))
                .layer(tower_otel::trace::HttpLayer::server(tracing::Level::INFO)),
        );
    }

    h.bench(
        "tenant_otel_everything",
        router().layer(
            TenantLayer::builder()
                .tracer_provider(&tracer_provider)
                .registry(
                    TenantRegistry::builder()
                        .meter_provider(&meter_provider)
                        .build(),
                )
                .build(),
        ),
    );

    h.bench(
        "tenant_otel_metrics_only",
        router().layer(
            TenantLayer::builder()
                .without_spans()
                .registry(
                    TenantRegistry::builder()
                        .meter_provider(&meter_provider)
                        .build(),
                )
                .build(),
        ),
    );

    h.group.finish();
    let _ = peer_tracer_provider.shutdown();
    let _ = tracer_provider.shutdown();
    let _ = meter_provider.shutdown();
}

criterion_group!(benches, bench);
criterion_main!(benches);
