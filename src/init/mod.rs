//! Setting it all up: one call reads the standard `OTEL_*` variables, builds the three
//! providers with the tenant processors and the OTLP exporters, the registry, the W3C
//! propagator and a `tracing` subscriber, and returns the [`Telemetry`](crate::Telemetry)
//! guard that flushes everything on shutdown.
//!
//! The files read top-down, each using only those above it:
//! - `protocol`: the OTLP transport ([`Protocol`]).
//! - `error`: what can go wrong ([`InitError`](crate::InitError), [`ShutdownError`]), by
//!   [`Signal`].
//! - `export`: the OTLP target from the settings and the variables, the exporters and their
//!   runtime.
//! - `drops`: the spans the batch queue dropped, counted and exported.
//! - `telemetry`: the [`Telemetry`](crate::Telemetry) guard, the layer and registry wired to it.
//! - `quiet`, `bridge` (feature `tracing-bridge`): the `tracing` layers and the subscriber.
//! - `resource`: `service.instance.id` beside what the SDK detects, so replicas never collide.
//! - `builder`: [`init`](fn@crate::init) and [`TelemetryBuilder`](crate::TelemetryBuilder), the
//!   settings and the assembly of all the above.
//! - `signal` (feature `signal`): [`shutdown_signal`](crate::shutdown_signal).

#[cfg(feature = "tracing-bridge")]
mod bridge;
pub(crate) mod builder;
mod drops;
pub(crate) mod error;
mod export;
mod protocol;
#[cfg(feature = "tracing-bridge")]
mod quiet;
mod resource;
#[cfg(feature = "signal")]
pub(crate) mod signal;
pub(crate) mod telemetry;

pub use error::{ShutdownError, Signal};
pub use protocol::Protocol;
