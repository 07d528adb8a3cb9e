//! The whole alerting chain with real processes on loopback: `examples/rag_service` serves
//! `/metrics`, Debian's Prometheus scrapes it with the rules of `collector-config/` loaded, and
//! Alertmanager, with the project's routing, notifies a webhook this test runs. One tenant fails
//! among healthy ones: its page reaches its tier's on-call route, and no healthy tenant raises
//! anything.
//!
//! The configuration is the project's, with times shortened so the test ends in about a minute:
//! scrape and evaluation every second, `for:` five seconds, Alertmanager's waits a second.

mod processes;

use processes::{rag_service, spawn_listening, Watched};

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::routing::post;
use axum::{Json, Router};
use http_body_util::Full;
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// Starts the child `command(port)` makes and waits until it listens on that port itself.
fn listening(mut command: impl FnMut(u16) -> Command) -> (Watched, u16) {
    let (process, ports) = spawn_listening(1, |ports| command(ports[0]));
    (process, ports[0])
}

fn config(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("collector-config")
        .join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Rewrites every `for: <n>m` (and `<n>s`) of a rules file to five seconds.
fn shorten_for(rules: &str) -> String {
    rules
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => {
                let indent = &line[..line.len() - line.trim_start().len()];
                format!("{indent}for: 5s")
            }
            None => line.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// What the webhook received: (receiver path, tenant_id, alertname, status).
type Received = Arc<Mutex<Vec<(String, String, String, String)>>>;

async fn webhook(
    State(received): State<Received>,
    UrlPath(path): UrlPath<String>,
    Json(body): Json<serde_json::Value>,
) {
    for alert in body["alerts"].as_array().into_iter().flatten() {
        let label = |k: &str| alert["labels"][k].as_str().unwrap_or("").to_owned();
        received.lock().unwrap().push((
            path.clone(),
            label("tenant_id"),
            label("alertname"),
            alert["status"].as_str().unwrap_or("").to_owned(),
        ));
    }
}

async fn wait_until_up(
    client: &Client<hyper_util::client::legacy::connect::HttpConnector, Full<Bytes>>,
    url: &str,
) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let req = http::Request::get(url).body(Full::default()).unwrap();
        if let Ok(res) = client.request(req).await {
            if res.status().is_success() {
                return;
            }
        }
        assert!(Instant::now() < deadline, "{url} never came up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_tenants_page_reaches_its_tier_route_and_healthy_tenants_raise_nothing() {
    let dir = tempfile::tempdir().unwrap();

    // The webhook every receiver points at.
    let received: Received = Arc::default();
    let hook = Router::new()
        .route("/{*path}", post(webhook))
        .with_state(Arc::clone(&received));
    let hook_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr: SocketAddr = hook_listener.local_addr().unwrap();
    let hook_server = tokio::spawn(async move { axum::serve(hook_listener, hook).await });

    // Each process binds its own port (or is started again on fresh ones), so no other process
    // can take a port between the moment it was found free and the bind.
    let (_service, service) = rag_service(|cmd| {
        cmd.args(["--tier", "initech=premium", "--tier", "acme=standard"])
            .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT");
    });
    let service_port = service.port();

    let alertmanager_yml = config("alertmanager/alertmanager.yml")
        .replace("http://alert-sink.example", &format!("http://{hook_addr}"))
        .replace("group_wait: 30s", "group_wait: 1s")
        .replace("group_wait: 10s", "group_wait: 1s")
        .replace("group_interval: 5m", "group_interval: 2s");
    std::fs::write(dir.path().join("alertmanager.yml"), alertmanager_yml).unwrap();
    // Debian names the binary prometheus-alertmanager.
    let binary = ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("alertmanager (apt-get install prometheus-alertmanager)");
    let (_alertmanager, am_port) = listening(|port| {
        let mut cmd = Command::new(binary);
        cmd.args([
            &format!(
                "--config.file={}",
                dir.path().join("alertmanager.yml").display()
            ),
            &format!("--storage.path={}", dir.path().join("am-data").display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
            "--cluster.listen-address=",
        ]);
        cmd
    });

    for rules in ["tenant-recording.rules.yml", "tenant-alerts.rules.yml"] {
        let src = config(&format!("prometheus/rules/{rules}"));
        std::fs::write(dir.path().join(rules), shorten_for(&src)).unwrap();
    }
    let prometheus_yml = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
         rule_files:\n  - {rec}\n  - {alerts}\n\
         alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['127.0.0.1:{am_port}']\n\
         scrape_configs:\n  - job_name: rag-api\n    static_configs:\n      - targets: ['127.0.0.1:{service_port}']\n",
        rec = dir.path().join("tenant-recording.rules.yml").display(),
        alerts = dir.path().join("tenant-alerts.rules.yml").display(),
    );
    std::fs::write(dir.path().join("prometheus.yml"), prometheus_yml).unwrap();
    let (_prometheus, prom_port) = listening(|port| {
        let mut cmd = Command::new("prometheus");
        cmd.args([
            &format!(
                "--config.file={}",
                dir.path().join("prometheus.yml").display()
            ),
            &format!(
                "--storage.tsdb.path={}",
                dir.path().join("prom-data").display()
            ),
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ]);
        cmd
    });

    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    wait_until_up(&client, &format!("http://127.0.0.1:{service_port}/health")).await;
    wait_until_up(&client, &format!("http://127.0.0.1:{prom_port}/-/ready")).await;
    wait_until_up(&client, &format!("http://127.0.0.1:{am_port}/-/ready")).await;

    // Traffic for a minute at most: the healthy tenants all succeed, initech fails half the
    // time, until its page arrives.
    let healthy = ["acme", "globex", "umbrella", "hooli"];
    let query = |tenant: &str, fail: bool| {
        http::Request::post(format!(
            "http://127.0.0.1:{service_port}/query?latency_ms=1&fail={fail}"
        ))
        .header("x-tenant-id", tenant)
        .header("content-type", "application/json")
        .body(Full::from(r#"{"question":"q"}"#))
        .unwrap()
    };
    let deadline = Instant::now() + Duration::from_secs(90);
    let mut round = 0u64;
    let paged = loop {
        for tenant in healthy {
            let res = client.request(query(tenant, false)).await.unwrap();
            assert_eq!(res.status(), 200);
        }
        for _ in 0..4 {
            round += 1;
            client
                .request(query("initech", round.is_multiple_of(2)))
                .await
                .unwrap();
        }
        let got = received.lock().unwrap().clone();
        if let Some(page) = got
            .iter()
            .find(|(path, tenant, _, _)| tenant == "initech" && path == "oncall/premium")
        {
            break page.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no page for initech on the premium route; received {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(paged.3, "firing");

    // A few more seconds of evaluation for anything a healthy tenant might raise.
    tokio::time::sleep(Duration::from_secs(8)).await;
    let got = received.lock().unwrap().clone();
    let alerted: BTreeSet<&str> = got.iter().map(|(_, t, _, _)| t.as_str()).collect();
    for tenant in healthy {
        assert!(!alerted.contains(tenant), "{tenant} alerted: {got:?}");
    }
    let names: BTreeSet<&str> = got
        .iter()
        .filter(|(_, t, _, _)| t == "initech")
        .map(|(_, _, name, _)| name.as_str())
        .collect();
    println!("initech raised {names:?}; every notification: {got:?}");
    assert!(names.contains("TenantSuccessRateLow"), "{names:?}");
    hook_server.abort();
}
