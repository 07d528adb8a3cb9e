//! Averaging blindness, seen and fixed.
//!
//! Starts a multi-tenant service on loopback, wrapped in `TenantLayer`, and sends it traffic
//! from 50 tenants: 49 answer in about 50 ms, one (`finance`) in about 5 s, failing one request
//! in five. Then it prints what a platform dashboard shows (the average) beside each tenant
//! worst first, the alerts that fired for whom and how soon after the trouble began, and draws
//! the same as a PNG chart. No collector needed; with `OTEL_EXPORTER_OTLP_ENDPOINT` set the run
//! also goes to it (Jaeger and Grafana through `collector-config/docker-compose.yml`).
//!
//! ```sh
//! cargo run --example averaging_blindness
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
use plotters::prelude::*;
use tenant_otel::{AlertEvent, AlertState, Telemetry, Tenant, TenantInfo};

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
            .alert_interval(Duration::from_secs(1))
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
    let platform = &view.platform.requests;
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
    let mut alerts_of: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for e in &fired {
        alerts_of
            .entry(e.tenant.as_str())
            .or_default()
            .push(e.kind.to_string());
    }
    let rows = view.tenants.iter().filter(|t| !t.tenant.starts_with("__"));
    for t in rows.clone().take(args.rows) {
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
    let more = rows.clone().count().saturating_sub(args.rows);
    if more > 0 {
        println!("  ... {more} more, all healthy");
    }
    println!();
    if fired.is_empty() {
        println!("No alert fired.");
    } else {
        println!("Alerts (the trouble began when the traffic did):");
        for e in &fired {
            let after = e.at.saturating_duration_since(started).as_secs_f64();
            let slo = e.slo.map(|s| format!(" on {s}")).unwrap_or_default();
            println!(
                "  {:<12} {:<14} fired {:>5.1} s after the trouble began ({}{slo})",
                e.tenant.as_str(),
                e.kind.as_str(),
                after,
                e.tier
            );
        }
    }

    let points: Vec<(String, f64)> = rows
        .map(|t| (t.tenant.clone(), t.requests.p99_ms))
        .collect();
    match chart(&args.chart, &points, platform.avg_ms) {
        Ok(()) => println!("\nChart: {}", args.chart),
        Err(e) => println!("\nNo chart: {e}"),
    }

    server.abort();
    telemetry.shutdown()?;
    Ok(())
}

/// Each tenant's p99 as a point, worst first, with the platform average as a line: the failing
/// tenant far above it, everyone else far below.
fn chart(
    path: &str,
    points: &[(String, f64)],
    average_ms: f64,
) -> Result<(), Box<dyn std::error::Error>> {
    register_font()?;
    let max = points.iter().map(|(_, p)| *p).fold(average_ms, f64::max) * 1.15;
    let root = BitMapBackend::new(path, (1000, 560)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            "p99 latency per tenant vs. the platform average",
            ("sans-serif", 26),
        )
        .margin(20)
        .x_label_area_size(40)
        .y_label_area_size(70)
        // Log scale: 50 ms and 5 s both readable, and the average between them.
        .build_cartesian_2d(
            0usize..points.len().max(1),
            (1.0..max.max(10.0)).log_scale(),
        )?;
    chart
        .configure_mesh()
        .x_desc("tenants, worst first")
        .y_desc("p99 (ms, log scale)")
        .disable_x_mesh()
        .draw()?;
    chart
        .draw_series(points.iter().enumerate().map(|(i, (name, p99))| {
            let color = if name == FAILING { RED } else { BLUE };
            Circle::new((i, *p99), 5, color.filled())
        }))?
        .label("a tenant's p99")
        .legend(|(x, y)| Circle::new((x + 10, y), 5, BLUE.filled()));
    chart
        .draw_series(LineSeries::new(
            [(0, average_ms), (points.len().max(1), average_ms)],
            BLACK.stroke_width(2),
        ))?
        .label(format!("platform average: {average_ms:.0} ms"))
        .legend(|(x, y)| PathElement::new([(x, y), (x + 20, y)], BLACK.stroke_width(2)));
    if let Some((i, (name, p99))) = points.iter().enumerate().find(|(_, (n, _))| n == FAILING) {
        chart.draw_series(std::iter::once(Text::new(
            format!("{name}: {p99:.0} ms"),
            (i + 1, *p99),
            ("sans-serif", 18).into_font().color(&RED),
        )))?;
    }
    chart
        .configure_series_labels()
        .border_style(BLACK)
        .background_style(WHITE.mix(0.9))
        .draw()?;
    root.present()?;
    Ok(())
}

/// The chart's text needs a font: DejaVu Sans, from Debian's `fonts-dejavu-core`.
fn register_font() -> Result<(), Box<dyn std::error::Error>> {
    const PATHS: [&str; 2] = [
        "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
        "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    ];
    let bytes = PATHS
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .ok_or("DejaVu Sans not found (apt-get install fonts-dejavu-core)")?;
    // Registered once for the process's life: the font registry wants 'static bytes.
    plotters::style::register_font("sans-serif", FontStyle::Normal, Vec::leak(bytes))
        .map_err(|_| "DejaVu Sans could not be read")?;
    Ok(())
}
