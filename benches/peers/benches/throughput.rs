//! Requests per second with a real load generator on loopback: `wrk` (Debian: `apt-get install
//! wrk`) against each stack served by axum in a process of its own, the stacks interleaved
//! within each repeat so a machine that slows down mid-run slows all of them alike. Beside the
//! rate, the server's CPU time per request (user + system, all its threads, from
//! `/proc/{pid}/stat`): on a machine shared with other work the rate follows the neighbours, the
//! CPU time per request much less.
//!
//! Every request carries `x-tenant-id` (cycling over the tenants asked for) and a sampled W3C
//! `traceparent`, as in the instruction counts of `benches/cost.rs`. The server runs on one
//! thread (a current-thread runtime, the thread the stack was built on, so the `tracing`-based
//! stacks see their subscriber); `wrk` runs on another core.
//!
//! With `--callgrind` each server runs under callgrind instead (`--fair-sched=yes`), and the
//! figure is the whole process's instructions per request over real HTTP: every thread (the
//! batch exporters' included), hyper's parsing and writing, counted from after a warm-up load to
//! the end of the measured one. Deterministic where the rate is not, and it sees what the
//! in-process harness of `benches/cost.rs` leaves out (work handed to other threads).
//!
//! ```sh
//! cargo bench -p tenant-otel-peer-bench --bench throughput
//! cargo bench -p tenant-otel-peer-bench --bench throughput -- --repeats 5 --seconds 10
//! cargo bench -p tenant-otel-peer-bench --bench throughput -- --callgrind
//! ```

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Child, Command, Stdio};

use clap::Parser;
use tenant_otel_peer_bench::{setup, Stack};

#[derive(Parser, Debug)]
struct Args {
    /// Stacks to compare; the first is the baseline the others are divided by.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "bare,instrumentation-tower,tenant-otel"
    )]
    stacks: Vec<Stack>,
    /// Tenants the requests cycle over.
    #[arg(long, default_value_t = 100)]
    tenants: usize,
    /// Runs of every stack.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Length of one run, in seconds.
    #[arg(long, default_value_t = 5)]
    seconds: u32,
    /// Connections `wrk` keeps open.
    #[arg(long, default_value_t = 32)]
    connections: u32,
    /// Count the servers' instructions per request with callgrind instead of timing them.
    #[arg(long)]
    callgrind: bool,
    /// Internal: serve one stack and print the port.
    #[arg(long, hide = true)]
    serve: Option<Stack>,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

fn main() {
    let args = Args::parse();
    if let Some(stack) = args.serve {
        serve(stack, args.tenants);
        return;
    }
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk not found (Debian: apt-get install wrk): no throughput measured");
        return;
    }
    let script = std::env::temp_dir().join(format!("tenant-otel-wrk-{}.lua", std::process::id()));
    std::fs::write(&script, lua(args.tenants)).expect("write the wrk script");
    if args.callgrind {
        instructions(&args, &script);
        let _ = std::fs::remove_file(&script);
        return;
    }

    let mut runs: Vec<Vec<Run>> = vec![Vec::new(); args.stacks.len()];
    for repeat in 1..=args.repeats {
        for (i, &stack) in args.stacks.iter().enumerate() {
            let run = run(stack, &args, &script);
            eprintln!(
                "repeat {repeat}: {stack}: {:.0} requests/s, {:.1} µs CPU per request",
                run.rps, run.cpu_us
            );
            runs[i].push(run);
        }
    }
    let _ = std::fs::remove_file(&script);

    let rps: Vec<f64> = runs
        .iter()
        .map(|r| median(&r.iter().map(|r| r.rps).collect::<Vec<_>>()))
        .collect();
    let cpu: Vec<f64> = runs
        .iter()
        .map(|r| median(&r.iter().map(|r| r.cpu_us).collect::<Vec<_>>()))
        .collect();
    println!(
        "\n`wrk -t1 -c{} -d{}s` on loopback, server on one thread, {} tenants, a traceparent on \
         every request; median of {} runs\n",
        args.connections, args.seconds, args.tenants, args.repeats
    );
    println!(
        "| stack | requests/s | runs | of {0} | server CPU µs/request | over {0} |",
        args.stacks[0]
    );
    println!("|---|---:|---|---:|---:|---:|");
    for (i, stack) in args.stacks.iter().enumerate() {
        let each: Vec<String> = runs[i].iter().map(|r| format!("{:.0}", r.rps)).collect();
        println!(
            "| {} | {:.0} | {} | {:.2} | {:.1} | {:+.1} |",
            stack.describe(),
            rps[i],
            each.join(", "),
            rps[i] / rps[0],
            cpu[i],
            cpu[i] - cpu[0]
        );
    }
}

/// One run of one stack.
#[derive(Clone, Copy, Debug)]
struct Run {
    rps: f64,
    /// The server's CPU time per request answered, in microseconds.
    cpu_us: f64,
}

/// Starts `stack` in a process of its own, loads it with `wrk` and returns its rate and CPU
/// time per request.
fn run(stack: Stack, args: &Args, script: &std::path::Path) -> Run {
    let mut server = Server::start(stack, args.tenants);
    let cpu_before = cpu_seconds(server.child.id());
    let out = Command::new("wrk")
        .args(["-t1", &format!("-c{}", args.connections)])
        .arg(format!("-d{}s", args.seconds))
        .arg("-s")
        .arg(script)
        .arg(format!("http://127.0.0.1:{}/hello", server.port))
        .output()
        .expect("run wrk");
    let cpu = cpu_seconds(server.child.id()) - cpu_before;
    server.stop();
    let text = String::from_utf8_lossy(&out.stdout);
    if text.contains("Non-2xx") || text.contains("Socket errors") {
        eprintln!("{stack}: wrk saw errors:\n{text}");
    }
    let rps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no Requests/sec in wrk's output:\n{text}"));
    Run {
        rps,
        cpu_us: cpu * 1e6 / requests(&text).max(1.0),
    }
}

/// User + system CPU time of process `pid` so far, in seconds (0 where `/proc` is missing).
fn cpu_seconds(pid: u32) -> f64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may hold spaces) start at the state, field 3;
    // utime and stime are fields 14 and 15, in clock ticks.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / clock_ticks_per_second()
}

/// `getconf CLK_TCK`, 100 (Linux's) when it cannot say.
fn clock_ticks_per_second() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .filter(|hz: &f64| *hz > 0.0)
        .unwrap_or(100.0)
}

/// The whole server process's instructions per request, every stack, under callgrind.
fn instructions(args: &Args, script: &std::path::Path) {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind not found: no instruction counts");
        return;
    }
    let dir = std::env::temp_dir().join(format!("tenant-otel-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("a directory for callgrind's files");
    let mut per_request = Vec::new();
    for &stack in &args.stacks {
        let out = dir.join(format!("{stack}.out"));
        let mut valgrind = Command::new("valgrind");
        valgrind
            .args([
                "--tool=callgrind",
                "--fair-sched=yes",
                &format!("--callgrind-out-file={}", out.display()),
            ])
            .arg(std::env::current_exe().expect("this program"));
        let mut server = Server::spawn(valgrind, stack, args.tenants);
        let pid = server.child.id().to_string();
        let load = |seconds: u32| {
            let out = Command::new("wrk")
                .args(["-t1", "-c4", &format!("-d{seconds}s"), "-s"])
                .arg(script)
                .arg(format!("http://127.0.0.1:{}/hello", server.port))
                .output()
                .expect("run wrk");
            requests(&String::from_utf8_lossy(&out.stdout))
        };
        load(args.seconds);
        let control = |flag: &str| {
            Command::new("callgrind_control")
                .args([flag, &pid])
                .output()
                .expect("callgrind_control");
        };
        control("-z");
        let requests = load(args.seconds * 2);
        control("-d");
        server.stop();
        // The dump asked for is the first numbered file.
        let dump = std::fs::read_to_string(dir.join(format!("{stack}.out.1"))).unwrap_or_default();
        let total: f64 = dump
            .lines()
            .find_map(|l| l.strip_prefix("summary:").or(l.strip_prefix("totals:")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no totals in callgrind's dump for {stack}"));
        let each = total / requests.max(1.0);
        eprintln!("{stack}: {requests} requests, {each:.0} instructions each");
        per_request.push(each);
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "\nWhole server process under callgrind (`--fair-sched=yes`), `wrk -t1 -c4` on loopback, \
         {} tenants, a traceparent on every request\n",
        args.tenants
    );
    println!("| stack | instructions/request | over {} |", args.stacks[0]);
    println!("|---|---:|---:|");
    for (stack, each) in args.stacks.iter().zip(&per_request) {
        println!(
            "| {} | {each:.0} | {:+.0} |",
            stack.describe(),
            each - per_request[0]
        );
    }
}

/// The count of "  123456 requests in 5.00s, ..." in `wrk`'s output.
fn requests(wrk: &str) -> f64 {
    wrk.lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("no request count in wrk's output:\n{wrk}"))
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(stack: Stack, tenants: usize) -> Server {
        Self::spawn(
            Command::new(std::env::current_exe().expect("this program")),
            stack,
            tenants,
        )
    }

    /// Runs `command` (this program, or a tool running it) serving `stack`.
    fn spawn(mut command: Command, stack: Stack, tenants: usize) -> Server {
        let mut child = command
            .args(["--serve", stack.name(), "--tenants", &tenants.to_string()])
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("the server's port");
        let port = line.trim().parse().expect("a port");
        Server { child, port }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Serves `stack` on an ephemeral loopback port, printed on the first line of stdout.
fn serve(stack: Stack, tenants: usize) {
    let setup = setup(stack, tenants);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("address").port();
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{port}").expect("print the port");
        stdout.flush().expect("flush");
        axum::serve(listener, setup.app().clone())
            .await
            .expect("serve");
    });
}

/// A `wrk` script: every request a tenant of `tenants` in turn and one of a few callers'
/// sampled `traceparent`s.
fn lua(tenants: usize) -> String {
    format!(
        r#"local n = 0
request = function()
  n = n + 1
  local tenant = "tenant-" .. (n % {tenants})
  local trace = string.format("00-4bf92f3577b34da6a3ce929d0e0e%04x-00f067aa0ba902b7-01", n % 7)
  wrk.headers["x-tenant-id"] = tenant
  wrk.headers["traceparent"] = trace
  return wrk.format("GET", "/hello")
end
"#
    )
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}
