//! Tenant-aware OpenTelemetry for multi-tenant tower, axum and tonic services.
//!
//! Global dashboards lie by averaging: when 49 tenants answer in 50 ms and one in 5 s, the
//! platform average reads about 150 ms and the failing tenant stays invisible. `tenant-otel`
//! makes every tenant visible:
//!
//! - [`TenantLayer`] finds each request's tenant (header, baggage, path, host, query, or your own
//!   function), validates it, and puts `tenant.id` on the server span, on every child span (via
//!   [`TenantSpanProcessor`](propagation::TenantSpanProcessor)), on log records ([`TenantLogProcessor`](propagation::TenantLogProcessor)), in W3C baggage for
//!   downstream calls, and on the HTTP and gRPC server metrics.
//! - [`ClientLayer`] gives each outgoing hyper, reqwest or tonic call a CLIENT span with the
//!   tenant, passes `traceparent` and `baggage` on, and times it per tenant.
//! - [`TenantSampler`](sampling::TenantSampler) samples traces fairly to small tenants (a floor, a ratio, a cap per
//!   tenant); the layer can treat callers' trace context as untrusted at a public edge.
//! - [`TenantRegistry`] keeps the number of tenant labels bounded (`__overflow__` past the cap)
//!   and holds everything prepared once per tenant, so a request costs one map lookup.
//!   Tenants that come and go can give their slot back under delta temporality.
//! - The query API ([`TenantRegistry::start_query`], [`TenantRegistry::track_query`],
//!   [`TenantRegistry::update_quota_usage`], [`TenantRegistry::register_tenant`]) records the
//!   `rag.*` instruments of a multi-tenant RAG platform through the same registry.
//! - The in-process view ([`TenantRegistry::view`]) gives each tenant's counts, success rate and
//!   latency percentiles beside the platform aggregate, with no collector; [`view::view_router`] and
//!   `view::prometheus_router` serve it and the metrics over HTTP (features `axum`, `prometheus`).
//! - Per-tenant SLOs ([`Slo`](slo::Slo)), in-process alerts ([`AlertEngine`](alert::AlertEngine)) and protection
//!   ([`Protection`](protect::Protection)) are the operator's half: a failing tenant is paged within a minute, a tenant
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
//!                ├─▶ slo          the objectives a tier promises (kept by stats)
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
mod registry;
pub mod sampling;
pub mod slo;
mod stats;
pub mod tenant;
pub mod view;

// The root holds what a user starts with; every other item has its one path in the module that
// owns it (`tenant_otel::alert::AlertEvent`, `tenant_otel::slo::Slo`, ...).
pub use client::layer::ClientLayer;
#[cfg(feature = "signal")]
pub use init::signal::shutdown_signal;
pub use init::{builder::init, builder::TelemetryBuilder, error::InitError, telemetry::Telemetry};
pub use layer::builder::{TenantLayer, TenantLayerBuilder};
pub use registry::{RegisterError, Tenant, TenantRegistry, TenantRegistryBuilder};
pub use stats::Clock;
pub use tenant::{context::current_tenant, id::TenantId, info::TenantInfo, source::TenantSource};

// The README's Rust examples are compiled and run as doc tests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
