//! A collector that is down or never answers costs telemetry, never a request.

use std::time::Duration;

use tenant_otel::init::{Protocol, Signal};
use tenant_otel::{InitError, Telemetry};

mod common;
mod processes;
use common::{get_ok, work_app};
use processes::Relay;

/// A port nothing listens on.
async fn closed_port() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A listener that accepts connections and never says a word.
async fn silent_listener() -> (String, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    (format!("http://{addr}"), task)
}

async fn serve_through(endpoint: String, protocol: Protocol) {
    let telemetry = Telemetry::builder()
        .otlp_endpoint(endpoint)
        .protocol(protocol)
        .metric_export_interval(Duration::from_millis(100))
        .export_timeout(Duration::from_millis(500))
        .shutdown_timeout(Duration::from_secs(2))
        .without_tracing_subscriber()
        .without_globals()
        .init()
        .expect("building exporters does not need the collector to be up");
    let app = work_app(&telemetry);
    for i in 0..200 {
        assert_eq!(get_ok(&app, "/work", &format!("t{}", i % 5)).await, "done");
        if i % 50 == 0 {
            // Let periodic metric exports and span batches hit the dead collector meanwhile.
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    }
    assert_eq!(telemetry.registry().request_stats("t0").unwrap().total, 40);
    // Shutdown comes back (each export is bounded by the timeout) and says that the metrics
    // could not be delivered. (The SDK's batch span processor logs a failed last export of
    // spans but reports its shutdown as done, so traces may or may not be named.)
    let err = shut_down(telemetry)
        .await
        .expect_err("nothing could be delivered");
    let failed: Vec<Signal> = err.failures().map(|(signal, _)| signal).collect();
    assert!(failed.contains(&Signal::Metrics), "{failed:?}: {err}");
    assert!(
        !failed.contains(&Signal::Logs),
        "no log record to deliver: {err}"
    );
    assert!(err.to_string().contains("metrics"), "{err}");
}

/// Shuts `telemetry` down off the runtime, failing the test (instead of hanging it) if that
/// takes far longer than the shutdown timeout the telemetry was built with (at most 5 s here).
async fn shut_down(telemetry: Telemetry) -> Result<(), tenant_otel::init::ShutdownError> {
    let shutdown = tokio::task::spawn_blocking(move || telemetry.shutdown());
    tokio::time::timeout(Duration::from_secs(30), shutdown)
        .await
        .expect("shutdown never came back")
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_grpc() {
    serve_through(closed_port().await, Protocol::Grpc).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_listening_http() {
    serve_through(closed_port().await, Protocol::HttpProtobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_answering_grpc() {
    let (endpoint, task) = silent_listener().await;
    serve_through(endpoint, Protocol::Grpc).await;
    task.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn never_answering_http() {
    let (endpoint, task) = silent_listener().await;
    serve_through(endpoint, Protocol::HttpProtobuf).await;
    task.abort();
}

#[tokio::test]
async fn a_bad_endpoint_is_an_error_not_a_panic() {
    let result = Telemetry::builder()
        .otlp_endpoint("http://bad host:4317")
        .protocol(Protocol::Grpc)
        .without_tracing_subscriber()
        .without_globals()
        .init();
    let err = result.expect_err("an endpoint that is not a URI");
    assert!(
        matches!(
            err,
            InitError::Exporter {
                signal: Signal::Traces,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("traces exporter"), "{err}");
    assert!(
        std::error::Error::source(&err).is_some(),
        "the exporter's own reason is kept"
    );
}

/// A writer for the `tracing` output of one test.
#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_port_of_the_other_protocol_is_named_with_the_variable_to_set() {
    for (endpoint, protocol, advice) in [
        (
            "http://127.0.0.1:4317",
            Protocol::HttpProtobuf,
            "OTEL_EXPORTER_OTLP_PROTOCOL=grpc",
        ),
        (
            "http://127.0.0.1:4318",
            Protocol::Grpc,
            "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
        ),
    ] {
        let out = Captured::default();
        let writer = out.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let telemetry = tracing::subscriber::with_default(subscriber, || {
            Telemetry::builder()
                .otlp_endpoint(endpoint)
                .protocol(protocol)
                .without_tracing_subscriber()
                .without_globals()
                .alerts(tenant_otel::alert::Alerts::default().manual())
                .shutdown_timeout(Duration::from_millis(200))
                .export_timeout(Duration::from_millis(200))
                .init()
                .unwrap()
        });
        let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
        assert!(text.contains("WARN"), "{text}");
        assert!(text.contains(advice), "{text}");
        drop(telemetry);
    }
    // The matching port says nothing.
    let out = Captured::default();
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || writer.clone())
        .finish();
    let telemetry = tracing::subscriber::with_default(subscriber, || {
        Telemetry::builder()
            .otlp_endpoint("http://127.0.0.1:4318")
            .protocol(Protocol::HttpProtobuf)
            .without_tracing_subscriber()
            .without_globals()
            .alerts(tenant_otel::alert::Alerts::default().manual())
            .shutdown_timeout(Duration::from_millis(200))
            .init()
            .unwrap()
    });
    assert!(!String::from_utf8(out.0.lock().unwrap().clone())
        .unwrap()
        .contains("OTEL_EXPORTER_OTLP_PROTOCOL"));
    drop(telemetry);
}

/// Shutdown against a collector that accepts and never answers ends within its timeout, for
/// both protocols, and says which signals it could not deliver.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_ends_within_its_timeout_against_a_black_hole() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let (endpoint, task) = silent_listener().await;
        let telemetry = Telemetry::builder()
            .otlp_endpoint(endpoint)
            .protocol(protocol)
            .shutdown_timeout(Duration::from_secs(1))
            .without_tracing_subscriber()
            .without_globals()
            .alerts(tenant_otel::alert::Alerts::default().manual())
            .init()
            .unwrap();
        get_ok(&work_app(&telemetry), "/work", "acme").await;
        let started = std::time::Instant::now();
        let result = shut_down(telemetry).await;
        let took = started.elapsed();
        println!("{protocol:?}: shutdown took {took:?}: {result:?}");
        assert!(took < Duration::from_millis(2500), "{protocol:?}: {took:?}");
        let err = result.expect_err("nothing could be delivered");
        assert!(err.failures().count() >= 1, "{err}");
        task.abort();
    }
}

/// The collector is down when the service starts and comes back later: requests are served
/// throughout, and spans made after it is back arrive.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_resumes_when_the_collector_comes_back() {
    let mut collector = fake_opentelemetry_collector::FakeCollectorServer::start()
        .await
        .unwrap();
    let relay = Relay::start(collector.address()).await;
    let telemetry = Telemetry::builder()
        .otlp_endpoint(relay.endpoint.clone())
        .protocol(Protocol::Grpc)
        .export_timeout(Duration::from_millis(500))
        .shutdown_timeout(Duration::from_secs(5))
        .without_tracing_subscriber()
        .without_globals()
        .alerts(tenant_otel::alert::Alerts::default().manual())
        .init()
        .unwrap();
    let app = work_app(&telemetry);
    for _ in 0..20 {
        get_ok(&app, "/work", "while-down").await;
    }
    // The batch goes out and fails against the dead address.
    let provider = telemetry.tracer_provider().clone();
    let _ = tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap();

    relay.set_up(true);
    for _ in 0..20 {
        get_ok(&app, "/work", "after-restart").await;
    }
    let provider = telemetry.tracer_provider().clone();
    let flushed = tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap();
    assert!(flushed.is_ok(), "{flushed:?}");
    let spans = collector.exported_spans(20, Duration::from_secs(10)).await;
    let after = spans
        .iter()
        .filter(|s| {
            s.attributes
                .get("tenant.id")
                .is_some_and(|v| v.contains("after-restart"))
        })
        .count();
    assert_eq!(after, 20, "{} spans arrived", spans.len());
    assert_eq!(
        telemetry
            .registry()
            .request_stats("while-down")
            .unwrap()
            .total,
        20
    );
    // The collector is back: the last spans and metrics are delivered.
    let shut = shut_down(telemetry).await;
    assert!(shut.is_ok(), "{shut:?}");
}

/// A collector that takes 5 s to answer: requests are served meanwhile, the data still
/// arrives, and a shutdown with less time than that ends within its timeout and says so.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_collector_slows_no_request_and_shutdown_keeps_its_timeout() {
    let mut collector = fake_opentelemetry_collector::FakeCollectorServer::start()
        .await
        .unwrap();
    let relay = Relay::start_with_delay(collector.address(), Duration::from_secs(5)).await;
    relay.set_up(true);
    let telemetry = Telemetry::builder()
        .otlp_endpoint(relay.endpoint.clone())
        .protocol(Protocol::Grpc)
        .export_timeout(Duration::from_secs(10))
        .shutdown_timeout(Duration::from_secs(2))
        .without_tracing_subscriber()
        .without_globals()
        .alerts(tenant_otel::alert::Alerts::default().manual())
        .init()
        .unwrap();
    let app = work_app(&telemetry);
    for _ in 0..50 {
        get_ok(&app, "/work", "patient").await;
    }
    // The batch reaches the collector once the connection gets through, 5 s later (the
    // flush itself gives up waiting first: the SDK waits 5 s).
    let provider = telemetry.tracer_provider().clone();
    let _ = tokio::task::spawn_blocking(move || provider.force_flush())
        .await
        .unwrap();
    let spans = collector.exported_spans(50, Duration::from_secs(15)).await;
    assert_eq!(spans.len(), 50);
    assert_eq!(
        telemetry.registry().request_stats("patient").unwrap().total,
        50
    );
    let started = std::time::Instant::now();
    // Delivered or not depends on whether the exporter's connection is still the one that
    // got through; either way shutdown keeps its 2 s timeout.
    let _delivered_or_not = shut_down(telemetry).await;
    let took = started.elapsed();
    assert!(took < Duration::from_millis(3500), "shutdown took {took:?}");
}
