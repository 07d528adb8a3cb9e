//! The record of one request in flight: ends its span and records its metrics exactly once,
//! however the request ends.

use std::time::Instant;

use http::StatusCode;
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};

use crate::entry::Outcome;
use crate::registry::TenantRegistry;
use crate::semconv;
use crate::tenant::Tenant;

/// The matched route template, kept as the router gave it (a reference-counted string in axum),
/// so carrying it to the end of the body costs no copy, with its id in the registry's route
/// table (`None` once the table is full).
#[derive(Clone)]
pub(crate) struct Route(RouteInner, Option<u32>);

#[derive(Clone)]
enum RouteInner {
    #[cfg(feature = "axum")]
    Axum(axum::extract::MatchedPath),
    #[allow(dead_code)]
    None,
}

impl Route {
    /// The template the router matched, never the raw path: a scanner's made-up paths must not
    /// become new series or span names.
    pub(crate) fn of<B>(req: &http::Request<B>) -> Option<Route> {
        #[cfg(feature = "axum")]
        if let Some(path) = req.extensions().get::<axum::extract::MatchedPath>() {
            return Some(Route(RouteInner::Axum(path.clone()), None));
        }
        let _ = req;
        None
    }

    pub(crate) fn with_id(self, id: Option<u32>) -> Route {
        Route(self.0, id)
    }

    fn id(&self) -> Option<u32> {
        self.1
    }
}

impl std::ops::Deref for Route {
    type Target = str;

    fn deref(&self) -> &str {
        match &self.0 {
            #[cfg(feature = "axum")]
            RouteInner::Axum(p) => p.as_str(),
            RouteInner::None => "",
        }
    }
}

pub(crate) struct InFlight {
    cx: Context,
    tenant: Tenant,
    registry: TenantRegistry,
    method: usize,
    route: Option<Route>,
    start: Instant,
    status: Option<StatusCode>,
    /// A gRPC call, whose outcome is in `grpc-status` rather than the HTTP status.
    grpc: bool,
    /// The gRPC status name, when it is one the server is to blame for.
    grpc_error: Option<&'static str>,
    done: bool,
}

impl InFlight {
    pub(crate) fn new(
        cx: Context,
        tenant: Tenant,
        registry: TenantRegistry,
        method: usize,
        route: Option<Route>,
        start: Instant,
        grpc: bool,
    ) -> Self {
        InFlight {
            cx,
            tenant,
            registry,
            method,
            route,
            start,
            status: None,
            grpc,
            grpc_error: None,
            done: false,
        }
    }

    /// Reads `grpc-status` from a gRPC response's headers (a trailers-only response) or
    /// trailers: a gRPC call fails with HTTP 200, and only this says so.
    pub(crate) fn observe_grpc_status(&mut self, headers: &http::HeaderMap) {
        if !self.grpc {
            return;
        }
        let Some(code) = headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u8>().ok())
        else {
            return;
        };
        self.cx.span().set_attribute(KeyValue::new(
            semconv::RPC_GRPC_STATUS_CODE,
            i64::from(code),
        ));
        self.grpc_error = semconv::grpc_server_error(code);
    }

    /// The context (server span and baggage) to attach while user code runs.
    pub(crate) fn context(&self) -> &Context {
        &self.cx
    }

    /// Responses that carry no body by definition (RFC 9110): to HEAD, informational, 204, 304.
    pub(crate) fn has_no_body(&self, status: StatusCode) -> bool {
        self.method == semconv::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
    }

    pub(crate) fn set_status(&mut self, status: StatusCode) {
        self.status = Some(status);
        self.cx.span().set_attribute(KeyValue::new(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status.as_u16()),
        ));
    }

    /// Ends the request. `error_type` is `cancelled` or the type of the error that ended it;
    /// `None` when it ran to completion (a 5xx status still marks it failed).
    pub(crate) fn finish(mut self, error_type: Option<&'static str>) {
        self.end(error_type);
    }

    fn end(&mut self, error_type: Option<&'static str>) {
        if self.done {
            return;
        }
        self.done = true;
        let error_type = error_type.or(self.grpc_error);
        let end = Instant::now();
        let duration = end.saturating_duration_since(self.start);
        let span = self.cx.span();
        let error: Option<std::borrow::Cow<'static, str>> = match error_type {
            Some(e) => Some(e.into()),
            // Server spans mark only their own failures as errors: 4xx is the client's.
            None => self
                .status
                .filter(StatusCode::is_server_error)
                .map(|s| s.as_str().to_owned().into()),
        };
        if let Some(error) = error {
            span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error.clone()));
            span.set_status(Status::error(error));
        }
        self.tenant.entry().request_finished(
            &self.registry,
            &Outcome {
                method: self.method,
                route: self.route.as_deref(),
                route_id: self.route.as_ref().and_then(Route::id),
                status: self.status,
                error_type,
                duration,
                end,
            },
        );
        span.end();
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Dropped before the end of the body: the client went away (or the server shut down).
        self.end(Some(semconv::ERROR_CANCELLED));
    }
}
