//! Instructions and allocations per request for every stack of
//! [`tenant_otel_peer_bench::Stack`], side by side, in one run; then tenant-otel's cost as the
//! number of tenants grows, and with two threads at once.
//!
//! - **Instructions** come from callgrind (valgrind), counted only inside the measured loop on
//!   the request thread (`--toggle-collect`): deterministic to a percent or two, where wall
//!   clock on shared machines swings by tens of percent.
//! - **Allocations** come from a counting global allocator, on the request thread, over the
//!   same loop run natively.
//! - Each stack runs in a process of its own (this program, re-executed), so globals and
//!   subscribers of one cannot leak into another.
//!
//! ```sh
//! cargo bench -p tenant-otel-peer-bench --bench cost
//! cargo bench -p tenant-otel-peer-bench --bench cost -- --stacks bare,tenant-otel --no-scaling
//! ```
//!
//! Needs `valgrind` on the `PATH` (Debian: `apt-get install valgrind`); without it only
//! allocations and wall clock are reported.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use clap::Parser;
use tenant_otel_peer_bench::{setup, Driver, Stack};

/// Counts allocations made by threads that asked to be counted.
struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

fn note_allocation() {
    if COUNTED.with(Cell::get) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[derive(Parser, Debug)]
struct Args {
    /// Stacks to compare (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    stacks: Vec<Stack>,
    /// Tenants the comparison cycles over.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Requests measured per figure.
    #[arg(long, default_value_t = 5_000)]
    requests: usize,
    /// Requests before measuring (at least one per tenant).
    #[arg(long, default_value_t = 10_000)]
    warm_up: usize,
    /// Tenant counts for tenant-otel's scaling table.
    #[arg(long, value_delimiter = ',', default_value = "1,100,10000,100000")]
    scaling: Vec<usize>,
    /// Skip the scaling and two-thread tables.
    #[arg(long)]
    no_scaling: bool,
    /// Internal: run one stack and print its figures.
    #[arg(long, hide = true)]
    child: Option<Stack>,
    /// Internal: threads sending requests at once in a child.
    #[arg(long, hide = true, default_value_t = 1)]
    threads: usize,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    if let Some(stack) = args.child {
        child(stack, &args);
        return;
    }
    let stacks = if args.stacks.is_empty() {
        Stack::ALL.to_vec()
    } else {
        args.stacks.clone()
    };
    let valgrind = Command::new("valgrind").arg("--version").output().is_ok();
    if !valgrind {
        eprintln!("valgrind not found: instructions per request are not measured");
    }

    println!(
        "\n{} requests after {} warm-up, {} tenants, a traceparent on every request\n",
        args.requests, args.warm_up, args.tenants
    );
    println!("| stack | allocs/req | instructions/req | over bare | ns/req (wall clock, noisy) |");
    println!("|---|---:|---:|---:|---:|");
    let mut bare = None;
    for &stack in &stacks {
        let native = run(stack, args.tenants, &args, false, 1);
        let ir = valgrind.then(|| run(stack, args.tenants, &args, true, 1).instructions);
        let ir = ir.flatten();
        if stack == Stack::Bare {
            bare = ir;
        }
        let over = match (ir, bare) {
            (Some(ir), Some(bare)) if stack != Stack::Bare => {
                format!("{:+}", ir as i64 - bare as i64)
            }
            _ => String::from("–"),
        };
        println!(
            "| {} | {:.1} | {} | {} | {:.0} |",
            stack.describe(),
            native.allocations,
            ir.map_or_else(|| "–".into(), |ir| ir.to_string()),
            over,
            native.nanos
        );
    }
    if args.no_scaling {
        return;
    }

    println!("\ntenant-otel (span + metrics) as tenants grow\n");
    println!("| tenants | allocs/req | instructions/req | ns/req (wall clock, noisy) |");
    println!("|---:|---:|---:|---:|");
    for &tenants in &args.scaling {
        let native = run(Stack::TenantOtel, tenants, &args, false, 1);
        let ir = if valgrind {
            run(Stack::TenantOtel, tenants, &args, true, 1).instructions
        } else {
            None
        };
        println!(
            "| {tenants} | {:.1} | {} | {:.0} |",
            native.allocations,
            ir.map_or_else(|| "–".into(), |ir| ir.to_string()),
            native.nanos
        );
    }

    println!(
        "\nTwo threads at once, {} tenants: wall clock per request on each thread\n",
        args.tenants
    );
    println!("| stack | 1 thread ns/req | 2 threads ns/req |");
    println!("|---|---:|---:|");
    for stack in [Stack::Bare, Stack::TenantOtel] {
        let one = run(stack, args.tenants, &args, false, 1);
        let two = run(stack, args.tenants, &args, false, 2);
        println!(
            "| {} | {:.0} | {:.0} |",
            stack.describe(),
            one.nanos,
            two.nanos
        );
    }
}

struct Figures {
    allocations: f64,
    nanos: f64,
    instructions: Option<u64>,
}

/// Runs one stack in a child process, natively or under callgrind.
fn run(stack: Stack, tenants: usize, args: &Args, callgrind: bool, threads: usize) -> Figures {
    let exe = std::env::current_exe().expect("own path");
    let mut command = if callgrind {
        let mut c = Command::new("valgrind");
        c.args([
            "--tool=callgrind",
            "--callgrind-out-file=/dev/null",
            "--collect-atstart=no",
            "--toggle-collect=*measured_requests*",
            // Without it the batch span processor's thread hardly runs under valgrind, its
            // queue fills and spans are dropped, which no real service does.
            "--fair-sched=yes",
        ])
        .arg(&exe);
        c
    } else {
        Command::new(&exe)
    };
    command.args([
        "--child",
        stack.name(),
        "--tenants",
        &tenants.to_string(),
        "--requests",
        &args.requests.to_string(),
        "--warm-up",
        &args.warm_up.to_string(),
        "--threads",
        &threads.to_string(),
    ]);
    let out = command.output().expect("run the child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stack} failed:\n{stdout}\n{stderr}");
    let field = |name: &str| -> f64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in {stdout}"))
    };
    // callgrind's summary: `==pid== Collected : N`.
    let instructions = stderr
        .lines()
        .find_map(|l| l.split("Collected :").nth(1))
        .and_then(|n| n.trim().parse::<u64>().ok())
        .map(|total| total / args.requests as u64);
    Figures {
        allocations: field("allocations_per_request="),
        nanos: field("nanos_per_request="),
        instructions: if callgrind { instructions } else { None },
    }
}

fn child(stack: Stack, args: &Args) {
    let setup = setup(stack, args.tenants);
    let mut driver = Driver::new(args.tenants);
    driver.warm_up(setup.app(), args.warm_up);
    if args.threads <= 1 {
        let start = Instant::now();
        COUNTED.with(|c| c.set(true));
        measured_requests(&mut driver, &setup, args.requests);
        COUNTED.with(|c| c.set(false));
        let nanos = start.elapsed().as_nanos() as f64 / args.requests as f64;
        println!(
            "allocations_per_request={}",
            ALLOCATIONS.load(Ordering::Relaxed) as f64 / args.requests as f64
        );
        println!("nanos_per_request={nanos}");
        return;
    }
    // Each thread its own runtime and tenants, all on the one router and registry.
    let barrier = std::sync::Barrier::new(args.threads);
    let nanos: Vec<f64> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..args.threads)
            .map(|_| {
                let app = setup.app().clone();
                let barrier = &barrier;
                s.spawn(move || {
                    let mut driver = Driver::new(args.tenants);
                    barrier.wait();
                    let start = Instant::now();
                    for _ in 0..args.requests {
                        driver.request(&app);
                    }
                    start.elapsed().as_nanos() as f64 / args.requests as f64
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    println!("allocations_per_request=0");
    println!(
        "nanos_per_request={}",
        nanos.iter().sum::<f64>() / nanos.len() as f64
    );
}

/// The measured loop; callgrind counts instructions only while inside it.
#[inline(never)]
fn measured_requests(driver: &mut Driver, setup: &tenant_otel_peer_bench::Setup, n: usize) {
    for _ in 0..n {
        driver.request(setup.app());
    }
}
