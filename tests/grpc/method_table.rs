//! The table of gRPC methods that name spans and series: a method enters it only once a method
//! of the application answered it, so made-up methods refused in front of the application (by
//! the layer for want of a tenant, by an auth interceptor) never take a name, and never take the
//! place of the real methods or of the HTTP routes.

use std::collections::BTreeMap;

use bytes::Bytes;
use http_body_util::BodyExt;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use tonic_health::pb::health_server::HealthServer;
use tonic_health::server::HealthService;
use tower::{Layer, ServiceExt};

use super::common::{pipeline, span_attr as attr, Pipeline};

/// A call to `path` as a gRPC client sends it: one empty message (`HealthCheckRequest {}`
/// encodes to nothing), with the tenant and the credentials asked for.
fn call(path: &str, tenant: bool, token: bool) -> http::Request<tonic::body::Body> {
    let mut req = http::Request::post(path)
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if tenant {
        req = req.header("x-tenant-id", "acme");
    }
    if token {
        req = req.header("authorization", "Bearer letmein");
    }
    let frame = http_body_util::Full::new(Bytes::from_static(b"\0\0\0\0\0"));
    req.body(tonic::body::Body::new(frame)).unwrap()
}

/// The call's `grpc-status`, from the response head (trailers-only) or from the trailers.
async fn grpc_status<B>(res: http::Response<B>) -> String
where
    B: http_body::Body,
    B::Error: std::fmt::Debug,
{
    let in_head = res.headers().get("grpc-status").cloned();
    let body = res.into_body().collect().await.unwrap();
    let in_trailers = body.trailers().and_then(|t| t.get("grpc-status")).cloned();
    let code = in_head.or(in_trailers).expect("a grpc-status");
    code.to_str().unwrap().to_owned()
}

/// Calls of `rpc.server.call.duration` by `rpc.method`.
fn calls_by_method(p: &Pipeline) -> BTreeMap<String, u64> {
    p.meter.force_flush().unwrap();
    let mut counts = BTreeMap::new();
    // Cumulative: the last export holds everything.
    let exports = p.metrics.get_finished_metrics().unwrap();
    let last = exports.last().expect("a metric export");
    for sm in last.scope_metrics() {
        for m in sm
            .metrics()
            .filter(|m| m.name() == "rpc.server.call.duration")
        {
            let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() else {
                panic!("not a histogram");
            };
            for dp in h.data_points() {
                let method = dp
                    .attributes()
                    .find(|kv| kv.key.as_str() == "rpc.method")
                    .map(|kv| kv.value.to_string())
                    .unwrap_or_default();
                *counts.entry(method).or_default() += dp.count();
            }
        }
    }
    counts
}

#[tokio::test]
async fn methods_refused_in_front_of_the_application_never_enter_the_table() {
    const N: usize = 10_000;
    const CHECK: &str = "grpc.health.v1.Health/Check";
    let p = pipeline();
    let layer = p.layer();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<HealthServer<HealthService>>().await;
    let auth = tonic::service::InterceptorLayer::new(|req: tonic::Request<()>| {
        match req.metadata().get("authorization") {
            Some(token) if token == "Bearer letmein" => Ok(req),
            _ => Err(tonic::Status::unauthenticated("who are you?")),
        }
    });
    let grpc = layer.layer(auth.layer(tonic::service::Routes::new(health)));
    // HTTP routes of the same service, recorded into the same registry.
    let http = axum::Router::new()
        .route("/orders/{id}", axum::routing::get(|| async { "order" }))
        .layer(layer.clone());
    let get_order = || async {
        let req = http::Request::get("/orders/7")
            .header("x-tenant-id", "acme")
            .body(axum::body::Body::empty())
            .unwrap();
        let res = http.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), http::StatusCode::OK);
        res.into_body().collect().await.unwrap();
    };
    get_order().await;

    for i in 0..N {
        let path = format!("/scan.Svc{i}/Probe{i}");
        let no_tenant = grpc.clone().oneshot(call(&path, false, true)).await;
        assert_eq!(
            grpc_status(no_tenant.unwrap()).await,
            "3",
            "INVALID_ARGUMENT"
        );
        let no_token = grpc.clone().oneshot(call(&path, true, false)).await;
        assert_eq!(
            grpc_status(no_token.unwrap()).await,
            "16",
            "UNAUTHENTICATED"
        );
    }
    for _ in 0..2 {
        let checked = grpc
            .clone()
            .oneshot(call(&format!("/{CHECK}"), true, true))
            .await;
        assert_eq!(grpc_status(checked.unwrap()).await, "0", "OK");
    }
    get_order().await;

    let spans = p.spans.get_finished_spans().unwrap();
    assert_eq!(spans.len(), 2 * N + 4, "a server span per call");
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    let mut methods: BTreeMap<String, usize> = BTreeMap::new();
    for span in &spans {
        *names.entry(span.name.to_string()).or_default() += 1;
        if let Some(method) = attr(span, "rpc.method") {
            *methods.entry(method).or_default() += 1;
        }
        if span.name.starts_with("GET") {
            assert_eq!(attr(span, "http.route").as_deref(), Some("/orders/{id}"));
        }
    }
    assert_eq!(
        names,
        BTreeMap::from([
            ("_OTHER".to_owned(), 2 * N),
            (CHECK.to_owned(), 2),
            ("GET /orders/{id}".to_owned(), 2),
        ]),
        "span names"
    );
    assert_eq!(
        methods,
        BTreeMap::from([("_OTHER".to_owned(), 2 * N), (CHECK.to_owned(), 2)]),
        "rpc.method on the spans"
    );
    // The calls refused for want of a tenant are in no tenant's series; those the interceptor
    // refused share one `_OTHER` series.
    assert_eq!(
        calls_by_method(&p),
        BTreeMap::from([("_OTHER".to_owned(), N as u64), (CHECK.to_owned(), 2)]),
        "rpc.method on rpc.server.call.duration"
    );
}
