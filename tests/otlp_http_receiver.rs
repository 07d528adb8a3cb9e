//! OTLP over HTTP/protobuf into a real collector process (`rotel-agent`), which decodes what
//! arrives and logs it.

mod common;
mod processes;

use common::{get_ok, work_app};
use processes::{sections, Collector};

use std::time::Duration;

use axum::routing::get;
use axum::Router;
use tenant_otel::init::Protocol;
use tenant_otel::Telemetry;

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
        assert_eq!(get_ok(&app, "/reports/9", "finance").await, "report");
    }
    tokio::task::spawn_blocking(move || telemetry.shutdown().unwrap())
        .await
        .unwrap();

    // The agent logs each batch as it decodes it: wait for the spans and the metrics.
    agent.wait_for(Duration::from_secs(20), |out| {
        sections(out, "ResourceSpans")
            .matches("-> tenant.id: Str(finance)")
            .count()
            >= 3
            && sections(out, "ResourceMetrics").contains("-> tenant.id: Str(finance)")
    });
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
            .alerts(tenant_otel::alert::Alerts::default().manual())
            .init()
            .unwrap();
        let app = work_app(&telemetry);
        if let Some(before) = before {
            for _ in 0..5 {
                get_ok(&app, "/work", before).await;
            }
            let provider = telemetry.tracer_provider().clone();
            let failed = tokio::task::spawn_blocking(move || provider.force_flush())
                .await
                .unwrap();
            assert!(failed.is_err(), "nothing listens yet");
            relay.set_up(true);
        }
        for _ in 0..5 {
            get_ok(&app, "/work", after).await;
        }
        tokio::task::spawn_blocking(move || telemetry.shutdown())
            .await
            .unwrap()
            .unwrap();
    }

    let count = |out: &str, tenant: &str| {
        sections(out, "ResourceSpans")
            .matches(&format!("-> tenant.id: Str({tenant})"))
            .count()
    };
    agent.wait_for(Duration::from_secs(20), |out| {
        count(out, "after-restart") >= 5 && count(out, "slow-collector") >= 5
    });
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
