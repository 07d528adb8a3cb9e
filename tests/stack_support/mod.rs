//! The operator's stack as real processes for the `stack_*` tests: the Collector and Jaeger that
//! `.ci/build-stack.sh` builds, Debian's Prometheus, and `examples/rag_service`, each on free
//! loopback ports, each killed when its test ends however it ends. Logs go to files (a full pipe
//! would stall a chatty collector) and are printed when a wait fails.
#![allow(dead_code)]

pub mod alerting;
pub mod names;
mod prometheus;

pub use prometheus::Prometheus;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The checkout's `collector-config/`.
pub fn config_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("collector-config")
}

/// Where `.ci/build-stack.sh` puts the binaries: `$TENANT_OTEL_STACK_BIN`, or the `bin/` of its
/// cache (`$TENANT_OTEL_CACHE`, `$XDG_CACHE_HOME/tenant-otel`, `~/.cache/tenant-otel`).
pub fn stack_bin_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TENANT_OTEL_STACK_BIN") {
        return dir.into();
    }
    let cache = std::env::var_os("TENANT_OTEL_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| Path::new(&d).join("tenant-otel")))
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME").expect("HOME is set");
            Path::new(&home).join(".cache").join("tenant-otel")
        });
    cache.join("bin")
}

/// The directory holding `otelcol-tenant-otel` and `jaeger`. Missing binaries fail the test.
/// With `TENANT_OTEL_SKIP_STACK=1` (quick local runs) this says it skips and returns `None`.
pub fn stack_bins(test: &str) -> Option<PathBuf> {
    stack_bins_with(test, &[])
}

/// [`stack_bins`], also requiring `extra` (e.g. `prometheus3`, `otelhttp-peer`) from
/// `.ci/build-stack.sh`.
pub fn stack_bins_with(test: &str, extra: &[&str]) -> Option<PathBuf> {
    if std::env::var("TENANT_OTEL_SKIP_STACK").as_deref() == Ok("1") {
        println!("{test}: skipped (TENANT_OTEL_SKIP_STACK=1)");
        return None;
    }
    let dir = stack_bin_dir();
    let missing: Vec<&str> = ["otelcol-tenant-otel", "jaeger"]
        .iter()
        .chain(extra)
        .copied()
        .filter(|b| !dir.join(b).is_file())
        .collect();
    if missing.is_empty() {
        return Some(dir);
    }
    panic!(
        "{missing:?} not found in {}: run .ci/build-stack.sh (or point TENANT_OTEL_STACK_BIN at \
         them; TENANT_OTEL_SKIP_STACK=1 skips the stack tests)",
        dir.display()
    );
}

/// A loopback address free a moment ago.
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A child process, killed when the test ends however it ends, with its output in a file.
pub struct Process {
    name: &'static str,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `cmd` with stdout and stderr going to `dir/<name>.log`.
    pub fn spawn(name: &'static str, mut cmd: Command, dir: &Path) -> Process {
        let log = dir.join(format!("{name}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name} ({cmd:?}): {e}"));
        Process { name, child, log }
    }

    /// What the process has written so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Polls `url` until it answers 200, failing with the process's log past `timeout` or if
    /// the process exits.
    pub fn wait_ready(&mut self, url: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if matches!(http_get(url), Ok((200, _))) {
                return;
            }
            if let Some(status) = self.child.try_wait().unwrap() {
                panic!("{} exited ({status}):\n{}", self.name, self.log());
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready at {url} after {timeout:?}:\n{}",
                self.name,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Jaeger and the Collector running the shipped `otel-collector.yaml` unmodified, its addresses
/// given by the environment variables the file reads. Fields drop in order: the collector
/// stops before Jaeger.
pub struct Stack {
    pub collector: Process,
    pub jaeger: Process,
    /// OTLP/gRPC into the collector, `host:port`.
    pub otlp_grpc: String,
    /// The collector's prometheus exporter (span metrics and the services' metrics).
    pub exporter: String,
    /// The collector's own metrics.
    pub telemetry: String,
    /// Jaeger's HTTP query API.
    pub jaeger_query: String,
    pub dir: tempfile::TempDir,
}

impl Stack {
    pub fn start(bins: &Path) -> Stack {
        let dir = tempfile::tempdir().unwrap();
        let (jaeger_otlp, jaeger_query) = (free_addr(), free_addr());
        let mut jaeger_cmd = Command::new(bins.join("jaeger"));
        jaeger_cmd
            .arg("--config")
            .arg(config_dir().join("jaeger/jaeger.yaml"))
            .env("JAEGER_OTLP_GRPC_ENDPOINT", &jaeger_otlp)
            .env("JAEGER_QUERY_HTTP_ENDPOINT", &jaeger_query)
            .env("JAEGER_QUERY_GRPC_ENDPOINT", free_addr());
        let mut jaeger = Process::spawn("jaeger", jaeger_cmd, dir.path());
        jaeger.wait_ready(
            &format!("http://{jaeger_query}/api/services"),
            Duration::from_secs(60),
        );

        let (otlp_grpc, exporter, health) = (free_addr(), free_addr(), free_addr());
        let telemetry = free_addr();
        let (telemetry_host, telemetry_port) = telemetry.split_once(':').unwrap();
        let mut collector_cmd = Command::new(bins.join("otelcol-tenant-otel"));
        collector_cmd
            .arg("--config")
            .arg(config_dir().join("otel-collector.yaml"))
            .env("OTELCOL_OTLP_GRPC_ENDPOINT", &otlp_grpc)
            .env("OTELCOL_OTLP_HTTP_ENDPOINT", free_addr())
            .env("OTELCOL_PROMETHEUS_ENDPOINT", &exporter)
            .env("OTELCOL_HEALTH_ENDPOINT", &health)
            .env("OTELCOL_TELEMETRY_HOST", telemetry_host)
            .env("OTELCOL_TELEMETRY_PORT", telemetry_port)
            .env("JAEGER_OTLP_ENDPOINT", &jaeger_otlp);
        let mut collector = Process::spawn("otelcol", collector_cmd, dir.path());
        collector.wait_ready(&format!("http://{health}/"), Duration::from_secs(60));
        Stack {
            collector,
            jaeger,
            otlp_grpc,
            exporter,
            telemetry,
            jaeger_query,
            dir,
        }
    }

    /// `examples/rag_service` exporting to this stack's collector over gRPC, ready to serve.
    pub fn rag_service(&self) -> (Process, String) {
        self.rag_service_with(&[], &[])
    }

    /// [`rag_service`](Self::rag_service) with more arguments (e.g. `--tier`) and environment
    /// variables (e.g. the SDK's `OTEL_BSP_MAX_QUEUE_SIZE` or `OTEL_METRIC_EXPORT_INTERVAL`).
    pub fn rag_service_with(&self, args: &[&str], env: &[(&str, &str)]) -> (Process, String) {
        let endpoint = format!("http://{}", self.otlp_grpc);
        let mut all = vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc"),
        ];
        all.extend_from_slice(env);
        rag_service(self.dir.path(), &free_addr(), args, &all)
    }

    /// Debian's Prometheus with the shipped `prometheus.yml`, as `collector-config/stack.sh
    /// prometheus-config` renders it for this stack (the checkout's rule files, the shipped
    /// intervals), with `extra_scrape_configs` (YAML list items, indented two spaces) appended
    /// to its `scrape_configs`. Returns the process and its address once it is ready.
    pub fn prometheus(&self, extra_scrape_configs: &str) -> (Process, String) {
        let prometheus = Prometheus {
            exporter: &self.exporter,
            telemetry: &self.telemetry,
            alertmanager: &free_addr(),
            extra_scrape_configs,
            ..Prometheus::default()
        };
        prometheus.start(self.dir.path())
    }

    /// Every process's log, for a failure message.
    pub fn logs(&self) -> String {
        format!(
            "--- collector\n{}\n--- jaeger\n{}",
            self.collector.log(),
            self.jaeger.log()
        )
    }
}

/// `examples/rag_service` listening on `addr` with `args`, `env` (and no OTLP export unless
/// `env` asks for one), its log in `dir`, ready to serve.
pub fn rag_service(
    dir: &Path,
    addr: &str,
    args: &[&str],
    env: &[(&str, &str)],
) -> (Process, String) {
    let addr = addr.to_owned();
    let mut cmd = Command::new(example("rag_service"));
    cmd.args(["--addr", &addr])
        .args(args)
        // Spans leave within half a second instead of the default five.
        .env("OTEL_BSP_SCHEDULE_DELAY", "500")
        .env_remove("OTEL_SERVICE_NAME")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_PROTOCOL")
        .envs(env.iter().copied());
    let mut service = Process::spawn("rag_service", cmd, dir);
    service.wait_ready(&format!("http://{addr}/health"), Duration::from_secs(60));
    (service, addr)
}

/// The example binary `cargo test` built beside the running test.
pub fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(
        bin.exists(),
        "{} is built by a plain `cargo test`; before `cargo test --test NAME`, run `cargo build \
         --all-features --example {name}`",
        bin.display()
    );
    bin
}

/// A W3C trace id (32 hex digits) and span id (16) no earlier run used.
pub fn fresh_ids() -> (String, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mix = nanos.rotate_left(17) ^ (u64::from(std::process::id()) << 32) ^ 0x9e37_79b9_7f4a_7c15;
    (
        format!("{nanos:016x}{mix:016x}"),
        format!("{:016x}", mix | 1),
    )
}

/// `GET url` (plain `http://host:port/path`), returning the status and the body.
pub fn http_get(url: &str) -> std::io::Result<(u16, String)> {
    http("GET", url, &[], "")
}

/// One HTTP/1.0 exchange: the answer ends when the server closes, with no chunked encoding to
/// undo, which is all these tests need from a client.
pub fn http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> std::io::Result<(u16, String)> {
    let rest = url.strip_prefix("http://").expect("an http:// URL");
    let (host, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let path = if path.is_empty() { "/" } else { path };
    let mut stream = TcpStream::connect(host)?;
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut request = format!(
        "{method} {path} HTTP/1.0\r\nHost: {host}\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    request.push_str(body);
    stream.write_all(request.as_bytes())?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {head:?}")))?;
    Ok((status, body.to_owned()))
}

/// `POST /query` to `rag_service` for `tenant`, with `query` (e.g. `latency_ms=2600`) and, when
/// given, a `traceparent` naming the caller's trace and span.
pub fn query(service: &str, tenant: &str, query: &str, parent: Option<(&str, &str)>) -> u16 {
    let traceparent = parent.map(|(trace, span)| format!("00-{trace}-{span}-01"));
    let mut headers = vec![
        ("x-tenant-id", tenant),
        ("content-type", "application/json"),
    ];
    if let Some(tp) = &traceparent {
        headers.push(("traceparent", tp));
    }
    let url = format!("http://{service}/query?{query}");
    http("POST", &url, &headers, r#"{"question":"what is RAG?"}"#)
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
        .0
}

/// `s` with every byte outside `[A-Za-z0-9._-]` percent-encoded, for a query string.
pub fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Calls `probe` every 500 ms until it returns `Some`, for at most `timeout`; past it, fails
/// with `what` and `context()`.
pub fn poll<T>(
    timeout: Duration,
    what: &str,
    context: impl Fn() -> String,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(found) = probe() {
            return found;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: nothing after {timeout:?}\n{}",
            context()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The sum of the samples of `name` in the Prometheus text `exposition` whose labels include
/// every `key="value"` of `labels`; `None` when no sample matches.
pub fn sample_sum(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut sum = None;
    for line in exposition.lines().filter(|l| !l.starts_with('#')) {
        let (series, value) = match line.rsplit_once('}') {
            Some((series, rest)) => (series, rest.split_whitespace().next()),
            None => {
                let mut words = line.split_whitespace();
                (words.next().unwrap_or(""), words.next())
            }
        };
        let (series_name, series_labels) = series.split_once('{').unwrap_or((series, ""));
        if series_name != name {
            continue;
        }
        let wanted = labels
            .iter()
            .all(|(k, v)| series_labels.contains(&format!("{k}=\"{v}\"")));
        if let (true, Some(v)) = (wanted, value.and_then(|v| v.parse::<f64>().ok())) {
            *sum.get_or_insert(0.0) += v;
        }
    }
    sum
}
