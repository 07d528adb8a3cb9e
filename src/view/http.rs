//! The in-process view over HTTP: `/tenants` and `/tenants/{id}` as JSON.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::registry::TenantRegistry;

/// An axum router serving the in-process view as JSON: `GET /tenants` (a
/// [`PlatformView`](crate::view::PlatformView)) and `GET /tenants/{id}` (a
/// [`TenantView`](crate::view::TenantView), or 404). Mount it beside the application, outside the
/// tenant layer, and keep it off public listeners: it lists every tenant.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() {
/// use tower::ServiceExt;
/// use tenant_otel::TenantRegistry;
/// use tenant_otel::query::QueryOutcome;
/// use tenant_otel::view::view_router;
///
/// let registry = TenantRegistry::builder().build();
/// registry.start_query("finance-team").unwrap().end(QueryOutcome::success());
/// let app = view_router(registry);
/// let response = app
///     .oneshot(http::Request::get("/tenants/finance-team").body(axum::body::Body::empty()).unwrap())
///     .await
///     .unwrap();
/// assert_eq!(response.status(), 200);
/// # }
/// ```
pub fn view_router(registry: TenantRegistry) -> Router {
    Router::new()
        .route("/tenants", get(all))
        .route("/tenants/{id}", get(one))
        .with_state(registry)
}

async fn all(State(registry): State<TenantRegistry>) -> Response {
    Json(registry.view()).into_response()
}

async fn one(State(registry): State<TenantRegistry>, Path(id): Path<String>) -> Response {
    match registry.tenant_view(&id) {
        Some(view) => Json(view).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            Json(serde_json::json!({ "error": "no such tenant" })),
        )
            .into_response(),
    }
}
