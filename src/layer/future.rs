//! The response future of [`TenantService`](crate::layer::TenantService).

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context as TaskContext, Poll};

use http::{HeaderValue, Response, StatusCode};
use pin_project_lite::pin_project;

use super::body::TenantBody;
use super::inflight::{InFlight, PanicWatch};
use crate::classify::{End, GrpcCode};

pin_project! {
    /// Resolves to the inner service's response with a [`TenantBody`], with the request's
    /// context attached on every poll so the handler's spans and logs carry the tenant.
    pub struct ResponseFuture<F, E> {
        #[pin]
        kind: Kind<F>,
        _error: PhantomData<fn() -> E>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<F> {
        Instrumented { #[pin] future: F, inflight: Option<InFlight> },
        Passthrough { #[pin] future: F },
        Refused { inflight: Option<InFlight>, refusal: Option<Refusal> },
    }
}

impl<F, E> ResponseFuture<F, E> {
    pub(super) fn instrumented(future: F, inflight: InFlight) -> Self {
        Self::with(Kind::Instrumented {
            future,
            inflight: Some(inflight),
        })
    }

    pub(super) fn passthrough(future: F) -> Self {
        Self::with(Kind::Passthrough { future })
    }

    pub(super) fn refused(mut inflight: InFlight, refusal: Refusal) -> Self {
        inflight.refused_by_layer();
        Self::with(Kind::Refused {
            inflight: Some(inflight),
            refusal: Some(refusal),
        })
    }

    fn with(kind: Kind<F>) -> Self {
        ResponseFuture {
            kind,
            _error: PhantomData,
        }
    }
}

impl<F, B, E> Future for ResponseFuture<F, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: http_body::Body,
{
    type Output = Result<Response<TenantBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        match self.project().kind.project() {
            KindProj::Passthrough { future } => {
                let res = ready!(future.poll(cx))?;
                Poll::Ready(Ok(res.map(TenantBody::plain)))
            }
            KindProj::Instrumented { future, inflight } => {
                let result = {
                    let _attached = inflight.as_ref().map(|i| i.context().clone().attach());
                    let watch = PanicWatch(inflight);
                    let polled = future.poll(cx);
                    std::mem::forget(watch);
                    ready!(polled)
                };
                let Some(mut inflight) = inflight.take() else {
                    panic!("ResponseFuture polled after completion");
                };
                match result {
                    Ok(res) => {
                        inflight.set_status(res.status());
                        inflight.capture(res.headers());
                        inflight.observe_grpc_status(res.headers());
                        if inflight.has_no_body(res.status()) {
                            // The server drops such a body unread (and axum swaps a HEAD
                            // response's for an empty one): the request is done now.
                            inflight.finish(End::Completed);
                            return Poll::Ready(Ok(res.map(TenantBody::plain)));
                        }
                        Poll::Ready(Ok(res.map(|body| TenantBody::instrumented(body, inflight))))
                    }
                    Err(e) => {
                        inflight.finish(End::Failed);
                        Poll::Ready(Err(e))
                    }
                }
            }
            KindProj::Refused { inflight, refusal } => {
                let (Some(mut inflight), Some(refusal)) = (inflight.take(), refusal.take()) else {
                    panic!("ResponseFuture polled after completion");
                };
                let res = refusal.into_response(inflight.is_grpc());
                inflight.set_status(res.status());
                inflight.observe_grpc_status(res.headers());
                inflight.finish(End::Completed);
                Poll::Ready(Ok(res))
            }
        }
    }
}

/// A request answered by the layer itself: without a usable tenant (400, gRPC
/// `INVALID_ARGUMENT`), or shed by the tenant's protection (429 with `Retry-After`, gRPC
/// `RESOURCE_EXHAUSTED`).
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) status: StatusCode,
    pub(super) grpc_code: GrpcCode,
    /// Names the source or the limit and the rule broken, never a raw value: printable ASCII.
    pub(super) message: String,
    pub(super) retry_after: Option<std::time::Duration>,
    /// Answer HTTP callers with `{"error": message}` instead of plain text.
    pub(super) json: bool,
}

impl Refusal {
    fn into_response<B>(self, grpc: bool) -> Response<TenantBody<B>> {
        let mut res = if grpc {
            // A gRPC client expects HTTP 200 with the status in `grpc-status` (a
            // "trailers-only" response).
            let mut res = Response::new(TenantBody::empty());
            let headers = res.headers_mut();
            headers.insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/grpc"),
            );
            headers.insert(
                "grpc-status",
                HeaderValue::from_static(self.grpc_code.header_value()),
            );
            if let Ok(v) = HeaderValue::from_str(&self.message) {
                headers.insert("grpc-message", v);
            }
            res
        } else {
            let (body, content_type) = if self.json {
                (json_error(&self.message), "application/json")
            } else {
                (self.message, "text/plain; charset=utf-8")
            };
            let mut res = Response::new(TenantBody::rejected(body));
            *res.status_mut() = self.status;
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static(content_type),
            );
            res
        };
        if let Some(after) = self.retry_after {
            // Whole seconds, rounded up: `Retry-After: 0` would invite an immediate retry.
            let secs = after.as_secs() + u64::from(after.subsec_nanos() > 0);
            res.headers_mut()
                .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
        }
        res
    }
}

/// `{"error": message}`. The message is the layer's own text (it names a source or a limit,
/// never echoes a raw value), but it is escaped all the same.
fn json_error(message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 12);
    out.push_str("{\"error\":\"");
    for c in message.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push_str("\"}");
    out
}

#[cfg(test)]
mod tests {
    use super::json_error;

    #[test]
    fn json_errors_escape_what_json_needs_escaped() {
        assert_eq!(
            json_error("missing tenant id: expected header `x-tenant-id`"),
            r#"{"error":"missing tenant id: expected header `x-tenant-id`"}"#
        );
        assert_eq!(
            json_error("a \"b\" \\ \n"),
            r#"{"error":"a \"b\" \\ \u000a"}"#
        );
    }
}
