//! The response body of [`TenantService`](crate::layer::TenantService).

use std::pin::Pin;
use std::task::{Context as TaskContext, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::inflight::{InFlight, PanicWatch};
use crate::classify::End;

pin_project! {
    /// The inner service's body, watched to its end: the request's duration runs until the last
    /// frame (streaming and SSE bodies included), and a body dropped early is recorded as
    /// `error.type=cancelled`.
    pub struct TenantBody<B> {
        #[pin]
        kind: Kind<B>,
    }
}

pin_project! {
    #[project = KindProj]
    enum Kind<B> {
        Instrumented { #[pin] inner: B, inflight: Option<InFlight> },
        Plain { #[pin] inner: B },
        Message { message: Option<Bytes> },
    }
}

impl<B> TenantBody<B> {
    pub(super) fn plain(inner: B) -> Self {
        TenantBody {
            kind: Kind::Plain { inner },
        }
    }

    pub(super) fn rejected(message: String) -> Self {
        TenantBody {
            kind: Kind::Message {
                message: Some(Bytes::from(message)),
            },
        }
    }

    pub(super) fn empty() -> Self {
        TenantBody {
            kind: Kind::Message { message: None },
        }
    }
}

impl<B: Body> TenantBody<B> {
    pub(super) fn instrumented(inner: B, inflight: InFlight) -> Self {
        // An empty or fully-buffered-and-taken body may never be polled: end it now.
        let inflight = if inner.is_end_stream() {
            inflight.finish(End::Completed);
            None
        } else {
            Some(inflight)
        };
        TenantBody {
            kind: Kind::Instrumented { inner, inflight },
        }
    }
}

impl<B> Body for TenantBody<B>
where
    B: Body,
    B::Data: From<Bytes>,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        match self.project().kind.project() {
            KindProj::Plain { inner } => inner.poll_frame(cx),
            KindProj::Message { message } => {
                Poll::Ready(message.take().map(|m| Ok(Frame::data(B::Data::from(m)))))
            }
            KindProj::Instrumented {
                mut inner,
                inflight,
            } => {
                let polled = {
                    let _attached = inflight.as_ref().map(|i| i.context().clone().attach());
                    let watch = PanicWatch(inflight);
                    let polled = inner.as_mut().poll_frame(cx);
                    std::mem::forget(watch);
                    polled
                };
                match &polled {
                    Poll::Ready(None) => {
                        if let Some(i) = inflight.take() {
                            i.finish(End::Completed);
                        }
                    }
                    Poll::Ready(Some(Err(_))) => {
                        if let Some(i) = inflight.take() {
                            i.finish(End::Failed);
                        }
                    }
                    Poll::Ready(Some(Ok(frame))) => {
                        if let (Some(trailers), Some(i)) = (frame.trailers_ref(), inflight.as_mut())
                        {
                            i.observe_grpc_status(trailers);
                        }
                        if inner.is_end_stream() {
                            if let Some(i) = inflight.take() {
                                i.finish(End::Completed);
                            }
                        }
                    }
                    _ => {}
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match &self.kind {
            Kind::Instrumented { inner, .. } | Kind::Plain { inner } => inner.is_end_stream(),
            Kind::Message { message } => message.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.kind {
            Kind::Instrumented { inner, .. } | Kind::Plain { inner } => inner.size_hint(),
            Kind::Message { message } => {
                SizeHint::with_exact(message.as_ref().map_or(0, |m| m.len() as u64))
            }
        }
    }
}

impl<B: Default> Default for TenantBody<B> {
    fn default() -> Self {
        TenantBody::plain(B::default())
    }
}
