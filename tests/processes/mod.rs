//! Real processes for the end-to-end tests: the example binaries `cargo test` builds, the OTLP
//! collector `rotel-agent`, loopback ports that are really the child's, and children that never
//! outlive their test.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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

/// A loopback port that was free a moment ago. Another process may take it before the child
/// it is meant for binds it: use it only through [`spawn_listening`], which checks that the
/// child got the port and starts it again with fresh ports when it did not, or for a child that
/// fails loudly on a port in use.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the child `command(ports)` makes for `count` fresh loopback ports, and waits (up to
/// 30 s) until the child itself listens on each. Another process may take a port between the
/// moment it was found free and the child's bind; then the child fails to bind (and exits, or
/// listens on the others only) and is started again with fresh ports, up to five times.
/// Whether the child owns a port is read from `/proc`, never guessed from a connection that
/// some other listener could have accepted.
pub fn spawn_listening(
    count: usize,
    mut command: impl FnMut(&[u16]) -> Command,
) -> (Watched, Vec<u16>) {
    for _attempt in 0..5 {
        let ports: Vec<u16> = (0..count).map(|_| free_port()).collect();
        let mut process = Watched::spawn(&mut command(&ports));
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = process.process.0.try_wait().unwrap() {
                eprintln!("{status} before listening on {ports:?}; trying other ports");
                break;
            }
            let pid = process.process.0.id();
            if ports.iter().all(|&p| listens_on(pid, p)) {
                return (process, ports);
            }
            if Instant::now() > deadline {
                panic!(
                    "not listening on {ports:?} after 30 s:\n{}",
                    process.output_so_far()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
    panic!("no free ports after five tries");
}

/// Whether process `pid` holds a socket listening on `127.0.0.1:port`: the listening socket's
/// inode from `/proc/net/tcp`, found among the process's file descriptors.
fn listens_on(pid: u32, port: u16) -> bool {
    let Ok(table) = std::fs::read_to_string("/proc/net/tcp") else {
        return false;
    };
    let local = format!("0100007F:{port:04X}");
    let Some(inode) = table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // local_address is field 1, the state (0A: LISTEN) field 3, the inode field 9.
        (fields.len() > 9 && fields[1] == local && fields[3] == "0A").then(|| fields[9].to_owned())
    }) else {
        return false;
    };
    let socket = format!("socket:[{inode}]");
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten().any(|fd| {
        std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == socket.as_str())
    })
}

/// `rotel-agent`: `$ROTEL_AGENT` (what `.ci/run` sets), else the one in the Python `rotel`
/// package of `python3`.
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
        _ => panic!(
            "rotel-agent not found: set ROTEL_AGENT to its path, or run the tests through \
             .ci/run, which installs it in a virtual environment and sets ROTEL_AGENT"
        ),
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

/// A child process whose standard output and error are read as they come, so a test can wait
/// for what it says (and a chatty child never blocks on a full pipe); killed when dropped.
pub struct Watched {
    pub process: Process,
    text: Arc<Mutex<String>>,
}

impl Watched {
    /// Spawns `cmd` with its stdout and stderr captured.
    pub fn spawn(cmd: &mut Command) -> Watched {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
        let text = Arc::new(Mutex::new(String::new()));
        let stdout = child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        let stderr = child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn Read + Send>);
        for stream in [stdout, stderr].into_iter().flatten() {
            let text = Arc::clone(&text);
            std::thread::spawn(move || {
                // By whole lines, so stdout and stderr never interleave inside one.
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    let mut text = text.lock().unwrap();
                    text.push_str(&line);
                    text.push('\n');
                }
            });
        }
        Watched {
            process: Process(child),
            text,
        }
    }

    /// All the child wrote so far.
    pub fn output_so_far(&self) -> String {
        self.text.lock().unwrap().clone()
    }

    /// Waits until what the child wrote satisfies `done`, at most `timeout`; returns it either
    /// way, so the caller's assertion shows what there was.
    pub fn wait_for_output(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = self.output_so_far();
            if done(&text) || Instant::now() > deadline {
                return text;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the process and returns all it wrote.
    pub fn output(self) -> String {
        let Watched { mut process, text } = self;
        let _ = process.0.kill();
        let _ = process.0.wait();
        // The readers end with the pipes; what they read is in by the time the child is gone,
        // but for the last lines still being appended.
        let deadline = Instant::now() + Duration::from_secs(5);
        while Arc::strong_count(&text) > 1 && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let out = text.lock().unwrap().clone();
        out
    }

    /// Sends `signal` (`TERM`, `INT`) and waits for the process to exit (30 s at most).
    pub async fn stop_with(&mut self, signal: &str) -> std::process::ExitStatus {
        self.process.stop_with(signal).await
    }
}

/// Starts `examples/rag_service` on a port the system picks (`--addr 127.0.0.1:0`) with the
/// extra arguments and environment `configure` adds, and returns it with the address it printed.
pub fn rag_service(configure: impl FnOnce(&mut Command)) -> (Watched, SocketAddr) {
    let mut cmd = Command::new(example("rag_service"));
    cmd.args(["--addr", "127.0.0.1:0"]);
    configure(&mut cmd);
    let process = Watched::spawn(&mut cmd);
    let out = process.wait_for_output(Duration::from_secs(30), |out| {
        out.contains("listening on http://")
    });
    let addr = out
        .lines()
        .find_map(|l| l.strip_prefix("listening on http://"))
        .unwrap_or_else(|| panic!("rag_service never said where it listens:\n{out}"))
        .trim()
        .parse()
        .unwrap();
    (process, addr)
}

/// A `rotel-agent` listening for OTLP on loopback, that logs what it decodes (traces, metrics
/// and logs, in detail) and sends it nowhere.
pub struct Collector {
    pub process: Watched,
    pub grpc_port: u16,
    pub http_port: u16,
}

impl Collector {
    /// Starts the agent and waits until it listens on both ports.
    pub fn start() -> Collector {
        let agent = rotel_agent();
        let (process, ports) = spawn_listening(2, |ports| {
            let mut cmd = Command::new(&agent);
            cmd.args([
                "start",
                "--exporter",
                "blackhole",
                "--debug-log-verbosity",
                "detailed",
            ])
            .args(["--otlp-grpc-endpoint", &format!("127.0.0.1:{}", ports[0])])
            .args(["--otlp-http-endpoint", &format!("127.0.0.1:{}", ports[1])]);
            for signal in ["traces", "metrics", "logs"] {
                cmd.args(["--debug-log", signal]);
            }
            cmd
        });
        Collector {
            process,
            grpc_port: ports[0],
            http_port: ports[1],
        }
    }

    /// Waits (at most `timeout`) until what the agent logged satisfies `done`, and returns it.
    pub fn wait_for(&self, timeout: Duration, done: impl Fn(&str) -> bool) -> String {
        self.process.wait_for_output(timeout, done)
    }

    /// Stops the agent and returns what it logged.
    pub fn output(self) -> String {
        self.process.output()
    }
}

/// Every section of the agent's log that starts with `kind` (`ResourceSpans`,
/// `ResourceMetrics`, `ResourceLog`), each up to the next section of any kind.
pub fn sections(out: &str, kind: &str) -> String {
    const KINDS: [&str; 3] = ["ResourceSpans", "ResourceMetrics", "ResourceLog"];
    let mut found = String::new();
    let mut rest = out;
    while let Some(start) = rest.find(kind) {
        let body = &rest[start + kind.len()..];
        let end = KINDS
            .iter()
            .filter_map(|k| body.find(k))
            .min()
            .unwrap_or(body.len());
        found.push_str(&body[..end]);
        rest = &body[end..];
    }
    found
}

/// Sends `POST /query` for `tenant`, with a `traceparent` of `trace_id`, to the `rag_service`
/// at `addr`, retrying until it answers (30 s at most); returns the status and the body.
pub async fn first_query(addr: SocketAddr, tenant: &str, trace_id: &str) -> (u16, String) {
    use http_body_util::{BodyExt, Full};
    use hyper_util::client::legacy::Client;
    use hyper_util::rt::TokioExecutor;

    let client: Client<_, Full<hyper::body::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let req = http::Request::post(format!("http://{addr}/query"))
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
                assert!(Instant::now() < deadline, "the service never answered: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
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
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "still running after {signal}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// A TCP relay in front of a collector that can be switched off (connections refused) and on
/// again, as a collector restarting behind a fixed address.
pub struct Relay {
    pub endpoint: String,
    up: Arc<std::sync::atomic::AtomicBool>,
}

impl Relay {
    pub async fn start(target: SocketAddr) -> Relay {
        Relay::start_with_delay(target, Duration::ZERO).await
    }

    /// Each new connection waits `delay` before it reaches the collector: a slow collector.
    pub async fn start_with_delay(target: SocketAddr, delay: Duration) -> Relay {
        use std::sync::atomic::{AtomicBool, Ordering};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(false));
        let gate = Arc::clone(&up);
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
