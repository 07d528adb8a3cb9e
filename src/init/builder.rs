//! [`TelemetryBuilder`]: the settings, and the one place the providers, the registry and the
//! subscriber are put together.

use std::sync::atomic::AtomicBool;
use std::sync::Mutex;
use std::time::Duration;

use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{Instrument, SdkMeterProvider, Stream, Temporality};
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::Layer as _;

use super::error::InitError;
#[cfg(feature = "prometheus")]
use super::error::Signal;
use super::export::{ExportTarget, Pipelines, Protocol};
use super::telemetry::{default_filter, Telemetry, DEFAULT_SHUTDOWN_TIMEOUT};
use crate::instruments::{names, SCOPE_NAME};
use crate::propagation::{TenantLogProcessor, TenantSpanProcessor, W3c};
use crate::registry::{TenantRegistry, TenantRegistryBuilder, DEFAULT_MAX_TENANTS};
use crate::stats::Objective;
use crate::tenant::TenantId;

/// Configures [`Telemetry`]; every setting left alone comes from the environment or a default.
#[derive(Debug, Clone)]
#[must_use]
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
    objectives: Vec<(String, Objective)>,
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

    /// Only these tenants get their own label (an allowlist longer than the cap raises the
    /// cap to its length).
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
    pub fn objective(mut self, tier: &str, objective: Objective) -> Self {
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
    pub fn init(self) -> Result<Telemetry, InitError> {
        let registry = self.registry_builder();
        let mut resource = Resource::builder();
        if let Some(name) = &self.service_name {
            resource = resource.with_service_name(name.clone());
        }
        let resource = resource.build();
        let cap = registry.effective_max_tenants();
        let pipelines = Pipelines {
            tracer: SdkTracerProvider::builder()
                .with_resource(resource.clone())
                .with_span_processor(TenantSpanProcessor::new()),
            logger: SdkLoggerProvider::builder()
                .with_resource(resource.clone())
                .with_log_processor(TenantLogProcessor::new()),
            meter: SdkMeterProvider::builder()
                .with_resource(resource)
                .with_view(move |i: &Instrument| cardinality_view(i, cap)),
        };

        let export =
            ExportTarget::from_env(self.endpoint.as_deref(), self.protocol, self.export_timeout)?;
        let (pipelines, export_runtime) = match &export {
            Some(target) => target.attach(pipelines, self.temporality, self.metric_interval)?,
            None => (pipelines, Default::default()),
        };
        #[cfg(feature = "prometheus")]
        let (pipelines, prometheus) = with_prometheus(pipelines)?;

        let tracer_provider = pipelines.tracer.build();
        let meter_provider = pipelines.meter.build();
        let logger_provider = pipelines.logger.build();
        let registry = registry.meter_provider(&meter_provider).build();

        if self.set_globals {
            opentelemetry::global::set_tracer_provider(tracer_provider.clone());
            opentelemetry::global::set_meter_provider(meter_provider.clone());
            opentelemetry::global::set_text_map_propagator(W3c);
        }

        let telemetry = Telemetry {
            tracer_provider,
            meter_provider,
            logger_provider,
            registry,
            exporting: export.is_some(),
            export_runtime: Mutex::new(export_runtime),
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

    /// The registry's settings, all but the meter provider, which is built after them: its
    /// cardinality view needs the registry's cap.
    fn registry_builder(&self) -> TenantRegistryBuilder {
        let mut registry = TenantRegistry::builder().max_tenants(self.max_tenants);
        if let Some(window) = self.window {
            registry = registry.window(window);
        }
        if let Some(idle) = self.reclaim_after {
            registry = registry.reclaim_idle_after(idle);
        }
        for (tier, objective) in &self.objectives {
            registry = registry.objective(tier, *objective);
        }
        if let Some(allow) = &self.allowlist {
            registry = registry.allowlist(allow.iter().cloned());
        }
        registry
    }
}

/// Keeps the SDK's own series limit above what the tenant cap lets through, so the crate's cap
/// (which keeps real ids on spans and counts the overflow) acts first and the SDK's slower
/// `otel.metric.overflow` series never does.
fn cardinality_view(instrument: &Instrument, max_tenants: usize) -> Option<Stream> {
    if instrument.scope().name() != SCOPE_NAME {
        return None;
    }
    // Per tenant: methods × statuses × routes for HTTP, a few combinations for the rest.
    let per_tenant = if instrument.name() == names::HTTP_SERVER_REQUEST_DURATION {
        crate::registry::MAX_SERIES_PER_TENANT
    } else {
        16
    };
    Stream::builder()
        .with_cardinality_limit((max_tenants + 2) * per_tenant)
        .build()
        .ok()
}

/// A Prometheus reader beside the others, for the `/metrics` pull endpoint.
#[cfg(feature = "prometheus")]
fn with_prometheus(mut p: Pipelines) -> Result<(Pipelines, prometheus::Registry), InitError> {
    let registry = prometheus::Registry::new();
    let exporter = opentelemetry_prometheus::exporter()
        .with_registry(registry.clone())
        .build()
        .map_err(|e| InitError::Exporter {
            signal: Signal::Metrics,
            source: Box::new(e),
        })?;
    p.meter = p.meter.with_reader(exporter);
    Ok((p, registry))
}
