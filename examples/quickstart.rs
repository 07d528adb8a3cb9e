//! Averaging blindness, and how per-tenant telemetry ends it.
//!
//! Wraps a small axum app in `TenantLayer`, sends it traffic from 50 tenants — 49 answer in
//! 50 ms, `finance` in 5 s with one request in five failing — and prints what the platform
//! average says next to what each tenant sees. Runs on the in-process view: no collector needed.
//! Set `OTEL_EXPORTER_OTLP_ENDPOINT` to also export traces, metrics and logs over OTLP.
//!
//! ```sh
//! cargo run --example quickstart
//! cargo run --example quickstart -- --serve 127.0.0.1:3000   # then keep serving, with /tenants and /metrics
//! ```

use std::time::Duration;

use axum::body::Body;
use axum::extract::Query;
use axum::routing::get;
use axum::Router;
use clap::Parser;
use http::{Request, StatusCode};
use tenant_otel::Tenant;
use tower::ServiceExt;

#[derive(Parser)]
#[command(about = "Send traffic from many tenants through TenantLayer and show each one")]
struct Args {
    /// Healthy tenants besides `finance`.
    #[arg(long, default_value_t = 49)]
    tenants: usize,
    /// Requests per tenant.
    #[arg(long, default_value_t = 10)]
    requests: usize,
    /// After the demo, keep serving the app on this address, with the in-process view at
    /// `/tenants` and Prometheus metrics at `/metrics`.
    #[arg(long)]
    serve: Option<String>,
}

#[derive(serde::Deserialize)]
struct Work {
    n: usize,
}

/// The service under observation: fast for everyone but `finance`, which is slow and fails one
/// request in five.
async fn search(tenant: Tenant, Query(work): Query<Work>) -> (StatusCode, String) {
    if tenant.id().as_str() == "finance" {
        tokio::time::sleep(Duration::from_millis(5000)).await;
        if work.n % 5 == 0 {
            tracing::warn!(request = work.n, "vector store timed out");
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                "vector store timed out".into(),
            );
        }
    } else {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    (StatusCode::OK, format!("results for {}", tenant.id()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let telemetry = tenant_otel::Telemetry::builder()
        .service_name("quickstart")
        .without_console_logs()
        .init()?;

    let app = Router::new()
        .route("/search", get(search))
        .layer(telemetry.layer());

    let tenants: Vec<String> = (0..args.tenants)
        .map(|i| format!("tenant-{i:02}"))
        .chain(["finance".to_owned()])
        .collect();
    println!(
        "Sending {} requests from {} tenants through TenantLayer...",
        tenants.len() * args.requests,
        tenants.len()
    );
    let mut calls = Vec::new();
    for tenant in &tenants {
        for n in 0..args.requests {
            let req = Request::get(format!("/search?n={n}"))
                .header("x-tenant-id", tenant.as_str())
                .body(Body::empty())?;
            let app = app.clone();
            calls.push(tokio::spawn(async move {
                let res = app.oneshot(req).await.expect("infallible");
                // Reading the body is what ends the request's span and timing.
                let _ = axum::body::to_bytes(res.into_body(), usize::MAX).await;
            }));
        }
    }
    for call in calls {
        call.await?;
    }

    // The in-process view: no collector involved.
    let view = telemetry.registry().view();
    let platform = &view.platform.requests;
    println!();
    println!("What the platform dashboard shows:");
    println!(
        "  average latency {:>7.0} ms   success rate {:>6.2} %   -> looks healthy",
        platform.avg_ms,
        100.0 * platform.success_rate
    );
    println!();
    println!("What each tenant sees (worst first):");
    println!(
        "  {:<12} {:>8} {:>9} {:>9} {:>9} {:>9}",
        "tenant", "requests", "success", "avg ms", "p50 ms", "p99 ms"
    );
    for tenant in view.tenants.iter().take(5) {
        let s = &tenant.requests;
        println!(
            "  {:<12} {:>8} {:>8.1}% {:>9.0} {:>9.0} {:>9.0}",
            tenant.tenant,
            s.total,
            100.0 * s.success_rate,
            s.avg_ms,
            s.p50_ms,
            s.p99_ms
        );
    }
    let more = view.tenants.len().saturating_sub(5);
    if more > 0 {
        println!("  ... and {more} more tenants like the last one");
    }
    println!();
    println!(
        "The average hides `finance`: every span, log and metric above carries tenant.id, so a \
         per-tenant alert fires for it alone."
    );

    if let Some(addr) = args.serve {
        // Added after the layer, so the operator's endpoints need no tenant.
        let app = app
            .merge(tenant_otel::view_router(telemetry.registry().clone()))
            .merge(tenant_otel::prometheus_router(
                telemetry.prometheus_registry().clone(),
            ));
        let listener = tokio::net::TcpListener::bind(&addr).await?;
        println!(
            "Serving on http://{addr}: /search (send header x-tenant-id), /tenants, /tenants/{{id}}, /metrics; Ctrl-C or SIGTERM to stop."
        );
        axum::serve(listener, app)
            .with_graceful_shutdown(tenant_otel::shutdown_signal())
            .await?;
    }
    telemetry.shutdown()?;
    Ok(())
}
