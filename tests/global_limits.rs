//! Limits across replicas: three replicas of a service (three stacks, each with its own registry,
//! protection and Redis connection) hold one tenant to its rate in total through a real
//! `redis-server`; with Redis killed, paused or restarted no request waits past the deadline,
//! fallbacks are counted, and limiting comes back. Without Redis, `Protection::replicas` divides
//! each limit among the replicas.

mod processes;

use std::convert::Infallible;
use std::net::TcpStream;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use processes::{free_port, Watched};
use tenant_otel::layer::GlobalLimitLayer;
use tenant_otel::protect::{Fallback, GlobalLimits, Limits, Protection, Rate};
use tenant_otel::{TenantInfo, TenantLayer, TenantRegistry};
use tokio::sync::Mutex;
use tower::util::BoxCloneService;
use tower::{service_fn, Layer, Service, ServiceExt};

type Replica = BoxCloneService<http::Request<Body>, http::Response<Body>, Infallible>;

/// A `redis-server` on a free loopback port, without persistence, stopped when dropped.
struct Redis {
    port: u16,
    process: Option<Watched>,
}

impl Redis {
    fn start() -> Redis {
        let mut redis = Redis {
            port: free_port(),
            process: None,
        };
        redis.restart();
        redis
    }

    fn restart(&mut self) {
        let process = Watched::spawn(
            Command::new("redis-server")
                .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
                .args(["--save", "", "--appendonly", "no"]),
        );
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "redis-server did not listen on {} (is it installed? .ci/run installs it): {}",
                self.port,
                process.output_so_far()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        self.process = Some(process);
    }

    fn kill(&mut self) {
        drop(self.process.take());
        // The port is free again once nothing accepts on it.
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Runs one command on a connection of its own.
    fn command(&self, args: &[&str]) -> redis::Value {
        let client = redis::Client::open(self.url()).unwrap();
        let mut conn = client.get_connection().unwrap();
        let mut cmd = redis::cmd(args[0]);
        for a in &args[1..] {
            cmd.arg(*a);
        }
        cmd.query(&mut conn).unwrap()
    }
}

/// One replica: the tenant layer (local limits) around the global limit layer around a handler
/// that answers 200.
fn replica(
    protection: &Protection,
    global: &GlobalLimitLayer,
    registry: &TenantRegistry,
) -> Replica {
    let handler = service_fn(|_req: http::Request<Body>| async {
        Ok::<_, Infallible>(http::Response::new(Body::empty()))
    });
    let tenant = TenantLayer::builder()
        .registry(registry.clone())
        .protection(protection.clone())
        .build();
    let stack = tenant.layer(global.layer(handler));
    BoxCloneService::new(stack.map_response(|res| res.map(Body::new)))
}

fn protection() -> Protection {
    Protection::new().tier(
        "metered",
        Limits::none().rate(Rate::per_second(100).burst(10)),
    )
}

fn three_replicas(limits: &GlobalLimits) -> Vec<(Replica, GlobalLimitLayer)> {
    (0..3)
        .map(|_| {
            let registry = TenantRegistry::builder().build();
            registry
                .register_tenant("loud", TenantInfo::new("Loud", "metered", "eu"))
                .unwrap();
            let protection = protection();
            let global = GlobalLimitLayer::new(limits.clone(), &protection, &registry);
            (replica(&protection, &global, &registry), global)
        })
        .collect()
}

async fn send(service: &mut Replica, tenant: &str) -> (http::StatusCode, Duration) {
    let req = http::Request::builder()
        .header("x-tenant-id", tenant)
        .body(Body::empty())
        .unwrap();
    let started = Instant::now();
    let res = service.ready().await.unwrap().call(req).await.unwrap();
    (res.status(), started.elapsed())
}

#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    sent: u64,
    accepted: u64,
    slowest: Duration,
}

/// Each replica sends `per_replica_rate` requests a second of `tenant` for `run`, paced.
async fn load(
    replicas: &[(Replica, GlobalLimitLayer)],
    tenant: &'static str,
    per_replica_rate: u64,
    run: Duration,
) -> (Tally, Duration) {
    let started = Instant::now();
    let tally = Arc::new(Mutex::new(Tally::default()));
    let mut tasks = Vec::new();
    for (service, _) in replicas {
        let mut service = service.clone();
        let tally = Arc::clone(&tally);
        tasks.push(tokio::spawn(async move {
            let mut tick =
                tokio::time::interval(Duration::from_micros(1_000_000 / per_replica_rate));
            while started.elapsed() < run {
                tick.tick().await;
                let (status, took) = send(&mut service, tenant).await;
                let mut t = tally.lock().await;
                t.sent += 1;
                t.accepted += u64::from(status == http::StatusCode::OK);
                t.slowest = t.slowest.max(took);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let tally = *tally.lock().await;
    (tally, elapsed)
}

/// Makes each replica connect to Redis, then forgets what those requests counted.
async fn warm_up(replicas: &[(Replica, GlobalLimitLayer)], redis: &Redis) {
    for (service, global) in replicas {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut service = service.clone();
        let answered = || {
            let failed: u64 = [Fallback::Timeout, Fallback::Unavailable, Fallback::Error]
                .into_iter()
                .map(|r| global.fallbacks(r))
                .sum();
            global.redis_calls() > failed
        };
        while !answered() {
            send(&mut service, "loud").await;
            assert!(Instant::now() < deadline, "no connection to Redis");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    redis.command(&["FLUSHALL"]);
}

fn quick() -> bool {
    std::env::var_os("TENANT_OTEL_QUICK").is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_replicas_hold_a_tenant_to_its_rate_in_total() {
    let redis = Redis::start();
    let limits = GlobalLimits::redis(&redis.url())
        .unwrap()
        .deadline(Duration::from_millis(50));
    let replicas = three_replicas(&limits);
    warm_up(&replicas, &redis).await;
    let calls_before: u64 = replicas.iter().map(|(_, g)| g.redis_calls()).sum();
    let run = Duration::from_secs(if quick() { 3 } else { 5 });

    // The loud tenant at 300 a second in all, 100 on each replica: each replica's local limit
    // (100 a second) lets nearly all through; Redis holds the sum to 100 a second.
    let loud = load(&replicas, "loud", 100, run);
    // A calm tenant beside it, without limits of its tier: never asks Redis, never refused.
    let calm = load(&replicas[..1], "calm", 20, run);
    let ((loud, elapsed), (calm, _)) = tokio::join!(loud, calm);

    let secs = elapsed.as_secs_f64();
    let allowed = 100.0 * secs + 10.0; // the rate over the run, plus one burst
    let rate = loud.accepted as f64 / secs;
    println!(
        "loud: sent {} in {secs:.2} s, accepted {} ({rate:.1}/s; allowed {allowed:.0}); calm: {}/{}",
        loud.sent, loud.accepted, calm.accepted, calm.sent
    );
    assert!(
        loud.sent as f64 > 2.0 * allowed,
        "the load generator fell behind: {} sent",
        loud.sent
    );
    assert!(
        (loud.accepted as f64) >= 0.9 * allowed && (loud.accepted as f64) <= 1.1 * allowed,
        "accepted {} of {} in {secs:.2} s; the global rate allows {allowed:.0}",
        loud.accepted,
        loud.sent
    );
    assert_eq!(calm.accepted, calm.sent);
    assert!(calm.sent > 10);

    let calls = replicas.iter().map(|(_, g)| g.redis_calls()).sum::<u64>() - calls_before;
    let fallbacks: u64 = replicas
        .iter()
        .map(|(_, g)| {
            [Fallback::Timeout, Fallback::Unavailable, Fallback::Error]
                .into_iter()
                .map(|r| g.fallbacks(r))
                .sum::<u64>()
        })
        .sum();
    println!(
        "redis calls: {calls} for {} loud requests; fallbacks: {fallbacks}",
        loud.sent
    );
    // Only the loud tenant asks Redis, and only for what its replica's local limit let through.
    assert!(
        calls <= loud.sent && calls >= loud.accepted,
        "{calls} calls"
    );
    // Redis keeps one key per tenant seen in its last burst, and no more.
    let keys = redis.command(&["DBSIZE"]);
    assert_eq!(keys, redis::Value::Int(1), "{keys:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_local_limit_keeps_what_it_refuses_away_from_redis() {
    let redis = Redis::start();
    let limits = GlobalLimits::redis(&redis.url())
        .unwrap()
        .deadline(Duration::from_millis(50));
    let replicas = three_replicas(&limits);
    warm_up(&replicas, &redis).await;
    let before = replicas[0].1.redis_calls();
    // All of the tenant's 300 a second reach one replica: its local limit (100 a second) refuses
    // two thirds on its own, and Redis is asked only about the rest.
    let (one, elapsed) = load(&replicas[..1], "loud", 300, Duration::from_secs(2)).await;
    let calls = replicas[0].1.redis_calls() - before;
    let allowed = 100.0 * elapsed.as_secs_f64() + 10.0;
    println!("one replica: {one:?}, {calls} Redis calls");
    assert!(one.sent as f64 > 2.0 * allowed, "{one:?}");
    assert!(
        calls as f64 <= 1.1 * allowed && calls >= one.accepted,
        "{calls} calls, {one:?}"
    );
    assert!(one.accepted as f64 >= 0.9 * allowed, "{one:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_or_paused_never_holds_a_request_past_the_deadline() {
    let mut redis = Redis::start();
    let deadline = Duration::from_millis(50);
    let limits = GlobalLimits::redis(&redis.url())
        .unwrap()
        .deadline(deadline);
    let replicas = three_replicas(&limits);
    let phase = Duration::from_secs(if quick() { 1 } else { 3 });
    // Generous: the bound is the deadline; the margin is for a loaded machine.
    let margin = Duration::from_secs(1);

    let (up, _) = load(&replicas, "loud", 100, phase).await;
    assert!(up.accepted < up.sent, "limited while Redis is up: {up:?}");

    redis.kill();
    let (down, _) = load(&replicas, "loud", 100, phase).await;
    let fell_back: u64 = replicas
        .iter()
        .map(|(_, g)| g.fallbacks(Fallback::Unavailable) + g.fallbacks(Fallback::Timeout))
        .sum();
    println!("Redis down: {down:?}, fallbacks {fell_back}");
    assert!(down.slowest < deadline + margin, "{down:?}");
    // Fail-open: the local limit alone (100 a second on each replica) lets most through.
    assert!(down.accepted as f64 > 0.6 * down.sent as f64, "{down:?}");
    assert!(fell_back > 0 && fell_back <= down.sent, "{fell_back}");

    // Back up: limiting across the replicas resumes once the connections are made again.
    redis.restart();
    let resumed = Instant::now() + Duration::from_secs(30);
    loop {
        let (again, _) = load(&replicas, "loud", 100, phase).await;
        assert!(again.slowest < deadline + margin, "{again:?}");
        if (again.accepted as f64) < 0.6 * again.sent as f64 {
            println!("Redis back: {again:?}");
            break;
        }
        assert!(
            Instant::now() < resumed,
            "limiting never resumed: {again:?}"
        );
    }

    // Redis paused (as when it is overloaded): the first decisions time out at the deadline,
    // the next fall back at once until Redis answers again.
    let count = |reason| {
        replicas
            .iter()
            .map(|(_, g)| g.fallbacks(reason))
            .sum::<u64>()
    };
    let before = (count(Fallback::Timeout), count(Fallback::Unavailable));
    let pause_ms = (phase.as_millis() as u64 * 2).to_string();
    redis.command(&["CLIENT", "PAUSE", &pause_ms, "ALL"]);
    let (paused, _) = load(&replicas, "loud", 100, phase).await;
    let timed_out = count(Fallback::Timeout) - before.0;
    let skipped = count(Fallback::Unavailable) - before.1;
    println!("Redis paused: {paused:?}, timeouts {timed_out}, skipped {skipped}");
    assert!(paused.slowest < deadline + margin, "{paused:?}");
    assert!(timed_out > 0, "{timed_out}");
    assert!(
        timed_out + skipped <= paused.sent,
        "{timed_out} + {skipped}"
    );
    assert!(
        paused.accepted as f64 > 0.6 * paused.sent as f64,
        "{paused:?}"
    );
}

#[tokio::test]
async fn without_redis_each_replica_enforces_its_share() {
    // Three replicas told there are three: each holds a third of the rate, so the sum is the
    // tenant's rate when the load balancer spreads it evenly.
    let replicas: Vec<Replica> = (0..3)
        .map(|_| {
            let registry = TenantRegistry::builder()
                .clock(tenant_otel::Clock::manual())
                .build();
            registry
                .register_tenant("loud", TenantInfo::new("Loud", "metered", "eu"))
                .unwrap();
            let protection = Protection::new()
                .tier(
                    "metered",
                    Limits::none().rate(Rate::per_second(90).burst(30)),
                )
                .replicas(3);
            assert_eq!(protection.replica_count(), 3);
            let handler = service_fn(|_req: http::Request<Body>| async {
                Ok::<_, Infallible>(http::Response::new(Body::empty()))
            });
            let layer = TenantLayer::builder()
                .registry(registry)
                .protection(protection)
                .build();
            BoxCloneService::new(layer.layer(handler).map_response(|res| res.map(Body::new)))
        })
        .collect();
    // The clock stands still: each replica lets exactly its share of the burst through.
    let mut accepted = 0;
    for mut replica in replicas {
        for _ in 0..100 {
            accepted += u32::from(send(&mut replica, "loud").await.0 == http::StatusCode::OK);
        }
    }
    assert_eq!(accepted, 30, "each replica holds a burst of 10");
}
