//! Setting it all up: one call reads the standard `OTEL_*` variables, builds the three
//! providers with the tenant processors and the OTLP exporters, the registry, the W3C
//! propagator and a `tracing` subscriber, and returns the [`Telemetry`] guard that flushes
//! everything on shutdown.
//!
//! - [`init`] and [`TelemetryBuilder`]: the settings and the assembly.
//! - `export`: the OTLP target ([`Protocol`]), exporters and their runtime.
//! - `drops`: the spans the batch queue dropped, counted and exported.
//! - [`Telemetry`]: the guard, the layer and registry wired to it.
//! - [`InitError`], [`ShutdownError`]: what can go wrong, by [`Signal`].

#[cfg(feature = "tracing-bridge")]
mod bridge;
mod builder;
mod drops;
mod error;
mod export;
#[cfg(feature = "tracing-bridge")]
mod quiet;
#[cfg(feature = "signal")]
mod signal;
mod telemetry;

pub use builder::TelemetryBuilder;
pub use error::{InitError, ShutdownError, Signal};
pub use export::Protocol;
#[cfg(feature = "signal")]
pub use signal::shutdown_signal;
pub use telemetry::Telemetry;

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
