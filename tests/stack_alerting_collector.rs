//! The page through the collector path, with real processes on loopback: `examples/rag_service`
//! → OTLP → the Collector running the shipped `otel-collector.yaml` → its prometheus exporter,
//! scraped by Debian's Prometheus with the shipped `prometheus.yml` (rendered by
//! `collector-config/stack.sh`), the shipped recording and alert rules → Alertmanager with the
//! shipped `alertmanager.yml` → a webhook this test runs. One tenant fails among healthy ones:
//! its page reaches its tier's on-call route, and no healthy tenant raises anything.
//! (tests/e2e_alerting.rs is the same chain with Prometheus scraping the service's `/metrics`.)
//!
//! Times are shortened as e2e_alerting does: scrape and evaluation every second, `for:` five
//! seconds, Alertmanager's waits a second; the service exports metrics every second. The
//! collector's own intervals (its 5 s batch) stay as shipped.
//!
//! The binaries come from `.ci/build-stack.sh`; without them the test fails.
//! `TENANT_OTEL_SKIP_STACK=1` skips it (quick local runs). Debian's `prometheus` and
//! `prometheus-alertmanager` are required (`.ci/run` installs them).

mod stack_support;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;
use stack_support::alerting::{alertmanager, shorten_for, Webhook};
use stack_support::names::{by_tenant, instant};
use stack_support::{config_dir, http_get, poll, query, stack_bins, Prometheus, Stack};

const HEALTHY: [&str; 4] = ["acme", "globex", "umbrella", "hooli"];
const FAILING: &str = "initech";

/// When Prometheus last evaluated the shipped alert rules (`None` before the first time).
fn last_alert_evaluation(prometheus: &str) -> Option<String> {
    let (200, body) = http_get(&format!("http://{prometheus}/api/v1/rules")).ok()? else {
        return None;
    };
    let json: Value = serde_json::from_str(&body).ok()?;
    json["data"]["groups"]
        .as_array()?
        .iter()
        .find(|g| g["name"] == "tenant-otel-alerts")?["lastEvaluation"]
        .as_str()
        .map(str::to_owned)
}

/// Sends one round of traffic: every healthy tenant succeeds, the failing one fails half of
/// its four requests.
fn round(service: &str, n: u64) {
    for tenant in HEALTHY {
        assert_eq!(
            query(service, tenant, "latency_ms=1", None),
            200,
            "{tenant}"
        );
    }
    for i in 0..4 {
        let fail = (n * 4 + i) % 2 == 1;
        let expected = if fail { 502 } else { 200 };
        let q = format!("latency_ms=1&fail={fail}");
        assert_eq!(query(service, FAILING, &q, None), expected);
    }
}

#[test]
fn a_failing_tenants_page_through_the_collector_reaches_its_tier_route_and_nothing_else_fires() {
    let Some(bins) = stack_bins("stack_alerting_collector") else {
        return;
    };
    let stack = Stack::start(&bins);
    let webhook = Webhook::start();
    let (am, am_addr) = alertmanager(stack.dir.path(), &webhook);

    // The shipped rule files with `for:` shortened, in place of the checkout's own.
    let rules_dir = stack.dir.path().join("rules");
    std::fs::create_dir(&rules_dir).unwrap();
    for rules in ["tenant-recording.rules.yml", "tenant-alerts.rules.yml"] {
        let src = std::fs::read_to_string(config_dir().join("prometheus/rules").join(rules))
            .unwrap_or_else(|e| panic!("{rules}: {e}"));
        std::fs::write(rules_dir.join(rules), shorten_for(&src)).unwrap();
    }
    let shipped_rules = format!(
        "- {}/*.rules.yml",
        config_dir().join("prometheus/rules").display()
    );
    let shorten = |config: String| {
        for from in [
            "scrape_interval: 15s",
            "evaluation_interval: 15s",
            shipped_rules.as_str(),
        ] {
            assert!(
                config.contains(from),
                "the rendered prometheus.yml lacks {from}"
            );
        }
        config
            .replace("scrape_interval: 15s", "scrape_interval: 1s")
            .replace("evaluation_interval: 15s", "evaluation_interval: 1s")
            .replace(
                &shipped_rules,
                &format!("- {}/*.rules.yml", rules_dir.display()),
            )
    };
    let (prometheus, prometheus_addr) = Prometheus {
        exporter: &stack.exporter,
        telemetry: &stack.telemetry,
        alertmanager: &am_addr,
        edit: Some(&shorten),
        ..Prometheus::default()
    }
    .start(stack.dir.path());

    // The service exports to the collector only: Prometheus never sees its /metrics.
    let (service, addr) = stack.rag_service_with(
        &["--tier", "initech=premium", "--tier", "acme=standard"],
        &[("OTEL_METRIC_EXPORT_INTERVAL", "1000")],
    );
    let logs = || {
        format!(
            "{}\n--- rag_service\n{}\n--- prometheus\n{}\n--- alertmanager\n{}",
            stack.logs(),
            service.log(),
            prometheus.log(),
            am.log()
        )
    };

    // Traffic until initech's page reaches the premium on-call route (the alert needs 50
    // requests in 5 minutes, a success ratio under 95% and its tier from tenant_info).
    let started = Instant::now();
    let mut n = 0u64;
    let page = poll(
        Duration::from_secs(240),
        "initech's page on /oncall/premium",
        || format!("received {:#?}\n{}", webhook.received(), logs()),
        || {
            round(&addr, n);
            n += 1;
            webhook
                .received()
                .into_iter()
                .find(|a| a.path == "/oncall/premium" && a.label("tenant_id") == FAILING)
        },
    );
    let paged_in = started.elapsed();
    assert_eq!(page.alert["status"], "firing", "{:#}", page.alert);
    assert_eq!(page.label("severity"), "page");
    assert_eq!(page.label("tier"), "premium");
    // The series came through the collector: the service's own name as job (honor_labels).
    let infos = instant(&prometheus_addr, r#"tenant_info{job="rag-service"}"#);
    assert!(
        infos
            .iter()
            .any(|(l, _)| l.get("tenant_id").map(String::as_str) == Some(FAILING)),
        "tenant_info of {FAILING} through the collector: {infos:?}"
    );

    // Traffic goes on while the alert rules are evaluated for ten more seconds (twice `for:`):
    // long enough for any healthy tenant's alert to become pending, fire and be sent.
    let paged_at = last_alert_evaluation(&prometheus_addr).expect("the rules were evaluated");
    let settled = Instant::now() + Duration::from_secs(10);
    poll(
        Duration::from_secs(120),
        "ten more seconds of alert evaluations after the page",
        logs,
        || {
            round(&addr, n);
            n += 1;
            let last = last_alert_evaluation(&prometheus_addr)?;
            (Instant::now() >= settled && last != paged_at).then_some(())
        },
    );
    // The healthy tenants were evaluated (their series exist, all successful), not just absent.
    let success = by_tenant(&prometheus_addr, "tenant:http_success:ratio_rate5m");
    for tenant in HEALTHY {
        assert_eq!(success.get(tenant), Some(&1.0), "{tenant}: {success:?}");
    }
    assert!(
        success
            .get(FAILING)
            .is_some_and(|r| (0.3..0.95).contains(r)),
        "{success:?}"
    );
    let received = webhook.received();
    let alerted: BTreeSet<&str> = received.iter().map(|a| a.label("tenant_id")).collect();
    for tenant in HEALTHY {
        assert!(!alerted.contains(tenant), "{tenant} alerted: {received:#?}");
    }
    let firing = instant(&prometheus_addr, "ALERTS");
    for (labels, _) in &firing {
        let tenant = labels.get("tenant_id").map_or("", String::as_str);
        assert!(!HEALTHY.contains(&tenant), "{labels:?} in ALERTS");
    }
    let names: BTreeSet<&str> = received
        .iter()
        .filter(|a| a.label("tenant_id") == FAILING)
        .map(|a| a.label("alertname"))
        .collect();
    assert!(names.contains("TenantSuccessRateLow"), "{names:?}");

    println!(
        "{FAILING} paged on /oncall/premium after {paged_in:.1?} ({n} rounds of traffic): {:#}",
        page.alert["labels"]
    );
    println!("{FAILING} raised {names:?}; success ratios {success:?}");
    for a in &received {
        println!(
            "  {} {} {} {}",
            a.path,
            a.label("tenant_id"),
            a.label("alertname"),
            a.alert["status"]
        );
    }
    drop(service);
}
