//! The operator's instruments: alerts raised, requests shed.

use opentelemetry::metrics::{Counter, Meter};

use super::names;

/// Created once per registry.
#[derive(Clone, Debug)]
pub(crate) struct OperatorInstruments {
    /// `tenant.alerts`, by tenant, tier and rule: one per alert that fires.
    pub(crate) alerts: Counter<u64>,
    /// `tenant.requests.shed`, by tenant and reason.
    pub(crate) shed: Counter<u64>,
    /// `tenant.requests.rejected`, by reason (there is no tenant to label them with).
    pub(crate) rejected: Counter<u64>,
    /// `tenant.limits.fallbacks`, by reason: decisions of shared limits made without the store.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) limit_fallbacks: Counter<u64>,
}

impl OperatorInstruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        OperatorInstruments {
            alerts: meter
                .u64_counter(names::TENANT_ALERTS)
                .with_unit("{alert}")
                .with_description("Alerts that fired, by tenant, tier and rule.")
                .build(),
            shed: meter
                .u64_counter(names::TENANT_REQUESTS_SHED)
                .with_unit("{request}")
                .with_description(
                    "Requests refused by per-tenant protection, by tenant and reason.",
                )
                .build(),
            rejected: meter
                .u64_counter(names::TENANT_REQUESTS_REJECTED)
                .with_unit("{request}")
                .with_description("Requests refused for want of a usable tenant id, by reason.")
                .build(),
            limit_fallbacks: meter
                .u64_counter(names::TENANT_LIMITS_FALLBACKS)
                .with_unit("{decision}")
                .with_description(
                    "Decisions of limits shared by all replicas made without the shared store \
                     (it was down, slow or not yet connected), by reason.",
                )
                .build(),
        }
    }
}
