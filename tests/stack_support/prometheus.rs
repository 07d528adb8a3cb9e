//! A Prometheus for the stack tests, Debian's or the Prometheus 3 of `.ci/build-stack.sh`, with
//! the shipped configuration as `collector-config/stack.sh prometheus-config` renders it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use super::{config_dir, free_addr, Process};

/// How to start one Prometheus. Addresses left empty get a free loopback address nothing
/// listens on (a target that is down), never the shipped default another stack may be using.
#[derive(Default)]
pub struct Prometheus<'a> {
    /// `None`: Debian's `prometheus` with `prometheus.yml`. `Some(binary)`: that Prometheus 3
    /// with `prometheus-otlp.yml` (`PROMETHEUS=prometheus3` of `stack.sh`) and its OTLP receiver.
    pub prometheus3: Option<&'a Path>,
    /// The collector's prometheus exporter, `host:port`.
    pub exporter: &'a str,
    /// The collector's own metrics, `host:port`.
    pub telemetry: &'a str,
    /// The Alertmanager to notify, `host:port`.
    pub alertmanager: &'a str,
    /// YAML list items (indented two spaces) appended to `scrape_configs`.
    pub extra_scrape_configs: &'a str,
    /// Applied to the rendered file before it is written (e.g. shorter intervals for a test).
    pub edit: Option<&'a dyn Fn(String) -> String>,
}

impl Prometheus<'_> {
    /// Starts it with its files in `dir`; returns the process and its address once it is ready.
    pub fn start(&self, dir: &Path) -> (Process, String) {
        let or_free = |addr: &str| {
            if addr.is_empty() {
                free_addr()
            } else {
                addr.to_owned()
            }
        };
        let prometheus_addr = free_addr();
        let telemetry = or_free(self.telemetry);
        let (telemetry_host, telemetry_port) = telemetry.split_once(':').unwrap();
        let flavor = if self.prometheus3.is_some() {
            "prometheus3"
        } else {
            "debian"
        };
        let rendered = Command::new("bash")
            .arg(config_dir().join("stack.sh"))
            .arg("prometheus-config")
            .env("PROMETHEUS", flavor)
            .env("OTELCOL_PROMETHEUS_ENDPOINT", or_free(self.exporter))
            .env("OTELCOL_TELEMETRY_HOST", telemetry_host)
            .env("OTELCOL_TELEMETRY_PORT", telemetry_port)
            .env("ALERTMANAGER_ENDPOINT", or_free(self.alertmanager))
            .env("PROMETHEUS_ENDPOINT", &prometheus_addr)
            .output()
            .expect("run collector-config/stack.sh");
        assert!(
            rendered.status.success(),
            "stack.sh prometheus-config: {}",
            String::from_utf8_lossy(&rendered.stderr)
        );
        let mut config = String::from_utf8(rendered.stdout).unwrap();
        let last_key = config
            .lines()
            .rfind(|l| !l.starts_with([' ', '#']) && !l.is_empty());
        assert_eq!(
            last_key,
            Some("scrape_configs:"),
            "scrape_configs is the rendered file's last section, so items can be appended"
        );
        config.push('\n');
        config.push_str(self.extra_scrape_configs);
        if let Some(edit) = self.edit {
            config = edit(config);
        }
        let path = dir.join("prometheus.yml");
        std::fs::write(&path, config).unwrap();
        let mut cmd = match self.prometheus3 {
            Some(binary) => {
                let mut cmd = Command::new(binary);
                cmd.arg("--web.enable-otlp-receiver");
                cmd
            }
            None => Command::new("prometheus"),
        };
        cmd.arg(format!("--config.file={}", path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.join("tsdb").display()
            ))
            .arg(format!("--web.listen-address={prometheus_addr}"));
        let mut prometheus = Process::spawn("prometheus", cmd, dir);
        prometheus.wait_ready(
            &format!("http://{prometheus_addr}/-/ready"),
            Duration::from_secs(60),
        );
        (prometheus, prometheus_addr)
    }
}
