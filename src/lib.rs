//! Tenant-aware OpenTelemetry for multi-tenant tower, axum and tonic services.
//!
//! Global dashboards lie by averaging: when 49 tenants answer in 50 ms and one in 5 s, the
//! platform average reads about 150 ms and the failing tenant stays invisible. `tenant-otel`
//! makes every tenant visible:
//!
//! - [`TenantLayer`] finds each request's tenant (header, baggage, path, host, query, or your own
//!   function), validates it, and puts `tenant.id` on the server span, on every child span (via
//!   [`TenantSpanProcessor`]), on log records ([`TenantLogProcessor`]), in W3C baggage for
//!   downstream calls ([`PropagateLayer`]), and on the HTTP server metrics.
//! - [`TenantRegistry`] keeps the number of tenant labels bounded (`__overflow__` past the cap)
//!   and holds everything prepared once per tenant, so a request costs one map lookup.
//!   Tenants that come and go can give their slot back under delta temporality.
//! - The query API ([`TenantRegistry::start_query`], [`TenantRegistry::track_query`],
//!   [`TenantRegistry::update_quota_usage`], [`TenantRegistry::register_tenant`]) records the
//!   `rag.*` instruments of a multi-tenant RAG platform through the same registry.
//! - The in-process view ([`TenantRegistry::view`]) gives each tenant's counts, success rate and
//!   latency percentiles beside the platform aggregate, with no collector; `view_router` and
//!   `prometheus_router` serve it and the metrics over HTTP (features `axum`, `prometheus`).
//! - [`init`] sets up OTLP export (gRPC or HTTP) from the standard `OTEL_*` variables; with no
//!   endpoint nothing leaves the process and the in-process view still works.
//!
//! The names users see (attribute keys, instruments, Prometheus series) are listed in the
//! README's telemetry contract.
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
//!     axum::serve(listener, app).await?;
//!     Ok(())
//! }
//! ```
#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod active;
mod body;
mod client;
mod context;
mod entry;
#[cfg(feature = "axum")]
mod extract;
mod future;
mod inflight;
mod init;
mod layer;
mod log_processor;
pub mod metrics;
#[cfg(feature = "prometheus")]
mod prometheus;
mod query;
mod registry;
mod semconv;
mod service;
mod share;
mod sla;
mod source;
mod span_processor;
mod stats;
mod tenant;
mod view;

pub use body::TenantBody;
pub use client::{PropagateLayer, PropagateService};
pub use context::{current_tenant, tenant_of};
pub use future::ResponseFuture;
pub use init::{init, InitError, Protocol, Telemetry, TelemetryBuilder};
pub use layer::{MissingTenant, TenantLayer, TenantLayerBuilder};
pub use log_processor::TenantLogProcessor;
#[cfg(feature = "prometheus")]
pub use prometheus::{prometheus_response, prometheus_router};
pub use query::{
    InvalidQueryStatus, QueryGuard, QueryOutcome, QueryStatus, QueryTenant, QuotaError,
    RegisterError, TenantInfo, MAX_QUOTA_RESOURCES, MAX_RESOURCE_TYPE_LEN, MAX_TENANT_LABEL_LEN,
    MAX_TENANT_NAME_LEN,
};
pub use registry::{TenantRegistry, TenantRegistryBuilder, DEFAULT_MAX_TENANTS, DEFAULT_WINDOW};
pub use service::TenantService;
pub use source::{RequestHead, TenantSource};
pub use span_processor::TenantSpanProcessor;
pub use stats::{StatsSnapshot, WindowSnapshot};
pub use tenant::{
    InvalidTenantId, Tenant, TenantId, MAX_TENANT_ID_LEN, OVERFLOW_TENANT, TENANT_ID_KEY,
    UNKNOWN_TENANT,
};
#[cfg(feature = "axum")]
pub use view::view_router;
pub use view::{Aggregate, PlatformSummary, PlatformView, TenantView};

// The README's Rust examples are compiled and run as doc tests, so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
