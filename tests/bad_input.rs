//! Hostile and broken input: each gets a clear 400 or the documented fallback, never a panic,
//! and never a new tenant entry.

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use tenant_otel::layer::Edge;
use tenant_otel::{Tenant, TenantLayer, TenantRegistry, TenantSource};
use tower::ServiceExt;

fn app(layer: TenantLayer) -> Router {
    Router::new()
        .route("/", get(|t: Tenant| async move { t.id().to_string() }))
        .route("/health", get(|| async { "up" }))
        .layer(layer)
}

async fn send(app: &Router, req: Request<Body>) -> (StatusCode, String) {
    let res = app.clone().oneshot(req).await.unwrap();
    let status = res.status();
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn with_tenant(value: HeaderValue) -> Request<Body> {
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.headers_mut().insert("x-tenant-id", value);
    req
}

#[tokio::test]
async fn missing_empty_invalid_and_oversized_ids_get_a_clear_400() {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let registry = TenantRegistry::builder().meter_provider(&provider).build();
    let app = app(TenantLayer::builder().registry(registry.clone()).build());

    let (status, msg) = send(&app, Request::get("/").body(Body::empty()).unwrap()).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        msg,
        "missing tenant id: expected header `x-tenant-id` or baggage entry `tenant.id`"
    );

    let cases: Vec<(HeaderValue, &str)> = vec![
        (HeaderValue::from_static(""), "tenant id is empty"),
        (
            HeaderValue::from_static("acme corp"),
            "character outside [A-Za-z0-9._-] at byte 4",
        ),
        (
            HeaderValue::from_static("../../etc"),
            "outside [A-Za-z0-9._-]",
        ),
        (
            HeaderValue::from_str(&"a".repeat(10 * 1024)).unwrap(),
            "tenant id is 10240 bytes long; at most 64 are allowed",
        ),
        (
            HeaderValue::from_bytes(b"acme\xff\xfe").unwrap(),
            "character outside [A-Za-z0-9._-] at byte 4",
        ),
    ];
    for (value, expected) in cases {
        let (status, msg) = send(&app, with_tenant(value)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{msg}");
        assert!(
            msg.starts_with("invalid tenant id in header `x-tenant-id`: ")
                && msg.contains(expected),
            "{msg:?} should mention {expected:?}"
        );
        // The message never echoes the raw value back.
        assert!(msg.len() < 200);
    }
    assert_eq!(registry.len(), 0, "rejected ids never become tenants");
    let unknown = registry.request_stats("__unknown__").unwrap();
    assert_eq!(unknown.total, 0, "rejections are in no tenant's numbers");
    // ... but counted once each, by reason.
    provider.force_flush().unwrap();
    let mut rejected = std::collections::BTreeMap::new();
    for rm in exporter.get_finished_metrics().unwrap() {
        for m in rm.scope_metrics().flat_map(|sm| sm.metrics()) {
            if m.name() != "tenant.requests.rejected" {
                continue;
            }
            let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() else {
                panic!("a u64 counter");
            };
            for p in sum.data_points() {
                let reason = p
                    .attributes()
                    .find(|kv| kv.key.as_str() == "reason")
                    .map(|kv| kv.value.to_string())
                    .unwrap();
                rejected.insert(reason, p.value());
            }
        }
    }
    assert_eq!(
        rejected,
        [("invalid".to_owned(), 5), ("missing".to_owned(), 1)].into()
    );
}

#[tokio::test]
async fn allow_missing_serves_unknown_and_excluded_paths_pass_untouched() {
    let app = app(TenantLayer::builder()
        .allow_missing()
        .exclude_path("/health")
        .build());
    assert_eq!(
        send(&app, Request::get("/").body(Body::empty()).unwrap()).await,
        (StatusCode::OK, "__unknown__".to_owned())
    );
    assert_eq!(
        send(&app, with_tenant(HeaderValue::from_static("bad id"))).await,
        (StatusCode::OK, "__unknown__".to_owned())
    );
    let strict = self::app(TenantLayer::builder().exclude_path("/health").build());
    assert_eq!(
        send(
            &strict,
            Request::get("/health").body(Body::empty()).unwrap()
        )
        .await,
        (StatusCode::OK, "up".to_owned())
    );
}

#[tokio::test]
async fn hostile_baggage_is_bounded_and_never_believed_over_a_trusted_header() {
    let registry = TenantRegistry::builder().build();
    let app = app(TenantLayer::builder()
        .source(TenantSource::header("x-tenant-id"))
        .source(TenantSource::baggage())
        .registry(registry.clone())
        .build());

    // 100 KB of baggage, and 10,000 entries: over the W3C limits, so the propagator drops the
    // header whole; the trusted header still decides.
    let huge = format!("tenant.id=evil,big={}", "x".repeat(100 * 1024));
    let many = (0..10_000)
        .map(|i| format!("k{i}=v{i}"))
        .collect::<Vec<_>>()
        .join(",");
    for baggage in [huge.clone(), many.clone()] {
        let mut req = with_tenant(HeaderValue::from_static("finance"));
        req.headers_mut()
            .insert("baggage", HeaderValue::from_str(&baggage).unwrap());
        assert_eq!(
            send(&app, req).await,
            (StatusCode::OK, "finance".to_owned())
        );
    }
    // Without the header, oversized baggage finds no tenant at all.
    for baggage in [huge, many] {
        let mut req = Request::get("/").body(Body::empty()).unwrap();
        req.headers_mut()
            .insert("baggage", HeaderValue::from_str(&baggage).unwrap());
        let (status, msg) = send(&app, req).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            msg.starts_with(
                "missing tenant id: expected header `x-tenant-id` or baggage entry `tenant.id`"
            ),
            "{msg}"
        );
    }

    // A spoofed baggage tenant loses to the trusted header.
    let mut req = with_tenant(HeaderValue::from_static("finance"));
    req.headers_mut()
        .insert("baggage", HeaderValue::from_static("tenant.id=payroll"));
    assert_eq!(
        send(&app, req).await,
        (StatusCode::OK, "finance".to_owned())
    );
    // Baggage alone, where trusted, is used; an invalid baggage tenant is refused.
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.headers_mut()
        .insert("baggage", HeaderValue::from_static("tenant.id=payroll"));
    assert_eq!(
        send(&app, req).await,
        (StatusCode::OK, "payroll".to_owned())
    );
    let mut req = Request::get("/").body(Body::empty()).unwrap();
    req.headers_mut()
        .insert("baggage", HeaderValue::from_static("tenant.id=a%20b"));
    let (status, msg) = send(&app, req).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        msg.starts_with("invalid tenant id in baggage entry `tenant.id`"),
        "{msg}"
    );

    let mut tenants: Vec<_> = registry
        .tenants()
        .iter()
        .map(|t| t.id().to_string())
        .collect();
    tenants.sort();
    assert_eq!(tenants, ["finance", "payroll"]);
}

#[tokio::test]
async fn baggage_names_the_tenant_only_where_callers_are_trusted() {
    let baggage_only = || {
        let mut req = Request::get("/").body(Body::empty()).unwrap();
        req.headers_mut()
            .insert("baggage", HeaderValue::from_static("tenant.id=payroll"));
        req
    };
    // The default chain: the header, then the baggage of a trusted caller (an internal
    // service, as the defaults assume).
    let internal = app(TenantLayer::new());
    assert_eq!(
        send(&internal, baggage_only()).await,
        (StatusCode::OK, "payroll".to_owned())
    );
    // At a public edge, and where callers' baggage is dropped, the header alone.
    for layer in [
        TenantLayer::builder().edge(Edge::public()).build(),
        TenantLayer::builder()
            .edge(Edge::internal().drop_inbound_baggage())
            .build(),
    ] {
        let (status, msg) = send(&app(layer), baggage_only()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(msg, "missing tenant id: expected header `x-tenant-id`");
    }
    // Trusted only for some callers: the others' baggage is gone before any source reads it.
    let gated = app(TenantLayer::builder()
        .edge(Edge::trust_if(|head| {
            head.headers.contains_key("x-gateway")
        }))
        .build());
    assert_eq!(
        send(&gated, baggage_only()).await.0,
        StatusCode::BAD_REQUEST
    );
    let mut req = baggage_only();
    req.headers_mut()
        .insert("x-gateway", HeaderValue::from_static("1"));
    assert_eq!(
        send(&gated, req).await,
        (StatusCode::OK, "payroll".to_owned())
    );
}

#[tokio::test]
async fn grpc_callers_get_invalid_argument() {
    let app = app(TenantLayer::new());
    let req = Request::post("/")
        .header("content-type", "application/grpc")
        .body(Body::empty())
        .unwrap();
    let res = app.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()["grpc-status"], "3");
    assert_eq!(
        res.headers()["grpc-message"],
        "missing tenant id: expected header `x-tenant-id` or baggage entry `tenant.id`"
    );
}

#[tokio::test]
async fn a_flood_of_distinct_ids_stays_within_the_cap() {
    let registry = TenantRegistry::builder().max_tenants(100).build();
    let app = app(TenantLayer::builder().registry(registry.clone()).build());
    for i in 0..5_000 {
        let (status, body) = send(
            &app,
            with_tenant(HeaderValue::from_str(&format!("t-{i}")).unwrap()),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        // Handlers (and spans) see the real id even past the cap.
        assert_eq!(body, format!("t-{i}"));
    }
    assert_eq!(registry.len(), 100);
    assert_eq!(registry.overflowed_requests(), 4_900);
    assert_eq!(registry.request_stats("__overflow__").unwrap().total, 4_900);
}

#[tokio::test]
async fn baggage_filled_to_the_w3c_limits_cannot_keep_a_forged_tenant() {
    let app = Router::new()
        .route(
            "/",
            get(|| async {
                tenant_otel::current_tenant()
                    .map(|t| t.to_string())
                    .unwrap_or_default()
            }),
        )
        .layer(TenantLayer::new());
    // Just under 8192 bytes, so the propagator accepts it; replacing `tenant.id` in place would
    // push it over the limit.
    let padded = format!("tenant.id=a,pad={}", "x".repeat(8192 - 20));
    // 64 entries, the most baggage may hold, none of them the tenant.
    let full = (0..64)
        .map(|i| format!("k{i}=v"))
        .collect::<Vec<_>>()
        .join(",");
    for baggage in [padded, full] {
        assert!(baggage.len() <= 8192);
        let mut req = with_tenant(HeaderValue::from_static("acme-production-tenant-0001"));
        req.headers_mut()
            .insert("baggage", HeaderValue::from_str(&baggage).unwrap());
        assert_eq!(
            send(&app, req).await,
            (StatusCode::OK, "acme-production-tenant-0001".to_owned())
        );
    }
}

#[tokio::test]
async fn clients_cannot_claim_the_reserved_labels() {
    let registry = TenantRegistry::builder().build();
    let app = app(TenantLayer::builder().registry(registry.clone()).build());
    for reserved in ["__unknown__", "__overflow__"] {
        let (status, msg) = send(&app, with_tenant(HeaderValue::from_static(reserved))).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{reserved}");
        assert!(msg.contains("reserved"), "{msg}");
    }
    assert_eq!(registry.overflowed_requests(), 0);
}
