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
/// Register it on the tracer provider **before** the exporting processor, so the attribute is
/// there when the span is exported. [`init`](fn@crate::init) does this.
///
/// ```
/// use opentelemetry_sdk::trace::SdkTracerProvider;
/// use tenant_otel::TenantSpanProcessor;
///
/// let provider = SdkTracerProvider::builder()
///     .with_span_processor(TenantSpanProcessor::new())
///     .build();
/// # let _ = provider;
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct TenantSpanProcessor {
    _private: (),
}

impl TenantSpanProcessor {
    /// A processor copying the baggage entry `tenant.id`.
    pub fn new() -> Self {
        TenantSpanProcessor { _private: () }
    }
}

thread_local! {
    /// Set while the layer starts its own server span, which already carries `tenant.id`: the
    /// processor must not add it a second time.
    static STARTING_SERVER_SPAN: Cell<bool> = const { Cell::new(false) };
}

/// Runs `start` with the processor told to leave the span alone.
pub(crate) fn starting_server_span<R>(start: impl FnOnce() -> R) -> R {
    /// Clears the flag however `start` returns, unwinding included: a flag left set would
    /// keep the tenant off every later span of this thread.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            STARTING_SERVER_SPAN.with(|flag| flag.set(false));
        }
    }
    STARTING_SERVER_SPAN.with(|flag| flag.set(true));
    let _reset = Reset;
    start()
}

impl SpanProcessor for TenantSpanProcessor {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        if STARTING_SERVER_SPAN.with(Cell::get) {
            return;
        }
        if let Some(tenant) = valid_in_baggage(cx.baggage()) {
            // The baggage value shares the tenant's allocation; cloning it copies a pointer.
            let value: StringValue = tenant.clone();
            span.set_attribute(KeyValue::new(semconv::TENANT_ID, Value::String(value)));
        }
    }

    fn on_end(&self, _span: SpanData) {}

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: Duration) -> OTelSdkResult {
        Ok(())
    }
}
