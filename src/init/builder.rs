//! [`TelemetryBuilder`]: the settings, and the one place the providers, the registry and the
//! subscriber are put together.

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::{Instrument, SdkMeterProvider, Stream, Temporality};
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider, SpanExporter};
use opentelemetry_sdk::Resource;

use super::drops::{self, Counted, CountingExporter, SpanCounts};
use super::error::InitError;
#[cfg(feature = "prometheus")]
use super::error::Signal;
use super::export::{ExportTarget, Pipelines};
use super::protocol::Protocol;
use super::telemetry::{Telemetry, DEFAULT_SHUTDOWN_TIMEOUT};
use crate::alert::{AlertEngine, Alerts};
use crate::instruments::{names, SCOPE_NAME};
use crate::propagation::{TenantLogProcessor, TenantSpanProcessor, W3c};
use crate::registry::{TenantRegistry, TenantRegistryBuilder};
use crate::sampling::TenantSampler;

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
    /// Everything the registry is built with but the meter provider.
    registry: TenantRegistryBuilder,
    install_subscriber: bool,
    console_logs: bool,
    set_globals: bool,
    alerts: Alerts,
    span_exporter: Option<SpanExporterSlot>,
    sampler: Option<TenantSampler>,
    /// Read only with the `prometheus` feature.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    prometheus: bool,
}

/// A span exporter given to the builder, made into its batch processor by the first `init()`.
#[derive(Clone)]
struct SpanExporterSlot(Arc<Mutex<Option<MakeProcessor>>>);

type MakeProcessor = Box<dyn FnOnce(Arc<SpanCounts>) -> BatchSpanProcessor + Send>;

impl std::fmt::Debug for SpanExporterSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SpanExporter")
    }
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
            registry: TenantRegistry::builder(),
            install_subscriber: true,
            console_logs: true,
            set_globals: true,
            alerts: Alerts::default(),
            span_exporter: None,
            sampler: None,
            prometheus: false,
        }
    }
}

impl Telemetry {
    /// A builder to change the defaults.
    pub fn builder() -> TelemetryBuilder {
        TelemetryBuilder::default()
    }
}

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

    /// Sends spans to `exporter` (batched, as OTLP spans are) instead of over OTLP: an
    /// exporter this crate does not wrap, stdout while developing, memory in tests. Metrics and
    /// logs still follow the OTLP settings. The first `init()` of this builder or its clones
    /// takes the exporter.
    ///
    /// ```
    /// use opentelemetry_sdk::trace::InMemorySpanExporter;
    ///
    /// let spans = InMemorySpanExporter::default();
    /// let telemetry = tenant_otel::Telemetry::builder()
    ///     .span_exporter(spans.clone())
    ///     .without_tracing_subscriber()
    ///     .without_globals()
    ///     .init()
    ///     .unwrap();
    /// # drop(telemetry);
    /// ```
    pub fn span_exporter<E: SpanExporter + 'static>(mut self, exporter: E) -> Self {
        let build = move |counts| {
            BatchSpanProcessor::builder(CountingExporter {
                inner: exporter,
                counts,
            })
            .build()
        };
        self.span_exporter = Some(SpanExporterSlot(Arc::new(Mutex::new(Some(Box::new(
            build,
        ))))));
        self
    }

    /// Samples traces with `sampler`, fair to small tenants (default: the SDK's, every trace
    /// unless the caller's says otherwise). The sampler follows this registry: the tenants it
    /// admits (up to its [`max_tenants`](crate::TenantRegistryBuilder::max_tenants)) each have
    /// a budget of their own, one it reclaims gives its budget back, and tier ratios read the
    /// tiers registered here. Metrics are never sampled.
    ///
    /// ```
    /// use tenant_otel::sampling::TenantSampler;
    ///
    /// let builder = tenant_otel::Telemetry::builder()
    ///     .sampler(TenantSampler::builder().floor(5).ratio(0.01).cap(600).build());
    /// # let _ = builder;
    /// ```
    pub fn sampler(mut self, sampler: TenantSampler) -> Self {
        self.sampler = Some(sampler);
        self
    }

    /// Keeps metrics for a Prometheus pull endpoint too
    /// ([`Telemetry::prometheus_registry`], [`prometheus_router`](crate::view::prometheus_router)).
    /// Off unless asked: a reader nobody scrapes only costs memory. Prometheus needs cumulative
    /// series, which are never forgotten, so it cannot be combined with
    /// a registry that [reclaims idle tenants](crate::TenantRegistryBuilder::reclaim_idle_after)
    /// (`init` says so);
    /// where tenants churn, scrape the collector's Prometheus exporter instead, which expires
    /// idle series.
    ///
    /// OTLP into the collector, or into Prometheus 3's OTLP receiver, is the standard path; this
    /// endpoint is kept for setups without a collector (`opentelemetry-prometheus` is marked
    /// discontinued upstream).
    #[cfg(feature = "prometheus")]
    pub fn prometheus_endpoint(mut self) -> Self {
        self.prometheus = true;
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

    /// How long [`Telemetry::shutdown`] waits in all for the last spans, metrics and logs to be
    /// delivered (default 10 s). The exporters' own timeout usually ends a hopeless export
    /// sooner.
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

    /// The tenant registry's settings: the cap, the allowlist, idle tenants giving their slot
    /// back, objectives per tier, the view's window, the clock (default:
    /// [`TenantRegistry::builder`] as it comes). `init` gives it its meter provider; a registry
    /// that reclaims idle tenants makes metrics export with delta temporality, so the SDK frees
    /// their series too.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_otel::slo::{Objective, Slo};
    /// use tenant_otel::{Telemetry, TenantRegistry};
    ///
    /// # fn main() -> Result<(), tenant_otel::slo::InvalidObjective> {
    /// let builder = Telemetry::builder().registry(
    ///     TenantRegistry::builder()
    ///         .max_tenants(500)
    ///         .slo("premium", Slo::availability(Objective::new(0.999)?))
    ///         .window(Duration::from_secs(120)),
    /// );
    /// # let _ = builder;
    /// # Ok(())
    /// # }
    /// ```
    pub fn registry(mut self, registry: TenantRegistryBuilder) -> Self {
        self.registry = registry;
        self
    }

    /// Don't install a global `tracing` subscriber (when the application has its own; add
    /// `Telemetry::tracing_layer` and `Telemetry::log_bridge` to it). Without the
    /// `tracing-bridge` feature none is installed anyway.
    pub fn without_tracing_subscriber(mut self) -> Self {
        self.install_subscriber = false;
        self
    }

    /// Don't print `tracing` events to stderr (feature `tracing-bridge`: without it nothing is
    /// printed anyway).
    pub fn without_console_logs(mut self) -> Self {
        self.console_logs = false;
        self
    }

    /// Don't install the providers and the W3C propagators as the OpenTelemetry globals.
    pub fn without_globals(mut self) -> Self {
        self.set_globals = false;
        self
    }

    /// The in-process alerts: their rules and how often they are judged (default:
    /// [`Alerts::default`], the default rules every 10 s).
    ///
    /// ```
    /// use tenant_otel::alert::Alerts;
    ///
    /// // Judged by the caller, on a clock of its own.
    /// let builder = tenant_otel::Telemetry::builder().alerts(Alerts::default().manual());
    /// # let _ = builder;
    /// ```
    pub fn alerts(mut self, alerts: Alerts) -> Self {
        self.alerts = alerts;
        self
    }

    /// Builds the providers, the registry and (unless turned off) the global subscriber.
    pub fn init(self) -> Result<Telemetry, InitError> {
        let registry = self.registry.clone();
        // Tenants that give their slot back need the SDK to forget their series too.
        let temporality = match registry.reclaims_idle() {
            true => Some(Temporality::Delta),
            false => self.temporality,
        };
        let mut resource = Resource::builder();
        if let Some(name) = &self.service_name {
            resource = resource.with_service_name(name.clone());
        }
        let resource = super::resource::with_instance_id(resource.build());
        let cap = registry.effective_max_tenants();
        let pipelines = Pipelines {
            tracer: SdkTracerProvider::builder().with_resource(resource.clone()),
            spans: None,
            span_counts: Arc::default(),
            logger: SdkLoggerProvider::builder()
                .with_resource(resource.clone())
                .with_log_processor(TenantLogProcessor::new()),
            meter: SdkMeterProvider::builder()
                .with_resource(resource)
                .with_view(move |i: &Instrument| cardinality_view(i, cap)),
        };

        let export =
            ExportTarget::from_env(self.endpoint.as_deref(), self.protocol, self.export_timeout)?;
        let (mut pipelines, export_runtime) = match &export {
            Some(target) => target.attach(pipelines, temporality, self.metric_interval)?,
            None => (pipelines, Default::default()),
        };
        let given = self.span_exporter.as_ref().and_then(|slot| {
            let mut slot = slot.0.lock().unwrap_or_else(|e| e.into_inner());
            slot.take()
        });
        if let Some(build) = given {
            pipelines.spans = Some(build(Arc::clone(&pipelines.span_counts)));
        }
        // The sampler follows the registry (its tenants, their tiers), which is built after the
        // providers.
        let registry_cell = Arc::new(std::sync::OnceLock::<TenantRegistry>::new());
        if let Some(sampler) = &self.sampler {
            let sampler = sampler.clone().following(Arc::clone(&registry_cell));
            pipelines.tracer = pipelines.tracer.with_sampler(sampler);
        }
        #[cfg(feature = "prometheus")]
        let (pipelines, prometheus) = match self.prometheus {
            true if self.registry.reclaims_idle() => {
                return Err(InitError::Conflict(
                    "a Prometheus pull endpoint keeps every tenant's series for good, so idle \
                     tenants cannot be reclaimed under it: drop `prometheus_endpoint()` (scrape \
                     the collector's Prometheus exporter, which expires idle series) or \
                     the registry's `reclaim_idle_after`",
                ))
            }
            true => {
                let (p, registry) = with_prometheus(pipelines)?;
                (p, Some(registry))
            }
            false => (pipelines, None),
        };

        let span_counts = pipelines
            .spans
            .is_some()
            .then(|| Arc::clone(&pipelines.span_counts));
        let tracer_provider = match pipelines.spans {
            Some(exporting) => pipelines
                .tracer
                .with_span_processor(TenantSpanProcessor::wrap(Counted {
                    inner: exporting,
                    counts: Arc::clone(&pipelines.span_counts),
                })),
            None => pipelines
                .tracer
                .with_span_processor(TenantSpanProcessor::new()),
        }
        .build();
        let meter_provider = pipelines.meter.build();
        let logger_provider = pipelines.logger.build();
        let registry = registry.meter_provider(&meter_provider).build();
        let _ = registry_cell.set(registry.clone());
        let span_drops = span_counts.map(|counts| {
            drops::observe(
                &opentelemetry::metrics::MeterProvider::meter_with_scope(
                    &meter_provider,
                    crate::instruments::scope(),
                ),
                counts,
            )
        });

        if self.set_globals {
            opentelemetry::global::set_tracer_provider(tracer_provider.clone());
            opentelemetry::global::set_meter_provider(meter_provider.clone());
            opentelemetry::global::set_text_map_propagator(W3c);
        }

        let alerts = AlertEngine::new(&registry, self.alerts.rules.clone());
        let alert_task = match self.alerts.every {
            Some(every) => Some(alerts.spawn(every).map_err(InitError::AlertTask)?),
            None => None,
        };
        let telemetry = Telemetry {
            alerts,
            alert_task: Mutex::new(alert_task),
            tracer_provider,
            meter_provider,
            logger_provider,
            registry,
            exporting: export.is_some() || self.span_exporter.is_some(),
            export_runtime: Mutex::new(export_runtime),
            shutdown_timeout: self.shutdown_timeout,
            #[cfg(feature = "prometheus")]
            prometheus,
            shut_down: AtomicBool::new(false),
            _span_drops: span_drops,
        };

        #[cfg(feature = "tracing-bridge")]
        if self.install_subscriber {
            super::bridge::install_subscriber(&telemetry, self.console_logs);
        }
        // Said once, after the subscriber is in place so it reaches the console and the logs.
        if let Some(warning) = export.as_ref().and_then(ExportTarget::mismatch) {
            tracing::warn!(target: "tenant_otel", "{warning}");
        }
        Ok(telemetry)
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
