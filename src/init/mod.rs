//! Setting it all up: one call reads the standard `OTEL_*` variables, builds the three
//! providers with the tenant processors and the OTLP exporters, the registry, the W3C
//! propagator and a `tracing` subscriber, and returns the [`Telemetry`](crate::Telemetry) guard that flushes
//! everything on shutdown.
//!
//! - [`init`](fn@crate::init) and [`TelemetryBuilder`](crate::TelemetryBuilder): the settings and the assembly.
//! - `export`: the OTLP target ([`Protocol`]), exporters and their runtime.
//! - `drops`: the spans the batch queue dropped, counted and exported.
//! - [`Telemetry`](crate::Telemetry): the guard, the layer and registry wired to it.
//! - [`InitError`](crate::InitError), [`ShutdownError`]: what can go wrong, by [`Signal`].

#[cfg(feature = "tracing-bridge")]
mod bridge;
pub(crate) mod builder;
mod drops;
pub(crate) mod error;
mod export;
#[cfg(feature = "tracing-bridge")]
mod quiet;
#[cfg(feature = "signal")]
pub(crate) mod signal;
pub(crate) mod telemetry;

pub use error::{ShutdownError, Signal};
pub use export::Protocol;
