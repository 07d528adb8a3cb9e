//! The layer, its builder and the service it makes.

use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::{Request, Response};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tower_layer::Layer;
use tower_service::Service;

use super::body::{ClientBody, ClientFuture};
use super::call::Call;
use super::config::{Config, Tracer};
use crate::instruments::scope;
use crate::registry::TenantRegistry;

/// A tower [`Layer`] for HTTP and gRPC clients: each outgoing request gets a CLIENT span (child
/// of the current span, so of the server span of the request it is made for), `traceparent`
/// and `baggage` from that span, `tenant.id`, and a duration in `http.client.request.duration`
/// (gRPC: `rpc.client.call.duration`) labelled by tenant, under the registry's cap.
///
/// The span follows the HTTP client conventions (`{method}`, `http.request.method`,
/// `server.address`, `server.port`, `url.full` without credentials and query,
/// `http.response.status_code`, `error.type` for 4xx, 5xx and transport errors) or, for gRPC,
/// the RPC ones (named `package.Service/Method`, `rpc.system.name`, `rpc.method`,
/// `rpc.response.status_code`). It ends with the response body.
///
/// ```
/// use tenant_otel::ClientLayer;
/// use tower::{service_fn, ServiceBuilder, ServiceExt};
///
/// # async fn demo() {
/// let client = ServiceBuilder::new()
///     .layer(ClientLayer::new())
///     .service(service_fn(|req: http::Request<String>| async move {
///         assert!(req.headers().contains_key("traceparent"));
///         Ok::<_, std::convert::Infallible>(http::Response::new(String::new()))
///     }));
/// let _ = client.oneshot(http::Request::new(String::new())).await;
/// # }
/// ```
///
/// [`Telemetry::client_layer`](crate::Telemetry::client_layer) gives one wired to the providers
/// and registry of [`init`](fn@crate::init).
#[derive(Clone, Debug)]
#[must_use]
pub struct ClientLayer {
    pub(super) config: Arc<Config>,
}

impl ClientLayer {
    /// With the global tracer provider, and the process-wide [`TenantRegistry::global`].
    pub fn new() -> Self {
        ClientLayer::builder().build()
    }

    /// A builder to give the tracer provider and registry.
    pub fn builder() -> ClientLayerBuilder {
        ClientLayerBuilder::default()
    }
}

impl Default for ClientLayer {
    fn default() -> Self {
        ClientLayer::new()
    }
}

/// Builds a [`ClientLayer`].
#[derive(Debug, Default)]
#[must_use]
pub struct ClientLayerBuilder {
    tracer_provider: Option<SdkTracerProvider>,
    registry: Option<TenantRegistry>,
}

impl ClientLayerBuilder {
    /// Start client spans with this provider (default: the global one).
    pub fn tracer_provider(mut self, provider: &SdkTracerProvider) -> Self {
        self.tracer_provider = Some(provider.clone());
        self
    }

    /// Record durations into this registry's meter, with its cap on tenant labels (default: the
    /// process-wide [`TenantRegistry::global`], which default-built server layers share). Give
    /// the server layer's registry when it has one of its own, so one cap bounds both.
    pub fn registry(mut self, registry: TenantRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Builds the layer.
    pub fn build(self) -> ClientLayer {
        let tracer = match self.tracer_provider {
            Some(p) => Tracer::Sdk(p.tracer_with_scope(scope())),
            None => Tracer::Global(opentelemetry::global::tracer_with_scope(scope())),
        };
        ClientLayer {
            config: Arc::new(Config {
                tracer,
                registry: self.registry.unwrap_or_else(TenantRegistry::global),
            }),
        }
    }
}

impl<S> Layer<S> for ClientLayer {
    type Service = ClientService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ClientService {
            inner,
            config: Arc::clone(&self.config),
        }
    }
}

/// The service made by [`ClientLayer`].
#[derive(Clone)]
pub struct ClientService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S: std::fmt::Debug> std::fmt::Debug for ClientService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for ClientService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<ClientBody<ResBody>>;
    type Error = S::Error;
    type Future = ClientFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let (method, uri) = (req.method().clone(), req.uri().clone());
        let call = Call::start(&self.config, &method, &uri, req.headers_mut());
        let future = {
            let _attached = call.context().clone().attach();
            self.inner.call(req)
        };
        ClientFuture::new(future, call)
    }
}
