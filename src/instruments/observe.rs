//! The observable instruments, read at each collection from what the registry keeps anyway, so
//! they cost the request path nothing; registered here, in one place.

use std::sync::Weak;

use opentelemetry::metrics::{Meter, ObservableGauge, ObservableUpDownCounter};
use opentelemetry::KeyValue;

use super::names;

/// A report of one observation: the value and its attributes.
pub(crate) type Report<'a, T> = &'a mut dyn FnMut(T, &[KeyValue]);

/// What the observable instruments read; the registry implements it. The instruments hold it
/// weakly: the meter provider outlives the registry otherwise, and a strong reference would keep
/// every tenant entry alive through the provider.
pub(crate) trait Observe: Send + Sync + 'static {
    /// `http.server.active_requests`, by tenant and method.
    fn active_requests(&self, report: Report<'_, i64>);
    /// `rag.active_queries`, by tenant.
    fn active_queries(&self, report: Report<'_, i64>);
    /// `tenant.info`, value 1, by tenant with its metadata.
    fn tenant_info(&self, report: Report<'_, u64>);
    /// `tenant.resource.share`, by tenant and resource.
    fn resource_share(&self, report: Report<'_, f64>);
    /// `tenant.sla.burn_rate`, by tenant, tier and window.
    fn sla_burn_rate(&self, report: Report<'_, f64>);
    /// `tenant.sla.error_budget.remaining`, by tenant and tier.
    fn sla_error_budget_remaining(&self, report: Report<'_, f64>);
}

/// The registered instruments: their callbacks live as long as this does.
#[derive(Debug)]
pub(crate) struct Observers {
    _active: [ObservableUpDownCounter<i64>; 2],
    _info: ObservableGauge<u64>,
    _gauges: [ObservableGauge<f64>; 3],
}

/// One observable instrument whose callback asks `source` through `method`.
macro_rules! observable {
    ($meter:ident . $kind:ident($name:expr), $unit:expr, $description:expr, $source:ident . $method:ident) => {{
        let source = Weak::clone(&$source);
        $meter
            .$kind($name)
            .with_unit($unit)
            .with_description($description)
            .with_callback(move |observer| {
                if let Some(source) = source.upgrade() {
                    source.$method(&mut |value, attributes| observer.observe(value, attributes));
                }
            })
            .build()
    }};
}

/// Registers every observable instrument of the contract on `meter`, reading from `source`.
pub(crate) fn register<T: Observe>(meter: &Meter, source: Weak<T>) -> Observers {
    Observers {
        _active: [
            observable!(
                meter.i64_observable_up_down_counter(names::HTTP_SERVER_ACTIVE_REQUESTS),
                "{request}",
                "Number of active HTTP server requests.",
                source.active_requests
            ),
            observable!(
                meter.i64_observable_up_down_counter(names::RAG_ACTIVE_QUERIES),
                "{query}",
                "RAG queries in flight.",
                source.active_queries
            ),
        ],
        // Observed rather than recorded once, so it is exported under delta temporality too and
        // always shows the current metadata.
        _info: observable!(
            meter.u64_observable_gauge(names::TENANT_INFO),
            "{tenant}",
            "Tenant metadata (name, tier, region); the value is always 1.",
            source.tenant_info
        ),
        _gauges: [
            observable!(
                meter.f64_observable_gauge(names::TENANT_RESOURCE_SHARE),
                "1",
                "Each tenant's fraction of the work in flight (resource=inflight) and of the busy time over the sliding window (resource=busy_time).",
                source.resource_share
            ),
            // Dimensionless: no unit, so the Prometheus name gains no suffix.
            observable!(
                meter.f64_observable_gauge(names::TENANT_SLA_BURN_RATE),
                "",
                "Error-budget burn rate of the tenant's HTTP requests over the window (1 spends the budget exactly over the SLO period).",
                source.sla_burn_rate
            ),
            observable!(
                meter.f64_observable_gauge(names::TENANT_SLA_ERROR_BUDGET_REMAINING),
                "1",
                "Fraction of the tenant's error budget left over the SLO compliance window (30 days unless configured), for the objective in slo.",
                source.sla_error_budget_remaining
            ),
        ],
    }
}
