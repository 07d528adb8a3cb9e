//! What is kept in process about each tenant, as plain arithmetic: counts and latency
//! percentiles over a sliding window, the SLA's minute buckets and burn rates, and the shares of
//! the service each tenant holds.
//!
//! Nothing here knows OpenTelemetry or reads a clock: callers pass the time in (read from the one
//! [`Clock`]), so every figure can be tested at any instant. `TenantStats` is the part of a
//! tenant's registry entry that holds all of it for one tenant.

mod buckets;
mod clock;
mod latency;
mod objective;
mod share;
mod slo;
mod snapshot;
mod tenant;
mod traces;

pub use clock::Clock;
pub use objective::{InvalidObjective, LatencyObjective, Objective, Slo, MAX_COMPLIANCE_DAYS};
pub use slo::Sli;
pub use snapshot::{StatsSnapshot, WindowSnapshot};
pub use traces::TraceRef;
pub(crate) use traces::{Finished, RecentTraces, RefTime, TraceUrl};

pub(crate) use objective::SloPolicy;
pub(crate) use share::{noisy_neighbors, shares, NoisyRule};
pub(crate) use slo::{window, SloWindows, Window, WINDOWS};
pub(crate) use tenant::TenantStats;

/// Share of `total` that did not fail; 1 when nothing finished, so an idle tenant does not look
/// like a failing one.
pub(crate) fn success_rate(total: u64, failed: u64) -> f64 {
    if total == 0 {
        1.0
    } else {
        (total - failed.min(total)) as f64 / total as f64
    }
}

/// `sum / count`, or 0 when there is nothing to average.
pub(crate) fn mean(sum: f64, count: u64) -> f64 {
    if count == 0 {
        0.0
    } else {
        sum / count as f64
    }
}
