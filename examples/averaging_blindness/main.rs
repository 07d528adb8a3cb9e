//! Averaging blindness, seen and fixed.
//!
//! Starts a multi-tenant service on loopback, wrapped in `TenantLayer`, and sends it traffic
//! from 50 tenants: 49 answer in about 50 ms, one (`finance`) in about 5 s, failing one request
//! in five. Then it prints what an operator acts on first (the alerts, one line per tenant,
//! pages first), what a platform dashboard shows (the average) beside each tenant worst first,
//! and draws each tenant's p99 and success rate against the platform's as a PNG chart. No collector needed; with `OTEL_EXPORTER_OTLP_ENDPOINT` set the run
//! also goes to it (Jaeger and Grafana through `collector-config/docker-compose.yml`).
//!
//! ```sh
//! cargo run -p tenant-otel-demo   # the same source, built without the test suite's dependencies
//! cargo run --example averaging_blindness -- --tenants 200 --seconds 40 --error-rate 0.5
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::Query;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use clap::Parser;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use indicatif::{ProgressBar, ProgressStyle};
use tenant_otel::alert::{AlertEvent, AlertState, Severity};
use tenant_otel::{Telemetry, Tenant, TenantInfo};

#[derive(Parser, Clone)]
#[command(about = "Show what a platform average hides, tenant by tenant")]
struct Args {
    /// Tenants in all, the failing one included.
    #[arg(long, default_value_t = 50)]
    tenants: usize,
    /// How long to send traffic, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Requests a second from each tenant.
    #[arg(long, default_value_t = 2)]
    rate: u32,
    /// How often the failing tenant's requests fail (0 to 1).
    #[arg(long, default_value_t = 0.2)]
    error_rate: f64,
    /// How long the failing tenant's requests take, in ms.
    #[arg(long, default_value_t = 5000)]
    slow_ms: u64,
    /// How long everyone else's take, in ms.
    #[arg(long, default_value_t = 50)]
    fast_ms: u64,
    /// Where to write the chart.
    #[arg(long, default_value = "averaging-blindness.png")]
    chart: String,
    /// Tenant rows to print (the worst first).
    #[arg(long, default_value_t = 8)]
    rows: usize,
}

const FAILING: &str = "finance";

#[derive(serde::Deserialize)]
struct Params {
    n: u64,
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let telemetry = Arc::new(
        Telemetry::builder()
            .service_name("averaging-blindness")
            // A demo of seconds: evaluate the alert rules every second, not every ten.
            .alerts(tenant_otel::alert::Alerts::default().every(Duration::from_secs(1)))
            .without_console_logs()
            .init()?,
    );
    let registry = telemetry.registry();
    let tenants: Vec<String> = std::iter::once(FAILING.to_owned())
        .chain((1..args.tenants).map(|i| format!("tenant-{i:03}")))
        .collect();
    for (i, t) in tenants.iter().enumerate() {
        let tier = if i % 3 == 0 { "premium" } else { "standard" };
        registry.register_tenant(t, TenantInfo::new(t, tier, "eu-west-1"))?;
    }
    let alerts = telemetry.alerts().subscribe();

    // The service: everyone fast, `finance` slow and failing now and then.
    let (slow, fast, error_every) = (
        Duration::from_millis(args.slow_ms),
        Duration::from_millis(args.fast_ms),
        (1.0 / args.error_rate.clamp(1e-9, 1.0)).round() as u64,
    );
    let app = Router::new()
        .route(
            "/search",
            get(move |tenant: Tenant, Query(p): Query<Params>| async move {
                if tenant.id().as_str() == FAILING {
                    tokio::time::sleep(slow).await;
                    if args.error_rate > 0.0 && p.n % error_every == 0 {
                        tracing::warn!(request = p.n, "vector store timed out");
                        return (StatusCode::SERVICE_UNAVAILABLE, "vector store timed out");
                    }
                } else {
                    tokio::time::sleep(fast).await;
                }
                (StatusCode::OK, "results")
            }),
        )
        .layer(telemetry.layer());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });

    // The clients: each tenant sends on schedule, whatever the answers take.
    let total = tenants.len() as u64 * u64::from(args.rate) * args.seconds;
    let bar = ProgressBar::new(total).with_style(ProgressStyle::with_template(
        "{spinner} {elapsed:>3} [{bar:40}] {pos}/{len} requests from {msg}",
    )?);
    bar.set_message(format!("{} tenants", tenants.len()));
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1024)
        .build_http();
    let started = Instant::now();
    let mut senders = Vec::new();
    for tenant in tenants.clone() {
        let (client, bar) = (client.clone(), bar.clone());
        senders.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1) / args.rate.max(1));
            let mut inflight = Vec::new();
            for n in 0..u64::from(args.rate) * args.seconds {
                tick.tick().await;
                let req = http::Request::get(format!("http://{addr}/search?n={n}"))
                    .header("x-tenant-id", &tenant)
                    .body(Empty::new())
                    .expect("a valid request");
                let (client, bar) = (client.clone(), bar.clone());
                inflight.push(tokio::spawn(async move {
                    if let Ok(res) = client.request(req).await {
                        let _ = res.into_body().collect().await;
                    }
                    bar.inc(1);
                }));
            }
            for task in inflight {
                let _ = task.await;
            }
        }));
    }
    for s in senders {
        s.await?;
    }
    bar.finish_and_clear();
    // One last look, so an alert of the final second is not missed.
    telemetry.alerts().evaluate();
    let fired: Vec<AlertEvent> = alerts
        .drain()
        .into_iter()
        .filter(|e| e.state == AlertState::Firing)
        .collect();

    let view = registry.view();
    let platform = &view.platform.requests.stats;
    let rows: Vec<&tenant_otel::view::TenantView> = view
        .tenants
        .iter()
        .filter(|t| !t.tenant.starts_with("__"))
        .collect();

    // First what an operator acts on: one line per tenant, pages before tickets.
    println!();
    print_alerts(&fired, started, rows.len());

    println!();
    println!(
        "What the platform dashboard shows ({} requests):",
        platform.total
    );
    println!(
        "  average latency {:>8.0} ms    success rate {:>6.2} %    -> looks healthy",
        platform.avg_ms,
        platform.success_rate * 100.0
    );
    println!();
    println!("What each tenant sees (worst first):");
    println!(
        "  {:<12} {:>9} {:>9} {:>9} {:>9}  alerts",
        "tenant", "requests", "success", "p50 ms", "p99 ms"
    );
    let mut alerts_of: BTreeMap<&str, Vec<&'static str>> = BTreeMap::new();
    for e in &fired {
        alerts_of
            .entry(e.tenant.as_str())
            .or_default()
            .push(e.kind.as_str());
    }
    for t in rows.iter().take(args.rows) {
        let r = &t.requests;
        let alerts = alerts_of.get(t.tenant.as_str()).map(|a| a.join(", "));
        println!(
            "  {:<12} {:>9} {:>8.1}% {:>9.0} {:>9.0}  {}",
            t.tenant,
            r.total,
            r.success_rate * 100.0,
            r.p50_ms,
            r.p99_ms,
            alerts.unwrap_or_default()
        );
    }
    let more = &rows[args.rows.min(rows.len())..];
    if !more.is_empty() {
        let quiet = more
            .iter()
            .filter(|t| !alerts_of.contains_key(t.tenant.as_str()))
            .count();
        if quiet == more.len() {
            println!("  ... {} more, none with an alert", more.len());
        } else {
            println!("  ... {} more, {quiet} of them with no alert", more.len());
        }
    }

    let points: Vec<chart::Point> = rows
        .iter()
        .map(|t| chart::Point {
            failing: t.tenant == FAILING,
            p99_ms: t.requests.p99_ms,
            success: t.requests.success_rate,
        })
        .collect();
    let platform_figures = (platform.avg_ms, platform.success_rate);
    match chart::draw(&args.chart, &points, platform_figures) {
        Ok(()) => println!("\nChart: {}", args.chart),
        Err(e) => println!("\nNo chart: {e}"),
    }

    server.abort();
    telemetry.shutdown()?;
    Ok(())
}

/// The firing alerts, one line per tenant: its most urgent severity, when the first alert of
/// that severity fired, and its rules (the less urgent ones after a `|`); pages first.
fn print_alerts(fired: &[AlertEvent], started: Instant, tenants: usize) {
    let mut by_tenant: BTreeMap<&str, Vec<&AlertEvent>> = BTreeMap::new();
    for e in fired {
        by_tenant.entry(e.tenant.as_str()).or_default().push(e);
    }
    let pages = |e: &&AlertEvent| e.severity() == Severity::Page;
    let named = |events: &[&AlertEvent]| {
        let names: Vec<String> = events
            .iter()
            .map(|e| match e.slo {
                Some(slo) => format!("{} on {slo}", e.kind.as_str()),
                None => e.kind.as_str().to_owned(),
            })
            .collect();
        names.join(", ")
    };
    let mut lines: Vec<(bool, Instant, String)> = by_tenant
        .into_iter()
        .map(|(tenant, mut events)| {
            events.sort_by_key(|e| (!pages(e), e.at));
            let (urgent, rest): (Vec<&AlertEvent>, Vec<&AlertEvent>) =
                events.iter().copied().partition(pages);
            let paged = !urgent.is_empty();
            let (first, also) = if paged {
                (urgent, rest)
            } else {
                (rest, Vec::new())
            };
            let after = first[0].at.saturating_duration_since(started).as_secs_f64();
            let mut line = format!(
                "  {:<7} {:<12} {:<9} {after:>5.1} s  {}",
                if paged { "PAGE" } else { "TICKET" },
                tenant,
                first[0].tier,
                named(&first)
            );
            if !also.is_empty() {
                line.push_str(&format!("  | ticket: {}", named(&also)));
            }
            (!paged, first[0].at, line)
        })
        .collect();
    lines.sort_by_key(|(ticket_only, at, _)| (*ticket_only, *at));
    if lines.is_empty() {
        println!("No alert fired: nothing to act on.");
        return;
    }
    println!("Alerts to act on, pages first (seconds after the traffic began):");
    for (_, _, line) in &lines {
        println!("{line}");
    }
    println!(
        "  {} other tenants: no alert",
        tenants.saturating_sub(lines.len())
    );
}

mod chart;
