//! Wall clock per request for every stack of [`tenant_otel_peer_bench::Stack`], in one
//! criterion run (group `request`, 100 tenants). Wall clock on shared machines swings by tens of
//! percent between runs; `benches/cost.rs` gives the deterministic figures (instructions and
//! allocations per request) for the same stacks.
//!
//! ```sh
//! cargo bench -p tenant-otel-peer-bench --bench peers -- --warm-up-time 2 --measurement-time 5
//! ```
//!
//! Medians land in `target/criterion/request/<stack>/new/estimates.json`.

use criterion::{criterion_group, criterion_main, Criterion};
use tenant_otel_peer_bench::{setup, Driver, Stack};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("request");
    let mut driver = Driver::new(100);
    // tenant-otel last: `init()` installs a global `tracing` subscriber, which the
    // `tracing`-based peers must not run under.
    for stack in Stack::ALL {
        let setup = setup(stack, 100);
        driver.warm_up(setup.app(), 1000);
        group.bench_function(stack.name(), |b| b.iter(|| driver.request(setup.app())));
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
