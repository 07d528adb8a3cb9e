//! [`Tenant`] as an axum extractor.

use axum::extract::FromRequestParts;
use http::request::Parts;
use http::StatusCode;

use crate::registry::Tenant;

/// The tenant [`TenantLayer`](crate::TenantLayer) found for the request (see
/// [`Tenant::current`]).
///
/// ```
/// use axum::{routing::get, Router};
/// use tenant_otel::{Tenant, TenantLayer};
///
/// async fn orders(tenant: Tenant) -> String {
///     format!("orders of {}", tenant.id())
/// }
///
/// let app: Router = Router::new()
///     .route("/orders", get(orders))
///     .layer(TenantLayer::new());
/// # let _ = app;
/// ```
impl<S: Send + Sync> FromRequestParts<S> for Tenant {
    /// 500: a handler asked for the tenant on a route the layer does not wrap, a wiring mistake
    /// rather than the client's.
    type Rejection = (StatusCode, &'static str);

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let in_extensions = || parts.extensions.get::<Tenant>().cloned();
        Tenant::current().or_else(in_extensions).ok_or((
            StatusCode::INTERNAL_SERVER_ERROR,
            "no tenant on this request: is the route wrapped by TenantLayer?",
        ))
    }
}
