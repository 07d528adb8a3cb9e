//! The in-process per-tenant view: requests and queries per tenant beside the platform
//! aggregate, through the Rust API and the `/tenants` JSON router.

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use serde_json::Value;
use tenant_otel::query::{QueryOutcome, QueryStatus};
use tenant_otel::view::view_router;
use tenant_otel::{TenantInfo, TenantLayer, TenantRegistry};
use tower::ServiceExt;

fn registry(max_tenants: usize) -> TenantRegistry {
    // A provider without readers: recording works, nothing is exported.
    TenantRegistry::builder()
        .meter_provider(&SdkMeterProvider::builder().build())
        .max_tenants(max_tenants)
        .build()
}

async fn get_json(app: &Router, path: &str) -> (StatusCode, Value) {
    let response = app
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn tenants_json_shows_requests_and_queries_worst_first() {
    let registry = registry(100);
    let app = Router::new()
        .route("/hello", get(|| async { "hello" }))
        .route("/fail", get(|| async { StatusCode::SERVICE_UNAVAILABLE }))
        .layer(TenantLayer::builder().registry(registry.clone()).build());
    for (tenant, path) in [
        ("acme", "/hello"),
        ("acme", "/hello"),
        ("globex", "/hello"),
        ("globex", "/fail"),
    ] {
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
        response.into_body().collect().await.unwrap();
    }
    registry
        .register_tenant("acme", TenantInfo::new("Acme", "premium", "eu"))
        .unwrap();
    for _ in 0..9 {
        registry
            .track_query(
                "acme",
                QueryStatus::Success,
                Duration::from_millis(40),
                3,
                10,
            )
            .unwrap();
    }
    registry
        .track_query("acme", QueryStatus::Error, Duration::from_millis(400), 0, 0)
        .unwrap();
    registry.update_quota_usage("acme", "tokens", 91.0).unwrap();
    let in_flight = registry.start_query("initech").unwrap();

    let view = view_router(registry.clone());
    let (status, all) = get_json(&view, "/tenants").await;
    assert_eq!(status, StatusCode::OK);
    let tenants = all["tenants"].as_array().unwrap();
    let order: Vec<&str> = tenants
        .iter()
        .map(|t| t["tenant"].as_str().unwrap())
        .collect();
    // globex failed half its requests, acme one query in ten, initech nothing yet.
    assert_eq!(order, ["globex", "acme", "initech"]);
    let platform = &all["platform"];
    assert_eq!(platform["requests"]["total"], 4);
    assert_eq!(platform["requests"]["errors"], 1);
    assert_eq!(platform["requests"]["success_rate"], 0.75);
    assert_eq!(platform["queries"]["total"], 10);
    assert_eq!(platform["queries"]["active"], 1);
    assert!((platform["queries"]["avg_ms"].as_f64().unwrap() - 76.0).abs() < 0.5);
    assert_eq!(platform["tenants"], 3);
    // The aggregate keeps its flat JSON shape, though it is a `StatsSnapshot` inside.
    let keys: Vec<&str> = platform["requests"]
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let mut expected = [
        "total",
        "success",
        "errors",
        "success_rate",
        "active",
        "avg_ms",
        "window_total",
        "window_errors",
        "window_success_rate",
        "window_avg_ms",
    ];
    expected.sort_unstable();
    assert_eq!(keys, expected);
    assert_eq!(platform["requests"]["window_total"], 4);
    assert_eq!(platform["requests"]["window_errors"], 1);

    let (status, acme) = get_json(&view, "/tenants/acme").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(acme["requests"]["total"], 2);
    assert_eq!(acme["requests"]["success_rate"], 1.0);
    assert_eq!(acme["queries"]["total"], 10);
    assert_eq!(acme["queries"]["success"], 9);
    assert_eq!(acme["queries"]["success_rate"], 0.9);
    let p99 = acme["queries"]["p99_ms"].as_f64().unwrap();
    assert!((p99 - 400.0).abs() / 400.0 < 0.01, "{p99}");
    let p50 = acme["queries"]["window"]["p50_ms"].as_f64().unwrap();
    assert!((p50 - 40.0).abs() / 40.0 < 0.01, "{p50}");
    assert_eq!(acme["quota"]["tokens"], 91.0);
    assert_eq!(acme["info"]["tier"], "premium");
    // Which objective, by its name as before it was an enum.
    assert_eq!(acme["sla"][0]["slo"], "availability");
    assert!(acme["sla"][0]["burn_rates"].is_object());

    let (status, initech) = get_json(&view, "/tenants/initech").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(initech["queries"]["active"], 1);
    in_flight.end(QueryOutcome::success());
    let (_, initech) = get_json(&view, "/tenants/initech").await;
    assert_eq!(initech["queries"]["active"], 0);
    assert_eq!(initech["queries"]["total"], 1);

    let (status, missing) = get_json(&view, "/tenants/nobody").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(missing["error"].is_string());
    let (status, _) = get_json(&view, "/tenants/..%2Fetc").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

#[test]
fn shared_labels_appear_only_when_they_saw_traffic() {
    let registry = registry(1);
    registry
        .track_query(
            "first",
            QueryStatus::Success,
            Duration::from_millis(10),
            1,
            1,
        )
        .unwrap();
    let labels = |r: &TenantRegistry| -> Vec<String> {
        r.view().tenants.into_iter().map(|t| t.tenant).collect()
    };
    assert_eq!(labels(&registry), ["first"]);
    registry
        .track_query(
            "second",
            QueryStatus::Error,
            Duration::from_millis(10),
            1,
            1,
        )
        .unwrap();
    // An invalid id is refused, not recorded under `__unknown__`.
    assert!(registry
        .track_query(
            "bad id!",
            QueryStatus::Success,
            Duration::from_millis(10),
            1,
            1,
        )
        .is_err());
    assert_eq!(labels(&registry), ["__overflow__", "first"]);
    let view = registry.view();
    // Queries past the cap share `__overflow__` but are not requests, which is what
    // `overflowed_requests` counts.
    assert_eq!(view.platform.overflowed_requests, 0);
    assert_eq!(view.platform.queries.stats.total, 2);
    assert!((view.platform.queries.stats.success_rate - 0.5).abs() < 1e-9);
}

#[test]
fn an_idle_registry_has_a_neutral_view() {
    let view = registry(10).view();
    assert!(view.tenants.is_empty());
    assert_eq!(view.platform.queries.stats.total, 0);
    assert_eq!(view.platform.queries.stats.success_rate, 1.0);
    assert_eq!(view.platform.queries.stats.avg_ms, 0.0);
    assert!(view.platform.queries.stats.avg_ms.is_finite());
}
