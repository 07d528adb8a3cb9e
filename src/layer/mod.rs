//! The server side: [`TenantLayer`] wraps any tower, axum or tonic service and, per request,
//! finds and validates the tenant, starts the server span, attaches the context with the
//! tenant's baggage, and records the request when its response body ends.
//!
//! - `builder`: [`TenantLayer`], [`TenantLayerBuilder`], [`MissingTenant`] and the
//!   configuration each request reads.
//! - `service`: [`TenantService`], the per-request work.
//! - `edge`: what is taken from the public: whose trace context is believed, which headers
//!   are captured.
//! - `span`: the server span and the handler's context.
//! - `inflight`: the record of a request in flight, ended exactly once.
//! - `future`, `body`: [`ResponseFuture`] and [`TenantBody`], which carry that record to the
//!   end of the response.
//! - `global` (feature `redis`): [`GlobalLimitLayer`], each tenant's rate across all
//!   replicas, decided in Redis.
//! - `extract` (feature `axum`): [`Tenant`](crate::Tenant) as an axum extractor.
//!
//! Whether a request failed is decided in one place for HTTP and gRPC, `classify`, which the
//! registry records by too.

mod body;
pub(crate) mod builder;
mod edge;
#[cfg(feature = "axum")]
mod extract;
mod future;
#[cfg(feature = "redis")]
mod global;
mod inflight;
mod service;
mod settings;
mod span;

pub use body::TenantBody;
pub use builder::MissingTenant;
pub use future::ResponseFuture;
#[cfg(feature = "redis")]
pub use global::{GlobalLimitFuture, GlobalLimitLayer, GlobalLimitService};
pub use service::TenantService;
pub use settings::Edge;

// At the crate root for users; here for the crate's own paths.
pub(crate) use builder::{TenantLayer, TenantLayerBuilder};
