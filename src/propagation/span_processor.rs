//! Copies the tenant from baggage onto every span, as the baggage span processors of other
//! OpenTelemetry languages do.

use std::cell::Cell;
use std::time::Duration;

use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::Span as _;
use opentelemetry::{Context, KeyValue, StringValue, Value};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};

use crate::instruments::semconv;
use crate::tenant::valid_in_baggage;

/// A [`SpanProcessor`] that sets `tenant.id` on every span started in a context whose baggage
/// holds a `tenant.id` entry: spans made with `tracing` inside a handler (through
/// tracing-opentelemetry), spans of libraries the handler calls, spans of a service that got the
/// tenant from a caller's baggage.
///
/// Wrap the exporting processor with it, so the provider has **one** processor: with two, the
/// SDK copies every ended span once per processor, which costs more than everything else this
/// processor does. [`init`](fn@crate::init) does this.
///
/// ```
/// use opentelemetry_sdk::trace::{BatchSpanProcessor, InMemorySpanExporter, SdkTracerProvider};
/// use tenant_otel::propagation::TenantSpanProcessor;
///
/// # let exporter = InMemorySpanExporter::default();
/// let provider = SdkTracerProvider::builder()
///     .with_span_processor(TenantSpanProcessor::wrap(BatchSpanProcessor::builder(exporter).build()))
///     .build();
/// # let _ = provider;
/// ```
///
/// [`TenantSpanProcessor::new`] makes one that exports nothing itself, to register before an
/// exporting processor when the pipeline is not yours to change (at the cost above).
#[derive(Debug, Default, Clone, Copy)]
pub struct TenantSpanProcessor<P = Standalone> {
    inner: P,
}

/// The processor a [`TenantSpanProcessor::new`] delegates to: it does nothing, so spans reach
/// the provider's other processors only.
#[derive(Debug, Default, Clone, Copy)]
#[non_exhaustive]
pub struct Standalone;

impl TenantSpanProcessor {
    /// A processor copying the baggage entry `tenant.id`, and doing nothing else.
    pub fn new() -> Self {
        TenantSpanProcessor { inner: Standalone }
    }
}

impl<P: SpanProcessor> TenantSpanProcessor<P> {
    /// Sets `tenant.id` as a span starts, then hands every call to `inner` (the exporting
    /// processor, typically a `BatchSpanProcessor`).
    pub fn wrap(inner: P) -> Self {
        TenantSpanProcessor { inner }
    }

    /// The wrapped processor.
    pub fn inner(&self) -> &P {
        &self.inner
    }
}

impl SpanProcessor for Standalone {
    fn on_start(&self, _span: &mut Span, _cx: &Context) {}

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}

thread_local! {
    /// Set while the layers start their own server or client span, which already carries
    /// `tenant.id`: the processor must not add it a second time.
    static SETTING_TENANT_ITSELF: Cell<bool> = const { Cell::new(false) };
}

/// Runs `start` with the processor told to leave the span alone.
pub(crate) fn setting_tenant_itself<R>(start: impl FnOnce() -> R) -> R {
    /// Clears the flag however `start` returns, unwinding included: a flag left set would
    /// keep the tenant off every later span of this thread.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            SETTING_TENANT_ITSELF.with(|flag| flag.set(false));
        }
    }
    SETTING_TENANT_ITSELF.with(|flag| flag.set(true));
    let _reset = Reset;
    start()
}

impl<P: SpanProcessor> SpanProcessor for TenantSpanProcessor<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if !SETTING_TENANT_ITSELF.with(Cell::get) {
            if let Some(tenant) = valid_in_baggage(cx.baggage()) {
                // The baggage value shares the tenant's allocation; cloning it copies a pointer.
                let value: StringValue = tenant.clone();
                span.set_attribute(KeyValue::new(semconv::TENANT_ID, Value::String(value)));
            }
        }
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.inner.shutdown()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}
