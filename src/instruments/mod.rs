//! The OpenTelemetry side of the telemetry contract: every instrument name, the attribute keys,
//! the bucket boundaries, and the instruments themselves.
//!
//! - [`names`]: the instrument names, each written once.
//! - [`DURATION_BUCKETS`], [`QUERY_DURATION_BUCKETS`]: histogram boundaries in seconds.
//! - The HTTP and query instruments are recorded through per-tenant bound series that the
//!   registry prepares once per tenant; the observable ones (in-flight counts, `tenant.info`,
//!   resource share, SLA gauges) are read from the registry at each collection.
//! - The per-tenant parts a registry entry holds for them: `ServerSeries` (requests in flight,
//!   bound duration histograms), `QueryPart` (`rag.*` series, quota gauges) and `InfoPart`
//!   (registered metadata, `tenant.info`).

pub(crate) mod genai;
mod http;
mod info;
pub mod names;
mod observe;
mod operator;
pub(crate) mod query;
pub(crate) mod semconv;
mod server;
pub(crate) mod spend;

use opentelemetry::InstrumentationScope;

pub(crate) use genai::{GenAiInstruments, GenAiPart};
pub(crate) use http::HttpInstruments;
pub(crate) use info::InfoPart;
pub(crate) use observe::{register as register_observers, Observe, Observers, Report};
pub(crate) use operator::OperatorInstruments;
pub(crate) use query::{QueryEnd, QueryInstruments, QueryPart, QuerySeries, TooManyResources};
pub(crate) use server::{Outcome, ServerSeries, MAX_SERIES_PER_TENANT};

/// Bucket boundaries in seconds for request durations (the HTTP semantic conventions' advice).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// [`DURATION_BUCKETS`] extended for slow LLM calls, used by `rag.query.duration`.
pub const QUERY_DURATION_BUCKETS: [f64; 17] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0,
    60.0,
];

/// The instrumentation scope of every span and instrument this crate makes.
pub(crate) const SCOPE_NAME: &str = "tenant-otel";

/// [`SCOPE_NAME`] with the crate's version.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder(SCOPE_NAME)
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}
