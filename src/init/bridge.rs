//! The `tracing` bridge (feature `tracing-bridge`): `tracing` spans and events as OpenTelemetry
//! spans and log records, and the console subscriber [`init`](fn@crate::init) installs.

use opentelemetry::trace::TracerProvider as _;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer as _};

use super::quiet::OncePerMinute;
use super::telemetry::Telemetry;
use crate::instruments::scope;

impl Telemetry {
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
            .with_tracer(self.tracer_provider().tracer_with_scope(scope()))
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
            self.logger_provider(),
        )
        .with_filter(without_transport_noise())
    }
}

/// Installs the global subscriber: the console (unless `console` is false), spans and log
/// records. A subscriber set earlier (by the application or another test) wins; ours is then
/// simply not installed.
pub(super) fn install_subscriber(telemetry: &Telemetry, console: bool) {
    let console = console.then(|| {
        tracing_subscriber::fmt::layer()
            .with_filter(default_filter())
            .with_filter(OncePerMinute::default())
    });
    let _ = tracing_subscriber::registry()
        .with(console)
        .with(telemetry.tracing_layer())
        .with(telemetry.log_bridge())
        .try_init();
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
