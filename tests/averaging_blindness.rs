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
    // The healthy tenants sit far below finance, and most of them under the average itself
    // (one tail stretched by a busy machine may not: the demo shares the cores with the test).
    let healthy: Vec<f64> = table[1..]
        .iter()
        .filter(|r| !r.trim_start().starts_with("..."))
        .filter_map(|row| row.split_whitespace().nth(4)?.parse().ok())
        .collect();
    assert!(healthy.len() >= 5, "{stdout}");
    for p99 in &healthy {
        assert!(
            *p99 < finance_p99 / 2.0,
            "a healthy tenant at {p99} ms:\n{stdout}"
        );
    }
    let under = healthy.iter().filter(|p| **p < average).count();
    assert!(
        under * 2 > healthy.len(),
        "most healthy tenants under the average ({average} ms):\n{stdout}"
    );

    // The console leads with what an operator acts on: one line per tenant, pages first.
    let heading = "Alerts to act on";
    let first_line = stdout.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    assert!(first_line.starts_with(heading), "{stdout}");
    let alerts: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with(heading))
        .skip(1)
        .take_while(|l| !l.contains("other tenants: no alert"))
        .collect();
    assert_eq!(alerts.len(), 1, "the failing tenant alone:\n{stdout}");
    let words: Vec<&str> = alerts[0].split_whitespace().collect();
    assert_eq!(&words[..2], ["PAGE", "finance"], "{stdout}");
    assert!(alerts[0].contains("success_rate"), "{stdout}");
    assert!(stdout.contains("  11 other tenants: no alert"), "{stdout}");

    readme_sample_matches(&stdout);

    let png = std::fs::read(&chart).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG");
    assert!(png.len() > 10_000, "a chart with something drawn on it");
}

/// The README's sample of the demo's output has the lines the demo prints, in its order: the
/// headings, the table's header, and the shape of the alert line.
fn readme_sample_matches(stdout: &str) {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    let sample: Vec<&str> = readme
        .lines()
        .skip_while(|l| !l.starts_with("cargo run -p tenant-otel-demo"))
        .skip_while(|l| *l != "```text")
        .skip(1)
        .take_while(|l| *l != "```")
        .collect();
    assert!(!sample.is_empty(), "the README shows the demo's output");
    let fixed = |l: &&str| !l.starts_with("  ") || l.trim_start().starts_with("tenant ");
    let mut printed = stdout.lines();
    for line in sample.iter().copied().filter(fixed) {
        // Headings with a count in them (`(2000 requests)`) compare up to the count.
        let stem = line.split(" (").next().unwrap().trim_end();
        let stem = stem.split_once(": ").map_or(stem, |(head, _)| head);
        assert!(
            printed.any(|p| p.trim_end().starts_with(stem)),
            "README line {line:?} not printed (in this order) by the demo:\n{stdout}"
        );
    }
    let alert = sample
        .iter()
        .find(|l| l.trim_start().starts_with("PAGE"))
        .expect("an alert line in the README's sample");
    let printed = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("PAGE"))
        .unwrap();
    assert_eq!(
        alert.split_whitespace().take(3).collect::<Vec<_>>(),
        printed.split_whitespace().take(3).collect::<Vec<_>>(),
        "README {alert:?} against the demo's {printed:?}"
    );
}
