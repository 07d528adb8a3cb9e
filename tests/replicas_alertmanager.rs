//! Alerts from many replicas through a real Alertmanager: three replicas (each its own registry,
//! alert engine and `AlertmanagerSink`) see the same tenant fail and post the same alert; with
//! the project's `alertmanager.yml` the webhook gets one notification group per receiver for that
//! tenant, not three, each alert in it once; nothing for the healthy tenant; and the alert is
//! resolved only after every replica has cleared it.

// The alert tests' simulated service; this test uses a part of it.
mod processes;
#[allow(dead_code)]
#[path = "alerts/sim.rs"]
mod sim;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::{Path as UrlPath, State};
use axum::routing::post;
use axum::{Json, Router};
use processes::{spawn_listening, Watched};
use sim::Sim;
use tenant_otel::alert::{AlertRules, AlertState, AlertmanagerSink, AlertmanagerTask};

/// Each notification the webhook got: (receiver path, groupKey, status, alerts as
/// (tenant_id, alertname, status)).
type Notification = (String, String, String, Vec<(String, String, String)>);
type Received = Arc<Mutex<Vec<Notification>>>;

async fn webhook(
    State(received): State<Received>,
    UrlPath(path): UrlPath<String>,
    Json(body): Json<serde_json::Value>,
) {
    let text = |v: &serde_json::Value| v.as_str().unwrap_or("").to_owned();
    let alerts = body["alerts"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|a| {
            (
                text(&a["labels"]["tenant_id"]),
                text(&a["labels"]["alertname"]),
                text(&a["status"]),
            )
        })
        .collect();
    received
        .lock()
        .unwrap()
        .push((path, text(&body["groupKey"]), text(&body["status"]), alerts));
}

fn alertmanager(dir: &Path, hook: SocketAddr) -> (Watched, u16) {
    let config = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("collector-config/alertmanager/alertmanager.yml");
    let yml = std::fs::read_to_string(config)
        .unwrap()
        .replace("http://alert-sink.example", &format!("http://{hook}"))
        .replace("group_wait: 30s", "group_wait: 1s")
        .replace("group_wait: 10s", "group_wait: 1s")
        .replace("group_interval: 5m", "group_interval: 1s");
    std::fs::write(dir.join("alertmanager.yml"), yml).unwrap();
    // Debian names the binary prometheus-alertmanager.
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

/// A replica whose tenant `finance` (premium) fails half its requests while `acme` (standard)
/// is fine, posting its alerts to Alertmanager every `renew`.
fn replica(alertmanager: u16, renew: Duration) -> (Sim, AlertmanagerTask) {
    let mut sim = Sim::new(AlertRules::default().resolve_after(Duration::ZERO));
    sim.tier("finance", "premium");
    sim.tier("acme", "standard");
    let sink = AlertmanagerSink::new(&format!("http://127.0.0.1:{alertmanager}"), "checkout")
        .renew_every(renew)
        .start(&sim.alerts)
        .unwrap();
    sim.burst("finance", 100, 50);
    sim.burst("acme", 100, 0);
    let fired = sim.alerts.evaluate();
    assert!(
        fired
            .iter()
            .any(|e| e.tenant.as_str() == "finance" && e.state == AlertState::Firing),
        "{fired:?}"
    );
    assert!(
        fired.iter().all(|e| e.tenant.as_str() == "finance"),
        "{fired:?}"
    );
    (sim, sink)
}

/// Four clean days, past the longest burn-rate window: every alert of the replica resolves in
/// process.
fn clear(sim: &mut Sim) {
    for _ in 0..4 * 24 {
        sim.advance(Duration::from_secs(3600));
        sim.burst("finance", 100, 0);
        sim.burst("acme", 100, 0);
    }
    sim.alerts.evaluate();
    assert!(sim.alerts.firing().is_empty(), "{:?}", sim.alerts.firing());
}

fn wait_for(
    received: &Received,
    what: &str,
    deadline: Duration,
    done: impl Fn(&[Notification]) -> bool,
) {
    let until = Instant::now() + deadline;
    loop {
        if done(&received.lock().unwrap()) {
            return;
        }
        assert!(
            Instant::now() < until,
            "no {what} within {deadline:?}: {:#?}",
            received.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_make_one_notification_and_resolve_when_all_have_cleared() {
    let dir = tempfile::tempdir().unwrap();
    let received: Received = Arc::default();
    let hook = Router::new()
        .route("/{*path}", post(webhook))
        .with_state(Arc::clone(&received));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook_addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, hook).await });
    let (_alertmanager, am_port) = alertmanager(dir.path(), hook_addr);

    let renew = Duration::from_millis(500);
    let mut replicas: Vec<_> = (0..3).map(|_| replica(am_port, renew)).collect();

    let firing_for_finance =
        |n: &Notification| n.2 == "firing" && n.3.iter().any(|a| a.0 == "finance");
    let r = received.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(&r, "firing notification", Duration::from_secs(30), |ns| {
            ns.iter().any(firing_for_finance)
        })
    })
    .await
    .unwrap();
    // Several renewals and group intervals more, for any duplicate to show.
    tokio::time::sleep(renew * 6).await;

    {
        let ns = received.lock().unwrap();
        let mut groups: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
        for n in ns.iter().filter(|n| firing_for_finance(n)) {
            groups.entry(&n.0).or_default().insert(&n.1);
            // Each alert once, not once per replica.
            let names: Vec<&str> = n.3.iter().map(|a| a.1.as_str()).collect();
            let unique: BTreeSet<&str> = names.iter().copied().collect();
            assert_eq!(names.len(), unique.len(), "{n:?}");
            assert!(names.contains(&"TenantSuccessRateLow"), "{n:?}");
        }
        println!("firing groups by receiver: {groups:?}");
        // finance has its own receiver (with `continue`) and its tier's page route.
        assert_eq!(
            groups.keys().copied().collect::<Vec<_>>(),
            ["oncall/premium", "tenants/finance"],
            "{ns:#?}"
        );
        assert!(groups.values().all(|g| g.len() == 1), "{groups:?}");
        assert!(
            ns.iter().flat_map(|n| &n.3).all(|a| a.0 == "finance"),
            "the healthy tenant raised something: {ns:#?}"
        );
    }

    // Two replicas clear; the third still sees the failure and keeps the alert firing.
    for (sim, _) in &mut replicas[..2] {
        clear(sim);
    }
    tokio::time::sleep(renew * 8).await;
    assert!(
        !received.lock().unwrap().iter().any(|n| n.2 == "resolved"),
        "resolved while a replica still fires: {:#?}",
        received.lock().unwrap()
    );

    // The last one clears: resolved within its lease (three renewals) and a group interval.
    let cleared = Instant::now();
    clear(&mut replicas[2].0);
    let r = received.clone();
    tokio::task::spawn_blocking(move || {
        wait_for(&r, "resolved notification", Duration::from_secs(30), |ns| {
            ns.iter()
                .any(|n| n.2 == "resolved" && n.3.iter().any(|a| a.0 == "finance"))
        })
    })
    .await
    .unwrap();
    println!(
        "resolved {:?} after the last replica cleared",
        cleared.elapsed()
    );
}
