//! What each tenant experiences, in process and with no collector: the per-tenant view beside
//! the platform aggregate that hides it, and the endpoints that serve it and the metrics.
//!
//! - [`TenantRegistry::view`](crate::TenantRegistry::view) and
//!   [`TenantRegistry::tenant_view`](crate::TenantRegistry::tenant_view) read a
//!   [`PlatformView`] or one [`TenantView`].
//! - [`TenantRegistry::costs`](crate::TenantRegistry::costs) reads the chargeback table, a
//!   [`CostsView`]: each tenant's LLM calls and their cost today and this month.
//! - `view_router` (feature `axum`) serves them as JSON at `/tenants` and `/tenants/{id}`, and
//!   the costs at `/tenants/costs` (JSON, or CSV).
//! - `prometheus_router` (feature `prometheus`) serves `/metrics` for a Prometheus that scrapes
//!   instead of receiving OTLP. OTLP (into the collector, or Prometheus 3's OTLP receiver) is the
//!   standard path; the pull endpoint is kept for setups without a collector, its crate
//!   (`opentelemetry-prometheus`) being marked discontinued upstream.

mod costs;
#[cfg(feature = "axum")]
mod http;
mod model;
#[cfg(feature = "prometheus")]
mod prometheus;

pub use costs::{Cost, CostsView, ModelUsage, PeriodCosts, TenantCosts};
#[cfg(feature = "axum")]
pub use http::view_router;
pub use model::{Aggregate, PlatformSummary, PlatformView, SloStatus, TenantView};
#[cfg(feature = "prometheus")]
pub use prometheus::{prometheus_response, prometheus_router};

pub use crate::stats::{StatsSnapshot, TraceRef, WindowSnapshot};
