//! Cost of the recording path per request: tenant lookup plus the HTTP server metrics and the
//! in-process statistics (what the layer does around a request, without the service and the
//! span), and the query path (`start_query` + `end`), for 1, 100 and 10,000 tenants, on one
//! thread and on two threads at once.
//!
//! With two threads, each thread records `iters` requests while the other does the same and
//! the wall time is reported per request of one thread, so contention shows as a rise over the
//! single-threaded figure.

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use opentelemetry_sdk::metrics::{ManualReader, SdkMeterProvider};
use tenant_otel::query::QueryOutcome;
use tenant_otel::TenantRegistry;

const TENANT_COUNTS: [usize; 3] = [1, 100, 10_000];

struct Setup {
    registry: TenantRegistry,
    ids: Vec<String>,
    // Kept alive so the instruments record into a real SDK pipeline rather than no-ops.
    _provider: SdkMeterProvider,
}

fn setup(tenants: usize) -> Setup {
    let provider = SdkMeterProvider::builder()
        .with_reader(ManualReader::builder().build())
        .build();
    let registry = TenantRegistry::builder()
        .meter_provider(&provider)
        .max_tenants(tenants)
        .build();
    let ids: Vec<String> = (0..tenants).map(|i| format!("tenant-{i:05}")).collect();
    // Admit every tenant and bind its series up front: the benchmark measures the steady state.
    for id in &ids {
        registry.__bench_request(id, "/v1/query", 200, Duration::from_micros(800));
        registry
            .start_query(id.as_str())
            .unwrap()
            .end(QueryOutcome::success());
    }
    Setup {
        registry,
        ids,
        _provider: provider,
    }
}

fn http_request(registry: &TenantRegistry, id: &str) {
    registry.__bench_request(black_box(id), "/v1/query", 200, Duration::from_micros(800));
}

fn query(registry: &TenantRegistry, id: &str) {
    registry
        .start_query(black_box(id))
        .unwrap()
        .end(QueryOutcome::success().docs_retrieved(4).llm_tokens(250));
}

fn run(setup: &Setup, iters: u64, threads: usize, op: fn(&TenantRegistry, &str)) -> Duration {
    let n = setup.ids.len();
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let barrier = &barrier;
            s.spawn(move || {
                barrier.wait();
                // Threads walk the tenants from different offsets, as unrelated requests would.
                let mut i = t * n / threads.max(1);
                for _ in 0..iters {
                    op(&setup.registry, &setup.ids[i]);
                    i += 1;
                    if i == n {
                        i = 0;
                    }
                }
            });
        }
        barrier.wait();
        let start = Instant::now();
        // Leaving the scope joins the threads.
        start
    })
    .elapsed()
}

fn bench(c: &mut Criterion) {
    for (name, op) in [
        ("http_request", http_request as fn(&TenantRegistry, &str)),
        ("query", query as fn(&TenantRegistry, &str)),
    ] {
        let mut group = c.benchmark_group(name);
        for tenants in TENANT_COUNTS {
            let setup = setup(tenants);
            for threads in [1usize, 2] {
                group.bench_with_input(
                    BenchmarkId::new(format!("{threads}_thread"), tenants),
                    &setup,
                    |b, setup| {
                        if threads == 1 {
                            let mut i = 0;
                            b.iter(|| {
                                op(&setup.registry, &setup.ids[i]);
                                i = (i + 1) % setup.ids.len();
                            });
                        } else {
                            b.iter_custom(|iters| run(setup, iters, threads, op));
                        }
                    },
                );
            }
        }
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
