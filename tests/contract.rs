//! Every instrument the crate emits, checked against the telemetry contract's table: name,
//! kind, unit and attribute keys as they arrive over OTLP, and the Prometheus names and labels
//! of the `/metrics` scrape. The table below is the whole contract: the emitted set must equal
//! it.

mod otlp_support;

use std::collections::BTreeSet;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use otlp_support::{attrs, keys, kind, pipeline, points, total, Metric};
use tenant_otel::instruments::{DURATION_BUCKETS, QUERY_DURATION_BUCKETS};
use tenant_otel::query::QueryOutcome;
use tenant_otel::{Tenant, TenantInfo, TenantRegistry};
use tower::ServiceExt;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Kind {
    Histogram,
    Counter,
    UpDownCounter,
    Gauge,
}

struct Row {
    name: &'static str,
    kind: Kind,
    unit: &'static str,
    /// On every data point.
    required: &'static [&'static str],
    /// On some data points only.
    optional: &'static [&'static str],
    /// The series the Prometheus scrape must show.
    prometheus: &'static [&'static str],
}

const CONTRACT: &[Row] = &[
    Row {
        name: "http.server.request.duration",
        kind: Kind::Histogram,
        unit: "s",
        required: &[
            "tenant.id",
            "http.request.method",
            "http.response.status_code",
        ],
        optional: &["http.route", "error.type"],
        prometheus: &[
            "http_server_request_duration_seconds_bucket",
            "http_server_request_duration_seconds_sum",
            "http_server_request_duration_seconds_count",
        ],
    },
    Row {
        name: "http.server.active_requests",
        kind: Kind::UpDownCounter,
        unit: "{request}",
        required: &["tenant.id", "http.request.method"],
        optional: &[],
        prometheus: &["http_server_active_requests"],
    },
    Row {
        name: "rag.queries",
        kind: Kind::Counter,
        unit: "{query}",
        required: &["tenant.id", "status"],
        // Only on the series of cancelled queries (status=error, error.type=cancelled).
        optional: &["error.type"],
        prometheus: &["rag_queries_total"],
    },
    Row {
        name: "rag.query.duration",
        kind: Kind::Histogram,
        unit: "s",
        required: &["tenant.id", "status"],
        optional: &["error.type"],
        prometheus: &[
            "rag_query_duration_seconds_bucket",
            "rag_query_duration_seconds_sum",
            "rag_query_duration_seconds_count",
        ],
    },
    Row {
        name: "rag.active_queries",
        kind: Kind::UpDownCounter,
        unit: "{query}",
        required: &["tenant.id"],
        optional: &[],
        prometheus: &["rag_active_queries"],
    },
    Row {
        name: "rag.docs_retrieved",
        kind: Kind::Histogram,
        unit: "{document}",
        required: &["tenant.id"],
        optional: &[],
        prometheus: &[
            "rag_docs_retrieved_bucket",
            "rag_docs_retrieved_sum",
            "rag_docs_retrieved_count",
        ],
    },
    Row {
        name: "rag.llm.tokens",
        kind: Kind::Counter,
        unit: "{token}",
        required: &["tenant.id"],
        optional: &[],
        prometheus: &["rag_llm_tokens_total"],
    },
    Row {
        name: "rag.quota.usage",
        kind: Kind::Gauge,
        unit: "%",
        required: &["tenant.id", "resource_type"],
        optional: &[],
        prometheus: &["rag_quota_usage_percent"],
    },
    Row {
        name: "tenant.info",
        kind: Kind::Gauge,
        unit: "{tenant}",
        required: &["tenant.id", "tenant.tier", "tenant.region", "tenant.name"],
        optional: &[],
        prometheus: &["tenant_info"],
    },
    Row {
        name: "tenant.sla.error_budget.remaining",
        kind: Kind::Gauge,
        unit: "1",
        required: &["tenant.id", "tenant.tier", "slo"],
        optional: &[],
        prometheus: &["tenant_sla_error_budget_remaining_ratio"],
    },
    Row {
        name: "tenant.sla.burn_rate",
        kind: Kind::Gauge,
        unit: "",
        required: &["tenant.id", "tenant.tier", "window", "slo"],
        optional: &[],
        prometheus: &["tenant_sla_burn_rate"],
    },
    Row {
        name: "tenant.resource.share",
        kind: Kind::Gauge,
        unit: "1",
        required: &["tenant.id", "resource"],
        optional: &[],
        prometheus: &["tenant_resource_share_ratio"],
    },
    Row {
        name: "tenant.cardinality.overflow",
        kind: Kind::Counter,
        unit: "{request}",
        required: &[],
        optional: &[],
        prometheus: &["tenant_cardinality_overflow_total"],
    },
    Row {
        name: "otel.sdk.processor.span.processed",
        kind: Kind::Counter,
        unit: "{span}",
        required: &["otel.component.type"],
        optional: &["error.type"],
        prometheus: &["otel_sdk_processor_span_processed_total"],
    },
];

fn kind_of(metric: &Metric) -> Option<Kind> {
    match kind(metric) {
        "Histogram" => Some(Kind::Histogram),
        "Gauge" => Some(Kind::Gauge),
        "Sum" => Some(if metric["data"]["Sum"]["is_monotonic"] == true {
            Kind::Counter
        } else {
            Kind::UpDownCounter
        }),
        _ => None,
    }
}

/// An application whose handlers run queries for the tenant the layer found.
fn app(registry: TenantRegistry) -> Router {
    let queries = registry.clone();
    let failing = registry.clone();
    Router::new()
        .route(
            "/ask/{topic}",
            get(move |tenant: Tenant| async move {
                queries
                    .start_query(&tenant)
                    .unwrap()
                    .end(QueryOutcome::success().docs_retrieved(4).llm_tokens(250));
                "answer"
            }),
        )
        .route(
            "/broken",
            get(move |tenant: Tenant| async move {
                // Abandoned without `end`: recorded as a cancelled query.
                let _query = failing.start_query(&tenant).unwrap();
                StatusCode::INTERNAL_SERVER_ERROR
            }),
        )
}

async fn send(app: &Router, tenant: &str, path: &str) -> StatusCode {
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
    // The duration is recorded when the body ends.
    response.into_body().collect().await.unwrap();
    status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exported_instruments_match_the_contract_table() {
    let p = pipeline(2).await;
    let registry = p.telemetry.registry().clone();
    let app = app(registry.clone()).layer(p.telemetry.layer());

    registry
        .register_tenant("acme", TenantInfo::new("Acme Corp", "premium", "eu-west-1"))
        .unwrap();
    assert_eq!(send(&app, "acme", "/ask/pricing").await, StatusCode::OK);
    assert_eq!(
        send(&app, "globex", "/broken").await,
        StatusCode::INTERNAL_SERVER_ERROR
    );
    // Past the cap of two tenants.
    assert_eq!(send(&app, "initech", "/ask/x").await, StatusCode::OK);
    registry.update_quota_usage("acme", "tokens", 42.5).unwrap();
    // In flight while the metrics are read: all of the in-flight work is acme's.
    let inflight = registry.start_query("acme").unwrap();

    // The Prometheus scrape of the same providers.
    let scrape =
        tenant_otel::view::prometheus_router(p.telemetry.prometheus_registry().unwrap().clone())
            .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
            .await
            .unwrap();
    assert_eq!(scrape.status(), StatusCode::OK);
    assert!(scrape.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/plain"));
    let text = String::from_utf8(
        scrape
            .into_body()
            .collect()
            .await
            .unwrap()
            .to_bytes()
            .to_vec(),
    )
    .unwrap();

    let metrics = p.finish().await;
    drop(inflight);

    let emitted: BTreeSet<&str> = metrics.keys().map(String::as_str).collect();
    let table: BTreeSet<&str> = CONTRACT.iter().map(|r| r.name).collect();
    assert_eq!(emitted, table, "instruments emitted vs the contract");

    for row in CONTRACT {
        let metric = &metrics[row.name];
        assert_eq!(kind_of(metric), Some(row.kind), "{}: kind", row.name);
        assert_eq!(metric["unit"], row.unit, "{}: unit", row.name);
        let points = points(metric);
        assert!(!points.is_empty(), "{}: no data points", row.name);
        let allowed: BTreeSet<String> = row
            .required
            .iter()
            .chain(row.optional)
            .map(|s| s.to_string())
            .collect();
        for point in &points {
            let keys = keys(point);
            for key in row.required {
                assert!(
                    keys.contains(*key),
                    "{}: {key} missing on {keys:?}",
                    row.name
                );
            }
            assert!(
                keys.is_subset(&allowed),
                "{}: unexpected keys {keys:?}",
                row.name
            );
        }
        for series in row.prometheus {
            assert!(
                text.lines().any(|l| l.starts_with(&format!("{series}{{"))
                    || l.starts_with(&format!("{series} "))),
                "{series} missing from the scrape:\n{text}"
            );
        }
    }

    // Attribute values the contract fixes.
    for name in ["rag.queries", "rag.query.duration"] {
        for point in points(&metrics[name]) {
            let a = attrs(&point);
            assert!(
                ["success", "error"].contains(&a["status"].as_str()),
                "{a:?}"
            );
            if let Some(error) = a.get("error.type") {
                assert_eq!(
                    (error.as_str(), a["status"].as_str()),
                    ("cancelled", "error")
                );
            }
        }
    }
    for point in points(&metrics["http.server.request.duration"]) {
        let a = attrs(&point);
        let failed = a["http.response.status_code"].parse::<u16>().unwrap() >= 500;
        assert_eq!(a.contains_key("error.type"), failed, "{a:?}");
    }
    let tenants: BTreeSet<String> = points(&metrics["rag.queries"])
        .iter()
        .map(|p| attrs(p)["tenant.id"].clone())
        .collect();
    assert_eq!(
        tenants,
        ["__overflow__", "acme", "globex"].map(String::from).into()
    );
    assert_eq!(total(&metrics["tenant.cardinality.overflow"], &[]), 1.0);
    let mut shares: Vec<(String, String, f64)> = points(&metrics["tenant.resource.share"])
        .iter()
        .map(|p| {
            let a = attrs(p);
            (
                a["tenant.id"].clone(),
                a["resource"].clone(),
                otlp_support::value(p),
            )
        })
        .collect();
    shares.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    assert!(
        shares.contains(&("acme".into(), "inflight".into(), 1.0)),
        "{shares:?}"
    );
    let busy: f64 = shares
        .iter()
        .filter(|s| s.1 == "busy_time")
        .map(|s| s.2)
        .sum();
    assert!(
        (busy - 1.0).abs() < 1e-9,
        "busy-time shares add up to 1: {shares:?}"
    );
    // acme (premium) served one request, with no failure: a full budget and no burn.
    let acme = [("tenant.id", "acme"), ("tenant.tier", "premium")];
    assert_eq!(
        total(&metrics["tenant.sla.error_budget.remaining"], &acme),
        1.0
    );
    let windows: BTreeSet<String> = otlp_support::matching(&metrics["tenant.sla.burn_rate"], &acme)
        .iter()
        .map(|p| attrs(p)["window"].clone())
        .collect();
    assert_eq!(
        windows,
        ["5m", "30m", "1h", "2h", "6h", "1d", "3d"]
            .map(String::from)
            .into()
    );
    assert_eq!(total(&metrics["tenant.sla.burn_rate"], &acme), 0.0);
    // globex's one request failed (500): its budget is spent, and it burns at 1/(1-0.995).
    let globex = [("tenant.id", "globex"), ("tenant.tier", "unknown")];
    assert_eq!(
        total(&metrics["tenant.sla.error_budget.remaining"], &globex),
        0.0
    );
    let burn_5m = total(
        &metrics["tenant.sla.burn_rate"],
        &[("tenant.id", "globex"), ("window", "5m")],
    );
    assert!((burn_5m - 200.0).abs() < 1e-6, "{burn_5m}");
    let bounds = |name: &str| -> Vec<f64> {
        points(&metrics[name])[0]["explicit_bounds"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    assert_eq!(
        bounds("http.server.request.duration"),
        DURATION_BUCKETS.to_vec()
    );
    assert_eq!(
        bounds("rag.query.duration"),
        QUERY_DURATION_BUCKETS.to_vec()
    );

    // Prometheus labels.
    for needle in [
        r#"rag_queries_total{"#,
        r#"tenant_id="acme""#,
        r#"status="success""#,
        r#"resource_type="tokens""#,
        r#"tenant_tier="premium""#,
        r#"tenant_region="eu-west-1""#,
        r#"tenant_name="Acme Corp""#,
        r#"tenant_id="__overflow__""#,
        r#"http_route="/ask/{topic}""#,
    ] {
        assert!(
            text.contains(needle),
            "{needle} missing from the scrape:\n{text}"
        );
    }
    let quota_line = text
        .lines()
        .find(|l| l.starts_with("rag_quota_usage_percent{") && l.contains(r#"tenant_id="acme""#))
        .expect("acme's quota series");
    assert!(quota_line.ends_with(" 42.5"), "{quota_line}");
}
