//! HTTP semantic-convention hygiene of the layer, checked on what reaches an OTLP collector:
//! nothing a client makes up (paths, methods, `Host`, `User-Agent`) may turn into new span names
//! or metric series, and failures are marked the way the conventions say.

mod common;
mod otlp_support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use axum::body::Body;
use axum::routing::{any, get};
use axum::Router;
use common::{attr, Harness};
use fake_opentelemetry_collector::ExportedSpan;
use http::{Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use otlp_support::{attrs, matching, points, total, Metric};
use tower::{Layer, ServiceExt};

const DURATION: &str = "http.server.request.duration";
const ACTIVE: &str = "http.server.active_requests";

/// Telemetry whose periodic metric export never fires during a test, so the only metric export
/// is the explicit flush and its cumulative totals are the whole story.
async fn harness() -> Harness {
    Harness::start_with(|b| b.metric_export_interval(Duration::from_secs(3600))).await
}

/// Sends a request and reads the whole body: the layer records a request when its body ends,
/// and a body dropped unread would be recorded as cancelled instead.
async fn send(app: &Router, req: Request<Body>) -> StatusCode {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    res.into_body().collect().await.unwrap();
    status
}

fn request(method: Method, path: &str, tenant: &str) -> Request<Body> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("x-tenant-id", tenant)
        .body(Body::empty())
        .unwrap()
}

/// Flushes the meter provider (blocking, so off the runtime that serves the collector) and
/// returns the exported metrics by name.
async fn exported_metrics(h: &mut Harness) -> BTreeMap<String, Metric> {
    let provider = h.telemetry.meter_provider().clone();
    tokio::task::spawn_blocking(move || provider.force_flush().expect("metrics flush"))
        .await
        .unwrap();
    let mut by_name = BTreeMap::new();
    for batch in h
        .collector
        .exported_metrics(1, Duration::from_secs(10))
        .await
    {
        let batch = serde_json::to_value(&batch).expect("exported metrics serialise");
        for metric in batch["metrics"].as_array().cloned().unwrap_or_default() {
            let name = metric["name"].as_str().unwrap_or_default().to_owned();
            by_name.insert(name, metric);
        }
    }
    by_name
}

fn tenant_spans<'a>(spans: &'a [ExportedSpan], tenant: &str) -> Vec<&'a ExportedSpan> {
    spans
        .iter()
        .filter(|s| s.kind == "SPAN_KIND_SERVER")
        .filter(|s| attr(&s.attributes, "tenant.id").as_deref() == Some(tenant))
        .collect()
}

fn is_error(span: &ExportedSpan) -> bool {
    span.status
        .as_ref()
        .is_some_and(|s| s.code == "STATUS_CODE_ERROR")
}

/// Every request that started has ended: the active-requests UpDownCounter sums to zero for each
/// of `tenants`, which must all have a series (a missing series would make the check vacuous).
fn assert_no_active_requests(metrics: &BTreeMap<String, Metric>, tenants: &[&str]) {
    let active = metrics
        .get(ACTIVE)
        .unwrap_or_else(|| panic!("{ACTIVE} not exported"));
    for tenant in tenants {
        assert!(
            !matching(active, &[("tenant.id", tenant)]).is_empty(),
            "no {ACTIVE} series for {tenant}"
        );
        assert_eq!(
            total(active, &[("tenant.id", tenant)]),
            0.0,
            "{ACTIVE} of {tenant}"
        );
    }
}

/// A pseudo-random generator (64-bit LCG): enough to make paths no router could know, without a
/// dependency.
fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 11
}

#[tokio::test(flavor = "current_thread")]
async fn a_scanner_of_made_up_paths_adds_no_span_names_routes_or_series() {
    let mut h = harness().await;
    let app = Router::new()
        .route("/orders/{id}", get(|| async { "order" }))
        .layer(h.telemetry.layer());

    const N: usize = 200;
    let mut seed = 0x5eed_u64;
    let mut paths = BTreeSet::new();
    while paths.len() < N {
        paths.insert(format!(
            "/wp-admin/{:x}/{:x}.php",
            next(&mut seed),
            next(&mut seed)
        ));
    }
    for path in &paths {
        assert_eq!(
            send(&app, request(Method::GET, path, "scanner")).await,
            StatusCode::NOT_FOUND,
            "{path}"
        );
    }

    // The collector holds 64 spans at a time, so they are drained while the flush runs.
    let tracer = h.telemetry.tracer_provider().clone();
    let flush = tokio::task::spawn_blocking(move || tracer.force_flush());
    let spans = h.spans(N, Duration::from_secs(30)).await;
    flush.await.unwrap().expect("spans flush");
    let spans = tenant_spans(&spans, "scanner");
    assert_eq!(spans.len(), N);
    let seen: BTreeSet<_> = spans
        .iter()
        .filter_map(|s| attr(&s.attributes, "url.path"))
        .collect();
    assert_eq!(seen.len(), N, "each probe has its own span");
    for span in &spans {
        assert_eq!(span.name, "GET", "the raw path never names a span");
        assert_eq!(attr(&span.attributes, "http.route"), None, "{span:?}");
        assert!(!is_error(span), "a 404 is the client's error, not ours");
    }

    let metrics = exported_metrics(&mut h).await;
    let duration = &metrics[DURATION];
    let series = matching(duration, &[("tenant.id", "scanner")]);
    assert_eq!(series.len(), 1, "one series, not one per path: {series:?}");
    let a = attrs(&series[0]);
    assert_eq!(
        a.get("http.response.status_code").map(String::as_str),
        Some("404")
    );
    assert_eq!(
        a.get("http.request.method").map(String::as_str),
        Some("GET")
    );
    assert!(!a.contains_key("http.route"), "{a:?}");
    assert!(!a.contains_key("error.type"), "{a:?}");
    assert_eq!(series[0]["count"].as_u64(), Some(N as u64));
    assert_no_active_requests(&metrics, &["scanner"]);
    h.finish().await;
}

#[tokio::test(flavor = "current_thread")]
async fn an_unknown_method_is_other_with_the_original_kept_on_the_span_only() {
    let mut h = harness().await;
    let app = Router::new()
        .route("/pot", any(|| async { "short and stout" }))
        .layer(h.telemetry.layer());
    let brew = Method::from_bytes(b"BREW").unwrap();
    assert_eq!(
        send(&app, request(brew, "/pot", "teapot")).await,
        StatusCode::OK
    );

    h.flush().await;
    let spans = h.spans(1, Duration::from_secs(10)).await;
    let spans = tenant_spans(&spans, "teapot");
    assert_eq!(spans.len(), 1);
    let a = &spans[0].attributes;
    assert_eq!(attr(a, "http.request.method").as_deref(), Some("_OTHER"));
    assert_eq!(
        attr(a, "http.request.method_original").as_deref(),
        Some("BREW")
    );
    assert!(!spans[0].name.contains("BREW"), "{}", spans[0].name);

    let metrics = exported_metrics(&mut h).await;
    let duration = &metrics[DURATION];
    let series = matching(duration, &[("tenant.id", "teapot")]);
    assert_eq!(series.len(), 1, "{series:?}");
    let a = attrs(&series[0]);
    assert_eq!(
        a.get("http.request.method").map(String::as_str),
        Some("_OTHER")
    );
    assert!(!a.contains_key("http.request.method_original"), "{a:?}");
    let active = matching(&metrics[ACTIVE], &[("tenant.id", "teapot")]);
    assert!(
        active
            .iter()
            .all(|p| attrs(p).get("http.request.method").map(String::as_str) == Some("_OTHER")),
        "{active:?}"
    );
    for metric in metrics.values() {
        for point in points(metric) {
            assert!(
                attrs(&point).values().all(|v| !v.contains("BREW")),
                "{point:?}"
            );
        }
    }
    assert_no_active_requests(&metrics, &["teapot"]);
    h.finish().await;
}

/// The conventions name the span `HTTP {route}` (or `HTTP`) when the method is `_OTHER`;
/// the layer names it `_OTHER /pot`.
#[tokio::test(flavor = "current_thread")]
async fn an_unknown_method_names_the_span_http() {
    let mut h = harness().await;
    let app = Router::new()
        .route("/pot", any(|| async { "short and stout" }))
        .layer(h.telemetry.layer());
    let brew = Method::from_bytes(b"BREW").unwrap();
    send(&app, request(brew, "/pot", "teapot")).await;
    h.flush().await;
    let spans = h.spans(1, Duration::from_secs(10)).await;
    let spans = tenant_spans(&spans, "teapot");
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].name, "HTTP /pot");
    h.finish().await;
}

#[tokio::test(flavor = "current_thread")]
async fn host_and_user_agent_never_reach_metrics() {
    let mut h = harness().await;
    let app = Router::new()
        .route("/items", get(|| async { "items" }))
        .layer(h.telemetry.layer());
    const N: usize = 20;
    for i in 0..N {
        let mut req = request(Method::GET, "/items", "browsing");
        let headers = req.headers_mut();
        headers.insert("host", format!("h{i}.clients.test").parse().unwrap());
        headers.insert("user-agent", format!("agent-{i}/1.0").parse().unwrap());
        assert_eq!(send(&app, req).await, StatusCode::OK);
    }

    let metrics = exported_metrics(&mut h).await;
    let mut checked = 0;
    for (name, metric) in &metrics {
        for point in points(metric) {
            for (key, value) in attrs(&point) {
                checked += 1;
                assert!(
                    !value.contains("clients.test") && !value.contains("agent-"),
                    "{name}: {key}={value}"
                );
                assert!(
                    !matches!(
                        key.as_str(),
                        "server.address" | "server.port" | "user_agent.original"
                    ),
                    "{name}: {key}={value}"
                );
            }
        }
    }
    assert!(checked > 0, "no metric attributes were exported at all");
    let series = matching(&metrics[DURATION], &[("tenant.id", "browsing")]);
    assert_eq!(series.len(), 1, "{series:?}");
    assert_eq!(series[0]["count"].as_u64(), Some(N as u64));
    assert_no_active_requests(&metrics, &["browsing"]);
    h.finish().await;
}

#[tokio::test(flavor = "current_thread")]
async fn server_errors_mark_the_span_and_series_client_errors_do_not() {
    let mut h = harness().await;
    let app = Router::new()
        .route(
            "/boom",
            get(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
        )
        .route("/bad", get(|| async { (StatusCode::BAD_REQUEST, "bad") }))
        .layer(h.telemetry.layer());
    for (path, status) in [
        ("/boom", StatusCode::INTERNAL_SERVER_ERROR),
        ("/bad", StatusCode::BAD_REQUEST),
        ("/nowhere", StatusCode::NOT_FOUND),
    ] {
        assert_eq!(send(&app, request(Method::GET, path, "errs")).await, status);
    }

    h.flush().await;
    let spans = h.spans(3, Duration::from_secs(10)).await;
    let spans = tenant_spans(&spans, "errs");
    assert_eq!(spans.len(), 3);
    let by_path = |path: &str| {
        *spans
            .iter()
            .find(|s| attr(&s.attributes, "url.path").as_deref() == Some(path))
            .unwrap_or_else(|| panic!("no span for {path}"))
    };
    let boom = by_path("/boom");
    assert!(is_error(boom), "{boom:?}");
    assert_eq!(attr(&boom.attributes, "error.type").as_deref(), Some("500"));
    for path in ["/bad", "/nowhere"] {
        let span = by_path(path);
        assert!(!is_error(span), "{span:?}");
        assert_eq!(attr(&span.attributes, "error.type"), None, "{span:?}");
    }

    let metrics = exported_metrics(&mut h).await;
    let duration = &metrics[DURATION];
    let series = |status: &str| {
        let s = matching(
            duration,
            &[("tenant.id", "errs"), ("http.response.status_code", status)],
        );
        assert_eq!(s.len(), 1, "status {status}: {s:?}");
        attrs(&s[0])
    };
    assert_eq!(
        series("500").get("error.type").map(String::as_str),
        Some("500")
    );
    for status in ["400", "404"] {
        let a = series(status);
        assert!(!a.contains_key("error.type"), "{a:?}");
    }
    assert_no_active_requests(&metrics, &["errs"]);
    h.finish().await;
}

/// A failing inner service and a failing response body: the error reaches the caller, the
/// request ends, and `error.type` is the conventions' `_OTHER` on the span and the series,
/// never a compiler-made type name that changes between builds.
#[tokio::test(flavor = "current_thread")]
async fn a_failing_service_or_body_ends_the_request_with_a_stable_error_type() {
    let mut h = harness().await;
    let inner = tower::service_fn(|req: Request<Body>| async move {
        if req.uri().path() == "/upstream" {
            return Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "upstream reset",
            ));
        }
        // A body that fails after its first chunk.
        let chunks = futures_util::stream::iter([
            Ok(bytes::Bytes::from_static(b"partial")),
            Err(std::io::Error::other("disk gone")),
        ]);
        Ok(Response::new(Body::from_stream(chunks)))
    });
    let svc = h.telemetry.layer().layer(inner);
    let registry = h.telemetry.registry().clone();
    let req = |path: &str| {
        Request::get(path)
            .header("x-tenant-id", "failing")
            .body(Body::empty())
            .unwrap()
    };

    let Err(err) = svc.clone().oneshot(req("/upstream")).await else {
        panic!("the inner service's error must reach the caller");
    };
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionReset);
    assert_eq!(err.to_string(), "upstream reset");
    let res = svc.oneshot(req("/download")).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body_err = res.into_body().collect().await.unwrap_err();
    assert!(body_err.to_string().contains("disk gone"), "{body_err}");

    let stats = registry.request_stats("failing").unwrap();
    assert_eq!((stats.total, stats.errors, stats.active), (2, 2, 0));

    h.flush().await;
    let spans = h.spans(2, Duration::from_secs(10)).await;
    let spans = tenant_spans(&spans, "failing");
    assert_eq!(spans.len(), 2);
    for span in &spans {
        assert_eq!(span.name, "GET");
        assert!(is_error(span), "{span:?}");
        assert_eq!(
            attr(&span.attributes, "error.type").as_deref(),
            Some("_OTHER")
        );
        let status = attr(&span.attributes, "http.response.status_code");
        let path = attr(&span.attributes, "url.path").unwrap();
        let expected = (path == "/download").then(|| "200".to_owned());
        assert_eq!(status, expected, "{path}");
    }

    let metrics = exported_metrics(&mut h).await;
    let series = matching(&metrics[DURATION], &[("tenant.id", "failing")]);
    assert_eq!(series.len(), 2, "{series:?}");
    for point in &series {
        let a = attrs(point);
        assert_eq!(a.get("error.type").map(String::as_str), Some("_OTHER"));
        assert_eq!(point["count"].as_u64(), Some(1), "{a:?}");
    }
    let statuses: BTreeSet<_> = series
        .iter()
        .map(|p| attrs(p).get("http.response.status_code").cloned())
        .collect();
    assert_eq!(statuses, BTreeSet::from([None, Some("200".to_owned())]));
    assert_no_active_requests(&metrics, &["failing"]);
    h.finish().await;
}

/// Responses that carry no body by definition are dropped unread by the server (axum replaces a
/// HEAD response's body with an empty one): they still count as the successes they are.
#[tokio::test(flavor = "current_thread")]
async fn head_and_no_content_responses_are_not_cancelled() {
    let h = Harness::start().await;
    let registry = h.telemetry.registry().clone();
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/empty", get(|| async { StatusCode::NO_CONTENT }))
        .layer(h.telemetry.layer());
    for (method, path) in [("HEAD", "/hello"), ("GET", "/empty")] {
        let res = app
            .clone()
            .oneshot(
                Request::builder()
                    .method(method)
                    .uri(path)
                    .header("x-tenant-id", "prober")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(res.status().is_success());
        // Dropped unread, as the server does with such bodies.
        drop(res);
    }
    let stats = registry.request_stats("prober").unwrap();
    assert_eq!((stats.total, stats.errors, stats.active), (2, 0, 0));
    h.finish().await;
}
