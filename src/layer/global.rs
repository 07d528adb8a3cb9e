//! [`GlobalLimitLayer`]: each tenant's rate held across every replica of the service, decided
//! in Redis after the local limit let the request through.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use http::{HeaderValue, Request, Response, StatusCode};
use opentelemetry::trace::{FutureExt, TraceContextExt};
use opentelemetry::{Context, KeyValue};
use tower_layer::Layer;
use tower_service::Service;

use crate::instruments::semconv;
use crate::protect::{Fallback, GlobalLimits, OnFailure, Protection, ShedReason, Store, Verdict};
use crate::registry::{Tenant, TenantRegistry};

/// Holds each tenant's rate across all replicas of a service, in Redis.
///
/// Put it inside the [`TenantLayer`](crate::TenantLayer) whose [`Protection`] it shares (with
/// axum: `.layer(global)` before `.layer(tenant_layer)`). The tenant layer decides first, on
/// this replica alone (concurrency, the local rate, fair share), so Redis sees only requests a
/// replica would let through; this layer then asks Redis whether the tenant is still under its
/// rate across all replicas (one script call, [`GCRA`](crate::protect::GlobalLimits)). A request
/// over it gets `429 Too Many Requests` with `Retry-After` (gRPC `RESOURCE_EXHAUSTED`), its span
/// says `tenant.shed = global_rate`, and `tenant.requests.shed` counts it with that reason.
///
/// A decision waits at most the [deadline](GlobalLimits::deadline); past it, with Redis down or
/// not yet connected, the request is decided by [`OnFailure`] and `tenant.limits.fallbacks`
/// counts it by reason. Tenants without a rate, and requests outside a tenant layer, pass
/// without asking Redis.
///
/// ```no_run
/// use axum::{routing::get, Router};
/// use tenant_otel::layer::GlobalLimitLayer;
/// use tenant_otel::protect::{GlobalLimits, Limits, Protection, Rate};
/// use tenant_otel::{TenantLayer, TenantRegistry};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = TenantRegistry::builder().build();
/// let protection = Protection::new().tier("free", Limits::none().rate(Rate::per_second(100)));
/// let global = GlobalLimits::redis("redis://127.0.0.1:6379/")?;
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .layer(GlobalLimitLayer::new(global, &protection, &registry))
///     .layer(
///         TenantLayer::builder()
///             .registry(registry)
///             .protection(protection)
///             .build(),
///     );
/// # let _ = app;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
#[must_use]
pub struct GlobalLimitLayer {
    shared: Arc<Shared>,
}

struct Shared {
    store: Store,
    protection: Protection,
    registry: TenantRegistry,
}

impl GlobalLimitLayer {
    /// Holds the rates of `protection` across the replicas sharing `limits`' Redis, counting
    /// sheds and fallbacks in `registry`'s instruments.
    pub fn new(limits: GlobalLimits, protection: &Protection, registry: &TenantRegistry) -> Self {
        GlobalLimitLayer {
            shared: Arc::new(Shared {
                store: Store::new(limits),
                protection: protection.clone(),
                registry: registry.clone(),
            }),
        }
    }

    /// Decisions asked of Redis so far, by the services of this layer.
    pub fn redis_calls(&self) -> u64 {
        self.shared.store.calls()
    }

    /// Decisions that fell back for `reason` so far.
    pub fn fallbacks(&self, reason: Fallback) -> u64 {
        self.shared.store.fallbacks(reason)
    }
}

impl fmt::Debug for GlobalLimitLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalLimitLayer")
            .field("store", &self.shared.store)
            .finish_non_exhaustive()
    }
}

impl<S> Layer<S> for GlobalLimitLayer {
    type Service = GlobalLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        GlobalLimitService {
            inner,
            shared: Arc::clone(&self.shared),
        }
    }
}

/// The service made by [`GlobalLimitLayer`].
#[derive(Clone)]
pub struct GlobalLimitService<S> {
    inner: S,
    shared: Arc<Shared>,
}

impl<S: fmt::Debug> fmt::Debug for GlobalLimitService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalLimitService")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

/// The response future of [`GlobalLimitService`].
pub type GlobalLimitFuture<T, E> = Pin<Box<dyn Future<Output = Result<T, E>> + Send>>;

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for GlobalLimitService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>> + Clone + Send + 'static,
    S::Future: Send + 'static,
    ReqBody: Send + 'static,
    ResBody: Default + 'static,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = GlobalLimitFuture<Response<ResBody>, S::Error>;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request<ReqBody>) -> Self::Future {
        let cx = Context::current();
        let Some((tenant, rate)) = Tenant::of_context(&cx).and_then(|tenant| {
            let entry = tenant.entry();
            let clock = self.shared.registry.clock();
            let rate = self.shared.protection.shared_rate(
                &entry.guard,
                tenant.id().as_str(),
                || entry.tier(),
                clock,
            )?;
            Some((tenant, rate))
        }) else {
            return Box::pin(self.inner.call(req));
        };
        // The service that was made ready goes with the request; a clone takes its place.
        let ready = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, ready);
        let shared = Arc::clone(&self.shared);
        Box::pin(async move {
            let verdict = shared.store.check(tenant.id().as_str(), rate).await;
            let refused = match verdict {
                Verdict::Pass => None,
                Verdict::Over(wait) => Some(wait),
                Verdict::Fallback(reason) => {
                    shared
                        .registry
                        .shared()
                        .count_limit_fallback(reason.as_str());
                    match shared.store.on_failure() {
                        OnFailure::Refuse => Some(Duration::from_secs(1)),
                        _ => None,
                    }
                }
            };
            match refused {
                None => inner.call(req).with_context(cx).await,
                Some(wait) => {
                    shared
                        .registry
                        .shared()
                        .count_shed(tenant.entry().key_value(), ShedReason::GlobalRate);
                    cx.span().set_attribute(KeyValue::new(
                        semconv::TENANT_SHED,
                        ShedReason::GlobalRate.as_str(),
                    ));
                    Ok(over_rate(is_grpc(&req), wait))
                }
            }
        })
    }
}

/// 429 with `Retry-After` in whole seconds, rounded up (gRPC: a trailers-only
/// `RESOURCE_EXHAUSTED`).
fn over_rate<B: Default>(grpc: bool, wait: Duration) -> Response<B> {
    let mut res = Response::new(B::default());
    if grpc {
        let headers = res.headers_mut();
        headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        headers.insert("grpc-status", HeaderValue::from_static("8"));
        headers.insert(
            "grpc-message",
            HeaderValue::from_static("too many requests for this tenant (global_rate)"),
        );
    } else {
        *res.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    }
    let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    res.headers_mut()
        .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    res
}

fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}
