//! The simulated service the alert tests drive: a registry, its alerts and the layer on a manual
//! clock, with requests that finish at once (`request`, `burst`) or stay in flight for a while
//! (`run`), so the rules see work in flight exactly as a real service would show it.

use std::convert::Infallible;
use std::time::Duration;

use axum::body::Bytes;
use futures_util::FutureExt;
use http_body_util::Empty;
use tenant_otel::alert::{AlertEngine, AlertEvent, AlertKind, AlertRules};
use tenant_otel::layer::TenantService;
use tenant_otel::{Clock, TenantInfo};
use tenant_otel::{TenantLayer, TenantRegistry, TenantRegistryBuilder};
use tower::{service_fn, Layer, Service};

/// The inner service: answers with the status the request asks for.
pub type Handler = fn(http::Request<()>) -> Answer;
type Answer = std::future::Ready<Result<http::Response<Empty<Bytes>>, Infallible>>;
type Served = TenantService<tower::util::ServiceFn<Handler>>;
/// A request the layer has started and not yet finished.
type Pending = <Served as Service<http::Request<()>>>::Future;

fn respond(req: http::Request<()>) -> Answer {
    let status: u16 = req.headers()["x-status"].to_str().unwrap().parse().unwrap();
    std::future::ready(Ok(http::Response::builder()
        .status(status)
        .body(Empty::new())
        .unwrap()))
}

/// A registry and its alerts on a manual clock, with requests served through the layer.
pub struct Sim {
    pub clock: Clock,
    pub registry: TenantRegistry,
    pub alerts: AlertEngine,
    service: Served,
}

/// One tenant's steady traffic for [`Sim::run`]: a request every `every`, the first `offset`
/// into the run, each in flight for `took`; every `fail_every`-th answered 500 (0: none).
#[derive(Debug, Clone)]
pub struct Stream {
    pub tenant: String,
    pub every: Duration,
    pub took: Duration,
    pub offset: Duration,
    pub fail_every: u64,
}

impl Stream {
    /// `tenant`'s requests, one every `every`, each taking `took`, none failing.
    pub fn new(tenant: &str, every: Duration, took: Duration) -> Stream {
        Stream {
            tenant: tenant.to_owned(),
            every,
            took,
            offset: Duration::ZERO,
            fail_every: 0,
        }
    }
}

impl Sim {
    pub fn new(rules: AlertRules) -> Sim {
        Self::with(|b| b, rules)
    }

    pub fn with(
        configure: impl FnOnce(TenantRegistryBuilder) -> TenantRegistryBuilder,
        rules: AlertRules,
    ) -> Sim {
        let clock = Clock::manual();
        let registry = configure(TenantRegistry::builder().clock(clock.clone())).build();
        let alerts = AlertEngine::new(&registry, rules);
        let layer = TenantLayer::builder()
            .registry(registry.clone())
            .without_spans()
            .build();
        let f: Handler = respond;
        Sim {
            service: layer.layer(service_fn(f)),
            clock,
            registry,
            alerts,
        }
    }

    pub fn tier(&self, tenant: &str, tier: &str) {
        self.registry
            .register_tenant(tenant, TenantInfo::new(tenant, tier, "eu"))
            .unwrap();
    }

    /// Starts a request of `tenant` to be answered with `status`: it is in flight until
    /// [`finish`] is called on it.
    fn start(&mut self, tenant: &str, status: u16) -> Pending {
        let req = http::Request::builder()
            .header("x-tenant-id", tenant)
            .header("x-status", status.to_string())
            .body(())
            .unwrap();
        self.service.call(req)
    }

    /// One request of `tenant` answered with `status`, taking `took` of simulated time.
    pub fn request(&mut self, tenant: &str, status: u16, took: Duration) {
        let pending = self.start(tenant, status);
        self.clock.advance(took);
        assert_eq!(finish(pending), status);
    }

    /// `n` requests of `tenant`, `failed` of them answered 500.
    pub fn burst(&mut self, tenant: &str, n: u64, failed: u64) {
        for i in 0..n {
            let status = if i < failed { 500 } else { 200 };
            self.request(tenant, status, Duration::ZERO);
        }
    }

    pub fn advance(&self, by: Duration) {
        self.clock.advance(by);
    }

    pub fn firing(&self, tenant: &str) -> Vec<AlertKind> {
        self.alerts
            .firing_for(tenant)
            .into_iter()
            .map(|e| e.kind)
            .collect()
    }

    /// Runs `streams` for `length` of simulated time in steps of `step`, with the requests of
    /// each stream overlapping as their durations say, and evaluates the rules every `every`
    /// (as `AlertTask` does); returns the events. The durations, periods and offsets must be
    /// multiples of `step`. Requests still in flight at the end are finished then.
    pub fn run(
        &mut self,
        streams: &[Stream],
        length: Duration,
        step: Duration,
        every: Duration,
    ) -> Vec<AlertEvent> {
        let steps = |d: Duration| {
            let n = d.as_nanos() / step.as_nanos();
            assert_eq!(
                n * step.as_nanos(),
                d.as_nanos(),
                "{d:?} is no multiple of {step:?}"
            );
            n as u64
        };
        let mut in_flight: Vec<(u64, Pending, u16)> = Vec::new();
        let mut sent = vec![0u64; streams.len()];
        let mut events = Vec::new();
        for t in 0..steps(length) {
            let (due, later): (Vec<_>, Vec<_>) = in_flight.into_iter().partition(|r| r.0 <= t);
            in_flight = later;
            for (_, pending, status) in due {
                assert_eq!(finish(pending), status);
            }
            for (s, n) in streams.iter().zip(&mut sent) {
                let (offset, period) = (steps(s.offset), steps(s.every).max(1));
                if t >= offset && (t - offset) % period == 0 {
                    *n += 1;
                    let fails = s.fail_every > 0 && *n % s.fail_every == 0;
                    let status = if fails { 500 } else { 200 };
                    let pending = self.start(&s.tenant, status);
                    in_flight.push((t + steps(s.took), pending, status));
                }
            }
            if t > 0 && t % steps(every) == 0 {
                events.extend(self.alerts.evaluate());
            }
            self.clock.advance(step);
        }
        in_flight.sort_by_key(|r| r.0);
        let mut now = steps(length);
        for (end, pending, status) in in_flight {
            if end > now {
                self.clock.advance(step * (end - now) as u32);
                now = end;
            }
            assert_eq!(finish(pending), status);
        }
        events
    }
}

/// Finishes a started request (its response, body and all) and returns its status.
fn finish(pending: Pending) -> u16 {
    let res = pending
        .now_or_never()
        .expect("the inner service answers at once")
        .unwrap();
    res.status().as_u16()
}
