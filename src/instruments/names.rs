//! Instrument names, as in the telemetry contract: the one place each is written.

/// Histogram, seconds: duration of HTTP server requests, to the end of the response body.
pub const HTTP_SERVER_REQUEST_DURATION: &str = "http.server.request.duration";
/// Histogram, seconds: duration of gRPC server calls, to the end of the response.
pub const RPC_SERVER_CALL_DURATION: &str = "rpc.server.call.duration";
/// Histogram, seconds: duration of outgoing HTTP requests, to the end of the response body.
pub const HTTP_CLIENT_REQUEST_DURATION: &str = "http.client.request.duration";
/// Histogram, seconds: duration of outgoing gRPC calls, to the end of the response.
pub const RPC_CLIENT_CALL_DURATION: &str = "rpc.client.call.duration";
/// UpDownCounter: HTTP server requests in flight.
pub const HTTP_SERVER_ACTIVE_REQUESTS: &str = "http.server.active_requests";
/// Counter: HTTP requests whose tenant was past the cardinality cap (query and quota calls
/// past the cap are not counted here: the unit is requests).
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
/// Gauge, fraction: the tenant's error budget left over the compliance window (30 days by
/// default), per objective (`slo`).
pub const TENANT_SLA_ERROR_BUDGET_REMAINING: &str = "tenant.sla.error_budget.remaining";
/// Gauge, fraction: each tenant's share of the work in flight and of the busy time.
pub const TENANT_RESOURCE_SHARE: &str = "tenant.resource.share";
/// Counter: alerts that fired, by tenant, tier and rule (`alert`).
pub const TENANT_ALERTS: &str = "tenant.alerts";
/// Counter: requests shed by per-tenant protection, by tenant and `reason`.
pub const TENANT_REQUESTS_SHED: &str = "tenant.requests.shed";
/// Counter: decisions of limits shared by all replicas made without the shared store, by
/// `reason` (`timeout`, `unavailable`, `error`).
pub const TENANT_LIMITS_FALLBACKS: &str = "tenant.limits.fallbacks";
/// Counter: requests refused for want of a usable tenant id, by `reason` (`missing`,
/// `invalid`, `reserved`).
pub const TENANT_REQUESTS_REJECTED: &str = "tenant.requests.rejected";
/// Histogram, `{token}`: tokens per GenAI call, by `gen_ai.token.type` (`input`, `output`).
pub const GEN_AI_CLIENT_TOKEN_USAGE: &str = "gen_ai.client.token.usage";
/// Histogram, seconds: duration of GenAI calls.
pub const GEN_AI_CLIENT_OPERATION_DURATION: &str = "gen_ai.client.operation.duration";
/// Counter, `{token}`: input tokens of GenAI calls, in place of `gen_ai.client.token.usage`
/// under `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`.
pub const GEN_AI_INFERENCE_INPUT_TOKENS: &str = "gen_ai.client.inference.usage.input_tokens";
/// Counter, `{token}`: output tokens of GenAI calls, in place of `gen_ai.client.token.usage`
/// under `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`.
pub const GEN_AI_INFERENCE_OUTPUT_TOKENS: &str = "gen_ai.client.inference.usage.output_tokens";
/// Counter, whole minor units of the currency (`{USD_cent}`): what tenants cost, by
/// `cost.source` and model.
pub const TENANT_COST: &str = "tenant.cost";
