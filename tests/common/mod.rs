//! Shared set-up for the integration tests: a fake OTLP collector and telemetry wired to it.
#![allow(dead_code)]

use std::time::{Duration, Instant};

use fake_opentelemetry_collector::{ExportedLog, ExportedSpan, FakeCollectorServer};
use tenant_otel::init::Protocol;
use tenant_otel::Telemetry;
use tracing::subscriber::DefaultGuard;
use tracing_subscriber::layer::SubscriberExt;

pub struct Harness {
    pub collector: FakeCollectorServer,
    pub telemetry: Telemetry,
    _subscriber: DefaultGuard,
}

impl Harness {
    /// Telemetry exporting over gRPC to an in-process collector, with a `tracing` subscriber for
    /// this thread only (tests run side by side in one process).
    pub async fn start() -> Harness {
        Self::start_with(|b| b).await
    }

    pub async fn start_with(
        configure: impl FnOnce(tenant_otel::TelemetryBuilder) -> tenant_otel::TelemetryBuilder,
    ) -> Harness {
        let collector = FakeCollectorServer::start().await.expect("fake collector");
        let builder = Telemetry::builder()
            .service_name("test-service")
            .otlp_endpoint(collector.endpoint())
            .protocol(Protocol::Grpc)
            .without_tracing_subscriber()
            .without_globals();
        let telemetry = configure(builder).init().expect("telemetry");
        let subscriber = tracing_subscriber::registry()
            .with(telemetry.tracing_layer())
            .with(telemetry.log_bridge());
        let guard = tracing::subscriber::set_default(subscriber);
        Harness {
            collector,
            telemetry,
            _subscriber: guard,
        }
    }

    /// Flushes everything; the gRPC exporter needs the runtime to run meanwhile, so the blocking
    /// shutdown goes to another thread.
    pub async fn flush(&self) {
        let tracer = self.telemetry.tracer_provider().clone();
        let logger = self.telemetry.logger_provider().clone();
        tokio::task::spawn_blocking(move || {
            tracer.force_flush().expect("flush spans");
            logger.force_flush().expect("flush logs");
        })
        .await
        .unwrap();
    }

    /// Shuts telemetry down off the runtime thread: the in-process collector runs on this
    /// runtime and must keep answering while the exporters deliver their last batches.
    pub async fn finish(self) {
        let Harness {
            collector,
            telemetry,
            _subscriber,
        } = self;
        shutdown(telemetry).await;
        drop(collector);
    }

    /// Collects spans until `count` have arrived or `timeout` passed (the collector's channel
    /// holds only 64 at a time, so it is drained as it goes).
    pub async fn spans(&mut self, count: usize, timeout: Duration) -> Vec<ExportedSpan> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < count && Instant::now() < deadline {
            out.extend(
                self.collector
                    .exported_spans(1, Duration::from_millis(100))
                    .await,
            );
        }
        out
    }

    pub async fn logs(&mut self, count: usize, timeout: Duration) -> Vec<ExportedLog> {
        let deadline = Instant::now() + timeout;
        let mut out = Vec::new();
        while out.len() < count && Instant::now() < deadline {
            out.extend(
                self.collector
                    .exported_logs(1, Duration::from_millis(100))
                    .await,
            );
        }
        out
    }
}

/// Shuts the providers down off the runtime thread.
pub async fn shutdown(telemetry: Telemetry) {
    tokio::task::spawn_blocking(move || telemetry.shutdown().expect("clean shutdown"))
        .await
        .unwrap();
}

pub fn span_named<'a>(spans: &'a [ExportedSpan], name: &str) -> &'a ExportedSpan {
    spans.iter().find(|s| s.name == name).unwrap_or_else(|| {
        panic!(
            "no span named {name:?} among {:?}",
            spans.iter().map(|s| &s.name).collect::<Vec<_>>()
        )
    })
}

/// The plain value of an exported attribute (the fake collector keeps the protobuf's `Debug`
/// text, e.g. `Some(AnyValue { value: Some(StringValue("acme")) })`).
pub fn attr(attributes: &std::collections::BTreeMap<String, String>, key: &str) -> Option<String> {
    let raw = attributes.get(key)?;
    for (prefix, quoted) in [
        ("StringValue(\"", true),
        ("IntValue(", false),
        ("BoolValue(", false),
        ("DoubleValue(", false),
    ] {
        if let Some(start) = raw.find(prefix) {
            let rest = &raw[start + prefix.len()..];
            let end = if quoted {
                rest.find("\")")?
            } else {
                rest.find(')')?
            };
            return Some(rest[..end].to_owned());
        }
    }
    Some(raw.clone())
}

/// Spans and metrics kept in memory, and a registry recording into them: for tests that read
/// back exactly what was exported, without a collector.
pub struct Pipeline {
    pub spans: opentelemetry_sdk::trace::InMemorySpanExporter,
    pub tracer: opentelemetry_sdk::trace::SdkTracerProvider,
    pub metrics: opentelemetry_sdk::metrics::InMemoryMetricExporter,
    pub meter: opentelemetry_sdk::metrics::SdkMeterProvider,
    pub registry: tenant_otel::TenantRegistry,
}

pub fn pipeline() -> Pipeline {
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    let spans = InMemorySpanExporter::default();
    let tracer = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let metrics = InMemoryMetricExporter::default();
    let meter = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(metrics.clone()).build())
        .build();
    let registry = tenant_otel::TenantRegistry::builder()
        .meter_provider(&meter)
        .build();
    Pipeline {
        spans,
        tracer,
        metrics,
        meter,
        registry,
    }
}

/// A span attribute, as text.
pub fn span_attr(span: &opentelemetry_sdk::trace::SpanData, key: &str) -> Option<String> {
    span.attributes
        .iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.to_string())
}

/// Reads the finished spans until `done` holds for them (10 s at most) and returns them;
/// `flush` runs before each read, for exporters behind a batch processor. Spans end with their
/// response bodies, a moment after the client has read them: this waits for that moment
/// instead of guessing its length.
pub async fn spans_when(
    exporter: &opentelemetry_sdk::trace::InMemorySpanExporter,
    flush: impl Fn(),
    done: impl Fn(&[opentelemetry_sdk::trace::SpanData]) -> bool,
) -> Vec<opentelemetry_sdk::trace::SpanData> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        flush();
        let spans = exporter.get_finished_spans().unwrap();
        if done(&spans) || Instant::now() > deadline {
            return spans;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Spans of `kind` among `spans`.
pub fn count_kind(
    spans: &[opentelemetry_sdk::trace::SpanData],
    kind: opentelemetry::trace::SpanKind,
) -> usize {
    spans.iter().filter(|s| s.span_kind == kind).count()
}

/// Serves `app` on a loopback port the system picks (no port is guessed, so none can be taken
/// meanwhile) and returns its address.
pub async fn serve(app: axum::Router) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

/// `GET path` for `tenant` (`x-tenant-id`) through `app`, in process; asserts a 200 and returns
/// the body, read to its end (where the server span ends).
pub async fn get_ok(app: &axum::Router, path: &str, tenant: &str) -> String {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = http::Request::get(path)
        .header("x-tenant-id", tenant)
        .body(axum::body::Body::empty())
        .unwrap();
    let res = app.clone().oneshot(req).await.unwrap();
    assert_eq!(
        res.status(),
        http::StatusCode::OK,
        "GET {path} for {tenant}"
    );
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

/// The router of the export tests: `GET /work` answers `done`, behind `telemetry.layer()`.
pub fn work_app(telemetry: &Telemetry) -> axum::Router {
    axum::Router::new()
        .route("/work", axum::routing::get(|| async { "done" }))
        .layer(telemetry.layer())
}
