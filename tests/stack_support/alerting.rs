//! Alertmanager with the shipped `alertmanager.yml`, its receivers pointed at a webhook the test
//! runs, for the stack tests that follow a page end to end.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::Value;

use super::{config_dir, free_addr, Process};

/// More notifications than any test sends: past it the webhook keeps the first ones only.
const MAX_KEPT: usize = 10_000;

/// One alert of one notification: the receiver's URL path (e.g. `/oncall/premium`) and the
/// alert as Alertmanager's webhook payload has it (`labels`, `annotations`, `status`, ...).
#[derive(Clone, Debug)]
pub struct Notified {
    pub path: String,
    pub alert: Value,
}

impl Notified {
    /// The value of label `key`, `""` when it is missing.
    pub fn label(&self, key: &str) -> &str {
        self.alert["labels"][key].as_str().unwrap_or("")
    }
}

/// An HTTP server on loopback that keeps every alert POSTed to it.
pub struct Webhook {
    pub addr: String,
    received: Arc<Mutex<Vec<Notified>>>,
    stop: Arc<AtomicBool>,
}

impl Webhook {
    pub fn start() -> Webhook {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let received: Arc<Mutex<Vec<Notified>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (kept, stopped) = (Arc::clone(&received), Arc::clone(&stop));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    return;
                }
                if let Ok(stream) = stream {
                    // A malformed request is dropped; the test sees a missing notification.
                    let _ = serve(stream, &kept);
                }
            }
        });
        Webhook {
            addr,
            received,
            stop,
        }
    }

    /// Every alert received so far.
    pub fn received(&self) -> Vec<Notified> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for Webhook {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Wakes the accept loop so it sees the flag.
        let _ = TcpStream::connect(&self.addr);
    }
}

/// Reads one request (headers, then `Content-Length` bytes), answers 200 and closes.
fn serve(stream: TcpStream, kept: &Mutex<Vec<Notified>>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_owned();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            if name.eq_ignore_ascii_case("content-length") {
                length = value.trim().parse().unwrap_or(0);
            }
        }
    }
    // Alertmanager's payloads are a few kilobytes; a larger claim is not read whole.
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body)?;
    let mut writer = stream;
    writer.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")?;
    let Ok(json) = serde_json::from_slice::<Value>(&body) else {
        return Ok(());
    };
    let mut kept = kept.lock().unwrap();
    for alert in json["alerts"].as_array().into_iter().flatten() {
        if kept.len() < MAX_KEPT {
            kept.push(Notified {
                path: path.clone(),
                alert: alert.clone(),
            });
        }
    }
    Ok(())
}

/// Rewrites every `for: <duration>` of a rules file to `for: 5s`.
pub fn shorten_for(rules: &str) -> String {
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

/// Debian's Alertmanager with the shipped `alertmanager.yml`, every receiver's URL pointed at
/// `webhook` and its waits shortened to seconds (as tests/e2e_alerting.rs does); files in `dir`.
/// Returns the process and its address once it is ready.
pub fn alertmanager(dir: &Path, webhook: &Webhook) -> (Process, String) {
    let shipped = std::fs::read_to_string(config_dir().join("alertmanager/alertmanager.yml"))
        .expect("collector-config/alertmanager/alertmanager.yml");
    let mut config = shipped.replace(
        "http://alert-sink.example",
        &format!("http://{}", webhook.addr),
    );
    for (from, to) in [
        ("group_wait: 30s", "group_wait: 1s"),
        ("group_wait: 10s", "group_wait: 1s"),
        ("group_interval: 5m", "group_interval: 2s"),
    ] {
        assert!(
            config.contains(from),
            "alertmanager.yml no longer has {from}"
        );
        config = config.replace(from, to);
    }
    let path = dir.join("alertmanager.yml");
    std::fs::write(&path, config).unwrap();
    // Debian names the binary prometheus-alertmanager.
    let binary = ["prometheus-alertmanager", "alertmanager"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok())
        .expect("alertmanager (apt-get install prometheus-alertmanager)");
    let addr = free_addr();
    let mut cmd = Command::new(binary);
    cmd.arg(format!("--config.file={}", path.display()))
        .arg(format!(
            "--storage.path={}",
            dir.join("alertmanager-data").display()
        ))
        .arg(format!("--web.listen-address={addr}"))
        .arg("--cluster.listen-address=");
    let mut process = Process::spawn("alertmanager", cmd, dir);
    process.wait_ready(&format!("http://{addr}/-/ready"), Duration::from_secs(60));
    (process, addr)
}
