//! The README's main job, scaled down: `examples/averaging_blindness` puts the failing tenant
//! first, alerts for it and for no one else, shows a platform average far below its p99, and
//! writes the chart.

mod processes;

use processes::example;

use std::process::Command;

/// The number after `label` on the line that holds it.
fn number_after(text: &str, label: &str) -> f64 {
    let line = text.lines().find(|l| l.contains(label)).unwrap();
    let rest = &line[line.find(label).unwrap() + label.len()..];
    rest.split_whitespace().next().unwrap().parse().unwrap()
}

#[test]
fn the_failing_tenant_is_first_alerted_and_alone() {
    let dir = tempfile::tempdir().unwrap();
    let chart = dir.path().join("chart.png");
    let out = Command::new(example("averaging_blindness"))
        .args([
            "--tenants",
            "12",
            "--seconds",
            "5",
            "--rate",
            "6",
            "--slow-ms",
            "600",
            "--fast-ms",
            "10",
            "--error-rate",
            "0.25",
            "--chart",
        ])
        .arg(&chart)
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let average = number_after(&stdout, "average latency");
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.contains("p99 ms"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .collect();
    let first: Vec<&str> = table[0].split_whitespace().collect();
    assert_eq!(first[0], "finance", "worst first:\n{stdout}");
    let finance_p99: f64 = first[4].parse().unwrap();
    assert!(
        finance_p99 > 3.0 * average,
        "the average ({average} ms) hides finance's p99 ({finance_p99} ms)"
    );
    for row in table[1..]
        .iter()
        .filter(|r| !r.trim_start().starts_with("..."))
    {
        if let Some(p99) = row.split_whitespace().nth(4) {
            let p99: f64 = p99.parse().unwrap();
            assert!(p99 < average, "a healthy tenant under the average: {row}");
        }
    }

    let alerts: Vec<&str> = stdout.lines().filter(|l| l.contains("fired")).collect();
    assert!(!alerts.is_empty(), "the failing tenant alerted:\n{stdout}");
    for line in &alerts {
        assert_eq!(line.split_whitespace().next(), Some("finance"), "{line}");
    }
    assert!(
        alerts.iter().any(|l| l.contains("success_rate")),
        "{stdout}"
    );

    let png = std::fs::read(&chart).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert!(png.len() > 10_000, "a chart with something drawn on it");
}
