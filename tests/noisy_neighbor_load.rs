//! A bounded loopback load test of per-tenant protection: eight tenants at 10 requests a second
//! each and one at ten times that, against a service that can do about 160 a second (4 workers,
//! 25 ms a request). Ignored by default; run it with
//! `cargo test --release --all-features --test noisy_neighbor_load -- --ignored --nocapture`.
//!
//! Three runs: no flood (the baseline), the flood with protection (fair share over 6 requests in
//! flight), the flood without. It prints each run's p50/p99 for the quiet tenants and for the
//! flooder, and how many requests of each were shed; it checks that with protection the quiet
//! tenants' p99 stays within twice the baseline's and none of their requests is shed.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::get;
use axum::Router;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use tenant_otel::{Protection, TenantLayer, TenantRegistry};
use tokio::sync::Semaphore;

const QUIET: usize = 8;
const QUIET_RATE: u64 = 10;
const FLOOD_RATE: u64 = 100;
const WORKERS: usize = 4;
const WORK: Duration = Duration::from_millis(25);
const RUN: Duration = Duration::from_secs(8);

#[derive(Default)]
struct Outcomes {
    latency: BTreeMap<String, Histogram<u64>>,
    shed: BTreeMap<String, u64>,
}

impl Outcomes {
    fn record(&mut self, tenant: &str, took: Duration, status: u16) {
        if status == 429 {
            *self.shed.entry(tenant.to_owned()).or_default() += 1;
            return;
        }
        assert_eq!(status, 200);
        self.latency
            .entry(tenant.to_owned())
            .or_insert_with(|| Histogram::new(3).unwrap())
            .record(took.as_micros() as u64)
            .unwrap();
    }

    /// p50 and p99 in ms over the tenants `which` selects, and what was shed of them.
    fn summary(&self, which: impl Fn(&str) -> bool) -> (f64, f64, u64, u64) {
        let mut all = Histogram::<u64>::new(3).unwrap();
        for (t, h) in &self.latency {
            if which(t) {
                all.add(h).unwrap();
            }
        }
        let shed = self
            .shed
            .iter()
            .filter(|(t, _)| which(t))
            .map(|(_, n)| n)
            .sum();
        (
            all.value_at_quantile(0.5) as f64 / 1000.0,
            all.value_at_quantile(0.99) as f64 / 1000.0,
            all.len(),
            shed,
        )
    }
}

async fn run(flood: bool, protection: Option<Protection>) -> Outcomes {
    let workers = Arc::new(Semaphore::new(WORKERS));
    let app = Router::new().route(
        "/work",
        get(move || {
            let workers = Arc::clone(&workers);
            async move {
                let _worker = workers.acquire().await.unwrap();
                tokio::time::sleep(WORK).await;
                "done"
            }
        }),
    );
    let mut layer = TenantLayer::builder()
        .registry(TenantRegistry::builder().build())
        .without_spans();
    if let Some(p) = protection {
        layer = layer.protection(p);
    }
    let app = app.layer(layer.build());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(256)
        .build_http();
    let outcomes = Arc::new(Mutex::new(Outcomes::default()));
    let mut senders = Vec::new();
    let tenants = (0..QUIET)
        .map(|i| (format!("quiet-{i}"), QUIET_RATE))
        .chain([(
            "flooder".to_owned(),
            if flood { FLOOD_RATE } else { QUIET_RATE },
        )]);
    for (tenant, rate) in tenants {
        let client = client.clone();
        let outcomes = Arc::clone(&outcomes);
        senders.push(tokio::spawn(async move {
            // Open loop: requests leave on schedule whether or not earlier ones came back.
            let mut tick = tokio::time::interval(Duration::from_secs(1) / rate as u32);
            let end = Instant::now() + RUN;
            let mut inflight = Vec::new();
            while Instant::now() < end {
                tick.tick().await;
                let req = http::Request::get(format!("http://{addr}/work"))
                    .header("x-tenant-id", &tenant)
                    .body(Empty::new())
                    .unwrap();
                let (client, outcomes, tenant) =
                    (client.clone(), Arc::clone(&outcomes), tenant.clone());
                inflight.push(tokio::spawn(async move {
                    let start = Instant::now();
                    let res = client.request(req).await.unwrap();
                    let status = res.status().as_u16();
                    res.into_body().collect().await.unwrap();
                    outcomes
                        .lock()
                        .unwrap()
                        .record(&tenant, start.elapsed(), status);
                }));
            }
            for task in inflight {
                task.await.unwrap();
            }
        }));
    }
    for s in senders {
        s.await.unwrap();
    }
    server.abort();
    Arc::try_unwrap(outcomes)
        .ok()
        .unwrap()
        .into_inner()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "load test: a few seconds of loopback traffic; prints its figures"]
async fn protection_keeps_a_flood_from_hurting_the_other_tenants() {
    let protection = || Protection::new().fair_share(6);
    let baseline = run(false, Some(protection())).await;
    let protected = run(true, Some(protection())).await;
    let unprotected = run(true, None).await;

    let quiet = |t: &str| t.starts_with("quiet");
    let flooder = |t: &str| t == "flooder";
    println!("run                    | quiet p50 ms | quiet p99 ms | quiet served | quiet shed | flooder p99 ms | flooder served | flooder shed");
    for (name, o) in [
        ("no flood (baseline)", &baseline),
        ("flood, protection on", &protected),
        ("flood, protection off", &unprotected),
    ] {
        let (p50, p99, served, shed) = o.summary(quiet);
        let (_, f99, f_served, f_shed) = o.summary(flooder);
        println!(
            "{name:<22} | {p50:>12.1} | {p99:>12.1} | {served:>12} | {shed:>10} | {f99:>14.1} | {f_served:>14} | {f_shed:>12}"
        );
    }
    let (_, base_p99, _, _) = baseline.summary(quiet);
    let (_, prot_p99, _, prot_shed) = protected.summary(quiet);
    let (_, unprot_p99, _, _) = unprotected.summary(quiet);
    assert_eq!(prot_shed, 0, "no quiet tenant's request was shed");
    assert!(
        prot_p99 <= 2.0 * base_p99,
        "quiet p99 {prot_p99} ms against {base_p99} ms without the flood"
    );
    assert!(
        unprot_p99 > 2.0 * base_p99,
        "without protection the flood should hurt: {unprot_p99} ms"
    );
}
