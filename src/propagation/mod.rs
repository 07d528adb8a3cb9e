//! Carrying the tenant beyond the server span: to the child spans and log records made inside a
//! request, and to the services it calls.
//!
//! - [`TenantSpanProcessor`] copies `tenant.id` from baggage onto every span started inside a
//!   request, as the baggage span processors of other OpenTelemetry languages do, and hands the
//!   span on to the exporting processor it wraps.
//! - [`TenantLogProcessor`] does the same for log records.
//! - [`PropagateLayer`] injects `traceparent` and `baggage` into outgoing HTTP requests.
//!
//! All of them use one W3C trace-context-and-baggage propagator, composed once per process; the
//! layer reads incoming W3C headers with a parser of its own, which does the same work without
//! the generic machinery.

mod client;
mod log_processor;
mod span_processor;
mod traceparent;

use std::sync::OnceLock;

use opentelemetry::propagation::text_map_propagator::FieldIter;
use opentelemetry::propagation::{
    Extractor, Injector, TextMapCompositePropagator, TextMapPropagator,
};
use opentelemetry::Context;
use opentelemetry_sdk::propagation::{BaggagePropagator, TraceContextPropagator};

pub use client::{PropagateLayer, PropagateService};
pub use log_processor::TenantLogProcessor;
pub use span_processor::{Standalone, TenantSpanProcessor};

pub(crate) use span_processor::setting_tenant_itself;
pub(crate) use traceparent::{extract as extract_w3c, inject as inject_w3c};

/// W3C trace context and baggage: the propagator of the layer, the client layer and (through
/// [`init`](fn@crate::init)) the OpenTelemetry globals. A unit value that refers to one composite
/// built on first use.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct W3c;

impl W3c {
    fn composite() -> &'static TextMapCompositePropagator {
        static COMPOSITE: OnceLock<TextMapCompositePropagator> = OnceLock::new();
        COMPOSITE.get_or_init(|| {
            TextMapCompositePropagator::new(vec![
                Box::new(TraceContextPropagator::new()),
                Box::new(BaggagePropagator::new()),
            ])
        })
    }
}

impl TextMapPropagator for W3c {
    fn inject_context(&self, cx: &Context, injector: &mut dyn Injector) {
        W3c::composite().inject_context(cx, injector)
    }

    fn extract_with_context(&self, cx: &Context, extractor: &dyn Extractor) -> Context {
        W3c::composite().extract_with_context(cx, extractor)
    }

    fn fields(&self) -> FieldIter<'_> {
        W3c::composite().fields()
    }
}
