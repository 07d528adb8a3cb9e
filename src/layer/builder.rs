//! [`TenantLayer`], its builder, and the configuration every request reads.

use std::fmt;
use std::sync::Arc;

use opentelemetry::global::BoxedTracer;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::{SpanBuilder, TraceContextExt, TracerProvider as _};
use opentelemetry::Context;
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};

use super::edge::{captured, Captured, Trust};
use super::settings::Edge;
use crate::instruments::scope;
use crate::propagation::{setting_tenant_itself, W3c};
use crate::protect::Protection;
use crate::registry::{Shared, TenantRegistry};
use crate::tenant::TenantSource;

/// What the layer does with a request whose tenant is missing or invalid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum MissingTenant {
    /// Answer `400 Bad Request` (gRPC: `INVALID_ARGUMENT`) with a message naming the expected
    /// source, without calling the inner service. The default.
    #[default]
    Reject,
    /// Serve the request as tenant `__unknown__`.
    Unknown,
}

/// A tower [`Layer`](tower_layer::Layer) that finds each request's tenant, validates it, and
/// puts it on the request's trace, baggage and metrics. See [`TenantService`](crate::layer::TenantService)
/// for what happens per request.
///
/// Wraps an axum `Router` (`Router::layer`), a `tower::ServiceBuilder` stack, or a tonic server
/// (`Server::builder().layer(...)`).
///
/// ```
/// use axum::{routing::get, Router};
/// use tenant_otel::{TenantLayer, TenantSource};
///
/// let app: Router = Router::new()
///     .route("/orders/{id}", get(|| async { "ok" }))
///     .layer(
///         TenantLayer::builder()
///             .source(TenantSource::header("x-tenant-id"))
///             .exclude_path("/health")
///             .build(),
///     );
/// # let _ = app;
/// ```
#[derive(Clone)]
#[must_use]
pub struct TenantLayer {
    pub(super) config: Arc<Config>,
}

pub(super) struct Config {
    pub(super) sources: Vec<TenantSource>,
    pub(super) missing: MissingTenant,
    pub(super) excluded: Vec<Box<str>>,
    pub(super) registry: TenantRegistry,
    /// The registry's clock, instruments and route table, prepared once.
    pub(super) shared: Arc<Shared>,
    pub(super) tracer: Tracer,
    pub(super) propagator: Arc<dyn TextMapPropagator + Send + Sync>,
    pub(super) propagate_inbound_baggage: bool,
    /// `url.scheme` of requests whose URI has none (HTTP/1.1).
    pub(super) url_scheme: &'static str,
    /// W3C trace context and baggage, the default: lets the common case skip building a
    /// baggage map per request.
    pub(super) standard_propagation: bool,
    /// How the missing-tenant message names the sources, built once.
    pub(super) expected: String,
    pub(super) protection: Option<Protection>,
    pub(super) json_errors: bool,
    pub(super) tenant_in_extensions: bool,
    pub(super) trust: Trust,
    pub(super) capture_request: Option<Arc<[Captured]>>,
    pub(super) capture_response: Option<Arc<[Captured]>>,
}

/// The tracer spans are started with: the SDK's own when a provider was given, which saves a
/// dynamic dispatch and a box per span, else the global one as it was when the layer was built.
pub(super) enum Tracer {
    Sdk(SdkTracer),
    Global(BoxedTracer),
    /// No server spans: the tenant still goes into baggage, metrics and the in-process view.
    Disabled,
}

impl Tracer {
    /// Starts the server span as a child of the caller's context `parent` (which the sampler
    /// sees) and returns `handler` with it: one context per request, no intermediate one.
    pub(super) fn start(
        &self,
        builder: SpanBuilder,
        parent: &Context,
        handler: &Context,
    ) -> Context {
        setting_tenant_itself(|| match self {
            Tracer::Sdk(t) => handler.with_span(builder.start_with_context(t, parent)),
            Tracer::Global(t) => handler.with_span(builder.start_with_context(t, parent)),
            Tracer::Disabled => handler.clone(),
        })
    }

    pub(super) fn is_disabled(&self) -> bool {
        matches!(self, Tracer::Disabled)
    }
}

impl TenantLayer {
    /// A layer with the defaults: the tenant from header `x-tenant-id`, else from the
    /// `tenant.id` entry of the caller's W3C baggage (what [`ClientLayer`](crate::ClientLayer)
    /// sends), requests without one rejected, the global tracer and meter providers, W3C trace
    /// context and baggage.
    pub fn new() -> Self {
        TenantLayer::builder().build()
    }

    /// A builder to change the defaults.
    pub fn builder() -> TenantLayerBuilder {
        TenantLayerBuilder::default()
    }

    /// The registry the layer records into (for the in-process view and the query API).
    pub fn registry(&self) -> &TenantRegistry {
        &self.config.registry
    }
}

impl Default for TenantLayer {
    fn default() -> Self {
        TenantLayer::new()
    }
}

impl fmt::Debug for TenantLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantLayer")
            .field("sources", &self.config.sources)
            .field("missing", &self.config.missing)
            .field("excluded", &self.config.excluded)
            .field("registry", &self.config.registry)
            .finish()
    }
}

/// Builds a [`TenantLayer`].
#[derive(Default)]
#[must_use]
pub struct TenantLayerBuilder {
    sources: Vec<TenantSource>,
    missing: MissingTenant,
    excluded: Vec<Box<str>>,
    registry: Option<TenantRegistry>,
    tracer: Option<Tracer>,
    propagator: Option<Arc<dyn TextMapPropagator + Send + Sync>>,
    edge: Edge,
    protection: Option<Protection>,
    json_errors: bool,
    tenant_in_extensions: bool,
}

impl TenantLayerBuilder {
    /// Adds a source to the chain; the first source that finds a value decides. With no source
    /// given, the chain is header `x-tenant-id`, then the caller's baggage entry `tenant.id`
    /// (left out with [`Edge::public`] or [`Edge::drop_inbound_baggage`]; with
    /// [`Edge::trust_if`], read only from the callers it trusts).
    pub fn source(mut self, source: TenantSource) -> Self {
        self.sources.push(source);
        self
    }

    /// What to do with requests without a valid tenant (default: reject with 400).
    pub fn on_missing(mut self, missing: MissingTenant) -> Self {
        self.missing = missing;
        self
    }

    /// Serve requests without a valid tenant as `__unknown__` instead of rejecting them.
    pub fn allow_missing(self) -> Self {
        self.on_missing(MissingTenant::Unknown)
    }

    /// Requests to exactly this path pass through untouched: no tenant, span or metrics
    /// (for `/health`, `/metrics` and the like).
    pub fn exclude_path(mut self, path: &str) -> Self {
        self.excluded.push(path.into());
        self
    }

    /// Record into this registry (default: the process-wide [`TenantRegistry::global`], shared
    /// by every layer and client layer built without one, so one cap bounds them all). Share
    /// one registry between layers, the query API and the in-process view.
    pub fn registry(mut self, registry: TenantRegistry) -> Self {
        self.registry = Some(registry);
        self
    }

    /// Start spans with this provider instead of the global one.
    pub fn tracer_provider(mut self, provider: &SdkTracerProvider) -> Self {
        self.tracer = Some(Tracer::Sdk(provider.tracer_with_scope(scope())));
        self
    }

    /// Don't start server spans (metrics, baggage and the in-process view only): for services
    /// whose traces come from elsewhere, or to pay only for metrics.
    pub fn without_spans(mut self) -> Self {
        self.tracer = Some(Tracer::Disabled);
        self
    }

    /// Extract incoming context with this propagator (default: W3C trace context and baggage).
    pub fn propagator(
        mut self,
        propagator: impl TextMapPropagator + Send + Sync + 'static,
    ) -> Self {
        self.propagator = Some(Arc::new(propagator));
        self
    }

    /// What the layer takes from the public: whose trace context and baggage it believes,
    /// which headers go on the span, the scheme (default: [`Edge::internal`], every caller
    /// trusted, no headers captured but those the standard variables name).
    ///
    /// ```
    /// use tenant_otel::layer::Edge;
    /// use tenant_otel::TenantLayer;
    ///
    /// let layer = TenantLayer::builder().edge(Edge::public().https()).build();
    /// # let _ = layer;
    /// ```
    pub fn edge(mut self, edge: Edge) -> Self {
        self.edge = edge;
        self
    }

    /// Protect tenants from each other: per-tenant limits and fair-share shedding (see
    /// [`Protection`]). Default: none.
    pub fn protection(mut self, protection: Protection) -> Self {
        self.protection = Some(protection);
        self
    }

    /// Answer the requests the layer refuses itself (no usable tenant, shed) with a JSON body,
    /// `{"error": "..."}`, instead of plain text: for JSON APIs. gRPC callers get
    /// `grpc-message` either way.
    pub fn json_errors(mut self) -> Self {
        self.json_errors = true;
        self
    }

    /// Also put the [`Tenant`](crate::Tenant) in each request's extensions, for code that reads
    /// it from there. Off by default: the handler's context already holds it
    /// ([`Tenant::current`](crate::Tenant::current), the axum extractor), and an extension costs
    /// two allocations per request.
    pub fn tenant_in_extensions(mut self) -> Self {
        self.tenant_in_extensions = true;
        self
    }

    /// Builds the layer.
    pub fn build(self) -> TenantLayer {
        let edge = self.edge;
        let sources = if self.sources.is_empty() {
            let public = matches!(edge.trust, Some(Trust::None));
            TenantSource::default_chain(!public && !edge.drop_inbound_baggage)
        } else {
            self.sources
        };
        let expected = sources
            .iter()
            .map(TenantSource::describe)
            .collect::<Vec<_>>()
            .join(" or ");
        let tracer = self.tracer.unwrap_or_else(|| {
            Tracer::Global(opentelemetry::global::tracer_provider().tracer_with_scope(scope()))
        });
        let standard_propagation = self.propagator.is_none();
        let propagator = self.propagator.unwrap_or_else(|| Arc::new(W3c));
        let registry = self.registry.unwrap_or_else(TenantRegistry::global);
        TenantLayer {
            config: Arc::new(Config {
                sources,
                missing: self.missing,
                excluded: self.excluded,
                shared: Arc::clone(registry.shared()),
                registry,
                tracer,
                propagator,
                propagate_inbound_baggage: !edge.drop_inbound_baggage,
                url_scheme: if edge.https { "https" } else { "http" },
                standard_propagation,
                expected,
                protection: self.protection,
                json_errors: self.json_errors,
                tenant_in_extensions: self.tenant_in_extensions,
                trust: edge.trust.unwrap_or(Trust::All),
                capture_request: captured(
                    edge.capture_request.as_deref(),
                    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST",
                    "http.request.header.",
                    &edge.sensitive,
                ),
                capture_response: captured(
                    edge.capture_response.as_deref(),
                    "OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE",
                    "http.response.header.",
                    &edge.sensitive,
                ),
            }),
        }
    }
}

impl fmt::Debug for TenantLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantLayerBuilder")
            .field("sources", &self.sources)
            .field("missing", &self.missing)
            .field("excluded", &self.excluded)
            .field("edge", &self.edge)
            .finish_non_exhaustive()
    }
}
