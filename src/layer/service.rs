//! [`TenantService`]: the per-request work of [`TenantLayer`](crate::TenantLayer).

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Instant;

use http::{Request, Response, StatusCode};
use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::trace::{Link, TraceContextExt};
use opentelemetry::Context;
use opentelemetry_http::HeaderExtractor;
use tower_layer::Layer;
use tower_service::Service;

use super::body::TenantBody;
use super::builder::{Config, MissingTenant, TenantLayer};
use super::edge::Trust;
use super::future::{Refusal, ResponseFuture};
use super::inflight::{matched_route, GrpcCall, InFlight, Route, Started};
use super::span::{grpc_span, handler_context, server_span, without_server_span, TenantAttributes};
use crate::classify::GrpcCode;
use crate::instruments::semconv;
use crate::propagation::extract_w3c;
use crate::registry::Tenant;
use crate::tenant::{validate_client_id, Ambiguous, InvalidTenantId, RequestHead, TenantSource};

/// The service made by [`TenantLayer`](crate::TenantLayer). For each request it:
///
/// 1. extracts the caller's trace context and baggage (W3C `traceparent`, `baggage`);
/// 2. finds the tenant through the source chain and validates it; a missing or invalid tenant is
///    rejected with 400 (or served as `__unknown__` if so configured);
/// 3. starts a server span (`{method} {route}`, `tenant.id`, the HTTP semantic conventions),
///    child of the caller's span;
/// 4. attaches a context with that span, baggage `tenant.id` and the [`Tenant`] (for
///    [`Tenant::current`] and the axum extractor) while the inner service and the response body
///    run;
/// 5. ends the span and records duration and active requests when the response body ends, the
///    client goes away, or the inner service fails.
#[derive(Clone)]
pub struct TenantService<S> {
    inner: S,
    config: Arc<Config>,
}

impl<S> TenantService<S> {
    pub(super) fn new(inner: S, config: Arc<Config>) -> Self {
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

impl Rejection {
    /// The `reason` of `tenant.requests.rejected`.
    fn reason(&self) -> &'static str {
        match self {
            Rejection::Missing => "missing",
            Rejection::Invalid(_, InvalidTenantId::Reserved) => "reserved",
            Rejection::Invalid(..) | Rejection::Ambiguous(_) => "invalid",
        }
    }
}

/// Why no tenant could be used.
enum Rejection {
    Missing,
    /// More than one value in a source.
    Ambiguous(String),
    Invalid(String, InvalidTenantId),
}

impl<S> Layer<S> for TenantLayer {
    type Service = TenantService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        TenantService::new(inner, Arc::clone(&self.config))
    }
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

    /// The stages of a request, in order; each is a function below.
    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let config = &*self.config;
        if config.excluded.iter().any(|p| **p == *req.uri().path()) {
            return ResponseFuture::passthrough(self.inner.call(req));
        }
        let start = config.shared.now();
        let (parent, link) = caller_context(config, &req);
        let inbound = parent.baggage();

        // The tenant: the request's one visit to the registry. Its entry is carried to the
        // end of the response and recorded on directly.
        let grpc = is_grpc(&req);
        let matched = if grpc { None } else { matched_route(&req) };
        let found = find_tenant(config, &req, inbound, !grpc && matched.is_none());

        let method = semconv::method_index(req.method());
        let (span_name, named) = name_request(config, &req, grpc, matched, method);
        let cx = start_span(
            config,
            &req,
            (&parent, link),
            &found,
            span_name,
            &named,
            method,
        );

        let (mut inflight, rejection) = start_record(config, cx, found, named, method, start);
        if let Some(rejection) = rejection {
            let refusal = Refusal {
                status: StatusCode::BAD_REQUEST,
                grpc_code: GrpcCode::INVALID_ARGUMENT,
                message: rejection_message(config, &rejection),
                retry_after: None,
                json: config.json_errors,
            };
            return ResponseFuture::refused(inflight, refusal);
        }
        if let Err(refusal) = protect(config, &mut inflight) {
            return ResponseFuture::refused(inflight, refusal);
        }

        if config.tenant_in_extensions {
            req.extensions_mut().insert(inflight.tenant().clone());
        }
        let future = {
            let _attached = inflight.context().clone().attach();
            self.inner.call(req)
        };
        ResponseFuture::instrumented(future, inflight)
    }
}

/// The caller's trace context and baggage, and a link to the caller's span when its context is
/// not trusted. Only the caller's: whatever is current on this thread is not this request's.
#[inline]
fn caller_context<B>(config: &Config, req: &Request<B>) -> (Context, Option<Link>) {
    let parent = if config.standard_propagation {
        extract_w3c(req.headers())
    } else {
        config
            .propagator
            .extract_with_context(&Context::new(), &HeaderExtractor(req.headers()))
    };
    if matches!(config.trust, Trust::All) {
        return (parent, None);
    }
    let head = RequestHead {
        method: req.method(),
        uri: req.uri(),
        headers: req.headers(),
        baggage: parent.baggage(),
    };
    if config.trust.trusts(&head) {
        return (parent, None);
    }
    // A caller not trusted with its trace context: a new trace, linked to the caller's span,
    // and none of its baggage (nor a tenant claimed in it).
    let caller = parent.span().span_context().clone();
    let link = caller.is_valid().then(|| Link::with_context(caller));
    (Context::new(), link)
}

/// The tenant a request is served as: found, or `__unknown__` with why none could be used.
struct Found<'c> {
    tenant: Tenant,
    /// Why no tenant could be used; `None` when one was found.
    rejection: Option<Rejection>,
    /// Which source decided: only for a tenant found, never for a refusal.
    decided_by: Option<&'c TenantSource>,
}

/// Runs the source chain (see [`run_sources`]); without a usable tenant the request is served
/// as `__unknown__`, and refused later unless the layer lets such requests through.
#[inline]
fn find_tenant<'c, B>(
    config: &'c Config,
    req: &Request<B>,
    inbound: &Baggage,
    matched_no_route: bool,
) -> Found<'c> {
    let head = RequestHead {
        method: req.method(),
        uri: req.uri(),
        headers: req.headers(),
        baggage: inbound,
    };
    match run_sources(config, &head, matched_no_route) {
        Ok((tenant, source)) => Found {
            tenant,
            rejection: None,
            decided_by: Some(source),
        },
        Err(rejection) => Found {
            tenant: config.registry.unknown(),
            rejection: Some(rejection).filter(|_| config.missing == MissingTenant::Reject),
            decided_by: None,
        },
    }
}

/// What a request is called: its route (or gRPC method) as the route table knows it.
struct Named {
    route: Option<Route>,
    grpc: Option<GrpcCall>,
}

/// The request's span name and route. One lookup serves the span's name, its shared
/// `http.route` string (or gRPC method) and the metrics' series key.
#[inline]
fn name_request<B>(
    config: &Config,
    req: &Request<B>,
    grpc: bool,
    matched: Option<&str>,
    method: usize,
) -> (Cow<'static, str>, Named) {
    if grpc {
        let (route, span_name, call) = grpc_method(config, req);
        let grpc = Some(call);
        return (span_name, Named { route, grpc });
    }
    let (route, span_name) = match matched {
        Some(r) => {
            let (route, name) = Route::interned(&config.shared, r, method);
            (Some(route), name)
        }
        None => (None, semconv::server_span_name(method, None)),
    };
    (span_name, Named { route, grpc: None })
}

/// The context the inner service and the response body run in: the handler's context (the
/// tenant, its baggage) with the server span, child of the caller's (`parent`, `link`).
#[inline]
fn start_span<B>(
    config: &Config,
    req: &Request<B>,
    (parent, link): (&Context, Option<Link>),
    found: &Found<'_>,
    span_name: Cow<'static, str>,
    named: &Named,
    method: usize,
) -> Context {
    let inbound = parent.baggage();
    let handler_cx = handler_context(config, inbound, &found.tenant);
    if config.tracer.is_disabled() {
        return without_server_span(handler_cx, parent);
    }
    let tenant_attrs = TenantAttributes {
        tenant: &found.tenant,
        inbound,
        decided_by: found.decided_by,
    };
    let mut builder = if named.grpc.is_some() {
        grpc_span(req, span_name, tenant_attrs)
    } else {
        let route = named.route.as_ref().map(|r| &r.name);
        server_span(config, req, span_name, method, route, tenant_attrs)
    };
    if let Some(link) = link {
        builder.links = Some(vec![link]);
    }
    config.tracer.start(builder, parent, &handler_cx)
}

/// Counts the request, in flight for its tenant or as a rejection (once, and in no tenant's
/// numbers), and makes the record that ends it exactly once. Returns the rejection, if any.
#[inline]
fn start_record(
    config: &Config,
    cx: Context,
    found: Found<'_>,
    named: Named,
    method: usize,
    start: Instant,
) -> (InFlight, Option<Rejection>) {
    let Found {
        tenant, rejection, ..
    } = found;
    match &rejection {
        Some(r) => config.shared.count_rejected(r.reason()),
        None => tenant.entry().request_started(method),
    }
    let inflight = InFlight::new(Started {
        cx,
        tenant,
        recorded: rejection.is_none(),
        method,
        route: named.route,
        start,
        grpc: named.grpc,
        capture_response: config.capture_response.clone(),
    });
    (inflight, rejection)
}

/// The tenant's protection, if the layer has one: the request holds its permit to its end, or
/// is shed with a 429 (gRPC `RESOURCE_EXHAUSTED`).
#[inline]
fn protect(config: &Config, inflight: &mut InFlight) -> Result<(), Refusal> {
    let Some(protection) = &config.protection else {
        return Ok(());
    };
    let tenant = inflight.tenant();
    let entry = tenant.entry();
    let shared = entry.shared();
    let admitted = protection.admit(
        &entry.guard,
        tenant.id().as_str(),
        || entry.tier(),
        &shared.clock,
    );
    let shed = match admitted {
        Ok(permit) => {
            inflight.hold(permit);
            return Ok(());
        }
        Err(shed) => shed,
    };
    shared.count_shed(entry.key_value(), shed.reason);
    inflight.mark_shed(shed.reason);
    Err(Refusal {
        status: StatusCode::TOO_MANY_REQUESTS,
        grpc_code: GrpcCode::RESOURCE_EXHAUSTED,
        message: format!("too many requests for this tenant ({})", shed.reason),
        retry_after: Some(shed.retry_after),
        json: config.json_errors,
    })
}

/// Runs the source chain (the first source that finds a value decides, valid or not) and looks
/// the tenant up while the value is still borrowed from the request, so a known tenant costs no
/// allocation. Returns the tenant with the source that decided it.
fn run_sources<'c>(
    config: &'c Config,
    head: &RequestHead<'_>,
    matched_no_route: bool,
) -> Result<(Tenant, &'c TenantSource), Rejection> {
    for source in &config.sources {
        let found = source
            .find(head)
            .map_err(|Ambiguous| Rejection::Ambiguous(source.describe()))?;
        if let Some(raw) = found {
            return match validate_client_id(&raw) {
                Ok(id) => Ok((config.registry.lookup_request(id, matched_no_route), source)),
                Err(e) => Err(Rejection::Invalid(source.describe(), e)),
            };
        }
    }
    Err(Rejection::Missing)
}

fn rejection_message(config: &Config, rejection: &Rejection) -> String {
    match rejection {
        Rejection::Missing => format!("missing tenant id: expected {}", config.expected),
        Rejection::Invalid(source, e) => format!("invalid tenant id in {source}: {e}"),
        Rejection::Ambiguous(source) => {
            format!("ambiguous tenant id: more than one value in {source}")
        }
    }
}

/// A gRPC call's method as the route table knows it, with its span name; an unknown one is
/// `_OTHER` until the application answers it (see [`GrpcCall`]).
fn grpc_method<B>(
    config: &Config,
    req: &Request<B>,
) -> (Option<Route>, Cow<'static, str>, GrpcCall) {
    let method = semconv::grpc_method(req.uri().path());
    match method.and_then(|m| config.shared.routes.known_rpc_method(m)) {
        Some(known) => (
            Some(Route {
                name: known.name,
                id: Some(known.id),
            }),
            known.span_name,
            GrpcCall { unknown: None },
        ),
        None => (
            None,
            Cow::Borrowed(semconv::OTHER),
            GrpcCall {
                unknown: method.map(|_| req.uri().clone()),
            },
        ),
    }
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}
