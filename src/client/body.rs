//! The response future and body of [`ClientService`](super::ClientService): they end the call.

use std::future::Future;
use std::marker::PhantomData;
use std::pin::Pin;
use std::task::{ready, Context as TaskContext, Poll};

use http::Response;
use http_body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;

use super::call::Call;
use crate::classify::End;

pin_project! {
    /// Resolves to the inner client's response with a [`ClientBody`], with the call's CLIENT
    /// span current while the inner client runs.
    pub struct ClientFuture<F, E> {
        #[pin]
        inner: F,
        call: Option<Call>,
        _error: PhantomData<fn() -> E>,
    }
}

impl<F, E> ClientFuture<F, E> {
    pub(super) fn new(inner: F, call: Call) -> Self {
        ClientFuture {
            inner,
            call: Some(call),
            _error: PhantomData,
        }
    }
}

impl<F: std::fmt::Debug, E> std::fmt::Debug for ClientFuture<F, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientFuture")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<F, B, E> Future for ClientFuture<F, E>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body,
{
    type Output = Result<Response<ClientBody<B>>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let result = {
            let _attached = this.call.as_ref().map(|c| c.context().clone().attach());
            ready!(this.inner.poll(cx))
        };
        let Some(mut call) = this.call.take() else {
            panic!("ClientFuture polled after completion");
        };
        match result {
            Ok(res) => {
                call.response(res.status(), res.headers());
                Poll::Ready(Ok(res.map(|body| ClientBody::new(body, call))))
            }
            Err(e) => {
                call.finish(End::Failed);
                Poll::Ready(Err(e))
            }
        }
    }
}

pin_project! {
    /// The response body of an outgoing call, watched to its end: the call's duration runs to
    /// the last frame, and a gRPC status in the trailers is read.
    pub struct ClientBody<B> {
        #[pin]
        inner: B,
        call: Option<Call>,
    }
}

impl<B: Body> ClientBody<B> {
    fn new(inner: B, call: Call) -> Self {
        let call = if inner.is_end_stream() {
            call.finish(End::Completed);
            None
        } else {
            Some(call)
        };
        ClientBody { inner, call }
    }
}

impl<B: std::fmt::Debug> std::fmt::Debug for ClientBody<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientBody")
            .field("inner", &self.inner)
            .finish_non_exhaustive()
    }
}

impl<B: Body> Body for ClientBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut TaskContext<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let mut this = self.project();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(None) => {
                if let Some(call) = this.call.take() {
                    call.finish(End::Completed);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                if let Some(call) = this.call.take() {
                    call.finish(End::Failed);
                }
            }
            Poll::Ready(Some(Ok(frame))) => {
                if let (Some(trailers), Some(call)) = (frame.trailers_ref(), this.call.as_mut()) {
                    call.observe_grpc_status(trailers);
                }
                if this.inner.is_end_stream() {
                    if let Some(call) = this.call.take() {
                        call.finish(End::Completed);
                    }
                }
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
    use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
    use tower::{Layer, ServiceExt};

    use crate::{ClientLayer, TenantRegistry};

    type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::io::Error>;

    /// A client whose transport fails, and one whose response body fails: both calls are
    /// `error.type=_OTHER` on the span and the series, not a type's name.
    #[tokio::test]
    async fn a_failed_call_has_a_stable_error_type() {
        let spans = InMemorySpanExporter::default();
        let tracer = SdkTracerProvider::builder()
            .with_simple_exporter(spans.clone())
            .build();
        let metrics = InMemoryMetricExporter::default();
        let meter = SdkMeterProvider::builder()
            .with_reader(PeriodicReader::builder(metrics.clone()).build())
            .build();
        let layer = ClientLayer::builder()
            .tracer_provider(&tracer)
            .registry(TenantRegistry::builder().meter_provider(&meter).build())
            .build();

        let refused = layer.layer(tower::service_fn(|_req: http::Request<()>| async {
            Err::<http::Response<Body>, _>(std::io::Error::other("connection refused"))
        }));
        let req = || {
            http::Request::get("http://upstream.test/x")
                .body(())
                .unwrap()
        };
        assert!(refused.oneshot(req()).await.is_err());
        let broken = layer.layer(tower::service_fn(|_req: http::Request<()>| async {
            let frames = futures_util::stream::iter([
                Ok(http_body::Frame::data(Bytes::from_static(b"part"))),
                Err(std::io::Error::other("reset")),
            ]);
            let body = http_body_util::StreamBody::new(frames).boxed_unsync();
            Ok::<_, Infallible>(http::Response::new(body))
        }));
        let res = broken.oneshot(req()).await.unwrap();
        assert!(res.into_body().collect().await.is_err());

        let finished = spans.get_finished_spans().unwrap();
        let types: Vec<Option<String>> = finished
            .iter()
            .map(|s| {
                s.attributes
                    .iter()
                    .find(|kv| kv.key.as_str() == "error.type")
                    .map(|kv| kv.value.to_string())
            })
            .collect();
        assert_eq!(types, [Some("_OTHER".into()), Some("_OTHER".into())]);

        meter.force_flush().unwrap();
        let exports = metrics.get_finished_metrics().unwrap();
        let mut calls = 0;
        for sm in exports.last().unwrap().scope_metrics() {
            for m in sm
                .metrics()
                .filter(|m| m.name() == "http.client.request.duration")
            {
                let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() else {
                    continue;
                };
                for dp in h.data_points() {
                    let error = dp.attributes().find(|kv| kv.key.as_str() == "error.type");
                    assert_eq!(
                        error.map(|kv| kv.value.to_string()).as_deref(),
                        Some("_OTHER")
                    );
                    calls += dp.count();
                }
            }
        }
        assert_eq!(calls, 2, "both calls recorded");
    }
}
