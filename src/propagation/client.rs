//! The client side: passes the current trace and tenant on to downstream services.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::Request;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::Context;
use opentelemetry_http::HeaderInjector;
use tower_layer::Layer;
use tower_service::Service;

use super::inject_w3c;

/// A tower [`Layer`] for HTTP clients that injects the current context into each outgoing
/// request: `traceparent` (so the downstream server span joins this trace) and `baggage` (so it
/// sees the same `tenant.id`).
///
/// Use it on the client a handler calls other services with; inside a request served through
/// [`TenantLayer`](crate::TenantLayer) the current context is that request's.
///
/// ```
/// use tenant_otel::propagation::PropagateLayer;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # async fn demo() {
/// let client = ServiceBuilder::new()
///     .layer(PropagateLayer::new())
///     .service(service_fn(|req: http::Request<String>| async move {
///         Ok::<_, std::convert::Infallible>(req.headers().contains_key("baggage"))
///     }));
/// let _ = client.oneshot(http::Request::new(String::new())).await;
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct PropagateLayer {
    /// `None`: W3C trace context and baggage, written without the generic machinery.
    propagator: Option<Arc<dyn TextMapPropagator + Send + Sync>>,
}

impl PropagateLayer {
    /// W3C trace context and baggage.
    pub fn new() -> Self {
        PropagateLayer { propagator: None }
    }

    /// Inject with this propagator instead.
    pub fn with_propagator(propagator: impl TextMapPropagator + Send + Sync + 'static) -> Self {
        PropagateLayer {
            propagator: Some(Arc::new(propagator)),
        }
    }
}

impl Default for PropagateLayer {
    fn default() -> Self {
        PropagateLayer::new()
    }
}

impl std::fmt::Debug for PropagateLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PropagateLayer").finish_non_exhaustive()
    }
}

impl<S> Layer<S> for PropagateLayer {
    type Service = PropagateService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        PropagateService {
            inner,
            propagator: self.propagator.clone(),
        }
    }
}

/// The service made by [`PropagateLayer`].
#[derive(Clone)]
pub struct PropagateService<S> {
    inner: S,
    propagator: Option<Arc<dyn TextMapPropagator + Send + Sync>>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for PropagateService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PropagateService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, B> Service<Request<B>> for PropagateService<S>
where
    S: Service<Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        Context::map_current(|cx| match &self.propagator {
            Some(p) => p.inject_context(cx, &mut HeaderInjector(req.headers_mut())),
            None => inject_w3c(cx, req.headers_mut(), None),
        });
        self.inner.call(req)
    }
}
