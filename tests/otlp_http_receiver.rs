//! OTLP over HTTP/protobuf into a real collector process (`rotel-agent`, from `pip install
//! rotel`), which decodes what arrives and logs it.

mod processes;

use processes::Collector;

use std::time::Duration;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use tenant_otel::{Protocol, Telemetry};
use tower::ServiceExt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_metrics_and_logs_arrive_over_http_protobuf() {
    let agent = Collector::start();
    let http_port = agent.http_port;

    let telemetry = Telemetry::builder()
        .service_name("http-export")
        .otlp_endpoint(format!("http://127.0.0.1:{http_port}"))
        .protocol(Protocol::HttpProtobuf)
        .without_tracing_subscriber()
        .without_globals()
        .init()
        .unwrap();
    let app = Router::new()
        .route("/reports/{id}", get(|| async { "report" }))
        .layer(telemetry.layer());
    for _ in 0..3 {
        let res = app
            .clone()
            .oneshot(
                Request::get("/reports/9")
                    .header("x-tenant-id", "finance")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        res.into_body().collect().await.unwrap();
    }
    tokio::task::spawn_blocking(move || telemetry.shutdown().unwrap())
        .await
        .unwrap();

    // Give the agent a moment to log the last batch, then stop it and read what it decoded.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = agent.output();
    assert!(out.contains("ResourceSpans"), "{out}");
    assert!(out.contains("GET /reports/{id}"), "{out}");
    // The agent logs each batch as it comes, spans and metrics in either order: read them by
    // section.
    let spans_part = sections(&out, "ResourceSpans");
    // Once per span: the layer sets it, and the span processor must not add it again.
    assert_eq!(
        spans_part.matches("-> tenant.id: Str(finance)").count(),
        3,
        "{out}"
    );
    let metrics_part = sections(&out, "ResourceMetrics");
    assert!(
        metrics_part.contains("http.server.request.duration"),
        "{out}"
    );
    assert!(metrics_part.contains("-> tenant.id: Str(finance)"), "{out}");
}

/// Every section of the agent's log that starts with `kind` (`ResourceSpans`, `ResourceMetrics`),
/// each up to the next section of any kind.
fn sections(out: &str, kind: &str) -> String {
    const KINDS: [&str; 3] = ["ResourceSpans", "ResourceMetrics", "ResourceLogs"];
    let mut found = String::new();
    let mut rest = out;
    while let Some(start) = rest.find(kind) {
        let body = &rest[start + kind.len()..];
        let end = KINDS
            .iter()
            .filter_map(|k| body.find(k))
            .min()
            .unwrap_or(body.len());
        found.push_str(&body[..end]);
        rest = &body[end..];
    }
    found
}

/// Over HTTP/protobuf too: a collector that is down, then back, gets the spans made after it
/// came back; one that answers 3 s late still gets them; requests are served throughout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_export_resumes_after_an_outage_and_waits_for_a_slow_collector() {
    let agent = Collector::start();
    let target: std::net::SocketAddr = format!("127.0.0.1:{}", agent.http_port).parse().unwrap();
    let restarting = processes::Relay::start(target).await;
    let slow = processes::Relay::start_with_delay(target, Duration::from_secs(3)).await;
    slow.set_up(true);

    for (relay, before, after) in [
        (&restarting, Some("while-down"), "after-restart"),
        (&slow, None, "slow-collector"),
    ] {
        let telemetry = Telemetry::builder()
            .otlp_endpoint(relay.endpoint.clone())
            .protocol(Protocol::HttpProtobuf)
            .export_timeout(Duration::from_secs(8))
            .without_tracing_subscriber()
            .without_globals()
            .without_alert_task()
            .init()
            .unwrap();
        let app = Router::new()
            .route("/work", get(|| async { "done" }))
            .layer(telemetry.layer());
        let serve = |tenant: &'static str| {
            let app = app.clone();
            async move {
                let req = Request::get("/work")
                    .header("x-tenant-id", tenant)
                    .body(Body::empty())
                    .unwrap();
                let res = app.oneshot(req).await.unwrap();
                assert_eq!(res.status(), 200);
                res.into_body().collect().await.unwrap();
            }
        };
        if let Some(before) = before {
            for _ in 0..5 {
                serve(before).await;
            }
            let provider = telemetry.tracer_provider().clone();
            let failed = tokio::task::spawn_blocking(move || provider.force_flush())
                .await
                .unwrap();
            assert!(failed.is_err(), "nothing listens yet");
            relay.set_up(true);
        }
        for _ in 0..5 {
            serve(after).await;
        }
        tokio::task::spawn_blocking(move || telemetry.shutdown())
            .await
            .unwrap()
            .unwrap();
    }

    tokio::time::sleep(Duration::from_millis(500)).await;
    let out = agent.output();
    let spans = sections(&out, "ResourceSpans");
    for tenant in ["after-restart", "slow-collector"] {
        assert_eq!(
            spans
                .matches(&format!("-> tenant.id: Str({tenant})"))
                .count(),
            5,
            "{tenant}: {out}"
        );
    }
}
