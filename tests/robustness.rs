//! Requests that must not fool the layer: a tenant id given twice, hosts in other letter cases,
//! and handlers that panic.

use std::convert::Infallible;
use std::panic::AssertUnwindSafe;

use axum::body::Bytes;
use futures_util::FutureExt;
use http_body_util::{BodyExt, Empty};
use opentelemetry::Value;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tenant_otel::{Tenant, TenantLayer, TenantRegistry, TenantSource};
use tower::{service_fn, Layer, ServiceExt};

fn echo_tenant(
    _req: http::Request<()>,
) -> std::future::Ready<Result<http::Response<String>, Infallible>> {
    let tenant = Tenant::current().unwrap().id().to_string();
    std::future::ready(Ok(http::Response::new(tenant)))
}

async fn send(layer: &TenantLayer, req: http::Request<()>) -> (u16, String) {
    let res = layer
        .layer(service_fn(echo_tenant))
        .oneshot(req)
        .await
        .unwrap();
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test]
async fn a_tenant_id_given_twice_is_refused_not_served_as_the_first() {
    let header = TenantLayer::builder()
        .registry(TenantRegistry::builder().build())
        .without_spans()
        .build();
    let req = http::Request::builder()
        .header("x-tenant-id", "evil")
        .header("x-tenant-id", "good")
        .body(())
        .unwrap();
    let (status, body) = send(&header, req).await;
    assert_eq!(status, 400);
    assert!(
        body.contains("more than one value in header `x-tenant-id`"),
        "{body}"
    );
    // A second value that is not even valid is refused all the same.
    let req = http::Request::builder()
        .header("x-tenant-id", "good")
        .header("x-tenant-id", "not valid!")
        .body(())
        .unwrap();
    assert_eq!(send(&header, req).await.0, 400);

    let query = TenantLayer::builder()
        .registry(TenantRegistry::builder().build())
        .source(TenantSource::query("tenant"))
        .without_spans()
        .build();
    let req = http::Request::get("/x?tenant=evil&tenant=good")
        .body(())
        .unwrap();
    let (status, body) = send(&query, req).await;
    assert_eq!(status, 400);
    assert!(body.contains("query parameter `tenant`"), "{body}");
    let req = http::Request::get("/x?tenant=good&other=1")
        .body(())
        .unwrap();
    assert_eq!(send(&query, req).await, (200, "good".to_owned()));
}

#[tokio::test]
async fn hosts_are_one_tenant_whatever_their_letter_case() {
    let registry = TenantRegistry::builder().build();
    let layer = TenantLayer::builder()
        .registry(registry.clone())
        .source(TenantSource::subdomain_of("example.com"))
        .without_spans()
        .build();
    for host in [
        "acme.example.com",
        "ACME.example.com",
        "Acme.EXAMPLE.com:8443",
        "acme.example.com.",
    ] {
        let req = http::Request::builder()
            .header("host", host)
            .body(())
            .unwrap();
        assert_eq!(send(&layer, req).await, (200, "acme".to_owned()), "{host}");
    }
    assert_eq!(registry.len(), 1);
}

#[tokio::test]
async fn a_panicking_handler_is_the_servers_failure() {
    let registry = TenantRegistry::builder().build();
    let spans = InMemorySpanExporter::default();
    let tracer = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let layer = TenantLayer::builder()
        .registry(registry.clone())
        .tracer_provider(&tracer)
        .build();
    let panics_later = layer.layer(service_fn(|_req: http::Request<()>| async move {
        tokio::task::yield_now().await;
        panic!("the handler broke");
        #[allow(unreachable_code)]
        Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new()))
    }));
    let req = || {
        http::Request::builder()
            .header("x-tenant-id", "acme")
            .body(())
            .unwrap()
    };
    // What `CatchPanicLayer` or the runtime does: catch the panic, drop the future later.
    let caught = AssertUnwindSafe(panics_later.oneshot(req()))
        .catch_unwind()
        .await;
    assert!(caught.is_err(), "the handler panicked");

    let view = registry.tenant_view("acme").unwrap();
    assert_eq!((view.requests.total, view.requests.errors), (1, 1));
    assert_eq!(view.requests.active, 0);
    let burn = view.sla[0].burn_rates["5m"];
    assert!(burn > 100.0, "the panic spent error budget: {burn}");
    let span = spans
        .get_finished_spans()
        .unwrap()
        .pop()
        .expect("the span ended");
    let error_type = span
        .attributes
        .iter()
        .find(|kv| kv.key.as_str() == "error.type")
        .map(|kv| kv.value.clone());
    assert_eq!(error_type, Some(Value::from("panic")));
}

#[tokio::test]
async fn the_span_says_which_source_decided_the_tenant() {
    let spans = InMemorySpanExporter::default();
    let tracer = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let layer = TenantLayer::builder()
        .registry(TenantRegistry::builder().build())
        .tracer_provider(&tracer)
        .source(TenantSource::header("x-tenant-id"))
        .source(TenantSource::query("tenant"))
        .source(TenantSource::subdomain_of("example.com"))
        .source(TenantSource::path_segment(1))
        .build();
    let requests = [
        (
            "header",
            http::Request::get("/t/p").header("x-tenant-id", "a"),
        ),
        ("query", http::Request::get("/t/p?tenant=b")),
        (
            "host",
            http::Request::get("/t/p").header("host", "c.example.com"),
        ),
        ("path", http::Request::get("/tenants/d")),
    ];
    for (expected, req) in requests {
        assert_eq!(send(&layer, req.body(()).unwrap()).await.0, 200);
        let span = spans.get_finished_spans().unwrap().pop().unwrap();
        let source = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "tenant.source")
            .map(|kv| kv.value.clone());
        assert_eq!(source, Some(Value::from(expected)));
        spans.reset();
    }
    // A refused request names no source, and claims no mismatch with a tenant nobody found.
    let req = http::Request::get("/")
        .header("x-tenant-id", "bad id!")
        .header("baggage", "tenant.id=other")
        .body(())
        .unwrap();
    assert_eq!(send(&layer, req).await.0, 400);
    let span = spans.get_finished_spans().unwrap().pop().unwrap();
    for key in ["tenant.source", "tenant.baggage_mismatch"] {
        assert!(
            span.attributes.iter().all(|kv| kv.key.as_str() != key),
            "{key} on a refused request's span"
        );
    }
}

/// Spans the batch queue drops under load are counted where an operator looks: in
/// `otel.sdk.processor.span.processed{error.type="queue_full"}`.
#[tokio::test]
async fn spans_dropped_by_a_full_queue_are_counted() {
    use opentelemetry::trace::{Span, Tracer, TracerProvider};
    use opentelemetry_sdk::error::OTelSdkResult;
    use opentelemetry_sdk::trace::{SpanData, SpanExporter};

    /// An exporter as slow as a collector that is struggling.
    #[derive(Debug)]
    struct Slow;
    impl SpanExporter for Slow {
        async fn export(&self, _batch: Vec<SpanData>) -> OTelSdkResult {
            std::thread::sleep(std::time::Duration::from_millis(200));
            Ok(())
        }
    }

    let telemetry = tenant_otel::Telemetry::builder()
        .span_exporter(Slow)
        .prometheus_endpoint()
        .without_tracing_subscriber()
        .without_globals()
        .alerts(tenant_otel::alert::Alerts::default().manual())
        .init()
        .unwrap();
    let tracer = telemetry.tracer_provider().tracer("load");
    for _ in 0..20_000 {
        tracer.start("work").end();
    }
    let text = tenant_otel::view::prometheus_response(telemetry.prometheus_registry().unwrap());
    let body = text.into_body();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body);
    let value = |needle: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with("otel_sdk_processor_span_processed") && l.contains(needle))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {needle} line in\n{text}"))
    };
    let dropped = value("error_type=\"queue_full\"");
    // 20,000 spans, a queue of 2048 and an exporter that takes a batch of 512 every 200 ms:
    // most were dropped, and the count says so.
    assert!(dropped > 10_000.0, "dropped {dropped}\n{text}");
    assert!(dropped <= 20_000.0 - 2048.0);
    let _ = telemetry.shutdown();
}

/// A scanner probing made-up paths, each naming a new tenant, must not use the cap up: once the
/// router has matched a route, a new tenant on a request no route matches takes no slot.
#[tokio::test]
async fn unrouted_requests_take_no_slot_of_the_cap() {
    use axum::routing::get;
    let registry = TenantRegistry::builder().max_tenants(5).build();
    let app = axum::Router::new()
        .route("/t/{tenant}/hello", get(|| async { "hello" }))
        // The router's 404, saying whether the layer counted the request as past the cap.
        .fallback(|| async {
            let overflow = Tenant::current().is_some_and(|t| t.is_overflow());
            (http::StatusCode::NOT_FOUND, overflow.to_string())
        })
        .layer(
            TenantLayer::builder()
                .registry(registry.clone())
                .source(TenantSource::path_segment(1))
                .build(),
        );
    let get = |path: String| {
        let app = app.clone();
        async move {
            let req = http::Request::get(path)
                .body(axum::body::Body::empty())
                .unwrap();
            let res = app.oneshot(req).await.unwrap();
            let status = res.status().as_u16();
            let body = res.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
    };
    assert_eq!(get("/t/acme/hello".into()).await.0, 200);
    for i in 0..500 {
        let (status, overflow) = get(format!("/t/scan{i}/wp-admin.php")).await;
        assert_eq!((status, overflow.as_str()), (404, "false"));
    }
    assert_eq!(registry.len(), 1, "the scan took no slot");
    // A known tenant's 404 is still its own; a real newcomer on a real route is admitted.
    assert_eq!(get("/t/acme/missing".into()).await.0, 404);
    assert_eq!(registry.request_stats("acme").unwrap().total, 2);
    assert_eq!(get("/t/globex/hello".into()).await.0, 200);
    assert_eq!(registry.len(), 2);
    assert!(registry.request_stats("scan7").is_none());
    assert_eq!(registry.overflowed_requests(), 0);
}
