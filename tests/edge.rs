//! Traces fair to small tenants and safe at the edge: the per-tenant sampler, the trust boundary
//! for incoming trace context, and header capture by allowlist, asserted on exported spans.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use http_body_util::BodyExt;
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry::{Array, StringValue, Value};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider, SpanData};
use tenant_otel::layer::Edge;
use tenant_otel::sampling::TenantSampler;
use tenant_otel::{Clock, TenantInfo, TenantLayer, TenantRegistry};
use tower::{service_fn, Layer, ServiceExt};

fn attr(span: &SpanData, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn tenant_of(span: &SpanData) -> String {
    attr(span, "tenant.id")
        .map(|v| v.to_string())
        .unwrap_or_default()
}

/// The handler: answers with the baggage it sees, `key=value` pairs sorted.
fn echo_baggage(
    _req: http::Request<()>,
) -> std::future::Ready<Result<http::Response<String>, Infallible>> {
    let cx = opentelemetry::Context::current();
    let mut seen: Vec<String> = cx
        .baggage()
        .iter()
        .map(|(k, (v, _))| format!("{k}={v}"))
        .collect();
    seen.sort();
    let mut res = http::Response::new(seen.join(","));
    res.headers_mut()
        .insert("x-cache", http::HeaderValue::from_static("HIT"));
    res.headers_mut().insert(
        "set-cookie",
        http::HeaderValue::from_static("session=s3cret"),
    );
    std::future::ready(Ok(res))
}

async fn send(layer: &TenantLayer, req: http::Request<()>) -> String {
    let res = layer
        .layer(service_fn(echo_baggage))
        .oneshot(req)
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn small_tenants_get_their_floor_and_a_flooding_one_its_ratio_under_its_cap() {
    let clock = Clock::manual();
    let spans = InMemorySpanExporter::default();
    let sampler = TenantSampler::builder()
        .floor(5)
        .ratio(0.01)
        .cap(200)
        .clock(clock.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_sampler(sampler)
        .with_simple_exporter(spans.clone())
        .build();
    let registry = TenantRegistry::builder().build();
    let layer = TenantLayer::builder()
        .tracer_provider(&provider)
        .registry(registry.clone())
        .build();
    // The request's number in the path: which of them were kept shows on the spans.
    let numbered = |tenant: &str, i: usize| {
        http::Request::builder()
            .uri(format!("/{i}"))
            .header("x-tenant-id", tenant)
            .body(())
            .unwrap()
    };
    let request = |tenant: &str| numbered(tenant, 0);

    // One minute: the big tenant at 10,000 requests, twenty small ones at 5 each, interleaved.
    let small: Vec<String> = (0..20).map(|i| format!("small-{i}")).collect();
    for i in 0..10_000 {
        send(&layer, numbered("big", i)).await;
        if i % 2000 == 0 {
            for s in &small {
                send(&layer, request(s)).await;
            }
        }
        if i % 1000 == 999 {
            clock.advance(Duration::from_secs(5));
        }
    }

    let mut per_tenant: BTreeMap<String, usize> = BTreeMap::new();
    let mut big_kept = Vec::new();
    for span in spans.get_finished_spans().unwrap() {
        assert_eq!(span.span_kind, SpanKind::Server);
        let tenant = tenant_of(&span);
        if tenant == "big" {
            let path = attr(&span, "url.path").unwrap().to_string();
            big_kept.push(path[1..].parse::<usize>().unwrap());
        }
        *per_tenant.entry(tenant).or_default() += 1;
    }
    for s in &small {
        assert_eq!(
            per_tenant.get(s),
            Some(&5),
            "{s} gets its floor: {per_tenant:?}"
        );
    }
    // The floor: its first five requests, whatever the ratio says.
    assert_eq!(big_kept[..5], [0, 1, 2, 3, 4], "{big_kept:?}");
    // Then 1% of the remaining 9,995: 100 expected, a standard deviation of 10, so 50 to 150
    // (five of them either way). The cap (200) is tested below, where it binds.
    let beyond_floor = big_kept.len() - 5;
    assert!(
        (50..=150).contains(&beyond_floor),
        "{beyond_floor} kept past the floor"
    );
    // Metrics are never sampled: every request counts.
    assert_eq!(registry.request_stats("big").unwrap().total, 10_000);
    assert_eq!(registry.request_stats("small-3").unwrap().total, 5);

    // A new minute: the cap holds at ratio 1 too.
    clock.advance(Duration::from_secs(60));
    spans.reset();
    let capped = TenantSampler::builder()
        .floor(5)
        .ratio(1.0)
        .cap(200)
        .clock(clock.clone())
        .build();
    let provider = SdkTracerProvider::builder()
        .with_sampler(capped)
        .with_simple_exporter(spans.clone())
        .build();
    let layer = TenantLayer::builder()
        .tracer_provider(&provider)
        .registry(registry)
        .build();
    for _ in 0..1_000 {
        send(&layer, request("big")).await;
    }
    assert_eq!(spans.get_finished_spans().unwrap().len(), 200);
}

#[tokio::test]
async fn tier_ratios_come_from_the_registry_under_init() {
    let spans = InMemorySpanExporter::default();
    let telemetry = tenant_otel::Telemetry::builder()
        .span_exporter(spans.clone())
        .sampler(
            TenantSampler::builder()
                .floor(0)
                .ratio(0.0)
                .tier_ratio("premium", 1.0)
                .build(),
        )
        .without_tracing_subscriber()
        .without_globals()
        .alerts(tenant_otel::alert::Alerts::default().manual())
        .init()
        .unwrap();
    telemetry
        .registry()
        .register_tenant("gold", TenantInfo::new("Gold", "premium", "eu"))
        .unwrap();
    let layer = telemetry.layer();
    for tenant in ["gold", "tin", "gold"] {
        let req = http::Request::builder()
            .header("x-tenant-id", tenant)
            .body(())
            .unwrap();
        send(&layer, req).await;
    }
    telemetry.tracer_provider().force_flush().unwrap();
    let kept: Vec<String> = spans
        .get_finished_spans()
        .unwrap()
        .iter()
        .map(tenant_of)
        .collect();
    assert_eq!(kept, ["gold", "gold"]);
    telemetry.shutdown().unwrap();
}

const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

fn from_caller() -> http::Request<()> {
    http::Request::builder()
        .header("x-tenant-id", "acme")
        // Sampled flag off: an untrusted caller must not decide sampling either.
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-00"))
        .header("baggage", "tenant.id=evil,user.role=admin")
        .body(())
        .unwrap()
}

#[tokio::test]
async fn an_untrusted_caller_gets_a_new_trace_linked_to_its_span_and_loses_its_baggage() {
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let public = TenantLayer::builder()
        .tracer_provider(&provider)
        .registry(TenantRegistry::builder().build())
        .edge(Edge::public())
        .build();
    assert_eq!(send(&public, from_caller()).await, "tenant.id=acme");

    let exported = spans.get_finished_spans().unwrap();
    assert_eq!(exported.len(), 1, "sampled although the caller said not to");
    let span = &exported[0];
    assert_ne!(
        span.span_context.trace_id(),
        TraceId::from_hex(CALLER_TRACE).unwrap()
    );
    assert_eq!(
        span.parent_span_id,
        opentelemetry::trace::SpanId::INVALID,
        "a root"
    );
    let links: Vec<_> = span.links.iter().collect();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0].span_context.span_id().to_string(), CALLER_SPAN);
    assert_eq!(links[0].span_context.trace_id().to_string(), CALLER_TRACE);
    assert_eq!(
        attr(span, "tenant.baggage_mismatch"),
        None,
        "its baggage was never read"
    );

    // A trusted caller (here: through the gateway) keeps today's behaviour.
    spans.reset();
    let gated = TenantLayer::builder()
        .tracer_provider(&provider)
        .registry(TenantRegistry::builder().build())
        .edge(Edge::trust_if(|head| head.headers.contains_key("x-gateway")).drop_inbound_baggage())
        .build();
    let mut req = from_caller();
    req.headers_mut()
        .insert("x-gateway", http::HeaderValue::from_static("1"));
    assert_eq!(send(&gated, req).await, "tenant.id=acme");
    assert!(
        spans.get_finished_spans().unwrap().is_empty(),
        "the trusted caller's sampled flag (off) is followed"
    );
    let mut req = from_caller();
    req.headers_mut()
        .insert("x-gateway", http::HeaderValue::from_static("1"));
    let tp = format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01");
    req.headers_mut().insert("traceparent", tp.parse().unwrap());
    send(&gated, req).await;
    let exported = spans.get_finished_spans().unwrap();
    assert_eq!(exported[0].parent_span_id.to_string(), CALLER_SPAN);
    assert!(exported[0].links.is_empty());
    // Without the gateway header, the same layer treats the caller as the public.
    spans.reset();
    send(&gated, from_caller()).await;
    let exported = spans.get_finished_spans().unwrap();
    assert_eq!(exported[0].links.len(), 1);
}

#[tokio::test]
async fn allowlisted_headers_are_captured_and_credentials_never() {
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let layer = TenantLayer::builder()
        .tracer_provider(&provider)
        .registry(TenantRegistry::builder().build())
        .edge(
            Edge::internal()
                .capture_request_headers(["x-request-id", "authorization", "cookie", "x-api-key"])
                .capture_response_headers(["x-cache", "set-cookie"])
                .sensitive_headers(["x-api-key"]),
        )
        .build();
    let req = http::Request::builder()
        .header("x-tenant-id", "acme")
        .header("x-request-id", "r-1")
        .header("x-request-id", "r-2")
        .header("authorization", "Bearer t0ken")
        .header("cookie", "session=s3cret")
        .header("x-api-key", "k3y")
        .body(())
        .unwrap();
    send(&layer, req).await;
    let exported = spans.get_finished_spans().unwrap();
    let span = &exported[0];
    let strings = |values: &[&'static str]| {
        Value::Array(Array::String(
            values.iter().map(|v| StringValue::from(*v)).collect(),
        ))
    };
    assert_eq!(
        attr(span, "http.request.header.x-request-id"),
        Some(strings(&["r-1", "r-2"]))
    );
    assert_eq!(
        attr(span, "http.response.header.x-cache"),
        Some(strings(&["HIT"]))
    );
    assert_eq!(attr(span, "http.request.header.authorization"), None);
    assert_eq!(attr(span, "http.response.header.set-cookie"), None);
    for span in &exported {
        for kv in &span.attributes {
            let text = format!("{} {}", kv.key, kv.value);
            for secret in ["t0ken", "s3cret", "k3y"] {
                assert!(!text.contains(secret), "{text}");
            }
        }
    }
}

/// The capture lists and `sensitive_headers` read a name the same way (trimmed, any case): a
/// header in both is never captured, however either list spells it.
#[tokio::test]
async fn a_sensitive_header_is_never_captured_however_its_name_is_spelled() {
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let layer = TenantLayer::builder()
        .tracer_provider(&provider)
        .registry(TenantRegistry::builder().build())
        .edge(
            Edge::internal()
                .capture_request_headers(["X-Secret-Token", " x-request-id ", "x-session"])
                .capture_response_headers(["x-cache ", "\tX-Secret-Token"])
                .sensitive_headers([" x-secret-token ", "X-SESSION\t"]),
        )
        .build();
    let service = layer.layer(service_fn(|_req: http::Request<()>| async {
        let mut res = http::Response::new(String::new());
        let headers = res.headers_mut();
        headers.insert("x-cache", http::HeaderValue::from_static("HIT"));
        headers.insert(
            "x-secret-token",
            http::HeaderValue::from_static("t0k3n-out"),
        );
        Ok::<_, Infallible>(res)
    }));
    let req = http::Request::builder()
        .header("x-tenant-id", "acme")
        .header("x-request-id", "r-1")
        .header("x-secret-token", "t0k3n-in")
        .header("x-session", "s3ss")
        .body(())
        .unwrap();
    let res = service.oneshot(req).await.unwrap();
    res.into_body().collect().await.unwrap();

    let exported = spans.get_finished_spans().unwrap();
    assert_eq!(exported.len(), 1);
    let captured: BTreeMap<String, String> = exported[0]
        .attributes
        .iter()
        .filter(|kv| kv.key.as_str().contains(".header."))
        .map(|kv| (kv.key.to_string(), kv.value.to_string()))
        .collect();
    // The padded names in the capture lists still capture what is not sensitive.
    assert_eq!(
        captured,
        BTreeMap::from([
            (
                "http.request.header.x-request-id".to_owned(),
                r#"["r-1"]"#.to_owned()
            ),
            (
                "http.response.header.x-cache".to_owned(),
                r#"["HIT"]"#.to_owned()
            ),
        ])
    );
    for kv in &exported[0].attributes {
        let text = format!("{} {}", kv.key, kv.value);
        assert!(!text.contains("t0k3n") && !text.contains("s3ss"), "{text}");
    }
}
