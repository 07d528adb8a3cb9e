//! OTLP over HTTP/protobuf into a real collector process (`rotel-agent`, from `pip install
//! rotel`), which decodes what arrives and logs it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::Request;
use http_body_util::BodyExt;
use tenant_otel::{Protocol, Telemetry};
use tower::ServiceExt;

fn rotel_agent() -> String {
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Agent(Child);

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_metrics_and_logs_arrive_over_http_protobuf() {
    let (grpc_port, http_port) = (free_port(), free_port());
    let agent = Agent(
        Command::new(rotel_agent())
            .args([
                "start",
                "--otlp-grpc-endpoint",
                &format!("127.0.0.1:{grpc_port}"),
                "--otlp-http-endpoint",
                &format!("127.0.0.1:{http_port}"),
                // Print what arrives, decoded, and send it nowhere.
                "--exporter",
                "blackhole",
                "--debug-log",
                "traces",
                "--debug-log",
                "metrics",
                "--debug-log-verbosity",
                "detailed",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rotel-agent"),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", http_port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "rotel-agent did not start listening"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let telemetry = Telemetry::builder()
        .service_name("http-export")
        .otlp_endpoint(format!("http://127.0.0.1:{http_port}"))
        .protocol(Protocol::HttpProtobuf)
        .without_tracing_subscriber()
        .without_globals()
        .init()
        .unwrap();
    let app = Router::new()
        .route("/reports/{id}", get(|| async { "report" }))
        .layer(telemetry.layer());
    for _ in 0..3 {
        let res = app
            .clone()
            .oneshot(
                Request::get("/reports/9")
                    .header("x-tenant-id", "finance")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        res.into_body().collect().await.unwrap();
    }
    tokio::task::spawn_blocking(move || telemetry.shutdown().unwrap())
        .await
        .unwrap();

    // Give the agent a moment to log the last batch, then stop it and read what it decoded.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut agent = agent;
    let _ = agent.0.kill();
    let out = agent.0.wait_with_output_taken();
    assert!(out.contains("ResourceSpans"), "{out}");
    assert!(out.contains("GET /reports/{id}"), "{out}");
    let spans_part = out.split("ResourceMetrics").next().unwrap();
    // Once per span: the layer sets it, and the span processor must not add it again.
    assert_eq!(
        spans_part.matches("-> tenant.id: Str(finance)").count(),
        3,
        "{out}"
    );
    let metrics_part = out
        .split_once("ResourceMetrics")
        .map(|(_, m)| m)
        .unwrap_or_default();
    assert!(
        metrics_part.contains("http.server.request.duration"),
        "{out}"
    );
    assert!(metrics_part.contains("-> tenant.id: Str(finance)"), "{out}");
}

trait TakeOutput {
    fn wait_with_output_taken(&mut self) -> String;
}

impl TakeOutput for Child {
    /// Everything the agent wrote (stdout and stderr: it logs its debug output on one of them).
    fn wait_with_output_taken(&mut self) -> String {
        use std::io::Read;
        let _ = self.wait();
        let mut text = String::new();
        if let Some(mut o) = self.stdout.take() {
            let _ = o.read_to_string(&mut text);
        }
        if let Some(mut e) = self.stderr.take() {
            let _ = e.read_to_string(&mut text);
        }
        text
    }
}
