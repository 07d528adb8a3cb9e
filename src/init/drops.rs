//! Spans the batch queue could not take, made visible.
//!
//! The SDK's batch processor drops an ended span when its queue (`OTEL_BSP_MAX_QUEUE_SIZE`,
//! 2048 by default) is full, and says so only in its own diagnostics. Counting the spans handed
//! to it and the spans that reached the exporter tells how many were lost: at any moment at most
//! a queue's worth are still waiting, so `handed − reached − queue` is a lower bound of the
//! drops, exact once the queue is empty. It is exported as `otel.sdk.processor.span.processed`
//! with `error.type=queue_full` (the SDK self-metric of the OpenTelemetry conventions), beside
//! the spans that reached the exporter.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{Meter, ObservableCounter};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanExporter, SpanProcessor};
use opentelemetry_sdk::Resource;

/// The batch processor's default queue, as the SDK reads it.
const DEFAULT_QUEUE: u64 = 2048;

/// Spans handed to the batch processor and spans that reached the exporter.
#[derive(Debug, Default)]
pub(super) struct SpanCounts {
    handed: AtomicU64,
    reached: AtomicU64,
    /// The highest lower bound of drops reported so far: a counter never goes down.
    dropped: AtomicU64,
}

impl SpanCounts {
    fn dropped_at_least(&self, queue: u64) -> u64 {
        let reached = self.reached.load(Ordering::Acquire);
        let handed = self.handed.load(Ordering::Acquire);
        let bound = handed.saturating_sub(reached).saturating_sub(queue);
        self.dropped.fetch_max(bound, Ordering::AcqRel).max(bound)
    }
}

/// Counts the spans handed to `inner` (the batch processor).
#[derive(Debug)]
pub(super) struct Counted<P> {
    pub(super) inner: P,
    pub(super) counts: Arc<SpanCounts>,
}

impl<P: SpanProcessor> SpanProcessor for Counted<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        self.counts.handed.fetch_add(1, Ordering::Relaxed);
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// Counts the spans that reach `inner` (the exporter), delivered or not.
#[derive(Debug)]
pub(super) struct CountingExporter<E> {
    pub(super) inner: E,
    pub(super) counts: Arc<SpanCounts>,
}

impl<E: SpanExporter> SpanExporter for CountingExporter<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        self.counts
            .reached
            .fetch_add(batch.len() as u64, Ordering::Release);
        self.inner.export(batch).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// `otel.sdk.processor.span.processed`: spans that reached the exporter, and (with
/// `error.type=queue_full`) the spans the queue dropped, at least.
pub(super) fn observe(meter: &Meter, counts: Arc<SpanCounts>) -> ObservableCounter<u64> {
    let queue = std::env::var("OTEL_BSP_MAX_QUEUE_SIZE")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_QUEUE);
    let component = KeyValue::new("otel.component.type", "batching_span_processor");
    meter
        .u64_observable_counter("otel.sdk.processor.span.processed")
        .with_unit("{span}")
        .with_description(
            "Spans the batch processor finished with: handed to the exporter, or dropped \
             (error.type=queue_full; a lower bound while the queue holds spans).",
        )
        .with_callback(move |observer| {
            let reached = counts.reached.load(Ordering::Acquire);
            observer.observe(reached, std::slice::from_ref(&component));
            observer.observe(
                counts.dropped_at_least(queue),
                &[component.clone(), KeyValue::new("error.type", "queue_full")],
            );
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lower_bound_allows_a_full_queue_and_never_goes_down() {
        let c = SpanCounts::default();
        c.handed.store(3000, Ordering::Relaxed);
        c.reached.store(500, Ordering::Relaxed);
        assert_eq!(c.dropped_at_least(2048), 452);
        // The queue drained: the bound becomes exact.
        c.reached.store(2000, Ordering::Relaxed);
        assert_eq!(c.dropped_at_least(2048), 452);
        c.handed.store(3000, Ordering::Relaxed);
        c.reached.store(2548, Ordering::Relaxed);
        assert_eq!(c.dropped_at_least(0), 452);
    }
}
