//! What a request costs when two threads serve at once, against one thread, on the harness of
//! [`tenant_otel_peer_bench`] (`GET /hello` called in process, body read, a tenant header and a
//! `traceparent` on every request): the bare router, tenant-otel with each thread on a tenant of
//! its own, and tenant-otel with both threads on tenants past the cap, which share the
//! `__overflow__` entry. Anything the two threads serialize on (a lock, a contended cache line)
//! makes the cost per request grow with the second thread by more than the bare router's does.
//!
//! - **Instructions** from callgrind (`--fair-sched=yes`, counted inside the measured loop on
//!   every request thread), per request: valgrind runs one thread at a time, so a lock costs
//!   what its spinning and system calls cost, not the wait.
//! - **Wall clock** natively, per request on each thread (the median of `--repeat` runs): on a
//!   machine with two cores the second thread also shares them with the exporters' threads.
//!
//! ```sh
//! cargo bench -p tenant-otel-peer-bench --bench threads
//! ```
//!
//! Each case runs in a process of its own (this program, re-executed).

use std::process::Command;
use std::sync::Barrier;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use tenant_otel_peer_bench::{setup, setup_with_cap, Driver, Stack};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Case {
    /// The bare router.
    Bare,
    /// tenant-otel as `init()` wires it, each thread on a tenant of its own.
    OwnTenants,
    /// The same with a cap of one tenant, taken before the measured threads start: each
    /// thread's tenant is past it, on `__overflow__`.
    PastTheCap,
}

impl Case {
    const ALL: [Case; 3] = [Case::Bare, Case::OwnTenants, Case::PastTheCap];

    fn describe(self) -> &'static str {
        match self {
            Case::Bare => "bare Router",
            Case::OwnTenants => "tenant-otel, a tenant per thread",
            Case::PastTheCap => "tenant-otel, tenants past the cap (`__overflow__`)",
        }
    }
}

#[derive(Parser, Debug)]
struct Args {
    /// Requests measured per thread, natively.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Requests measured per thread under callgrind.
    #[arg(long, default_value_t = 3_000)]
    callgrind_requests: usize,
    /// Requests per thread before measuring.
    #[arg(long, default_value_t = 3_000)]
    warm_up: usize,
    /// Native runs per figure; the median is reported.
    #[arg(long, default_value_t = 3)]
    repeat: usize,
    /// Internal: run one case and print its figures.
    #[arg(long, hide = true, value_enum)]
    child: Option<Case>,
    /// Internal: threads sending requests at once in a child.
    #[arg(long, hide = true, default_value_t = 1)]
    threads: usize,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    if let Some(case) = args.child {
        child(case, &args);
        return;
    }
    let valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    if !valgrind {
        eprintln!("valgrind not found: instructions per request are not measured");
    }
    println!(
        "\n{} requests a thread ({} under callgrind) after {} of warm-up; wall clock the \
         median of {} runs\n",
        args.requests, args.callgrind_requests, args.warm_up, args.repeat
    );
    println!(
        "| per request | Ir, 1 thread | Ir, 2 threads | growth | ns, 1 thread | ns, 2 threads | growth |"
    );
    println!("|---|---:|---:|---:|---:|---:|---:|");
    for case in Case::ALL {
        let ir = |threads| {
            valgrind
                .then(|| run(case, threads, &args, true).instructions)
                .flatten()
        };
        let ns = |threads| {
            let mut runs: Vec<f64> = (0..args.repeat.max(1))
                .map(|_| run(case, threads, &args, false).nanos)
                .collect();
            runs.sort_by(f64::total_cmp);
            runs[runs.len() / 2]
        };
        let (ir1, ir2) = (ir(1), ir(2));
        let (ns1, ns2) = (ns(1), ns(2));
        let ir_growth = match (ir1, ir2) {
            (Some(a), Some(b)) => format!("{:+}", b as i64 - a as i64),
            _ => "–".into(),
        };
        let show = |ir: Option<u64>| ir.map_or_else(|| "–".into(), |ir| ir.to_string());
        println!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:+.0} % |",
            case.describe(),
            show(ir1),
            show(ir2),
            ir_growth,
            ns1,
            ns2,
            (ns2 / ns1 - 1.0) * 100.0
        );
    }
}

struct Figures {
    nanos: f64,
    instructions: Option<u64>,
}

/// Runs one case in a child process, natively or under callgrind.
fn run(case: Case, threads: usize, args: &Args, callgrind: bool) -> Figures {
    let exe = std::env::current_exe().expect("own path");
    let mut command = if callgrind {
        let mut c = Command::new("valgrind");
        c.args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            "--collect-atstart=no",
            "--toggle-collect=*measured_requests*",
            // Without it the batch span processor's thread hardly runs under valgrind, its
            // queue fills and spans are dropped on the request threads.
            "--fair-sched=yes",
        ])
        .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    let requests = if callgrind {
        args.callgrind_requests
    } else {
        args.requests
    };
    let case_name = case
        .to_possible_value()
        .expect("every case has a name")
        .get_name()
        .to_owned();
    command.args([
        "--child",
        &case_name,
        "--threads",
        &threads.to_string(),
        "--requests",
        &requests.to_string(),
        "--warm-up",
        &args.warm_up.to_string(),
    ]);
    let out = command.output().expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{case_name} failed:\n{stdout}\n{stderr}"
    );
    let nanos = stdout
        .lines()
        .find_map(|l| l.strip_prefix("nanos_per_request="))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no figure in {stdout}"));
    // callgrind's summary: `==pid== Collected : N`, over every thread's measured loop.
    let instructions = stderr
        .lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .map(|total| total / (requests * threads) as u64);
    Figures {
        nanos,
        instructions: if callgrind { instructions } else { None },
    }
}

fn child(case: Case, args: &Args) {
    let setup = match case {
        Case::Bare => setup(Stack::Bare, 1),
        Case::OwnTenants => setup(Stack::TenantOtel, 2),
        Case::PastTheCap => setup_with_cap(Stack::TenantOtel, 1),
    };
    if case == Case::PastTheCap {
        // Takes the one slot, so every measured tenant is past the cap.
        Driver::for_tenant("admitted").warm_up(setup.app(), 1);
    }
    let prefix = if case == Case::PastTheCap {
        "past"
    } else {
        "tenant"
    };
    let barrier = Barrier::new(args.threads);
    let nanos: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.threads)
            .map(|t| {
                let (app, barrier) = (setup.app(), &barrier);
                s.spawn(move || {
                    let mut driver = Driver::for_tenant(&format!("{prefix}-{t}"));
                    driver.warm_up(app, args.warm_up);
                    barrier.wait();
                    let start = Instant::now();
                    measured_requests(&mut driver, app, args.requests);
                    start.elapsed().as_nanos() as f64 / args.requests as f64
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    if let Some(telemetry) = setup.telemetry() {
        // The case measured what it says: own tenants admitted, or everything on overflow.
        let registry = telemetry.registry();
        let on_overflow = registry
            .tenant_view(tenant_otel::tenant::OVERFLOW_TENANT)
            .map_or(0, |v| v.requests.total);
        let expected = (args.threads * (args.warm_up + args.requests)) as u64;
        match case {
            Case::PastTheCap => assert_eq!(on_overflow, expected, "overflow requests"),
            _ => assert_eq!(
                (registry.len(), on_overflow),
                (args.threads, 0),
                "admitted tenants, overflow requests"
            ),
        }
    }
    println!(
        "nanos_per_request={}",
        nanos.iter().sum::<f64>() / nanos.len() as f64
    );
}

/// The measured loop; callgrind counts instructions only while inside it.
#[inline(never)]
fn measured_requests(driver: &mut Driver, app: &axum::Router, n: usize) {
    for _ in 0..n {
        driver.request(app);
    }
}
