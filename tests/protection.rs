//! Per-tenant protection: concurrency limits, token-bucket rates, fair-share shedding, changes at
//! run time, and what a shed request looks like to HTTP and gRPC clients, on spans and metrics.

use std::convert::Infallible;
use std::future::Ready;
use std::time::Duration;

use axum::body::Bytes;
use futures_util::FutureExt;
use http_body_util::Empty;
use opentelemetry::Value;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tenant_otel::layer::{ResponseFuture, TenantBody, TenantService};
use tenant_otel::protect::OVERFLOW_BUCKETS;
use tenant_otel::protect::{Limits, Protection, Rate};
use tenant_otel::{Clock, TenantInfo, TenantLayer, TenantRegistry};
use tower::{service_fn, Layer, Service};

type Answer = Ready<Result<http::Response<Empty<Bytes>>, Infallible>>;
type Handler = fn(http::Request<()>) -> Answer;
type Pending = ResponseFuture<Answer, Infallible>;

fn ok(_: http::Request<()>) -> Answer {
    std::future::ready(Ok(http::Response::new(Empty::new())))
}

struct Setup {
    clock: Clock,
    registry: TenantRegistry,
    protection: Protection,
    service: TenantService<tower::util::ServiceFn<Handler>>,
    spans: InMemorySpanExporter,
    metrics: (SdkMeterProvider, InMemoryMetricExporter),
}

fn setup(protection: Protection) -> Setup {
    let clock = Clock::manual();
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let registry = TenantRegistry::builder()
        .clock(clock.clone())
        .meter_provider(&provider)
        .max_tenants(100)
        .build();
    let spans = InMemorySpanExporter::default();
    let tracer = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    let layer = TenantLayer::builder()
        .registry(registry.clone())
        .tracer_provider(&tracer)
        .protection(protection.clone())
        .build();
    let handler: Handler = ok;
    Setup {
        clock,
        registry,
        protection,
        service: layer.layer(service_fn(handler)),
        spans,
        metrics: (provider, exporter),
    }
}

fn request(tenant: &str, grpc: bool) -> http::Request<()> {
    let mut req = http::Request::builder().header("x-tenant-id", tenant);
    if grpc {
        req = req.header("content-type", "application/grpc");
    }
    req.body(()).unwrap()
}

impl Setup {
    /// Starts a request of `tenant` and keeps it in flight (its future not yet polled).
    fn start(&mut self, tenant: &str) -> Pending {
        self.service.call(request(tenant, false))
    }

    /// A request of `tenant` to its end; returns the status and `Retry-After`.
    fn send(&mut self, tenant: &str) -> (u16, Option<String>) {
        let res = finish(self.start(tenant));
        let retry = res
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (res.status().as_u16(), retry)
    }

    /// `tenant.requests.shed` by (tenant, reason).
    fn shed_counts(&self) -> Vec<(String, String, u64)> {
        let (provider, exporter) = &self.metrics;
        exporter.reset();
        provider.force_flush().unwrap();
        let mut out = Vec::new();
        for rm in exporter.get_finished_metrics().unwrap() {
            for sm in rm.scope_metrics() {
                for m in sm.metrics() {
                    if m.name() != "tenant.requests.shed" {
                        continue;
                    }
                    let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() else {
                        panic!("a u64 counter");
                    };
                    for p in sum.data_points() {
                        let attr = |k: &str| {
                            p.attributes()
                                .find(|kv| kv.key.as_str() == k)
                                .map(|kv| kv.value.to_string())
                                .unwrap()
                        };
                        out.push((attr("tenant.id"), attr("reason"), p.value()));
                    }
                }
            }
        }
        out.sort();
        out
    }
}

fn finish(pending: Pending) -> http::Response<TenantBody<Empty<Bytes>>> {
    pending.now_or_never().unwrap().unwrap()
}

#[test]
fn a_concurrency_limit_sheds_past_it_and_frees_the_slot_when_a_request_ends() {
    let mut s = setup(Protection::new().default_limits(Limits::none().concurrency(2)));
    let first = s.start("acme");
    let second = s.start("acme");
    assert_eq!(s.send("acme"), (429, Some("1".into())));
    // Another tenant has slots of its own.
    assert_eq!(s.send("globex").0, 200);
    drop(first);
    assert_eq!(s.send("acme").0, 200);
    assert_eq!(finish(second).status(), 200);
    assert_eq!(s.protection.in_flight(), 0, "every slot given back");
    assert_eq!(s.shed_counts(), [("acme".into(), "concurrency".into(), 1)]);
    let shed_span = s
        .spans
        .get_finished_spans()
        .unwrap()
        .into_iter()
        .find(|span| {
            span.attributes
                .iter()
                .any(|kv| kv.key.as_str() == "tenant.shed")
        })
        .expect("the shed request's span says so");
    let attr = |k: &str| {
        shed_span
            .attributes
            .iter()
            .find(|kv| kv.key.as_str() == k)
            .map(|kv| kv.value.clone())
    };
    assert_eq!(attr("tenant.shed"), Some(Value::from("concurrency")));
    assert_eq!(attr("http.response.status_code"), Some(Value::I64(429)));
}

#[test]
fn a_rate_limit_refills_with_time_and_says_when_to_retry() {
    let mut s =
        setup(Protection::new().tier("free", Limits::none().rate(Rate::per_second(2).burst(2))));
    s.registry
        .register_tenant("free-co", TenantInfo::new("Free Co", "free", "eu"))
        .unwrap();
    assert_eq!(s.send("free-co").0, 200);
    assert_eq!(s.send("free-co").0, 200);
    let (status, retry) = s.send("free-co");
    assert_eq!((status, retry.as_deref()), (429, Some("1")));
    // Tenants of other tiers are not limited.
    for _ in 0..10 {
        assert_eq!(s.send("premium-co").0, 200);
    }
    s.clock.advance(Duration::from_millis(500));
    assert_eq!(
        s.send("free-co").0,
        200,
        "one token back after half a second"
    );
    assert_eq!(s.send("free-co").0, 429);
    assert_eq!(s.shed_counts(), [("free-co".into(), "rate".into(), 2)]);
}

#[test]
fn limits_change_at_run_time_per_tier_and_per_tenant() {
    let mut s = setup(Protection::new().default_limits(Limits::none().concurrency(1)));
    let held = s.start("acme");
    assert_eq!(s.send("acme").0, 429);
    // The tier's limit raised while a request is in flight: the next one passes.
    s.protection
        .set_default_limits(Limits::none().concurrency(3));
    assert_eq!(s.send("acme").0, 200);
    // A tenant of its own limit, tighter than its tier's.
    s.registry
        .set_tenant_limits("acme", Some(Limits::none().concurrency(1)))
        .unwrap();
    assert_eq!(s.send("acme").0, 429);
    s.registry.set_tenant_limits("acme", None).unwrap();
    assert_eq!(s.send("acme").0, 200);
    drop(held);
}

#[test]
fn fair_share_sheds_the_tenant_over_its_share_and_never_those_under_it() {
    let mut s = setup(Protection::new().fair_share(8));
    // The hog fills the service: 8 in flight is the capacity, so nothing is shed yet.
    let mut hog: Vec<Pending> = (0..8).map(|_| s.start("hog")).collect();
    // Saturated now: the newcomers hold 1 each, far under an equal split, and are served.
    let small: Vec<Pending> = ["a", "b", "c"].iter().map(|t| s.start(t)).collect();
    assert_eq!(s.protection.in_flight(), 11);
    // The hog asking for more is over its share (8 of 11 in flight, a quarter of 8 is 2).
    assert_eq!(s.send("hog"), (429, Some("1".into())));
    assert_eq!(s.send("a").0, 200, "a tenant under its share is never shed");
    for p in small {
        assert_eq!(finish(p).status(), 200);
    }
    // Back under capacity: the hog is served again.
    hog.truncate(4);
    assert_eq!(s.send("hog").0, 200);
    drop(hog);
    assert_eq!(s.shed_counts(), [("hog".into(), "fair_share".into(), 1)]);
}

#[test]
fn grpc_callers_get_resource_exhausted() {
    let mut s = setup(Protection::new().default_limits(Limits::none().concurrency(0)));
    let res = finish(s.service.call(request("acme", true)));
    assert_eq!(res.status(), 200, "gRPC carries its status in grpc-status");
    assert_eq!(res.headers()["grpc-status"], "8");
    assert!(res.headers().contains_key("retry-after"));
}

#[test]
fn a_flood_of_tenant_ids_keeps_the_limiters_bounded() {
    let mut s = setup(Protection::new().default_limits(Limits::none().rate(Rate::per_second(1))));
    let mut overflow_served = 0;
    for i in 0..5_000 {
        let status = s.send(&format!("t-{i}")).0;
        if i >= 100 && status == 200 {
            overflow_served += 1;
        }
    }
    // Each admitted tenant's bucket lives in its registry entry. Past the cap of 100 the other
    // 4,900 ids are limited on a fixed set of hashed buckets: each bucket lets its one token
    // through (the clock stands still), so no more than that many are served, and 4,900 draws
    // reach nearly every bucket (about 1,015 of 1,024 on average).
    assert_eq!(s.registry.len(), 100);
    assert!(
        (900..=OVERFLOW_BUCKETS).contains(&overflow_served),
        "overflow ids served: {overflow_served}"
    );
    let shed: u64 = s.shed_counts().iter().map(|(_, _, n)| n).sum();
    assert_eq!(shed, 4_900 - overflow_served as u64);
}

#[test]
fn a_flooder_past_the_cap_does_not_exhaust_the_limits_of_other_tenants_past_it() {
    let mut s = setup(Protection::new().default_limits(Limits::none().rate(Rate::per_second(100))));
    for i in 0..100 {
        assert_eq!(s.send(&format!("junk-{i}")).0, 200);
    }
    assert_eq!(s.registry.len(), 100, "junk ids fill the cap");
    let newcomers: Vec<String> = (0..10).map(|i| format!("newcomer-{i}")).collect();
    let mut served = vec![0u32; newcomers.len()];
    let (mut flood_served, mut flood_shed) = (0u32, 0u32);
    // Two simulated seconds in 10 ms steps: the flooder at 1,000 a second, ten times its limit,
    // each newcomer at 10 a second, a tenth of it.
    for step in 0..200 {
        for _ in 0..10 {
            match s.send("flooder").0 {
                200 => flood_served += 1,
                429 => flood_shed += 1,
                other => panic!("status {other}"),
            }
        }
        if step % 10 == 0 {
            for (n, id) in served.iter_mut().zip(&newcomers) {
                if s.send(id).0 == 200 {
                    *n += 1;
                }
            }
        }
        s.clock.advance(Duration::from_millis(10));
    }
    // The flooder keeps its own limit: a burst of 100, then 1 token per 10 ms step.
    assert!(
        (250..=320).contains(&flood_served),
        "flooder served {flood_served}"
    );
    assert_eq!(flood_served + flood_shed, 2_000);
    // A newcomer shares a bucket with the flooder only if their ids hash to the same one of
    // 1,024 (the hash's key is random per process): allow one such newcomer of ten, which two
    // would need about once in 20,000 runs.
    let total: u32 = served.iter().sum();
    let untouched = served.iter().filter(|&&n| n == 20).count();
    assert!(
        untouched >= 9 && (180..=200).contains(&total),
        "newcomers served (20 sent each): {served:?}; flooder served {flood_served}"
    );
}

/// A layer over `registry` with `protection`, and no spans.
fn protected(registry: &TenantRegistry, protection: &Protection) -> Protected {
    let handler: Handler = ok;
    TenantLayer::builder()
        .registry(registry.clone())
        .without_spans()
        .protection(protection.clone())
        .build()
        .layer(service_fn(handler))
}

type Protected = TenantService<tower::util::ServiceFn<Handler>>;

#[test]
fn layers_sharing_a_registry_each_keep_their_own_limits_and_counts() {
    let registry = TenantRegistry::builder().clock(Clock::manual()).build();
    let strict = Protection::new().default_limits(Limits::none().concurrency(1));
    let loose = Protection::new().default_limits(Limits::none().concurrency(100));
    let (mut one, mut hundred) = (protected(&registry, &strict), protected(&registry, &loose));
    let status = |svc: &mut Protected, tenant: &str| {
        finish(svc.call(request(tenant, false))).status().as_u16()
    };

    // The strict layer sees "acme" first; then the loose one takes 100 of its requests at once.
    let held_strict = one.call(request("acme", false));
    let strict_second = status(&mut one, "acme");
    let held_loose: Vec<Pending> = (0..100)
        .map(|_| hundred.call(request("acme", false)))
        .collect();
    let loose_held = loose.in_flight();
    let loose_past_limit = status(&mut hundred, "acme");
    let strict_held = strict.in_flight();
    drop(held_loose);

    // The other order: the loose layer sees "globex" first, then the strict one keeps to 1.
    let held_loose: Vec<Pending> = (0..5)
        .map(|_| hundred.call(request("globex", false)))
        .collect();
    let held_globex = one.call(request("globex", false));
    let strict_second_globex = status(&mut one, "globex");
    assert_eq!(
        (
            strict_second,
            loose_held,
            loose_past_limit,
            strict_held,
            strict_second_globex
        ),
        (429, 100, 429, 1, 429),
        "(strict layer's 2nd, loose layer's held of 100, its 101st, strict held, strict's 2nd \
         after the loose layer went first)"
    );
    assert_eq!((strict.in_flight(), loose.in_flight()), (2, 5));
    for p in held_loose.into_iter().chain([held_strict, held_globex]) {
        assert_eq!(finish(p).status(), 200);
    }
    assert_eq!((strict.in_flight(), loose.in_flight()), (0, 0));
}
