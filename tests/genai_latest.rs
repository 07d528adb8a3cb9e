//! The GenAI metrics under `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental` (the
//! released names are checked in `tests/genai.rs`), and what an LLM call allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use opentelemetry::trace::{Span, SpanKind, Tracer, TracerProvider};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use tenant_otel::cost::{Currency, ModelPrice, PriceTable, Prices, TokenUsage};
use tenant_otel::query::LlmCall;
use tenant_otel::TenantRegistry;

/// Counts the allocations of the calling thread, so tests running beside it do not count.
struct CountingAllocator;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed on to the system allocator unchanged; counting touches only a
// const-initialised thread-local, which never allocates.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn prices() -> Prices {
    Prices::new(PriceTable::new(Currency::USD).model(
        "gpt-4o-mini",
        ModelPrice::per_million("0.15", "0.60").unwrap(),
    ))
}

#[test]
fn the_newest_names_replace_the_token_histogram_when_opted_in() {
    std::env::set_var(
        "OTEL_SEMCONV_STABILITY_OPT_IN",
        "http, gen_ai_latest_experimental",
    );
    let exporter = InMemoryMetricExporter::default();
    let meters = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let registry = TenantRegistry::builder()
        .meter_provider(&meters)
        .prices(prices())
        .build();
    for _ in 0..3 {
        registry
            .record_llm_call(
                "acme",
                &LlmCall::new("openai", "gpt-4o-mini", TokenUsage::new(120, 30)),
            )
            .unwrap();
    }
    meters.force_flush().unwrap();
    let collected = exporter.get_finished_metrics().unwrap();
    let metrics: Vec<_> = collected
        .iter()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
        .collect();
    assert!(metrics
        .iter()
        .all(|m| m.name() != "gen_ai.client.token.usage"));
    for (name, total) in [
        ("gen_ai.client.inference.usage.input_tokens", 360),
        ("gen_ai.client.inference.usage.output_tokens", 90),
    ] {
        let m = metrics.iter().find(|m| m.name() == name).expect(name);
        assert_eq!(m.unit(), "{token}");
        let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() else {
            panic!("{name} is a u64 counter");
        };
        let points: Vec<_> = sum.data_points().collect();
        assert_eq!(points.len(), 1, "{name}");
        assert_eq!(points[0].value(), total, "{name}");
        let has = |k: &str, v: &str| {
            points[0]
                .attributes()
                .any(|kv: &KeyValue| kv.key.as_str() == k && kv.value == Value::from(v.to_owned()))
        };
        assert!(has("tenant.id", "acme") && has("gen_ai.request.model", "gpt-4o-mini"));
        assert!(points[0]
            .attributes()
            .all(|kv| kv.key.as_str() != "gen_ai.token.type"));
    }
}

/// With no tracer provider set, an LLM call of a known tenant and model allocates what the
/// no-op span itself costs (the global tracer boxes each span) and nothing more: its series,
/// names and attributes were prepared on its first call.
#[test]
fn a_known_tenant_and_model_allocate_nothing_beyond_the_span() {
    let exporter = InMemoryMetricExporter::default();
    let meters = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter).build())
        .build();
    let registry = TenantRegistry::builder()
        .meter_provider(&meters)
        .prices(prices())
        .build();
    let tenant = registry.resolve("acme").unwrap();
    // $0.021 a call: the first already binds the `tenant.cost` series.
    let call = LlmCall::new("openai", "gpt-4o-mini", TokenUsage::new(100_000, 10_000))
        .duration(std::time::Duration::from_millis(300));
    registry.record_llm_call(&tenant, &call).unwrap();

    // What one no-op CLIENT span costs through the global tracer, as the call makes it.
    let tracer = opentelemetry::global::tracer_provider().tracer("baseline");
    let before = allocations();
    let mut span = tracer
        .span_builder("chat gpt-4o-mini")
        .with_kind(SpanKind::Client)
        .start(&tracer);
    span.end();
    let per_span = allocations() - before;
    assert!(per_span <= 2, "a no-op span allocates {per_span} times");

    const CALLS: u64 = 1_000;
    let before = allocations();
    for _ in 0..CALLS {
        registry.record_llm_call(&tenant, &call).unwrap();
    }
    let per_call = (allocations() - before) as f64 / CALLS as f64;
    assert_eq!(per_call, per_span as f64, "allocations per call");
    let costs = registry.llm_costs("acme");
    assert_eq!(costs[0].calls, CALLS + 1);
    assert_eq!(costs[0].total().minor_units(), 2_102);
}
