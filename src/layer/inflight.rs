//! The record of one request in flight: ends its span and records its metrics exactly once,
//! however the request ends.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Instant;

use http::StatusCode;
use opentelemetry::trace::{Status, TraceContextExt};
use opentelemetry::{Context, KeyValue};

use crate::classify::{End, Failure, GrpcCode};
use crate::instruments::{semconv, Outcome};
use crate::protect::{Permit, ShedReason};
use crate::registry::{Shared, Tenant};

/// The matched route template, never the raw path: a scanner's made-up paths must not become
/// new series or span names.
pub(super) fn matched_route<B>(req: &http::Request<B>) -> Option<&str> {
    #[cfg(feature = "axum")]
    if let Some(path) = req.extensions().get::<axum::extract::MatchedPath>() {
        return Some(path.as_str());
    }
    let _ = req;
    None
}

/// A route template as the registry interned it: the shared string (so carrying it to the end
/// of the body, and onto the span, costs no copy) and its id for series keys (`None` once the
/// route table is full).
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub(super) name: Arc<str>,
    pub(super) id: Option<u32>,
}

impl Route {
    /// The route as the registry's table interned it, with the server span name for `method`.
    pub(super) fn interned(
        shared: &Shared,
        route: &str,
        method: usize,
    ) -> (Route, Cow<'static, str>) {
        match shared.routes.route(route, method) {
            Some(interned) => (
                Route {
                    name: interned.name,
                    id: Some(interned.id),
                },
                interned.span_name,
            ),
            // Past the table's bound: copies, and series recorded unbound.
            None => (
                Route {
                    name: Arc::from(route),
                    id: None,
                },
                semconv::server_span_name(method, Some(route)),
            ),
        }
    }
}

/// What is known of a request when it comes in.
pub(super) struct Started {
    /// The server span and baggage, attached while user code runs.
    pub(super) cx: Context,
    /// The request's tenant, looked up once: the request records through its entry to the end.
    pub(super) tenant: Tenant,
    /// False for a request the layer refused for want of a usable tenant: counted as a
    /// rejection, and in no tenant's numbers.
    pub(super) recorded: bool,
    pub(super) method: usize,
    pub(super) route: Option<Route>,
    pub(super) start: Instant,
    /// A gRPC call, whose outcome is in `grpc-status` rather than the HTTP status.
    pub(super) grpc: Option<GrpcCall>,
    /// Response headers to put on the span.
    pub(super) capture_response: Option<Arc<[super::edge::Captured]>>,
}

/// What a gRPC call needs at its end.
pub(super) struct GrpcCall {
    /// The request's URI when its method was not yet in the table: the method is admitted at
    /// the end if a method of the application answered it (see
    /// [`answered_by_application`]), so the made-up method paths of a client, refused by the
    /// router, an auth interceptor or this layer, never become span names or series.
    pub(super) unknown: Option<http::Uri>,
}

pub(super) struct InFlight {
    req: Started,
    /// The tenant's protection slot, given back when the request ends (dropped with the
    /// record).
    _permit: Option<Permit>,
    status: Option<StatusCode>,
    grpc_status: Option<GrpcCode>,
    done: bool,
}

impl InFlight {
    pub(super) fn new(req: Started) -> Self {
        InFlight {
            req,
            _permit: None,
            status: None,
            grpc_status: None,
            done: false,
        }
    }

    /// Reads `grpc-status` from a gRPC response's headers (a trailers-only response) or
    /// trailers: a gRPC call fails with HTTP 200, and only this says so.
    pub(super) fn observe_grpc_status(&mut self, headers: &http::HeaderMap) {
        if self.req.grpc.is_none() {
            return;
        }
        if let Some(code) = GrpcCode::of_headers(headers) {
            self.grpc_status = Some(code);
        }
    }

    /// Keeps the tenant's protection slot until the request ends.
    pub(super) fn hold(&mut self, permit: Permit) {
        self._permit = Some(permit);
    }

    /// The layer answers this request itself (no usable tenant, shed): no method of the
    /// application answered it, so an unknown method stays unknown.
    pub(super) fn refused_by_layer(&mut self) {
        if let Some(call) = &mut self.req.grpc {
            call.unknown = None;
        }
    }

    /// Records on the span that the request was shed, and why.
    pub(super) fn mark_shed(&self, reason: ShedReason) {
        self.req
            .cx
            .span()
            .set_attribute(KeyValue::new(semconv::TENANT_SHED, reason.as_str()));
    }

    /// The request's tenant.
    pub(super) fn tenant(&self) -> &Tenant {
        &self.req.tenant
    }

    /// A gRPC call.
    pub(super) fn is_grpc(&self) -> bool {
        self.req.grpc.is_some()
    }

    /// The context (server span and baggage) to attach while user code runs.
    pub(super) fn context(&self) -> &Context {
        &self.req.cx
    }

    /// Responses that carry no body by definition (RFC 9110): to HEAD, informational, 204, 304.
    pub(super) fn has_no_body(&self, status: StatusCode) -> bool {
        self.req.method == semconv::HEAD
            || status.is_informational()
            || status == StatusCode::NO_CONTENT
            || status == StatusCode::NOT_MODIFIED
    }

    /// Puts the allowlisted response headers on the span.
    pub(super) fn capture(&self, headers: &http::HeaderMap) {
        if let Some(captured) = &self.req.capture_response {
            let span = self.req.cx.span();
            super::edge::header_attributes(captured, headers, |kv| span.set_attribute(kv));
        }
    }

    pub(super) fn set_status(&mut self, status: StatusCode) {
        self.status = Some(status);
        self.req.cx.span().set_attribute(KeyValue::new(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status.as_u16()),
        ));
    }

    /// Ends the request.
    pub(super) fn finish(mut self, end: End) {
        self.end(end);
    }

    fn end(&mut self, end: End) {
        if self.done {
            return;
        }
        self.done = true;
        let cancelled = end == End::Cancelled;
        let failure = Failure::classify(self.status, self.grpc_status, end);
        let end = self.req.tenant.entry().shared().now();
        let rpc_code = self.end_grpc(cancelled);
        let span = self.req.cx.span();
        if let Some(error) = failure.error_type(self.status) {
            span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error.clone()));
            span.set_status(Status::error(error));
        }
        let req = &self.req;
        if req.recorded {
            let sc = span.span_context();
            req.tenant.entry().request_finished(&Outcome {
                method: req.method,
                route: req.route.as_ref().map(|r| &*r.name),
                route_id: req.route.as_ref().and_then(|r| r.id),
                rpc_code,
                status: self.status,
                failure,
                duration: end.saturating_duration_since(req.start),
                end,
                trace_id: (sc.is_sampled() && sc.is_valid()).then(|| sc.trace_id()),
            });
        }
        span.end();
    }
}

impl InFlight {
    /// The end of a gRPC call: admits its method if the application answered it, and sets
    /// `rpc.method` and `rpc.response.status_code`. Returns the call's status code (`UNKNOWN`
    /// when the server sent none, `CANCELLED` when the client went away first).
    fn end_grpc(&mut self, cancelled: bool) -> Option<GrpcCode> {
        let call = self.req.grpc.as_mut()?;
        let code = self.grpc_status.unwrap_or(if cancelled {
            GrpcCode::CANCELLED
        } else {
            GrpcCode::UNKNOWN
        });
        let span = self.req.cx.span();
        if let Some(uri) = call.unknown.take() {
            let answered = self
                .grpc_status
                .is_some_and(GrpcCode::answered_by_application);
            let admitted = semconv::grpc_method(uri.path())
                .filter(|_| answered)
                .and_then(|m| {
                    let shared = self.req.tenant.entry().shared();
                    shared.routes.admit_rpc_method(m)
                });
            if let Some(interned) = admitted {
                span.update_name(interned.span_name);
                self.req.route = Some(Route {
                    name: interned.name,
                    id: Some(interned.id),
                });
            }
        }
        let method = match &self.req.route {
            Some(route) => opentelemetry::StringValue::from(Arc::clone(&route.name)),
            None => semconv::OTHER.into(),
        };
        span.set_attribute(KeyValue::new(semconv::RPC_METHOD, method));
        span.set_attribute(KeyValue::new(
            semconv::RPC_RESPONSE_STATUS_CODE,
            code.name(),
        ));
        Some(code)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        // Dropped before the end of the body: the client went away (or the server shut down),
        // unless the service panicked on its way to an answer, which is the server's failure.
        let end = if std::thread::panicking() {
            End::Panicked
        } else {
            End::Cancelled
        };
        self.end(end);
    }
}

/// Ends the request as the server's failure if the handler panics while polled. Without it the
/// record would be dropped later, by whatever catches the panic (`CatchPanicLayer`, the
/// runtime), and read as a client that went away.
pub(super) struct PanicWatch<'a>(pub(super) &'a mut Option<InFlight>);

impl Drop for PanicWatch<'_> {
    fn drop(&mut self) {
        // Only reached while unwinding: a normal return forgets the watch.
        if let Some(inflight) = self.0.take() {
            inflight.finish(End::Panicked);
        }
    }
}
