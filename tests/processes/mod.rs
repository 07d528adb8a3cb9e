//! Real processes for the end-to-end tests: the example binaries `cargo test` builds, the OTLP
//! collector `rotel-agent`, free loopback ports, and children that never outlive their test.
#![allow(dead_code)]

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command};

/// The example binary `cargo test` built beside the running test.
pub fn example(name: &str) -> PathBuf {
    let deps = std::env::current_exe().unwrap();
    let bin = deps
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples")
        .join(name);
    assert!(bin.exists(), "{} is built by `cargo test`", bin.display());
    bin
}

/// A loopback port free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `rotel-agent`, the collector shipped by `pip install rotel` (or `$ROTEL_AGENT`).
pub fn rotel_agent() -> String {
    if let Ok(path) = std::env::var("ROTEL_AGENT") {
        return path;
    }
    let out = Command::new("python3")
        .args([
            "-c",
            "import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), 'rotel-agent'))",
        ])
        .output();
    match out {
        Ok(o) if o.status.success() => String::from_utf8(o.stdout).unwrap().trim().to_owned(),
        _ => panic!("rotel-agent not found: `pip install --pre rotel` (or set ROTEL_AGENT)"),
    }
}

/// A child process, killed when the test ends however it ends.
pub struct Process(pub Child);

impl Process {
    /// Stops the process and returns all it wrote on its piped stdout and stderr.
    pub fn output(mut self) -> String {
        let _ = self.0.kill();
        let _ = self.0.wait();
        let mut text = String::new();
        if let Some(mut o) = self.0.stdout.take() {
            let _ = o.read_to_string(&mut text);
        }
        if let Some(mut e) = self.0.stderr.take() {
            let _ = e.read_to_string(&mut text);
        }
        text
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A `rotel-agent` listening for OTLP on loopback, that logs what it decodes (traces, metrics
/// and logs, in detail) and sends it nowhere.
pub struct Collector {
    pub process: Process,
    pub grpc_port: u16,
    pub http_port: u16,
}

impl Collector {
    /// Starts the agent and waits until both ports accept connections.
    pub fn start() -> Collector {
        let (grpc_port, http_port) = (free_port(), free_port());
        let mut cmd = Command::new(rotel_agent());
        cmd.args([
            "start",
            "--exporter",
            "blackhole",
            "--debug-log-verbosity",
            "detailed",
        ])
        .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{grpc_port}")])
        .args(["--otlp-http-endpoint", &format!("127.0.0.1:{http_port}")]);
        for signal in ["traces", "metrics", "logs"] {
            cmd.args(["--debug-log", signal]);
        }
        let process = Process(
            cmd.stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("start rotel-agent"),
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        for port in [grpc_port, http_port] {
            while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "rotel-agent is not listening"
                );
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        Collector {
            process,
            grpc_port,
            http_port,
        }
    }

    /// Stops the agent and returns what it logged.
    pub fn output(self) -> String {
        self.process.output()
    }
}

/// Sends `POST /query` for `tenant`, with a `traceparent` of `trace_id`, to the `rag_service`
/// on `port`, retrying until it is up (30 s at most); returns the status and the body.
pub async fn first_query(port: u16, tenant: &str, trace_id: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client: Client<_, Full<hyper::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let req = http::Request::post(format!("http://127.0.0.1:{port}/query"))
            .header("x-tenant-id", tenant)
            .header("content-type", "application/json")
            .header("traceparent", format!("00-{trace_id}-00f067aa0ba902b7-01"))
            .body(Full::from(r#"{"question":"what is RAG?"}"#))
            .unwrap();
        match client.request(req).await {
            Ok(res) => {
                let status = res.status().as_u16();
                let body = res.into_body().collect().await.unwrap().to_bytes();
                return (status, String::from_utf8_lossy(&body).into_owned());
            }
            Err(e) => {
                assert!(
                    std::time::Instant::now() < deadline,
                    "the service never answered: {e}"
                );
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
        }
    }
}

impl Process {
    /// Sends `signal` (`TERM`, `INT`) and waits for the process to exit (30 s at most).
    pub async fn stop_with(&mut self, signal: &str) -> std::process::ExitStatus {
        let sent = Command::new("kill")
            .args([&format!("-{signal}"), &self.0.id().to_string()])
            .status()
            .unwrap();
        assert!(sent.success());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still running after {signal}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

/// A TCP relay in front of a collector that can be switched off (connections refused) and on
/// again, as a collector restarting behind a fixed address.
pub struct Relay {
    pub endpoint: String,
    up: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    pub async fn start(target: std::net::SocketAddr) -> Relay {
        Relay::start_with_delay(target, std::time::Duration::ZERO).await
    }

    /// Each new connection waits `delay` before it reaches the collector: a slow collector.
    pub async fn start_with_delay(
        target: std::net::SocketAddr,
        delay: std::time::Duration,
    ) -> Relay {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let up = std::sync::Arc::new(AtomicBool::new(false));
        let gate = std::sync::Arc::clone(&up);
        tokio::spawn(async move {
            while let Ok((mut inbound, _)) = listener.accept().await {
                if !gate.load(Ordering::SeqCst) {
                    // Down: the connection is closed at once, as by a crashed collector.
                    drop(inbound);
                    continue;
                }
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
            }
        });
        Relay { endpoint, up }
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, std::sync::atomic::Ordering::SeqCst);
    }
}
