//! The in-process view over HTTP: `/tenants` and `/tenants/{id}` as JSON.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::http::{header, HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::registry::TenantRegistry;

/// An axum router serving the in-process view as JSON: `GET /tenants` (a
/// [`PlatformView`](crate::view::PlatformView)), `GET /tenants/{id}` (a
/// [`TenantView`](crate::view::TenantView), or 404), and `GET /tenants/costs` (a
/// [`CostsView`](crate::view::CostsView); CSV with `?format=csv` or `Accept: text/csv`). A
/// tenant named `costs` is not reachable at `/tenants/{id}`; read it in `/tenants`. Mount it beside the application, outside the
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
        .route("/tenants/costs", get(costs))
        .route("/tenants/{id}", get(one))
        .with_state(registry)
}

async fn all(State(registry): State<TenantRegistry>) -> Response {
    Json(registry.view()).into_response()
}

/// The chargeback table: JSON, or CSV for `?format=csv` or `Accept: text/csv`.
async fn costs(State(registry): State<TenantRegistry>, uri: Uri, headers: HeaderMap) -> Response {
    let view = registry.costs();
    let format = uri
        .query()
        .unwrap_or("")
        .split('&')
        .find_map(|pair| pair.strip_prefix("format="));
    let accepts_csv = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.trim().starts_with("text/csv")));
    if format == Some("csv") || (format.is_none() && accepts_csv) {
        (
            [(
                header::CONTENT_TYPE,
                "text/csv; charset=utf-8; header=present",
            )],
            view.to_csv(),
        )
            .into_response()
    } else {
        Json(view).into_response()
    }
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
