//! One call that sets up traces, metrics and logs from the standard `OTEL_*` variables.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{Instrument, SdkMeterProvider, Stream, Temporality};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer as _};

use crate::layer::{TenantLayer, TenantLayerBuilder};
use crate::log_processor::TenantLogProcessor;
use crate::registry::{TenantRegistry, DEFAULT_MAX_TENANTS};
use crate::span_processor::TenantSpanProcessor;
use crate::tenant::TenantId;

/// The gRPC exporter's runtime. Dropping a Tokio runtime blocks, which panics inside another
/// runtime (where `init` is usually called, and where an early `?` drops it): this one is let go
/// in the background instead, without waiting for idle connections to close.
#[cfg(feature = "otlp-grpc")]
struct ExportRuntime(Option<tokio::runtime::Runtime>);

#[cfg(feature = "otlp-grpc")]
impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// How long shutdown waits by default for pending telemetry to be delivered.
const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// OTLP over gRPC (port 4317 by convention).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318 by convention).
    HttpProtobuf,
}

impl Protocol {
    fn from_env() -> Result<Option<Protocol>, InitError> {
        match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL") {
            Err(_) => Ok(None),
            Ok(v) => match v.trim() {
                "grpc" => Ok(Some(Protocol::Grpc)),
                "http/protobuf" => Ok(Some(Protocol::HttpProtobuf)),
                other => Err(InitError(format!(
                    "OTEL_EXPORTER_OTLP_PROTOCOL={other:?} is not supported: use `grpc` or `http/protobuf`"
                ))),
            },
        }
    }
}

/// Why [`init`] failed: a bad setting, or an exporter that could not be built.
#[derive(Debug, Clone)]
pub struct InitError(String);

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for InitError {}

/// Sets up everything with the defaults and the standard variables: `OTEL_SERVICE_NAME`,
/// `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_EXPORTER_OTLP_ENDPOINT` (and the per-signal
/// `OTEL_EXPORTER_OTLP_{TRACES,METRICS,LOGS}_ENDPOINT`), `OTEL_EXPORTER_OTLP_PROTOCOL` (`grpc` or
/// `http/protobuf`, the default), `OTEL_METRIC_EXPORT_INTERVAL` (ms), `OTEL_TRACES_SAMPLER`.
///
/// With no endpoint set nothing goes over the network; spans, baggage, the in-process view and
/// the tenant on logs all still work. Keep the returned guard: dropping it, or
/// [`Telemetry::shutdown`], flushes every pending span, metric and log record. Export runs on
/// background threads of its own, so it works the same under any Tokio runtime flavour, or none.
///
/// ```
/// # #[tokio::main]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let telemetry = tenant_otel::init()?;
/// let app: axum::Router = axum::Router::new().layer(telemetry.layer());
/// # let _ = app;
/// telemetry.shutdown()?;
/// # Ok(())
/// # }
/// ```
pub fn init() -> Result<Telemetry, InitError> {
    Telemetry::builder().init()
}

/// Configures [`Telemetry`]; every setting left alone comes from the environment or a default.
#[derive(Debug, Clone)]
pub struct TelemetryBuilder {
    service_name: Option<String>,
    endpoint: Option<String>,
    protocol: Option<Protocol>,
    metric_interval: Option<Duration>,
    export_timeout: Option<Duration>,
    shutdown_timeout: Duration,
    temporality: Option<Temporality>,
    max_tenants: usize,
    allowlist: Option<Vec<TenantId>>,
    window: Option<Duration>,
    reclaim_after: Option<Duration>,
    objectives: Vec<(String, f64)>,
    install_subscriber: bool,
    console_logs: bool,
    set_globals: bool,
}

impl Default for TelemetryBuilder {
    fn default() -> Self {
        TelemetryBuilder {
            service_name: None,
            endpoint: None,
            protocol: None,
            metric_interval: None,
            export_timeout: None,
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
            temporality: None,
            max_tenants: DEFAULT_MAX_TENANTS,
            allowlist: None,
            window: None,
            reclaim_after: None,
            objectives: Vec::new(),
            install_subscriber: true,
            console_logs: true,
            set_globals: true,
        }
    }
}

impl TelemetryBuilder {
    /// `service.name` (default: `OTEL_SERVICE_NAME`, else the SDK's `unknown_service`).
    pub fn service_name(mut self, name: impl Into<String>) -> Self {
        self.service_name = Some(name.into());
        self
    }

    /// Export over OTLP to this base URL (e.g. `http://localhost:4317`), instead of
    /// `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// The OTLP transport, instead of `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn protocol(mut self, protocol: Protocol) -> Self {
        self.protocol = Some(protocol);
        self
    }

    /// How often metrics are exported, instead of `OTEL_METRIC_EXPORT_INTERVAL` (default 60 s).
    pub fn metric_export_interval(mut self, interval: Duration) -> Self {
        self.metric_interval = Some(interval);
        self
    }

    /// How long one export may take before it is abandoned, instead of
    /// `OTEL_EXPORTER_OTLP_TIMEOUT` (default 10 s). Bounds how long shutdown waits for a
    /// collector that accepts connections and never answers.
    pub fn export_timeout(mut self, timeout: Duration) -> Self {
        self.export_timeout = Some(timeout);
        self
    }

    /// How long [`Telemetry::shutdown`] waits for the last spans and logs to be delivered
    /// (default 30 s). The exporters' own timeout usually ends a hopeless export sooner.
    pub fn shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }

    /// Export metrics with delta temporality (default: cumulative, or
    /// `OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE`). Under delta, series of tenants
    /// that went quiet are not sent again and the SDK frees their slots.
    pub fn delta_temporality(mut self) -> Self {
        self.temporality = Some(Temporality::Delta);
        self
    }

    /// The cap on distinct tenant labels (default 1000).
    pub fn max_tenants(mut self, max: usize) -> Self {
        self.max_tenants = max;
        self
    }

    /// Only these tenants get their own label.
    pub fn allowlist<I: IntoIterator<Item = TenantId>>(mut self, tenants: I) -> Self {
        self.allowlist = Some(tenants.into_iter().collect());
        self
    }

    /// Let tenants that have been idle this long give their label slot back to new tenants, and
    /// export metrics with delta temporality so the SDK frees their series too (see
    /// [`TenantRegistryBuilder::reclaim_idle_after`](crate::TenantRegistryBuilder::reclaim_idle_after)).
    /// For long-lived processes whose tenants come and go.
    pub fn reclaim_idle_tenants_after(mut self, idle: Duration) -> Self {
        self.reclaim_after = Some(idle);
        self.temporality = Some(Temporality::Delta);
        self
    }

    /// The SLA objective of tenants of `tier` (see
    /// [`TenantRegistryBuilder::objective`](crate::TenantRegistryBuilder::objective)).
    pub fn objective(mut self, tier: &str, objective: f64) -> Self {
        self.objectives.push((tier.to_owned(), objective));
        self
    }

    /// The sliding window of the in-process view (default 60 s).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = Some(window);
        self
    }

    /// Don't install a global `tracing` subscriber (when the application has its own; add
    /// [`Telemetry::tracing_layer`] and [`Telemetry::log_bridge`] to it).
    pub fn without_tracing_subscriber(mut self) -> Self {
        self.install_subscriber = false;
        self
    }

    /// Don't print `tracing` events to stderr.
    pub fn without_console_logs(mut self) -> Self {
        self.console_logs = false;
        self
    }

    /// Don't install the providers and the W3C propagators as the OpenTelemetry globals.
    pub fn without_globals(mut self) -> Self {
        self.set_globals = false;
        self
    }

    /// Builds the providers, the registry and (unless turned off) the global subscriber.
    #[cfg_attr(
        not(any(feature = "otlp-grpc", feature = "otlp-http", feature = "prometheus")),
        allow(unused_mut)
    )]
    pub fn init(self) -> Result<Telemetry, InitError> {
        let mut resource = Resource::builder();
        if let Some(name) = &self.service_name {
            resource = resource.with_service_name(name.clone());
        }
        let resource = resource.build();

        let export = self.export_target()?;
        // The gRPC exporter's connection tasks live on the runtime current when it is built. On
        // the application's runtime they would stall whenever that runtime's thread blocks on
        // shutdown (always, on a current-thread runtime) and fail outside any runtime; a
        // one-thread runtime of its own makes init and shutdown work from anywhere.
        #[cfg(feature = "otlp-grpc")]
        let export_runtime = match &export {
            Some(target) if target.protocol == Protocol::Grpc => Some(ExportRuntime(Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("tenant-otel-export")
                    .enable_all()
                    .build()
                    .map_err(|e| InitError(format!("export runtime: {e}")))?,
            ))),
            _ => None,
        };
        #[cfg(feature = "otlp-grpc")]
        let entered = export_runtime
            .as_ref()
            .and_then(|rt| rt.0.as_ref())
            .map(|rt| rt.enter());

        let mut tracer_provider = SdkTracerProvider::builder()
            .with_resource(resource.clone())
            .with_span_processor(TenantSpanProcessor::new());
        let mut logger_provider = SdkLoggerProvider::builder()
            .with_resource(resource.clone())
            .with_log_processor(TenantLogProcessor::new());
        let cap = self.max_tenants;
        let mut meter_provider = SdkMeterProvider::builder()
            .with_resource(resource)
            .with_view(move |i: &Instrument| cardinality_view(i, cap));

        #[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
        if export.is_some() {
            return Err(InitError(
                "an OTLP endpoint is set, but this build has neither the `otlp-grpc` nor the `otlp-http` feature".into(),
            ));
        }
        #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
        if let Some(target) = &export {
            if target.traces {
                tracer_provider = tracer_provider.with_batch_exporter(target.spans()?);
            }
            if target.logs {
                logger_provider = logger_provider.with_batch_exporter(target.logs()?);
            }
            if target.metrics {
                let mut reader = opentelemetry_sdk::metrics::PeriodicReader::builder(
                    target.metrics(self.temporality)?,
                );
                if let Some(interval) = self.metric_interval {
                    reader = reader.with_interval(interval);
                }
                meter_provider = meter_provider.with_reader(reader.build());
            }
        }
        #[cfg(feature = "otlp-grpc")]
        drop(entered);
        #[cfg(feature = "prometheus")]
        let prometheus = {
            let registry = prometheus::Registry::new();
            let exporter = opentelemetry_prometheus::exporter()
                .with_registry(registry.clone())
                .build()
                .map_err(|e| InitError(format!("prometheus exporter: {e}")))?;
            meter_provider = meter_provider.with_reader(exporter);
            registry
        };

        let tracer_provider = tracer_provider.build();
        let meter_provider = meter_provider.build();
        let logger_provider = logger_provider.build();

        let mut registry = TenantRegistry::builder()
            .max_tenants(self.max_tenants)
            .meter_provider(&meter_provider);
        if let Some(window) = self.window {
            registry = registry.window(window);
        }
        if let Some(idle) = self.reclaim_after {
            registry = registry.reclaim_idle_after(idle);
        }
        for (tier, objective) in &self.objectives {
            registry = registry.objective(tier, *objective);
        }
        if let Some(allow) = self.allowlist {
            registry = registry.allowlist(allow);
        }
        let registry = registry.build();

        if self.set_globals {
            opentelemetry::global::set_tracer_provider(tracer_provider.clone());
            opentelemetry::global::set_meter_provider(meter_provider.clone());
            opentelemetry::global::set_text_map_propagator(
                opentelemetry::propagation::TextMapCompositePropagator::new(vec![
                    Box::new(opentelemetry_sdk::propagation::TraceContextPropagator::new()),
                    Box::new(opentelemetry_sdk::propagation::BaggagePropagator::new()),
                ]),
            );
        }

        let telemetry = Telemetry {
            tracer_provider,
            meter_provider,
            logger_provider,
            registry,
            exporting: export.is_some(),
            #[cfg(feature = "otlp-grpc")]
            export_runtime: std::sync::Mutex::new(export_runtime),
            shutdown_timeout: self.shutdown_timeout,
            #[cfg(feature = "prometheus")]
            prometheus,
            shut_down: AtomicBool::new(false),
        };

        if self.install_subscriber {
            let console = self
                .console_logs
                .then(|| tracing_subscriber::fmt::layer().with_filter(default_filter()));
            // A subscriber set earlier (by the application or another test) wins; ours is then
            // simply not installed.
            let _ = tracing_subscriber::registry()
                .with(console)
                .with(telemetry.tracing_layer())
                .with(telemetry.log_bridge())
                .try_init();
        }
        Ok(telemetry)
    }

    fn export_target(&self) -> Result<Option<ExportTarget>, InitError> {
        let env_protocol = Protocol::from_env()?;
        let set = |var: &str| std::env::var(var).is_ok_and(|s| !s.trim().is_empty());
        // One endpoint for all signals, or one per signal: only the signals given an endpoint
        // are exported, so setting the traces endpoint alone does not send metrics and logs to
        // a default address.
        let all = self.endpoint.is_some() || set("OTEL_EXPORTER_OTLP_ENDPOINT");
        let traces = all || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let metrics = all || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
        let logs = all || set("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT");
        if !(traces || metrics || logs) {
            return Ok(None);
        }
        Ok(Some(ExportTarget {
            traces,
            metrics,
            logs,
            endpoint: self.endpoint.clone(),
            timeout: self.export_timeout,
            protocol: self
                .protocol
                .or(env_protocol)
                .unwrap_or(Protocol::HttpProtobuf),
        }))
    }
}

/// `info` and above, minus the crates that export does its work with.
fn without_transport_noise() -> EnvFilter {
    [
        "opentelemetry",
        "opentelemetry_sdk",
        "opentelemetry_otlp",
        "hyper",
        "hyper_util",
        "h2",
        "tonic",
        "tower",
        "reqwest",
    ]
    .iter()
    .fold(EnvFilter::new("info"), |filter, target| {
        filter.add_directive(format!("{target}=off").parse().expect("static directive"))
    })
}

fn default_filter() -> EnvFilter {
    EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"))
}

/// Keeps the SDK's own series limit above what the tenant cap lets through, so the crate's cap
/// (which keeps real ids on spans and counts the overflow) acts first and the SDK's slower
/// `otel.metric.overflow` series never does.
fn cardinality_view(instrument: &Instrument, max_tenants: usize) -> Option<Stream> {
    if instrument.scope().name() != "tenant-otel" {
        return None;
    }
    // Per tenant: methods × statuses × routes for HTTP, a few combinations for the rest.
    let per_tenant = if instrument.name() == crate::metrics::names::HTTP_SERVER_REQUEST_DURATION {
        512
    } else {
        16
    };
    Stream::builder()
        .with_cardinality_limit((max_tenants + 2) * per_tenant)
        .build()
        .ok()
}

#[allow(dead_code)]
struct ExportTarget {
    traces: bool,
    metrics: bool,
    logs: bool,
    endpoint: Option<String>,
    timeout: Option<Duration>,
    protocol: Protocol,
}

#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
impl ExportTarget {
    /// The URL for one signal: gRPC takes the base URL, HTTP wants the signal's path.
    fn url(&self, signal: &str) -> Option<String> {
        self.endpoint.as_ref().map(|base| match self.protocol {
            Protocol::Grpc => base.clone(),
            Protocol::HttpProtobuf => format!("{}/v1/{signal}", base.trim_end_matches('/')),
        })
    }

    /// The endpoint and timeout, on any signal's exporter builder.
    fn configure<B: opentelemetry_otlp::WithExportConfig>(&self, builder: B, signal: &str) -> B {
        let mut builder = builder;
        if let Some(url) = self.url(signal) {
            builder = builder.with_endpoint(url);
        }
        if let Some(timeout) = self.timeout {
            builder = builder.with_timeout(timeout);
        }
        builder
    }

    fn spans(&self) -> Result<opentelemetry_otlp::SpanExporter, InitError> {
        use opentelemetry_otlp::SpanExporter;
        let built = match self.protocol {
            #[cfg(feature = "otlp-grpc")]
            Protocol::Grpc => self
                .configure(SpanExporter::builder().with_tonic(), "traces")
                .build(),
            #[cfg(feature = "otlp-http")]
            Protocol::HttpProtobuf => self
                .configure(SpanExporter::builder().with_http(), "traces")
                .build(),
            #[allow(unreachable_patterns)]
            other => return Err(feature_missing(other)),
        };
        built.map_err(|e| InitError(format!("span exporter: {e}")))
    }

    fn logs(&self) -> Result<opentelemetry_otlp::LogExporter, InitError> {
        use opentelemetry_otlp::LogExporter;
        let built = match self.protocol {
            #[cfg(feature = "otlp-grpc")]
            Protocol::Grpc => self
                .configure(LogExporter::builder().with_tonic(), "logs")
                .build(),
            #[cfg(feature = "otlp-http")]
            Protocol::HttpProtobuf => self
                .configure(LogExporter::builder().with_http(), "logs")
                .build(),
            #[allow(unreachable_patterns)]
            other => return Err(feature_missing(other)),
        };
        built.map_err(|e| InitError(format!("log exporter: {e}")))
    }

    fn metrics(
        &self,
        temporality: Option<Temporality>,
    ) -> Result<opentelemetry_otlp::MetricExporter, InitError> {
        use opentelemetry_otlp::MetricExporter;
        let builder = match temporality {
            Some(t) => MetricExporter::builder().with_temporality(t),
            None => MetricExporter::builder(),
        };
        let built = match self.protocol {
            #[cfg(feature = "otlp-grpc")]
            Protocol::Grpc => self.configure(builder.with_tonic(), "metrics").build(),
            #[cfg(feature = "otlp-http")]
            Protocol::HttpProtobuf => self.configure(builder.with_http(), "metrics").build(),
            #[allow(unreachable_patterns)]
            other => return Err(feature_missing(other)),
        };
        built.map_err(|e| InitError(format!("metric exporter: {e}")))
    }
}

#[allow(dead_code)]
fn feature_missing(protocol: Protocol) -> InitError {
    InitError(format!(
        "OTLP protocol {protocol:?} needs the crate feature `{}`",
        match protocol {
            Protocol::Grpc => "otlp-grpc",
            Protocol::HttpProtobuf => "otlp-http",
        }
    ))
}

/// The providers, the tenant registry and the subscriber set up by [`init`]. Dropping it, or
/// [`shutdown`](Self::shutdown), flushes everything pending.
pub struct Telemetry {
    tracer_provider: SdkTracerProvider,
    meter_provider: SdkMeterProvider,
    logger_provider: SdkLoggerProvider,
    registry: TenantRegistry,
    exporting: bool,
    #[cfg(feature = "otlp-grpc")]
    export_runtime: std::sync::Mutex<Option<ExportRuntime>>,
    shutdown_timeout: Duration,
    #[cfg(feature = "prometheus")]
    prometheus: prometheus::Registry,
    shut_down: AtomicBool,
}

impl Telemetry {
    /// A builder to change the defaults.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder::default()
    }

    /// A [`TenantLayer`] wired to these providers and this registry, with the layer's defaults.
    pub fn layer(&self) -> TenantLayer {
        self.layer_builder().build()
    }

    /// A [`TenantLayerBuilder`] wired to these providers and this registry, to change the
    /// tenant sources or the policy.
    pub fn layer_builder(&self) -> TenantLayerBuilder {
        TenantLayer::builder()
            .tracer_provider(&self.tracer_provider)
            .registry(self.registry.clone())
    }

    /// The tenant registry: cap, in-process statistics, the query API's home.
    pub fn registry(&self) -> &TenantRegistry {
        &self.registry
    }

    /// The tracer provider.
    pub fn tracer_provider(&self) -> &SdkTracerProvider {
        &self.tracer_provider
    }

    /// The meter provider.
    pub fn meter_provider(&self) -> &SdkMeterProvider {
        &self.meter_provider
    }

    /// The logger provider.
    pub fn logger_provider(&self) -> &SdkLoggerProvider {
        &self.logger_provider
    }

    /// True when an OTLP endpoint is configured.
    pub fn is_exporting(&self) -> bool {
        self.exporting
    }

    /// The Prometheus registry behind the `/metrics` endpoint.
    #[cfg(feature = "prometheus")]
    pub fn prometheus_registry(&self) -> &prometheus::Registry {
        &self.prometheus
    }

    /// A `tracing` layer that turns `tracing` spans (at `info` and above) into OpenTelemetry
    /// spans of this provider; spans made inside a request become children of its server span.
    /// The spans of the OpenTelemetry SDK and of the HTTP and gRPC transports are left out: the
    /// exporter uses those transports, and its own spans would otherwise be exported in turn,
    /// without end.
    pub fn tracing_layer<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        tracing_opentelemetry::layer()
            .with_tracer(self.tracer_provider.tracer("tenant-otel"))
            .with_filter(without_transport_noise())
    }

    /// A `tracing` layer that emits `tracing` events (at `info` and above) as OpenTelemetry log
    /// records of this provider, leaving out the SDK's and the transports' own events, so that
    /// exporting cannot feed on itself.
    pub fn log_bridge<S>(&self) -> impl tracing_subscriber::Layer<S>
    where
        S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
    {
        opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge::new(
            &self.logger_provider,
        )
        .with_filter(without_transport_noise())
    }

    /// Flushes every pending span, metric and log record and stops the exporters. Blocks until
    /// done, at most the shutdown timeout (30 s by default) per signal.
    pub fn shutdown(&self) -> Result<(), InitError> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        let mut errors = Vec::new();
        if let Err(e) = self
            .tracer_provider
            .shutdown_with_timeout(self.shutdown_timeout)
        {
            errors.push(format!("traces: {e}"));
        }
        if let Err(e) = self
            .meter_provider
            .shutdown_with_timeout(self.shutdown_timeout)
        {
            errors.push(format!("metrics: {e}"));
        }
        if let Err(e) = self
            .logger_provider
            .shutdown_with_timeout(self.shutdown_timeout)
        {
            errors.push(format!("logs: {e}"));
        }
        // Everything is flushed: the export runtime can go.
        #[cfg(feature = "otlp-grpc")]
        drop(
            self.export_runtime
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(),
        );
        if errors.is_empty() {
            Ok(())
        } else {
            Err(InitError(errors.join("; ")))
        }
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        let _ = self.shutdown();
    }
}

impl fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Telemetry")
            .field("exporting", &self.exporting)
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}
