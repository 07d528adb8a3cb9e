//! The Prometheus pull endpoint: `/metrics` in the text exposition format (feature
//! `prometheus`, off by default).
//!
//! The standard way into Prometheus is OTLP: the collector's Prometheus exporter, or
//! Prometheus 3's OTLP receiver (`--web.enable-otlp-receiver`, `/api/v1/otlp/v1/metrics`), both
//! fed by [`init`](fn@crate::init)'s exporter. This endpoint is kept for setups with neither.
//! Its crate, `opentelemetry-prometheus`, is marked discontinued upstream: it is pinned and
//! kept building, but new setups should prefer OTLP, and a later release may drop it.

use ::prometheus::{Encoder, Registry, TextEncoder};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

/// An axum router serving `GET /metrics` from `registry`, for a Prometheus that scrapes and has
/// no collector or OTLP receiver in front of it (see the [module](crate::view) on why OTLP is
/// the standard path). `registry` is usually
/// [`Telemetry::prometheus_registry`](crate::Telemetry::prometheus_registry). Mount it outside
/// the tenant layer (or [`exclude_path`](crate::TenantLayerBuilder::exclude_path) it) so scrapes
/// are not counted as tenant traffic.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use tower::ServiceExt;
///
/// let telemetry = tenant_otel::Telemetry::builder()
///     .prometheus_endpoint()
///     .without_tracing_subscriber()
///     .without_globals()
///     .init()?;
/// telemetry.registry().update_quota_usage("finance-team", "queries", 75.0)?;
/// let registry = telemetry.prometheus_registry().expect("asked for");
/// let app = tenant_otel::view::prometheus_router(registry.clone());
/// let response = app
///     .oneshot(http::Request::get("/metrics").body(axum::body::Body::empty())?)
///     .await?;
/// assert_eq!(response.status(), 200);
/// # Ok(())
/// # }
/// ```
pub fn prometheus_router(registry: Registry) -> Router {
    Router::new()
        .route("/metrics", get(scrape))
        .with_state(registry)
}

async fn scrape(axum::extract::State(registry): axum::extract::State<Registry>) -> Response {
    render(&registry)
}

/// Renders `registry` in the Prometheus text format as an HTTP response, for mounting in a
/// router of your own.
///
/// ```
/// let registry = prometheus::Registry::new();
/// let response = tenant_otel::view::prometheus_response(&registry);
/// assert_eq!(response.status(), 200);
/// ```
pub fn prometheus_response(registry: &Registry) -> Response {
    render(registry)
}

fn render(registry: &Registry) -> Response {
    let encoder = TextEncoder::new();
    let mut body = Vec::new();
    match encoder.encode(&registry.gather(), &mut body) {
        Ok(()) => (
            [(header::CONTENT_TYPE, encoder.format_type().to_owned())],
            body,
        )
            .into_response(),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding metrics failed: {e}"),
        )
            .into_response(),
    }
}
