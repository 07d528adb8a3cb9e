//! [`TenantService`]: the per-request work of [`TenantLayer`](crate::TenantLayer).

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use http::{Request, Response};
use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::trace::TraceContextExt;
use opentelemetry::trace::{SpanBuilder, SpanKind};
use opentelemetry::{Context, KeyValue, StringValue};
use opentelemetry_http::HeaderExtractor;
use tower_service::Service;

use crate::body::TenantBody;
use crate::future::ResponseFuture;
use crate::inflight::{InFlight, Route};
use crate::layer::{Config, MissingTenant};
use crate::semconv;
use crate::source::RequestHead;
use crate::tenant::{validate_client_id, InvalidTenantId, Tenant, TENANT_ID_KEY};

/// The service made by [`TenantLayer`](crate::TenantLayer). For each request it:
///
/// 1. extracts the caller's trace context and baggage (W3C `traceparent`, `baggage`);
/// 2. finds the tenant through the source chain and validates it; a missing or invalid tenant is
///    rejected with 400 (or served as `__unknown__` if so configured);
/// 3. starts a server span (`{method} {route}`, `tenant.id`, the HTTP semantic conventions),
///    child of the caller's span;
/// 4. attaches a context with that span and baggage `tenant.id` while the inner service and the
///    response body run, and puts [`Tenant`] in the request extensions;
/// 5. ends the span and records duration and active requests when the response body ends, the
///    client goes away, or the inner service fails.
#[derive(Clone)]
pub struct TenantService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> TenantService<S> {
    pub(crate) fn new(inner: S, config: Arc<Config>) -> Self {
        TenantService { inner, config }
    }

    /// The wrapped service.
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// The wrapped service, mutably.
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.inner
    }

    /// Unwraps the inner service.
    pub fn into_inner(self) -> S {
        self.inner
    }
}

impl<S: std::fmt::Debug> std::fmt::Debug for TenantService<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

static TRACEPARENT: http::HeaderName = http::HeaderName::from_static("traceparent");
static BAGGAGE: http::HeaderName = http::HeaderName::from_static("baggage");

/// Why no tenant could be used.
pub(crate) enum Rejection {
    Missing,
    Invalid(String, InvalidTenantId),
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for TenantService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    ResBody: http_body::Body,
{
    type Response = Response<TenantBody<ResBody>>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future, S::Error>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        let path = req.uri().path();
        if config.excluded.iter().any(|p| **p == *path) {
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        let start = Instant::now();

        // The caller's context only: whatever is current on this thread is not this request's.
        // With the standard propagators and neither header present there is nothing to extract.
        let headers = req.headers();
        let parent = if config.standard_propagation
            && !headers.contains_key(&TRACEPARENT)
            && !headers.contains_key(&BAGGAGE)
        {
            Context::new()
        } else {
            config
                .propagator
                .extract_with_context(&Context::new(), &HeaderExtractor(headers))
        };
        let inbound = parent.baggage();

        let (found, source_is_baggage) = {
            let head = RequestHead {
                method: req.method(),
                uri: req.uri(),
                headers: req.headers(),
                baggage: inbound,
            };
            find_tenant(config, &head)
        };
        let (tenant, rejection) = match found {
            Ok(tenant) => (tenant, None),
            Err(rejection) => (config.registry.unknown(), Some(rejection)),
        };
        let rejection = rejection.filter(|_| config.missing == MissingTenant::Reject);

        let method = semconv::method_index(req.method());
        let route = Route::of(&req);
        // One lookup serves the span's shared `http.route` string and the metrics' series key.
        let known_route = route.as_deref().and_then(|r| config.registry.route(r));
        let handler_cx = handler_context(config, &parent, inbound, &tenant);
        let cx = if config.tracer.is_disabled() {
            handler_cx
        } else {
            let builder = server_span(
                config,
                &req,
                method,
                route
                    .as_deref()
                    .map(|r| (r, known_route.as_ref().map(|(_, shared)| shared))),
                &tenant,
                inbound,
                source_is_baggage,
            );
            config.tracer.start(builder, &handler_cx)
        };

        tenant.entry().request_started(method);
        let inflight = InFlight::new(
            cx,
            tenant.clone(),
            config.registry.clone(),
            method,
            route.map(|r| r.with_id(known_route.map(|(id, _)| id))),
            start,
            is_grpc(&req),
        );

        if let Some(rejection) = rejection {
            let grpc = is_grpc(&req);
            return ResponseFuture::rejected(inflight, rejection_message(config, &rejection), grpc);
        }

        req.extensions_mut().insert(tenant);
        let future = {
            let _attached = inflight.context().clone().attach();
            self.inner.call(req)
        };
        ResponseFuture::instrumented(future, inflight)
    }
}

/// Runs the source chain (the first source that finds a value decides, valid or not) and looks
/// the tenant up while the value is still borrowed from the request, so a known tenant costs no
/// allocation.
fn find_tenant(config: &Config, head: &RequestHead<'_>) -> (Result<Tenant, Rejection>, bool) {
    for source in &config.sources {
        if let Some(raw) = source.find(head) {
            let result = match validate_client_id(&raw) {
                Ok(id) => Ok(config.registry.resolve(id)),
                Err(e) => Err(Rejection::Invalid(source.describe(), e)),
            };
            return (result, source.is_baggage());
        }
    }
    (Err(Rejection::Missing), false)
}

/// The server span: named `{method} {route}`, with the HTTP semantic conventions' attributes and
/// `tenant.id` (the real id, also past the cardinality cap).
fn server_span<B>(
    config: &Config,
    req: &Request<B>,
    method: usize,
    route: Option<(&str, Option<&Arc<str>>)>,
    tenant: &Tenant,
    inbound: &Baggage,
    source_is_baggage: bool,
) -> SpanBuilder {
    let mut attributes = Vec::with_capacity(8);
    attributes.push(KeyValue::new(
        semconv::HTTP_REQUEST_METHOD,
        semconv::method_name(method),
    ));
    if method == semconv::METHOD_SLOTS - 1 {
        attributes.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD_ORIGINAL,
            truncate(req.method().as_str(), 64).to_owned(),
        ));
    }
    attributes.push(KeyValue::new(
        semconv::URL_PATH,
        req.uri().path().to_owned(),
    ));
    // HTTP/1.1 requests carry no scheme: the one the service is reached by is configuration.
    let scheme = match req.uri().scheme_str() {
        Some("https") => "https",
        Some("http") => "http",
        _ => config.url_scheme,
    };
    attributes.push(KeyValue::new(semconv::URL_SCHEME, scheme));
    if let Some(version) = semconv::protocol_version(req.version()) {
        attributes.push(KeyValue::new(semconv::NETWORK_PROTOCOL_VERSION, version));
    }
    if let Some((route, shared)) = route {
        let value = match shared {
            Some(shared) => StringValue::from(Arc::clone(shared)),
            None => StringValue::from(route.to_owned()),
        };
        attributes.push(KeyValue::new(semconv::HTTP_ROUTE, value));
    }
    attributes.push(KeyValue::new(semconv::TENANT_ID, tenant.id().to_value()));
    if let Some(claimed) = inbound.get(TENANT_ID_KEY) {
        if !source_is_baggage && claimed.as_str() != tenant.id().as_str() {
            // A caller claimed another tenant in baggage than the trusted source found:
            // recorded for audit, never believed.
            attributes.push(KeyValue::new(semconv::TENANT_BAGGAGE_MISMATCH, true));
            attributes.push(KeyValue::new(
                "tenant.baggage_claimed",
                truncate(claimed.as_str(), 64).to_owned(),
            ));
        }
    }
    // The conventions name a span of an unknown method `HTTP`, not `_OTHER`.
    let verb = if method == semconv::METHOD_SLOTS - 1 {
        "HTTP"
    } else {
        semconv::method_name(method)
    };
    let name: Cow<'static, str> = match route {
        Some((route, _)) => format!("{verb} {route}").into(),
        None => verb.into(),
    };
    SpanBuilder::from_name(name)
        .with_kind(SpanKind::Server)
        .with_attributes(attributes)
}

/// The context the handler runs in: the caller's span as parent, and baggage holding the
/// validated tenant. In the common case (standard propagation, no other baggage from the
/// caller) it is the tenant's prepared context plus the caller's span, which costs no baggage
/// map of its own.
fn handler_context(
    config: &Config,
    parent: &Context,
    inbound: &Baggage,
    tenant: &Tenant,
) -> Context {
    if config.standard_propagation && (inbound.is_empty() || !config.propagate_inbound_baggage) {
        if let Some(base) = tenant.prepared_context() {
            return if parent.has_active_span() {
                base.with_remote_span_context(parent.span().span_context().clone())
            } else {
                base.clone()
            };
        }
    }
    parent.with_baggage(handler_baggage(config, inbound, tenant))
}

/// The baggage the handler sees and passes downstream: the caller's entries (unless dropped) with
/// `tenant.id` set to the validated tenant, whatever the caller claimed.
fn handler_baggage(config: &Config, inbound: &Baggage, tenant: &Tenant) -> Baggage {
    // The tenant goes in first, into an empty baggage, where it always fits: inserting it last
    // can fail against the W3C limits (64 entries, 8192 bytes) that a caller filled on purpose,
    // and would leave the caller's own `tenant.id` in place.
    let mut baggage = Baggage::new();
    let _ = baggage.insert(
        TENANT_ID_KEY,
        StringValue::from(Arc::clone(tenant.id().shared())),
    );
    if config.propagate_inbound_baggage {
        for (key, (value, metadata)) in inbound {
            if key.as_str() != TENANT_ID_KEY {
                // Past the limits the caller's extra entries are dropped, never the tenant.
                let _ = baggage.insert_with_metadata(key.clone(), value.clone(), metadata.clone());
            }
        }
    }
    baggage
}

fn rejection_message(config: &Config, rejection: &Rejection) -> String {
    match rejection {
        Rejection::Missing => format!("missing tenant id: expected {}", config.expected),
        Rejection::Invalid(source, e) => format!("invalid tenant id in {source}: {e}"),
    }
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
