//! The sampler's tenants are the registry's: a tenant the registry admits keeps its floor, one it
//! reclaims gives its budget back, and the cap is the registry's, under `init()` and wired by
//! hand. Asserted on the spans exported.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::time::Duration;

use opentelemetry::trace::{SpanKind, TraceId};
use opentelemetry::KeyValue;
use opentelemetry_sdk::trace::{
    InMemorySpanExporter, SamplingDecision, SdkTracerProvider, ShouldSample,
};
use tenant_otel::sampling::TenantSampler;
use tenant_otel::{Clock, Telemetry, TenantLayer, TenantRegistry};
use tower::{service_fn, Layer, ServiceExt};

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

/// One request of `tenant` through `layer`.
async fn send(layer: &TenantLayer, tenant: &str) {
    let res = layer
        .layer(service_fn(|_req: http::Request<()>| async {
            Ok::<_, Infallible>(http::Response::new(String::new()))
        }))
        .oneshot(
            http::Request::builder()
                .header("x-tenant-id", tenant)
                .body(())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
}

/// Spans kept, by `tenant.id`.
fn kept(spans: &InMemorySpanExporter) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for span in spans.get_finished_spans().unwrap() {
        let tenant = span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == "tenant.id")
            .map(|kv| kv.value.to_string())
            .unwrap_or_default();
        *out.entry(tenant).or_default() += 1;
    }
    out
}

/// Spans kept of the tenants whose id starts with `prefix`.
fn kept_of(kept: &BTreeMap<String, usize>, prefix: &str) -> usize {
    kept.iter()
        .filter(|(t, _)| t.starts_with(prefix))
        .map(|(_, n)| n)
        .sum()
}

fn telemetry(
    configure: impl FnOnce(tenant_otel::TelemetryBuilder) -> tenant_otel::TelemetryBuilder,
) -> (Telemetry, InMemorySpanExporter) {
    let spans = InMemorySpanExporter::default();
    let builder = Telemetry::builder()
        .span_exporter(spans.clone())
        .without_tracing_subscriber()
        .without_globals()
        .alerts(tenant_otel::alert::Alerts::default().manual());
    (configure(builder).init().unwrap(), spans)
}

/// Sends every request of `tenants` (ids, requests each), flushing the batch processor every few
/// hundred spans so its queue never drops one.
async fn send_all(telemetry: &Telemetry, tenants: impl IntoIterator<Item = (String, usize)>) {
    let layer = telemetry.layer();
    let mut sent = 0;
    for (tenant, requests) in tenants {
        for _ in 0..requests {
            send(&layer, &tenant).await;
            sent += 1;
            if sent % 500 == 0 {
                telemetry.tracer_provider().force_flush().unwrap();
            }
        }
    }
    telemetry.tracer_provider().force_flush().unwrap();
}

/// A flood of ids fills the registry; they go quiet and are reclaimed; the newcomers that take
/// their slots get their own floor, in the same sampling interval.
#[tokio::test]
async fn tenants_reclaimed_by_the_registry_give_their_budget_to_newcomers() {
    let clock = Clock::manual();
    let (telemetry, spans) = telemetry(|b| {
        b.registry(
            TenantRegistry::builder()
                .clock(clock.clone())
                .max_tenants(1_000)
                .reclaim_idle_after(Duration::from_secs(1)),
        )
        .sampler(
            TenantSampler::builder()
                .floor(5)
                .ratio(0.0)
                .clock(clock.clone())
                .build(),
        )
    });
    send_all(&telemetry, (0..1_000).map(|i| (format!("flood-{i}"), 1))).await;
    // Quiet past the reclaim time, well within the sampler's minute.
    clock.advance(Duration::from_secs(2));
    send_all(&telemetry, (0..50).map(|i| (format!("new-{i}"), 3))).await;

    let kept = kept(&spans);
    let new = kept_of(&kept, "new-");
    println!("kept {new} of 150 newcomers' traces");
    assert_eq!(
        kept_of(&kept, "flood-"),
        1_000,
        "each flood id under its floor"
    );
    assert_eq!(new, 150, "every newcomer under its floor of 5");
    let labels = telemetry.registry().tenants();
    assert_eq!(labels.len(), 50, "the registry holds the newcomers alone");
}

/// Under `init()`, the sampler's tenants are the registry's: a cap raised to 3,000 gives 3,000
/// tenants their floor; tenants past it share one budget.
#[tokio::test]
async fn every_tenant_within_the_registry_cap_keeps_its_floor() {
    const CAP: usize = 3_000;
    let (telemetry, spans) = telemetry(|b| {
        b.registry(TenantRegistry::builder().max_tenants(CAP))
            .sampler(TenantSampler::builder().floor(1).ratio(0.0).build())
    });
    send_all(&telemetry, (0..CAP).map(|i| (format!("t-{i}"), 1))).await;
    send_all(&telemetry, (0..10).map(|i| (format!("past-{i}"), 1))).await;

    let kept = kept(&spans);
    let own = kept.iter().filter(|(t, _)| t.starts_with("t-")).count();
    println!("{own} tenants kept their floor under max_tenants({CAP})");
    assert_eq!(own, CAP, "every tenant within the cap kept its one trace");
    assert!(kept.iter().all(|(_, &n)| n == 1), "floor 1 each");
    assert_eq!(
        kept_of(&kept, "past-"),
        1,
        "the tenants past the cap share one floor"
    );
}

/// Wired by hand to a registry: the same as under `init()`, within one interval.
#[tokio::test]
async fn a_sampler_wired_to_a_registry_follows_its_reclaim() {
    let clock = Clock::manual();
    let registry = TenantRegistry::builder()
        .max_tenants(100)
        .clock(clock.clone())
        .reclaim_idle_after(Duration::from_secs(1))
        .build();
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(
            TenantSampler::builder()
                .floor(2)
                .ratio(0.0)
                .clock(clock.clone())
                .registry(&registry)
                .build(),
        )
        .with_simple_exporter(spans.clone())
        .build();
    let layer = TenantLayer::builder()
        .tracer_provider(&provider)
        .registry(registry.clone())
        .build();
    for wave in 0..10 {
        for i in 0..100 {
            for _ in 0..3 {
                send(&layer, &format!("w{wave}-{i}")).await;
            }
        }
        clock.advance(Duration::from_secs(2));
    }
    let kept = kept(&spans);
    assert_eq!(kept.len(), 1_000, "every wave's tenants kept traces");
    let off: Vec<_> = kept.iter().filter(|(_, &n)| n != 2).collect();
    assert!(
        off.is_empty(),
        "each tenant its floor of 2, never more: {off:?}"
    );
}

/// Without a registry, a sampler keeps `max_tenants` budgets, and a budget that has counted
/// nothing in the current interval holds no state: newcomers take those places.
#[tokio::test]
async fn a_standalone_sampler_forgets_tenants_of_past_intervals() {
    let clock = Clock::manual();
    let spans = InMemorySpanExporter::default();
    let provider = SdkTracerProvider::builder()
        .with_sampler(
            TenantSampler::builder()
                .floor(5)
                .ratio(0.0)
                .max_tenants(1_000)
                .clock(clock.clone())
                .build(),
        )
        .with_simple_exporter(spans.clone())
        .build();
    let registry = TenantRegistry::builder().max_tenants(10_000).build();
    let layer = TenantLayer::builder()
        .tracer_provider(&provider)
        .registry(registry)
        .build();
    for i in 0..1_000 {
        send(&layer, &format!("flood-{i}")).await;
    }
    clock.advance(Duration::from_secs(60));
    for i in 0..50 {
        for _ in 0..3 {
            send(&layer, &format!("new-{i}")).await;
        }
    }
    let kept = kept(&spans);
    let new = kept_of(&kept, "new-");
    println!("standalone: kept {new} of 150 newcomers' traces");
    assert_eq!(kept_of(&kept, "flood-"), 1_000);
    assert_eq!(new, 150);
}

/// Following the registry costs a known tenant no allocation: deciding reads two lock-free maps.
#[test]
fn deciding_for_a_known_tenant_allocates_nothing() {
    let registry = TenantRegistry::builder().max_tenants(10).build();
    let sampler = TenantSampler::builder()
        .floor(1)
        .ratio(0.5)
        .cap(u32::MAX)
        .registry(&registry)
        .build();
    registry.resolve("acme").unwrap();
    let attributes = [KeyValue::new("tenant.id", "acme")];
    let decide = |n: u128| {
        sampler
            .should_sample(
                None,
                TraceId::from(n),
                "GET /",
                &SpanKind::Server,
                &attributes,
                &[],
            )
            .decision
    };
    // The first decision makes the tenant's budget and reads its ratio for the interval.
    decide(1);
    let before = allocations();
    let kept = (2..2_002u128)
        .filter(|&n| {
            decide(n.wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835))
                == SamplingDecision::RecordAndSample
        })
        .count();
    let allocated = allocations() - before;
    assert_eq!(allocated, 0, "{allocated} allocations in 2,000 decisions");
    // The ratio path ran: about half kept.
    assert!(
        (700..=1_300).contains(&kept),
        "kept {kept} of 2,000 at ratio 0.5"
    );
}
