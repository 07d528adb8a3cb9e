//! The tenant layer end to end: requests through an axum app, spans and logs read back from an
//! OTLP collector.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use common::{attr, span_named, Harness};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use tenant_otel::propagation::PropagateLayer;
use tenant_otel::{Tenant, TenantSource};
use tower::{Service, ServiceExt};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT_ID: &str = "00f067aa0ba902b7";

async fn handler(tenant: Tenant) -> String {
    let span = tracing::info_span!("load_orders");
    let _entered = span.enter();
    tracing::info!(user.id = "u-42", "loading orders");
    format!("orders of {}", tenant.id())
}

async fn body_text<B>(res: http::Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[tokio::test(flavor = "current_thread")]
async fn server_span_child_spans_and_logs_carry_the_tenant() {
    let mut h = Harness::start().await;
    let app = Router::new()
        .route("/orders/{id}", get(handler))
        .layer(h.telemetry.layer());

    let res = app
        .oneshot(
            Request::get("/orders/7?token=secret")
                .header("x-tenant-id", "finance")
                .header("traceparent", format!("00-{TRACE_ID}-{PARENT_ID}-01"))
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(body_text(res).await, "orders of finance");
    h.flush().await;

    let spans = h.spans(2, Duration::from_secs(10)).await;
    let server = span_named(&spans, "GET /orders/{id}");
    assert_eq!(server.kind, "SPAN_KIND_SERVER");
    assert_eq!(server.trace_id, TRACE_ID);
    assert_eq!(server.parent_span_id, PARENT_ID);
    let a = &server.attributes;
    assert_eq!(attr(a, "tenant.id").as_deref(), Some("finance"));
    assert_eq!(attr(a, "http.request.method").as_deref(), Some("GET"));
    assert_eq!(attr(a, "http.route").as_deref(), Some("/orders/{id}"));
    assert_eq!(attr(a, "url.path").as_deref(), Some("/orders/7"));
    assert_eq!(attr(a, "url.scheme").as_deref(), Some("http"));
    assert_eq!(attr(a, "http.response.status_code").as_deref(), Some("200"));
    // The query string (here a token) never reaches the span.
    assert!(
        a.keys().all(|k| k != "url.query" && k != "url.full"),
        "{a:?}"
    );
    assert!(!format!("{a:?}").contains("secret"));

    // Only the application's spans: the exporter's own transport (tonic, h2, hyper) must not be
    // traced and exported in turn.
    let mut names: Vec<_> = spans.iter().map(|s| s.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["GET /orders/{id}", "load_orders"]);

    let child = span_named(&spans, "load_orders");
    assert_eq!(child.trace_id, TRACE_ID);
    assert_eq!(child.parent_span_id, server.span_id);
    assert_eq!(
        attr(&child.attributes, "tenant.id").as_deref(),
        Some("finance")
    );

    let logs = h.logs(1, Duration::from_secs(10)).await;
    let log = logs
        .iter()
        .find(|l| {
            l.body
                .as_deref()
                .is_some_and(|b| b.contains("loading orders"))
        })
        .expect("the handler's log record");
    assert_eq!(
        attr(&log.attributes, "tenant.id").as_deref(),
        Some("finance")
    );
    assert_eq!(attr(&log.attributes, "user.id").as_deref(), Some("u-42"));
    assert_eq!(log.trace_id, TRACE_ID);
    h.finish().await;
}

#[tokio::test(flavor = "current_thread")]
async fn service_a_passes_trace_and_tenant_to_service_b() {
    let mut h = Harness::start().await;

    // B trusts baggage: it sits behind A, which sets it.
    let b = Router::new()
        .route(
            "/b",
            get(|| async {
                tenant_otel::current_tenant()
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            }),
        )
        .layer(
            h.telemetry
                .layer_builder()
                .source(TenantSource::baggage())
                .build(),
        );
    let client = tower::ServiceBuilder::new()
        .layer(PropagateLayer::new())
        .service(b);
    let a = Router::new()
        .route(
            "/a",
            get(move || {
                let mut client = client.clone();
                async move {
                    let res = ServiceExt::<Request<Body>>::ready(&mut client)
                        .await
                        .unwrap()
                        .call(Request::get("/b").body(Body::empty()).unwrap())
                        .await
                        .unwrap();
                    let bytes = res.into_body().collect().await.unwrap().to_bytes();
                    String::from_utf8(bytes.to_vec()).unwrap()
                }
            }),
        )
        .layer(h.telemetry.layer());

    let res = a
        .oneshot(
            Request::get("/a")
                .header("x-tenant-id", "finance")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &bytes[..],
        b"finance",
        "B's handler sees the tenant in baggage"
    );
    h.flush().await;

    let spans = h.spans(2, Duration::from_secs(10)).await;
    let span_a = span_named(&spans, "GET /a");
    let span_b = span_named(&spans, "GET /b");
    assert_eq!(span_b.trace_id, span_a.trace_id);
    assert_eq!(span_b.parent_span_id, span_a.span_id);
    assert_eq!(
        attr(&span_b.attributes, "tenant.id").as_deref(),
        Some("finance")
    );
    h.finish().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_streaming_body_is_timed_to_its_end_and_a_dropped_one_is_cancelled() {
    let mut h = Harness::start().await;
    let app = Router::new()
        .route(
            "/stream",
            get(|| async {
                let chunks = futures_util::stream::unfold(0u8, |i| async move {
                    if i == 4 {
                        return None;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    Some((Ok::<_, std::io::Error>(format!("chunk {i}\n")), i + 1))
                });
                Body::from_stream(chunks)
            }),
        )
        .layer(h.telemetry.layer());
    let registry = h.telemetry.registry().clone();

    let res = app
        .clone()
        .oneshot(
            Request::get("/stream")
                .header("x-tenant-id", "streamer")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(body_text(res).await.lines().count(), 4);

    // A client that reads one chunk and goes away.
    let res = app
        .oneshot(
            Request::get("/stream")
                .header("x-tenant-id", "streamer")
                .body(Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    let mut body = res.into_body();
    body.frame().await.unwrap().unwrap();
    drop(body);

    let stats = registry.request_stats("streamer").unwrap();
    assert_eq!(stats.total, 2);
    assert_eq!(stats.active, 0, "the active count comes back down");
    assert_eq!(stats.errors, 1, "the dropped body counts as an error");
    h.flush().await;

    let spans = h.spans(2, Duration::from_secs(10)).await;
    let mut stream_spans: Vec<_> = spans.iter().filter(|s| s.name == "GET /stream").collect();
    stream_spans.sort_by_key(|s| s.start_time_unix_nano);
    assert_eq!(stream_spans.len(), 2);
    let full = stream_spans[0];
    let secs = (full.end_time_unix_nano - full.start_time_unix_nano) as f64 / 1e9;
    assert!(
        secs >= 2.0,
        "the span lasts to the end of the body: {secs} s"
    );
    assert_eq!(attr(&full.attributes, "error.type"), None);
    let cancelled = stream_spans[1];
    assert_eq!(
        attr(&cancelled.attributes, "error.type").as_deref(),
        Some("cancelled")
    );
    assert_eq!(cancelled.status.as_ref().unwrap().code, "STATUS_CODE_ERROR");
    h.finish().await;
}

#[tokio::test(flavor = "current_thread")]
async fn a_clean_shutdown_delivers_every_span() {
    let mut h = Harness::start().await;
    let mut app = Router::new()
        .route("/hello", get(|| async { "hi" }))
        .layer(h.telemetry.layer());
    const N: usize = 300;
    for i in 0..N {
        let res = app
            .call(
                Request::get("/hello")
                    .header("x-tenant-id", format!("t{}", i % 7))
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        drop(res.into_body().collect().await.unwrap());
    }
    // No flush: shutting down alone must deliver everything still queued.
    let telemetry = std::mem::replace(
        &mut h.telemetry,
        tenant_otel::Telemetry::builder()
            .without_tracing_subscriber()
            .without_globals()
            .init()
            .unwrap(),
    );
    let collect = tokio::spawn(async move {
        let spans = h.spans(N, Duration::from_secs(60)).await;
        let count = spans.into_iter().filter(|s| s.name == "GET /hello").count();
        (count, h)
    });
    common::shutdown(telemetry).await;
    // The collector lives until the shutdown is over: the final metric export goes to it too,
    // and may come after the last span.
    let (count, h) = collect.await.unwrap();
    h.finish().await;
    assert_eq!(count, N);
}
