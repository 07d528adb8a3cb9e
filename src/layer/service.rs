//! [`TenantService`]: the per-request work of [`TenantLayer`](crate::TenantLayer).

use std::borrow::Cow;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};

use http::{Request, Response, StatusCode};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{Link, TraceContextExt};
use opentelemetry::Context;
use opentelemetry_http::HeaderExtractor;
use tower_service::Service;

use super::body::TenantBody;
use super::builder::{Config, MissingTenant};
use super::edge::Trust;
use super::future::{Refusal, ResponseFuture};
use super::inflight::{matched_route, GrpcCall, InFlight, Route, Started};
use super::span::{grpc_span, handler_context, server_span, without_server_span, TenantAttributes};
use crate::classify::GrpcCode;
use crate::instruments::semconv;
use crate::propagation::extract_w3c;
use crate::registry::{Count, Tenant};
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
        let start = config.registry.now();

        // The caller's context only: whatever is current on this thread is not this request's.
        let mut parent = if config.standard_propagation {
            extract_w3c(req.headers())
        } else {
            config
                .propagator
                .extract_with_context(&Context::new(), &HeaderExtractor(req.headers()))
        };
        // A caller not trusted with its trace context: a new trace, linked to the caller's
        // span, and none of its baggage (nor a tenant claimed in it).
        let mut link = None;
        if !matches!(config.trust, Trust::All) {
            let head = RequestHead {
                method: req.method(),
                uri: req.uri(),
                headers: req.headers(),
                baggage: parent.baggage(),
            };
            if !config.trust.trusts(&head) {
                let caller = parent.span().span_context().clone();
                link = caller.is_valid().then(|| Link::with_context(caller));
                parent = Context::new();
            }
        }
        let inbound = parent.baggage();

        // Once the router has shown it names its routes, a request that matches none goes to
        // its fallback: a new tenant found there takes no slot of the cap.
        let grpc = is_grpc(&req);
        let matched = if grpc { None } else { matched_route(&req) };
        let unrouted = !grpc && matched.is_none() && config.registry.routes_known();
        let found = {
            let head = RequestHead {
                method: req.method(),
                uri: req.uri(),
                headers: req.headers(),
                baggage: inbound,
            };
            find_tenant(config, &head, unrouted)
        };
        // Which source decided: only for a tenant found, never for a refusal.
        let (tenant, rejection, decided_by) = match found {
            Ok((tenant, source)) => (tenant, None, Some(source)),
            Err(rejection) => (config.registry.unknown(), Some(rejection), None),
        };
        let rejection = rejection.filter(|_| config.missing == MissingTenant::Reject);

        let method = semconv::method_index(req.method());
        // One lookup serves the span's name, its shared `http.route` string (or gRPC method)
        // and the metrics' series key.
        let (route, span_name, grpc) = if grpc {
            let (route, name, call) = grpc_method(config, &req);
            (route, name, Some(call))
        } else {
            match matched {
                Some(r) => {
                    let (route, name) = Route::interned(&config.registry, r, method);
                    (Some(route), name, None)
                }
                None => (None, semconv::server_span_name(method, None), None),
            }
        };
        let handler_cx = handler_context(config, inbound, &tenant);
        let cx = if config.tracer.is_disabled() {
            without_server_span(handler_cx, &parent)
        } else {
            let tenant_attrs = TenantAttributes {
                tenant: &tenant,
                inbound,
                decided_by,
            };
            let mut builder = if grpc.is_some() {
                grpc_span(&req, span_name, tenant_attrs)
            } else {
                server_span(
                    config,
                    &req,
                    span_name,
                    method,
                    route.as_ref().map(|r| &r.name),
                    tenant_attrs,
                )
            };
            if let Some(link) = link {
                builder.links = Some(vec![link]);
            }
            config.tracer.start(builder, &parent, &handler_cx)
        };

        // A refused request is counted once, as a rejection, and in no tenant's numbers.
        let recorded = match &rejection {
            Some(r) => {
                config.registry.count_rejected(r.reason());
                None
            }
            None => {
                config.registry.request_started(&tenant, method);
                Some(tenant.clone())
            }
        };
        let mut inflight = InFlight::new(Started {
            cx,
            tenant: recorded,
            registry: config.registry.clone(),
            method,
            route,
            start,
            grpc,
            capture_response: config.capture_response.clone(),
        });

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
        if let Some(protection) = &config.protection {
            let entry = tenant.entry();
            let (id, clock) = (tenant.id().as_str(), config.registry.clock());
            match protection.admit(&entry.guard, id, || entry.tier(), clock) {
                Ok(permit) => inflight.hold(permit),
                Err(shed) => {
                    inflight.mark_shed(shed.reason);
                    config.registry.count_shed(&tenant, shed.reason);
                    let refusal = Refusal {
                        status: StatusCode::TOO_MANY_REQUESTS,
                        grpc_code: GrpcCode::RESOURCE_EXHAUSTED,
                        message: format!("too many requests for this tenant ({})", shed.reason),
                        retry_after: Some(shed.retry_after),
                        json: config.json_errors,
                    };
                    return ResponseFuture::refused(inflight, refusal);
                }
            }
        }

        if config.tenant_in_extensions {
            req.extensions_mut().insert(tenant);
        }
        let future = {
            let _attached = inflight.context().clone().attach();
            self.inner.call(req)
        };
        ResponseFuture::instrumented(future, inflight)
    }
}

/// Runs the source chain (the first source that finds a value decides, valid or not) and looks
/// the tenant up while the value is still borrowed from the request, so a known tenant costs no
/// allocation. Returns the tenant with the source that decided it.
fn find_tenant<'c>(
    config: &'c Config,
    head: &RequestHead<'_>,
    unrouted: bool,
) -> Result<(Tenant, &'c TenantSource), Rejection> {
    for source in &config.sources {
        let found = source
            .find(head)
            .map_err(|Ambiguous| Rejection::Ambiguous(source.describe()))?;
        if let Some(raw) = found {
            return match validate_client_id(&raw) {
                Ok(id) if unrouted => Ok((config.registry.lookup_unrouted(id), source)),
                Ok(id) => Ok((config.registry.lookup(id, Count::Request), source)),
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
    match method.and_then(|m| config.registry.known_rpc_method(m)) {
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
