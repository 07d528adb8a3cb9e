//! `http.server.active_requests` and `rag.active_queries`, observed from the registry's live
//! entries when metrics are collected.

use opentelemetry::metrics::{AsyncInstrument, Meter, ObservableUpDownCounter};
use opentelemetry::KeyValue;

use crate::metrics::names;

/// `http.server.active_requests`, by tenant and method.
pub(crate) fn requests(
    meter: &Meter,
    observe_all: impl Fn(&mut dyn FnMut(i64, &[KeyValue])) + Send + Sync + 'static,
) -> ObservableUpDownCounter<i64> {
    meter
        .i64_observable_up_down_counter(names::HTTP_SERVER_ACTIVE_REQUESTS)
        .with_unit("{request}")
        .with_description("Number of active HTTP server requests.")
        .with_callback(move |observer: &dyn AsyncInstrument<i64>| {
            observe_all(&mut |value, attributes| observer.observe(value, attributes));
        })
        .build()
}

/// `rag.active_queries`, by tenant.
pub(crate) fn queries(
    meter: &Meter,
    observe_all: impl Fn(&mut dyn FnMut(i64, &[KeyValue])) + Send + Sync + 'static,
) -> ObservableUpDownCounter<i64> {
    meter
        .i64_observable_up_down_counter(names::RAG_ACTIVE_QUERIES)
        .with_unit("{query}")
        .with_description("RAG queries in flight.")
        .with_callback(move |observer: &dyn AsyncInstrument<i64>| {
            observe_all(&mut |value, attributes| observer.observe(value, attributes));
        })
        .build()
}
