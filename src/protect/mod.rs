//! Per-tenant protection: limits on what each tenant may use, so one tenant cannot take the
//! service from the others.
//!
//! - [`Protection`]: the policy ([`Limits`] per tier, a [`Rate`], a fair-share capacity),
//!   shared by the layers built with it and changeable at run time.
//! - The decision per request, in order: the tenant's concurrency limit, its token bucket
//!   (`governor`, on the crate's [`Clock`](crate::Clock)), and, when the service holds more than
//!   its capacity in flight, its fair share. Each protection keeps a lane per tenant (its
//!   requests in flight and prepared limits), tied to the tenant's registry entry: memory is
//!   bounded by the tenant cap and leaves with a reclaimed tenant. Tenants past the cap are
//!   limited on [`OVERFLOW_BUCKETS`] buckets keyed by their real id, not on one shared bucket.
//! - [`ShedReason`]: why a request was refused.
//! - [`GlobalLimits`] (feature `redis`): the tenants' rates shared by every replica, decided in
//!   Redis behind the local limit, with a deadline and a fallback.

//!
//! The files read top-down: `limits` (plain values, the token bucket), `lane` (per-tenant
//! state, the `TenantGuard` a registry entry holds), `guard` (the decision and its
//! permit), `policy` ([`Protection`], which ties them together), `global` (the shared rate in
//! Redis, for the layer above the registry).

#[cfg(feature = "redis")]
mod global;
mod guard;
mod lane;
mod limits;
mod policy;

#[cfg(feature = "redis")]
pub use global::{Fallback, GlobalLimits, InvalidRedisUrl, OnFailure};
pub use guard::ShedReason;
pub use lane::OVERFLOW_BUCKETS;
pub use limits::{Limits, Rate};
pub use policy::Protection;

#[cfg(feature = "redis")]
pub(crate) use global::{Store, Verdict};
pub(crate) use guard::Permit;
pub(crate) use lane::TenantGuard;
