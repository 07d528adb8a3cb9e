//! How the request path is wired: the span processor `init()` sets up, the tenant reaching
//! handlers through the request's context, and incoming `traceparent` headers read by the W3C
//! rules.

use std::convert::Infallible;

use http_body_util::BodyExt;
use opentelemetry::trace::{SpanKind, TraceId, Tracer as _};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SpanData};
use tenant_otel::{Telemetry, Tenant, TenantLayer, TenantRegistry};
use tower::{service_fn, Layer, ServiceExt};

/// The handler: answers with the tenant it got from its context, after starting a child span
/// with the global tracer when the request asks for one (only the test that set the globals
/// does: tests run side by side in one process).
fn handler(
    req: http::Request<()>,
) -> std::future::Ready<Result<http::Response<String>, Infallible>> {
    let tenant = Tenant::current();
    if req.headers().contains_key("x-child-span") {
        let tracer = opentelemetry::global::tracer("handler");
        tracer.in_span("child work", |_| {});
    }
    let body = match tenant {
        Some(t) => format!("{}|{}", t.id(), t.metric_label()),
        None => "none".to_owned(),
    };
    std::future::ready(Ok(http::Response::new(body)))
}

async fn send(layer: &TenantLayer, tenant: &str, traceparent: Option<&str>) -> String {
    let mut req = http::Request::builder().header("x-tenant-id", tenant);
    if traceparent.is_some() {
        req = req.header("x-child-span", "1");
    }
    if let Some(tp) = traceparent {
        req = req.header("traceparent", tp);
    }
    let res = layer
        .layer(service_fn(handler))
        .oneshot(req.body(()).unwrap())
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn init_exports_every_span_with_the_tenant_and_the_callers_trace() {
    let spans = InMemorySpanExporter::default();
    let telemetry = Telemetry::builder()
        .span_exporter(spans.clone())
        .without_tracing_subscriber()
        .alerts(tenant_otel::alert::Alerts::default().manual())
        .init()
        .unwrap();
    assert!(telemetry.is_exporting());
    let layer = telemetry.layer();

    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    assert_eq!(send(&layer, "acme", Some(caller)).await, "acme|acme");
    // A version-00 header with a field too many is refused by the W3C rules: a new trace.
    let malformed = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra";
    assert_eq!(
        send(&layer, "globex", Some(malformed)).await,
        "globex|globex"
    );
    telemetry.tracer_provider().force_flush().unwrap();

    let exported = spans.get_finished_spans().unwrap();
    // Two requests, a server span and a child each, through the one processor that sets the
    // tenant and exports.
    assert_eq!(exported.len(), 4, "{exported:#?}");
    let of = |tenant: &str, kind: SpanKind| {
        exported
            .iter()
            .find(|s| {
                s.span_kind == kind && attr(s, "tenant.id") == Some(Value::from(tenant.to_owned()))
            })
            .unwrap_or_else(|| panic!("no {kind:?} span of {tenant} in {exported:#?}"))
    };
    let server = of("acme", SpanKind::Server);
    assert_eq!(
        server.span_context.trace_id(),
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
    );
    assert_eq!(server.parent_span_id.to_string(), "00f067aa0ba902b7");
    let child = of("acme", SpanKind::Internal);
    assert_eq!(child.parent_span_id, server.span_context.span_id());
    assert_eq!(server.name, "GET");

    let other = of("globex", SpanKind::Server);
    assert_ne!(
        other.span_context.trace_id(),
        TraceId::from_hex("4bf92f3577b34da6a3ce929d0e0e4736").unwrap()
    );
    assert!(!other.parent_span_id.to_string().starts_with("00f067"));
    // Everything went to the in-memory exporter: nothing is left undelivered.
    let shut = telemetry.shutdown();
    assert!(shut.is_ok(), "{shut:?}");
}

#[tokio::test]
async fn handlers_get_the_tenant_from_the_context_past_the_cap_too() {
    let registry = TenantRegistry::builder().max_tenants(1).build();
    let layer = TenantLayer::builder()
        .registry(registry.clone())
        .without_spans()
        .build();
    assert_eq!(send(&layer, "first", None).await, "first|first");
    // Past the cap: its own id, the shared label.
    assert_eq!(send(&layer, "second", None).await, "second|__overflow__");
    // Outside a request there is none.
    assert!(Tenant::current().is_none());
}
