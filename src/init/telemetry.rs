//! [`Telemetry`]: what [`init`](fn@crate::init) sets up, the layer and registry wired to it, and
//! the shutdown that flushes it all.

use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::logs::SdkLoggerProvider;
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::trace::SdkTracerProvider;

use super::error::{ShutdownError, Signal};
use super::export::ExportRuntime;
use crate::alert::{AlertEngine, AlertTask};
use crate::client::ClientLayer;
use crate::layer::{TenantLayer, TenantLayerBuilder};
use crate::registry::TenantRegistry;

/// How long shutdown waits by default for pending telemetry to be delivered.
pub(super) const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(10);

/// The providers, the tenant registry and the subscriber set up by [`init`](fn@crate::init). Dropping it, or
/// [`shutdown`](Self::shutdown), flushes everything pending.
pub struct Telemetry {
    pub(super) tracer_provider: SdkTracerProvider,
    pub(super) meter_provider: SdkMeterProvider,
    pub(super) logger_provider: SdkLoggerProvider,
    pub(super) registry: TenantRegistry,
    pub(super) exporting: bool,
    /// Let go once everything is flushed.
    pub(super) export_runtime: Mutex<ExportRuntime>,
    pub(super) shutdown_timeout: Duration,
    #[cfg(feature = "prometheus")]
    pub(super) prometheus: Option<prometheus::Registry>,
    /// Reports the spans the batch queue dropped, while the providers live.
    pub(super) _span_drops: Option<opentelemetry::metrics::ObservableCounter<u64>>,
    pub(super) shut_down: AtomicBool,
    pub(super) alerts: AlertEngine,
    /// Stopped at shutdown.
    pub(super) alert_task: Mutex<Option<AlertTask>>,
}

impl Telemetry {
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

    /// A [`ClientLayer`] for the clients handlers call other services with: CLIENT spans on
    /// these providers, durations in this registry (under its cap).
    pub fn client_layer(&self) -> ClientLayer {
        ClientLayer::builder()
            .tracer_provider(&self.tracer_provider)
            .registry(self.registry.clone())
            .build()
    }

    /// The tenant registry: cap, in-process statistics, the query API's home.
    pub fn registry(&self) -> &TenantRegistry {
        &self.registry
    }

    /// The in-process alerts: subscribe to them, read what is firing, evaluate by hand.
    pub fn alerts(&self) -> &AlertEngine {
        &self.alerts
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

    /// The Prometheus registry behind the `/metrics` endpoint, when
    /// [`prometheus_endpoint`](crate::TelemetryBuilder::prometheus_endpoint) asked for one.
    #[cfg(feature = "prometheus")]
    pub fn prometheus_registry(&self) -> Option<&prometheus::Registry> {
        self.prometheus.as_ref()
    }

    /// Flushes every pending span, metric and log record and stops the exporters. Blocks until
    /// done, at most the shutdown timeout in all (10 s by default: inside Kubernetes' 30 s grace
    /// period); what could not be delivered by then is reported by signal, and its exporter is
    /// left to finish or give up in the background. A second call does nothing.
    pub fn shutdown(&self) -> Result<(), ShutdownError> {
        if self.shut_down.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // A last evaluation, so what fired in the final seconds is not lost with the process.
        if let Some(task) = self
            .alert_task
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
        {
            task.stop();
            self.alerts.evaluate();
        }
        let failures = self.shut_providers_down();
        // Everything is flushed: the export runtime can go.
        *self
            .export_runtime
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = ExportRuntime::default();
        ShutdownError::of(failures).map_or(Ok(()), Err)
    }
}

impl Telemetry {
    /// Shuts the three providers down at once, each on a thread of its own, and waits for them
    /// until the deadline: the SDK bounds some steps by timeouts of its own (the metric reader's
    /// final export), so waiting for each in turn could take several times the timeout.
    fn shut_providers_down(&self) -> Vec<(Signal, OTelSdkError)> {
        let timeout = self.shutdown_timeout;
        let deadline = Instant::now() + timeout;
        let (tx, rx) = std::sync::mpsc::channel();
        let jobs: [(Signal, Box<dyn FnOnce() -> OTelSdkResult + Send>); 3] = [
            (Signal::Traces, {
                let p = self.tracer_provider.clone();
                Box::new(move || p.shutdown_with_timeout(timeout))
            }),
            (Signal::Metrics, {
                let p = self.meter_provider.clone();
                Box::new(move || p.shutdown_with_timeout(timeout))
            }),
            (Signal::Logs, {
                let p = self.logger_provider.clone();
                Box::new(move || p.shutdown_with_timeout(timeout))
            }),
        ];
        for (signal, job) in jobs {
            let (tx, on_error) = (tx.clone(), tx.clone());
            let spawned = std::thread::Builder::new()
                .name("tenant-otel-shutdown".into())
                .spawn(move || {
                    let _ = tx.send((signal, job()));
                });
            if let Err(e) = spawned {
                // No thread to be had: report it rather than block without a bound.
                let _ = on_error.send((signal, Err(OTelSdkError::InternalFailure(e.to_string()))));
            }
        }
        drop(tx);
        let mut pending = vec![Signal::Traces, Signal::Metrics, Signal::Logs];
        let mut failures = Vec::new();
        while !pending.is_empty() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok((signal, result)) = rx.recv_timeout(left) else {
                break;
            };
            pending.retain(|s| *s != signal);
            if let Err(e) = result {
                failures.push((signal, e));
            }
        }
        failures.extend(
            pending
                .into_iter()
                .map(|signal| (signal, OTelSdkError::Timeout(timeout))),
        );
        failures
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
