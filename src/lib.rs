//! Tenant-aware OpenTelemetry for multi-tenant tower, axum and tonic services.
//!
//! Global dashboards lie by averaging: when 49 tenants answer in 50 ms and one in 5 s, the
//! platform average reads about 150 ms and the failing tenant stays invisible. `tenant-otel`
//! makes every tenant visible:
//!
//! - [`TenantLayer`] finds each request's tenant (header, baggage, path, host, query, or your own
//!   function), validates it, and puts `tenant.id` on the server span, on every child span (via
//!   [`TenantSpanProcessor`]), on log records ([`TenantLogProcessor`]), in W3C baggage for
//!   downstream calls, and on the HTTP and gRPC server metrics.
//! - [`ClientLayer`] gives each outgoing hyper, reqwest or tonic call a CLIENT span with the
//!   tenant, passes `traceparent` and `baggage` on, and times it per tenant.
//! - [`TenantSampler`] samples traces fairly to small tenants (a floor, a ratio, a cap per
//!   tenant); the layer can treat callers' trace context as untrusted at a public edge.
//! - [`TenantRegistry`] keeps the number of tenant labels bounded (`__overflow__` past the cap)
//!   and holds everything prepared once per tenant, so a request costs one map lookup.
//!   Tenants that come and go can give their slot back under delta temporality.
//! - The query API ([`TenantRegistry::start_query`], [`TenantRegistry::track_query`],
//!   [`TenantRegistry::update_quota_usage`], [`TenantRegistry::register_tenant`]) records the
//!   `rag.*` instruments of a multi-tenant RAG platform through the same registry.
//! - The in-process view ([`TenantRegistry::view`]) gives each tenant's counts, success rate and
//!   latency percentiles beside the platform aggregate, with no collector; `view_router` and
//!   `prometheus_router` serve it and the metrics over HTTP (features `axum`, `prometheus`).
//! - Per-tenant SLOs ([`Slo`]), in-process alerts ([`AlertEngine`]) and protection
//!   ([`Protection`]) are the operator's half: a failing tenant is paged within a minute, a tenant
//!   hogging the service is named and kept from harming the others.
//! - [`init()`](fn@init) sets up OTLP export (gRPC or HTTP) from the standard `OTEL_*` variables; with no
//!   endpoint nothing leaves the process and the in-process view still works.
//!
//! # How a request flows through the crate
//!
//! Each module uses only the ones above it in this picture, never one below:
//!
//! ```text
//!  request ──▶ tenant          the id, its rules, where it comes from (header, baggage, ...)
//!                │
//!                ├─▶ classify     did it fail, and whose fault was it (HTTP and gRPC)
//!                ├─▶ stats        windows, percentiles, SLA buckets, shares: plain arithmetic
//!                ├─▶ instruments  contract names, keys, the OpenTelemetry instruments
//!                ├─▶ propagation  tenant onto child spans, log records, outgoing calls (W3C)
//!                ├─▶ protect      per-tenant limits and fair share
//!                ▼
//!             registry         one lookup: id ─▶ everything prepared for that tenant (capped)
//!                │
//!                ├─▶ sampling     fair trace budgets per tenant
//!                ├─▶ layer        the server span and metrics, HTTP and gRPC
//!                ├─▶ client       CLIENT spans and durations of outgoing calls
//!                ├─▶ query        the rag.* query API
//!                ├─▶ alert        SLO burn rates and thresholds judged every few seconds
//!                ▼
//!              view            per-tenant view beside the platform aggregate; JSON, /metrics
//!                │
//!                ▼
//!              init            providers, exporters, subscriber: the `Telemetry` guard
//! ```
//!
//! The names users see (attribute keys, instruments, Prometheus series) are listed in the
//! README's telemetry contract and in [`instruments::names`].
//!
//! ```no_run
//! use axum::{routing::get, Router};
//!
//! #[tokio::main]
//! async fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let telemetry = tenant_otel::init()?;
//!     let app = Router::new()
//!         .route("/hello", get(|| async { "hello" }))
//!         .layer(telemetry.layer());
//!     let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
//!     axum::serve(listener, app)
//!         .with_graceful_shutdown(tenant_otel::shutdown_signal())
//!         .await?;
//!     telemetry.shutdown()?; // flushes every pending span, metric and log record
//!     Ok(())
//! }
//! ```
#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    rust_2018_idioms
)]
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod alert;
mod classify;
pub mod client;
pub mod cost;
pub mod init;
pub mod instruments;
pub mod layer;
pub mod propagation;
pub mod protect;
pub mod query;
pub mod registry;
pub mod sampling;
mod stats;
pub mod tenant;
pub mod view;

pub use alert::{
    AlertEngine, AlertEvent, AlertKind, AlertRules, AlertState, AlertSubscription, AlertTask,
    Reading, Severity,
};
pub use client::{ClientLayer, ClientLayerBuilder, ClientService};
#[cfg(feature = "signal")]
pub use init::shutdown_signal;
pub use init::{init, InitError, Protocol, ShutdownError, Signal, Telemetry, TelemetryBuilder};
pub use layer::{
    MissingTenant, ResponseFuture, TenantBody, TenantLayer, TenantLayerBuilder, TenantService,
};
pub use propagation::{PropagateLayer, PropagateService, TenantLogProcessor, TenantSpanProcessor};
pub use protect::{Limits, Protection, Rate, ShedReason};
pub use query::{
    InvalidQueryStatus, QueryGuard, QueryOutcome, QueryStatus, QueryTenant, QuotaError,
    MAX_RESOURCE_TYPE_LEN,
};
pub use registry::{
    Clock, InvalidObjective, LatencyObjective, Objective, Slo, MAX_COMPLIANCE_DAYS,
};
pub use registry::{
    RegisterError, Tenant, TenantRegistry, TenantRegistryBuilder, DEFAULT_MAX_TENANTS,
    DEFAULT_WINDOW, MAX_QUOTA_RESOURCES,
};
pub use sampling::{TenantSampler, TenantSamplerBuilder};
pub use tenant::{
    current_tenant, tenant_of, InvalidTenantId, RequestHead, TenantId, TenantInfo, TenantSource,
    MAX_TENANT_ID_LEN, MAX_TENANT_LABEL_LEN, MAX_TENANT_NAME_LEN, OVERFLOW_TENANT, TENANT_ID_KEY,
    UNKNOWN_TENANT,
};
#[cfg(feature = "axum")]
pub use view::view_router;
#[cfg(feature = "prometheus")]
pub use view::{prometheus_response, prometheus_router};
pub use view::{
    Aggregate, PlatformSummary, PlatformView, SloStatus, StatsSnapshot, TenantView, WindowSnapshot,
};

// The README's Rust examples are compiled and run as doc tests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
