//! From a page to the trace: a tenant's recent failed and slowest requests, with their trace ids
//! and links, on `/tenants/{id}` and on alert events, taken from real requests through the
//! layer and checked against the spans really exported.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use opentelemetry::trace::Status;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{InMemorySpanExporter, Sampler, SdkTracerProvider, SpanData};
use serde_json::Value;
use tenant_otel::alert::{AlertEngine, AlertKind, AlertRules};
use tenant_otel::view::view_router;
use tenant_otel::{Clock, TenantLayer, TenantRegistry};
use tower::ServiceExt;

struct Setup {
    app: Router,
    registry: TenantRegistry,
    spans: InMemorySpanExporter,
    tracer: SdkTracerProvider,
}

/// `/ok` answers at once, `/fail` with 503, `/slow` after two seconds of the manual clock.
fn setup(sampler: Sampler) -> Setup {
    let clock = Clock::manual();
    let registry = TenantRegistry::builder()
        .meter_provider(&SdkMeterProvider::builder().build())
        .clock(clock.clone())
        .trace_url("http://jaeger.test:16686/")
        .slow_trace_floor(Duration::from_millis(500))
        .build();
    let spans = InMemorySpanExporter::default();
    let tracer = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_simple_exporter(spans.clone())
        .build();
    let slow_clock = clock.clone();
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/fail", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .route(
            "/slow",
            get(move || {
                let clock = slow_clock.clone();
                async move {
                    clock.advance(Duration::from_secs(2));
                    "slow"
                }
            }),
        )
        .layer(
            TenantLayer::builder()
                .registry(registry.clone())
                .tracer_provider(&tracer)
                .build(),
        );
    Setup {
        app,
        registry,
        spans,
        tracer,
    }
}

async fn call(app: &Router, path: &str, tenant: &str) -> StatusCode {
    let response = app
        .clone()
        .oneshot(
            Request::get(path)
                .header("x-tenant-id", tenant)
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let status = response.status();
    response.into_body().collect().await.unwrap();
    status
}

async fn tenant_json(registry: &TenantRegistry, id: &str) -> Value {
    let response = view_router(registry.clone())
        .oneshot(
            Request::get(format!("/tenants/{id}"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap()
}

fn server_span<'a>(spans: &'a [SpanData], trace_id: &str) -> &'a SpanData {
    spans
        .iter()
        .find(|s| s.span_context.trace_id().to_string() == trace_id)
        .unwrap_or_else(|| panic!("no exported span in trace {trace_id}"))
}

#[tokio::test]
async fn the_tenant_page_links_its_failed_and_slowest_traces() {
    let s = setup(Sampler::AlwaysOn);
    for _ in 0..40 {
        assert_eq!(call(&s.app, "/ok", "acme").await, StatusCode::OK);
        assert_eq!(call(&s.app, "/ok", "globex").await, StatusCode::OK);
    }
    for _ in 0..3 {
        assert_eq!(
            call(&s.app, "/fail", "acme").await,
            StatusCode::SERVICE_UNAVAILABLE
        );
    }
    assert_eq!(call(&s.app, "/slow", "acme").await, StatusCode::OK);

    let spans = common::spans_when(
        &s.spans,
        || {
            let _ = s.tracer.force_flush();
        },
        |spans| spans.len() >= 84,
    )
    .await;
    assert_eq!(spans.len(), 84);

    let acme = tenant_json(&s.registry, "acme").await;
    let failures = acme["recent_failures"].as_array().unwrap();
    assert_eq!(failures.len(), 3, "{acme:#}");
    for f in failures {
        let id = f["trace_id"].as_str().unwrap();
        assert_eq!(id.len(), 32);
        assert_eq!(f["status"], 503);
        assert_eq!(f["error_type"], "503");
        assert_eq!(
            f["url"].as_str().unwrap(),
            format!("http://jaeger.test:16686/trace/{id}")
        );
        let span = server_span(&spans, id);
        assert_eq!(
            common::span_attr(span, "tenant.id").as_deref(),
            Some("acme")
        );
        assert!(matches!(span.status, Status::Error { .. }), "{span:?}");
    }
    let slowest = acme["slowest"].as_array().unwrap();
    assert_eq!(slowest.len(), 1, "{acme:#}");
    let ms = slowest[0]["duration_ms"].as_f64().unwrap();
    assert!((2000.0..2100.0).contains(&ms), "{ms}");
    assert_eq!(slowest[0]["status"], 200);
    assert!(slowest[0]["error_type"].is_null());
    let span = server_span(&spans, slowest[0]["trace_id"].as_str().unwrap());
    assert_eq!(span.name, "GET /slow");

    // A tenant with only fast successes has nothing to link.
    let globex = tenant_json(&s.registry, "globex").await;
    assert_eq!(globex["recent_failures"], Value::Array(vec![]));
    assert_eq!(globex["slowest"], Value::Array(vec![]));
    assert_eq!(globex["requests"]["total"], 40);

    // An alert about the tenant carries the same references, failures first.
    let engine = AlertEngine::new(
        &s.registry,
        AlertRules::default()
            .min_requests(10)
            .success_rate_below(0.99),
    );
    let events = engine.evaluate();
    let alert = events
        .iter()
        .find(|e| e.kind == AlertKind::SuccessRate && e.tenant.as_str() == "acme")
        .unwrap_or_else(|| panic!("{events:?}"));
    let ids: Vec<&str> = alert.traces.iter().map(|t| t.trace_id.as_str()).collect();
    assert_eq!(ids.len(), 4, "{ids:?}");
    for (i, f) in failures.iter().enumerate() {
        assert_eq!(ids[i], f["trace_id"].as_str().unwrap());
    }
    assert_eq!(ids[3], slowest[0]["trace_id"].as_str().unwrap());
    assert!(alert.traces[0].url.as_deref().unwrap().ends_with(ids[0]));
}

#[tokio::test]
async fn traces_the_sampler_dropped_are_not_linked() {
    let s = setup(Sampler::AlwaysOff);
    for _ in 0..5 {
        call(&s.app, "/fail", "acme").await;
    }
    call(&s.app, "/slow", "acme").await;
    let acme = tenant_json(&s.registry, "acme").await;
    assert_eq!(acme["requests"]["total"], 6);
    assert_eq!(acme["requests"]["errors"], 5);
    assert_eq!(acme["recent_failures"], Value::Array(vec![]));
    assert_eq!(acme["slowest"], Value::Array(vec![]));
}
