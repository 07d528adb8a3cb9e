//! The OpenTelemetry instruments of the HTTP server side, with the names, units and buckets of
//! the telemetry contract.

use opentelemetry::metrics::{Counter, Histogram, Meter};

/// Instrument names, as in the telemetry contract.
pub mod names {
    /// Histogram, seconds: duration of HTTP server requests, to the end of the response body.
    pub const HTTP_SERVER_REQUEST_DURATION: &str = "http.server.request.duration";
    /// UpDownCounter: HTTP server requests in flight.
    pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http.server.active_requests";
    /// Counter: requests whose tenant was past the cardinality cap.
    pub const TENANT_CARDINALITY_OVERFLOW: &str = "tenant.cardinality.overflow";
    /// Counter: RAG queries finished, by `status`.
    pub const RAG_QUERIES: &str = "rag.queries";
    /// Histogram, seconds: RAG query duration, by `status`.
    pub const RAG_QUERY_DURATION: &str = "rag.query.duration";
    /// UpDownCounter: RAG queries in flight.
    pub const RAG_ACTIVE_QUERIES: &str = "rag.active_queries";
    /// Histogram: documents retrieved per query.
    pub const RAG_DOCS_RETRIEVED: &str = "rag.docs_retrieved";
    /// Counter: LLM tokens used.
    pub const RAG_LLM_TOKENS: &str = "rag.llm.tokens";
    /// Gauge, percent: quota usage by `resource_type`.
    pub const RAG_QUOTA_USAGE: &str = "rag.quota.usage";
    /// Gauge, value 1: tenant metadata (tier, region, name).
    pub const TENANT_INFO: &str = "tenant.info";
    /// Gauge: the tenant's error-budget burn rate over a window (`5m`, `1h`).
    pub const TENANT_SLA_BURN_RATE: &str = "tenant.sla.burn_rate";
    /// Gauge, fraction: the tenant's error budget left over the last hour.
    pub const TENANT_SLA_ERROR_BUDGET_REMAINING: &str = "tenant.sla.error_budget.remaining";
    /// Gauge, fraction: each tenant's share of the work in flight and of the busy time.
    pub const TENANT_RESOURCE_SHARE: &str = "tenant.resource.share";
}

/// Bucket boundaries in seconds for request durations (the HTTP semantic conventions' advice).
pub const DURATION_BUCKETS: [f64; 14] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
];

/// [`DURATION_BUCKETS`] extended for slow LLM calls, used by `rag.query.duration`.
pub const QUERY_DURATION_BUCKETS: [f64; 17] = [
    0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 15.0, 30.0,
    60.0,
];

/// The server-side HTTP instruments, created once per registry.
#[derive(Clone, Debug)]
pub(crate) struct HttpInstruments {
    pub(crate) duration: Histogram<f64>,
    pub(crate) overflow: Counter<u64>,
}

impl HttpInstruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        HttpInstruments {
            duration: meter
                .f64_histogram(names::HTTP_SERVER_REQUEST_DURATION)
                .with_unit("s")
                .with_description("Duration of HTTP server requests, to the end of the response body.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            overflow: meter
                .u64_counter(names::TENANT_CARDINALITY_OVERFLOW)
                .with_unit("{request}")
                .with_description(
                    "Requests whose tenant was past the cardinality cap and was labelled __overflow__.",
                )
                .build(),
        }
    }
}
