//! The in-process burn rates and the Prometheus recording rules in `collector-config/` agree on
//! the same traffic.
//!
//! Seven simulated hours of requests go through the layer on a manual clock; after each minute
//! the Prometheus endpoint is scraped, and the scrapes become the input series of a
//! `promtool test rules` file whose expected values are the `tenant_sla_burn_rate` gauges of the
//! last scrape. promtool then evaluates the real recording rules and compares.
//!
//! Where the windows line up exactly (the minute windows, 5m to 2h) the traffic varies over
//! time; the hour windows (6h and longer) are compared for a
//! tenant whose error ratio is constant, since their buckets are whole hours while Prometheus
//! slides by the minute.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use futures_util::FutureExt;
use tenant_otel::{Clock, Telemetry, TenantInfo};
use tower::{service_fn, Layer, Service};

const MINUTES: u64 = 7 * 60;

/// Requests and failures of each tenant in minute `m`.
fn traffic(tenant: &str, m: u64) -> (u64, u64) {
    match tenant {
        // 0.5 % failures, always.
        "steady" => (200, 1),
        // Clean, then 10 % failures over the last 20 minutes, worst in the last five.
        "spiking" => match MINUTES - m {
            0..=5 => (50, 25),
            6..=20 => (50, 5),
            _ => (50, 0),
        },
        // No tier: the standard objective, as `tier="unknown"` in the rules.
        _ => (30, u64::from(m.is_multiple_of(7))),
    }
}

/// The sample values of the series the scrape holds, by series.
fn parse(scrape: &str, into: &mut BTreeMap<String, Vec<f64>>, minute: usize) {
    for line in scrape.lines() {
        let Some(rest) = line.strip_prefix("http_server_request_duration_seconds_count{") else {
            continue;
        };
        let (labels, value) = rest.rsplit_once("} ").unwrap();
        let label = |key: &str| {
            labels
                .split(',')
                .find_map(|kv| kv.strip_prefix(&format!("{key}=\"")))
                .map(|v| v.trim_end_matches('"').to_owned())
                .unwrap()
        };
        let series = format!(
            "http_server_request_duration_seconds_count{{tenant_id=\"{}\",http_response_status_code=\"{}\"}}",
            label("tenant_id"),
            label("http_response_status_code")
        );
        let values = into.entry(series).or_default();
        // A series first seen now was 0 before (a counter starts from nothing).
        values.resize(minute, 0.0);
        values.push(value.parse().unwrap());
    }
}

fn gauge(scrape: &str, tenant: &str, window: &str) -> f64 {
    scrape
        .lines()
        .find(|l| {
            l.starts_with("tenant_sla_burn_rate{")
                && l.contains(&format!("tenant_id=\"{tenant}\""))
                && l.contains(&format!("window=\"{window}\""))
                && l.contains("slo=\"availability\"")
        })
        .and_then(|l| l.rsplit_once(' '))
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or_else(|| panic!("no burn rate for {tenant} over {window}"))
}

/// Telemetry with a Prometheus endpoint on `clock`, nothing exported and no alert task.
fn telemetry(clock: &Clock) -> Telemetry {
    Telemetry::builder()
        .registry(tenant_otel::TenantRegistry::builder().clock(clock.clone()))
        .prometheus_endpoint()
        .without_tracing_subscriber()
        .without_globals()
        .alerts(tenant_otel::alert::Alerts::default().manual())
        .init()
        .unwrap()
}

/// Sends requests of a tenant through the layer, answered with the status given.
fn sender(telemetry: &Telemetry) -> impl FnMut(&str, &str) {
    let mut service = telemetry
        .layer_builder()
        .without_spans()
        .build()
        .layer(service_fn(|req: http::Request<()>| {
            let status: u16 = req.headers()["x-status"].to_str().unwrap().parse().unwrap();
            std::future::ready(Ok::<_, std::convert::Infallible>(
                http::Response::builder()
                    .status(status)
                    .body(http_body_util::Empty::<axum::body::Bytes>::new())
                    .unwrap(),
            ))
        }));
    move |tenant, status| {
        let req = http::Request::builder()
            .header("x-tenant-id", tenant)
            .header("x-status", status)
            .body(())
            .unwrap();
        service.call(req).now_or_never().unwrap().unwrap();
    }
}

/// The Prometheus endpoint's answer.
fn scrape(telemetry: &Telemetry) -> String {
    let res = tenant_otel::view::prometheus_response(telemetry.prometheus_registry().unwrap());
    let bytes = http_body_util::BodyExt::collect(res.into_body())
        .now_or_never()
        .expect("an in-memory body")
        .unwrap()
        .to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

#[test]
fn in_process_burn_rates_agree_with_the_prometheus_rules() {
    let clock = Clock::manual();
    let telemetry = telemetry(&clock);
    let registry = telemetry.registry();
    registry
        .register_tenant("steady", TenantInfo::new("Steady", "premium", "eu"))
        .unwrap();
    registry
        .register_tenant("spiking", TenantInfo::new("Spiking", "free", "eu"))
        .unwrap();
    let mut send = sender(&telemetry);
    let scrape = || scrape(&telemetry);

    let tenants = ["steady", "spiking", "no-tier"];
    let mut series = BTreeMap::new();
    let mut last = String::new();
    parse(&scrape(), &mut series, 0);
    for m in 1..=MINUTES {
        clock.advance(Duration::from_secs(30));
        for tenant in tenants {
            let (total, failed) = traffic(tenant, m);
            for i in 0..total {
                send(tenant, if i < failed { "500" } else { "200" });
            }
        }
        // The gauges are read a second before the minute ends: their window is then the last
        // five (thirty, sixty...) whole minutes, as Prometheus 2's range selectors, closed at
        // both ends, see them from the sample on the minute.
        clock.advance(Duration::from_secs(29));
        if m == MINUTES {
            last = scrape();
        }
        clock.advance(Duration::from_secs(1));
        parse(&scrape(), &mut series, m as usize);
    }

    let mut test = String::new();
    let rules = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("collector-config/prometheus/rules/tenant-recording.rules.yml");
    writeln!(test, "rule_files:\n  - {}", rules.display()).unwrap();
    writeln!(
        test,
        "evaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:"
    )
    .unwrap();
    for (name, values) in &series {
        let values: Vec<String> = values.iter().map(|v| v.to_string()).collect();
        writeln!(
            test,
            "      - series: '{name}'\n        values: '{}'",
            values.join(" ")
        )
        .unwrap();
    }
    for (tenant, tier) in [("steady", "premium"), ("spiking", "free")] {
        writeln!(
            test,
            "      - series: 'tenant_info{{tenant_id=\"{tenant}\",tenant_tier=\"{tier}\"}}'\n        values: '1x{MINUTES}'"
        )
        .unwrap();
    }
    writeln!(test, "    promql_expr_test:").unwrap();
    let mut compared = Vec::new();
    for (tenant, tier, windows) in [
        ("steady", "premium", &["5m", "30m", "1h", "2h", "6h"][..]),
        ("spiking", "free", &["5m", "30m", "1h", "2h"][..]),
        ("no-tier", "unknown", &["5m", "30m", "1h", "2h"][..]),
    ] {
        for window in windows {
            let value = gauge(&last, tenant, window);
            compared.push(format!("{tenant} {window} {value:.4}"));
            writeln!(
                test,
                "      - expr: tenant:slo_burn_rate:ratio_rate{window}{{tenant_id=\"{tenant}\"}}\n        eval_time: {MINUTES}m\n        exp_samples:\n          - labels: 'tenant:slo_burn_rate:ratio_rate{window}{{tenant_id=\"{tenant}\",tier=\"{tier}\"}}'\n            value: {value}"
            )
            .unwrap();
        }
    }
    // The gauges hold what the traffic burns, so the comparison is not between two zeros:
    // steady fails 1 in 200 against 99.9 % (5x) on every window; spiking's last five minutes
    // fail half its requests against 99 % (50x), its last hour 225 of 3000 (7.5x).
    for window in ["5m", "30m", "1h", "2h", "6h"] {
        let burn = gauge(&last, "steady", window);
        assert!((4.9..=5.1).contains(&burn), "steady over {window}: {burn}");
    }
    let spike = gauge(&last, "spiking", "5m");
    assert!((45.0..=55.0).contains(&spike), "spiking over 5m: {spike}");
    let hour = gauge(&last, "spiking", "1h");
    assert!((7.0..=8.0).contains(&hour), "spiking over 1h: {hour}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("agreement_test.yml");
    std::fs::write(&file, &test).unwrap();
    let out = Command::new("promtool")
        .args(["test", "rules", file.to_str().unwrap()])
        .output()
        .expect("promtool (apt-get install prometheus)");
    println!("compared: {}", compared.join("; "));
    assert!(
        out.status.success(),
        "the rules disagree with the in-process gauges\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn the_error_budget_gauge_counts_the_compliance_window_and_says_so() {
    let clock = Clock::manual();
    let telemetry = telemetry(&clock);
    telemetry
        .registry()
        .register_tenant("acme", TenantInfo::new("Acme", "premium", "eu"))
        .unwrap();
    let mut send = sender(&telemetry);
    // One failure in 2000 requests spends half a 99.9 % budget.
    for i in 0..2000 {
        send("acme", if i == 0 { "500" } else { "200" });
    }
    let budget = |scrape: &str| {
        scrape
            .lines()
            .find(|l| {
                l.starts_with("tenant_sla_error_budget_remaining_ratio{")
                    && l.contains("tenant_id=\"acme\"")
                    && l.contains("slo=\"availability\"")
            })
            .and_then(|l| l.rsplit_once(' '))
            .map(|(_, v)| v.parse::<f64>().unwrap())
            .unwrap_or_else(|| panic!("no budget for acme in\n{scrape}"))
    };
    let now = budget(&scrape(&telemetry));
    assert!((0.49..=0.51).contains(&now), "{now}");
    // Three hours later the failure is still in the 30-day window: half the budget is left,
    // not the whole of it as an hour's window would say.
    clock.advance(Duration::from_secs(3 * 3600));
    let text = scrape(&telemetry);
    let later = budget(&text);
    assert!((0.49..=0.51).contains(&later), "{later}");
    let help = text
        .lines()
        .find(|l| l.starts_with("# HELP tenant_sla_error_budget_remaining_ratio "))
        .expect("the gauge has a description");
    assert!(help.contains("compliance window"), "{help}");
    assert!(!help.contains("hour"), "{help}");
}
