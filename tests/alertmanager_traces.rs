//! From a page to the trace, through a real Alertmanager: requests of a failing tenant go
//! through the layer (sampled), its alert is posted by `AlertmanagerSink`, Alertmanager with
//! the shipped `alertmanager.yml` and `tenant-otel.tmpl` notifies the webhook, and the
//! notification's annotations carry the links to exactly the failed requests' traces; the
//! shipped template, rendered by `amtool` from that very notification, shows them.

mod processes;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::State;
use axum::routing::{get, post};
use axum::{Json, Router};
use http::{Request, StatusCode};
use http_body_util::BodyExt;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use processes::{spawn_listening, Watched};
use tenant_otel::alert::{AlertEngine, AlertKind, AlertRules, AlertmanagerSink};
use tenant_otel::{TenantInfo, TenantLayer, TenantRegistry};
use tower::ServiceExt;

type Received = Arc<Mutex<Vec<serde_json::Value>>>;

async fn webhook(State(received): State<Received>, Json(body): Json<serde_json::Value>) {
    received.lock().unwrap().push(body);
}

fn config_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("collector-config/alertmanager")
}

fn alertmanager(dir: &Path, hook: SocketAddr) -> (Watched, u16) {
    let yml = std::fs::read_to_string(config_dir().join("alertmanager.yml"))
        .unwrap()
        .replace("http://alert-sink.example", &format!("http://{hook}"))
        .replace("group_wait: 30s", "group_wait: 1s")
        .replace("group_wait: 10s", "group_wait: 1s");
    std::fs::write(dir.join("alertmanager.yml"), yml).unwrap();
    // The template is found relative to the configuration file, as in the shipped layout.
    std::fs::copy(
        config_dir().join("tenant-otel.tmpl"),
        dir.join("tenant-otel.tmpl"),
    )
    .unwrap();
    let binary = ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("alertmanager (apt-get install prometheus-alertmanager)");
    let (process, ports) = spawn_listening(1, |ports| {
        let mut cmd = Command::new(binary);
        cmd.args([
            &format!("--config.file={}", dir.join("alertmanager.yml").display()),
            &format!("--storage.path={}", dir.join("data").display()),
            &format!("--web.listen-address=127.0.0.1:{}", ports[0]),
            "--cluster.listen-address=",
        ]);
        cmd
    });
    (process, ports[0])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_page_links_the_failed_requests_traces() {
    let received: Received = Arc::default();
    let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = hook.local_addr().unwrap();
    let hook_app = Router::new()
        .route("/{*path}", post(webhook))
        .with_state(Arc::clone(&received));
    tokio::spawn(async move { axum::serve(hook, hook_app).await.unwrap() });
    let dir = tempfile::tempdir().unwrap();
    let (am, am_port) = alertmanager(dir.path(), hook_addr);

    let registry = TenantRegistry::builder()
        .meter_provider(&SdkMeterProvider::builder().build())
        .trace_url("http://jaeger.test:16686")
        .build();
    registry
        .register_tenant("finance", TenantInfo::new("Finance", "premium", "eu"))
        .unwrap();
    let spans = InMemorySpanExporter::default();
    let tracer = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let app = Router::new()
        .route("/ok", get(|| async { "ok" }))
        .route("/fail", get(|| async { StatusCode::INTERNAL_SERVER_ERROR }))
        .layer(
            TenantLayer::builder()
                .registry(registry.clone())
                .tracer_provider(&tracer)
                .build(),
        );
    for path in std::iter::repeat_n("/ok", 20).chain(std::iter::repeat_n("/fail", 5)) {
        let response = app
            .clone()
            .oneshot(
                Request::get(path)
                    .header("x-tenant-id", "finance")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        response.into_body().collect().await.unwrap();
    }
    let _ = tracer.force_flush();
    let failed_traces: Vec<String> = spans
        .get_finished_spans()
        .unwrap()
        .iter()
        .filter(|s| matches!(s.status, opentelemetry::trace::Status::Error { .. }))
        .map(|s| s.span_context.trace_id().to_string())
        .collect();
    assert_eq!(failed_traces.len(), 5);

    let engine = AlertEngine::new(&registry, AlertRules::default());
    let _sink = AlertmanagerSink::new(&format!("http://127.0.0.1:{am_port}"), "checkout")
        .renew_every(Duration::from_millis(500))
        .start(&engine)
        .unwrap();
    let fired = engine.evaluate();
    assert!(
        fired.iter().any(|e| e.kind == AlertKind::SuccessRate),
        "{fired:?}"
    );

    // The notification of the success-rate page, with its trace annotations.
    let deadline = Instant::now() + Duration::from_secs(30);
    let (notification, alert) = loop {
        let found = received.lock().unwrap().iter().find_map(|n| {
            let alert = n["alerts"].as_array()?.iter().find(|a| {
                a["labels"]["alertname"] == "TenantSuccessRateLow"
                    && a["labels"]["tenant_id"] == "finance"
            })?;
            Some((n.clone(), alert.clone()))
        });
        if let Some(found) = found {
            break found;
        }
        assert!(
            Instant::now() < deadline,
            "no notification within 30 s\n{}",
            am.output_so_far()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let urls: Vec<&str> = alert["annotations"]["trace_urls"]
        .as_str()
        .unwrap()
        .lines()
        .collect();
    assert_eq!(urls.len(), 5, "{alert:#}");
    let mut linked: Vec<String> = urls
        .iter()
        .map(|u| {
            u.strip_prefix("http://jaeger.test:16686/trace/")
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut expected = failed_traces.clone();
    linked.sort();
    expected.sort();
    assert_eq!(linked, expected);
    assert_eq!(alert["annotations"]["trace_url"].as_str(), Some(urls[0]));

    // The shipped template, from that notification, shows the summary and every link.
    let data = dir.path().join("notification.json");
    std::fs::write(&data, notification.to_string()).unwrap();
    let out = Command::new("amtool")
        .args([
            "template",
            "render",
            &format!(
                "--template.glob={}",
                config_dir().join("tenant-otel.tmpl").display()
            ),
            "--template.text={{ template \"tenant_otel.title\" . }}\n{{ template \"tenant_otel.text\" . }}",
            &format!("--template.data={}", data.display()),
        ])
        .output()
        .expect("amtool (apt-get install prometheus-alertmanager)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("tenant finance"), "{text}");
    assert!(
        text.contains("success_rate for tenant finance (premium)"),
        "{text}"
    );
    for url in &urls {
        assert!(text.contains(url), "{url} not in\n{text}");
    }
}
