//! One tenant's entry in the registry: everything prepared once for its metric label, and
//! what a finished request records through it.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::{OnceLock, RwLock};
use std::time::{Duration, Instant};

use opentelemetry::baggage::BaggageExt;
use opentelemetry::metrics::BoundHistogram;
use opentelemetry::KeyValue;

use crate::metrics::HttpInstruments;
use crate::query::{QuerySeries, QuotaSlot, RegisteredInfo};
use crate::registry::{Hasher, TenantRegistry};
use crate::semconv::{self, METHOD_SLOTS};
use crate::stats::Stats;
use crate::tenant::TenantId;

/// Distinct (method, route, status) series bound per tenant before falling back to unbound
/// recording, which the SDK's own limit then bounds.
const MAX_SERIES_PER_TENANT: usize = 512;

// An entry's life under idle reclaim: live, pinned by registration (never reclaimed), or
// retired by a sweep (lookups that still find it treat it as gone).
pub(crate) const LIVE: u8 = 0;
pub(crate) const PINNED: u8 = 1;
pub(crate) const RETIRED: u8 = 2;

/// Everything prepared once for one metric label.
pub(crate) struct TenantEntry {
    pub(crate) id: TenantId,
    kv: KeyValue,
    overflow: bool,
    /// Requests in flight per method, observed into `http.server.active_requests` at
    /// collection time: a series exists only while its entry does, so a reclaimed tenant's
    /// series go with it (the SDK keeps up-down counters cumulative even under delta, and a
    /// bound one would stay exported for good).
    active: [AtomicI64; METHOD_SLOTS],
    /// The methods this tenant has served, one bit each: their series are reported, at zero
    /// too, for as long as the tenant keeps its slot.
    methods_seen: AtomicU16,
    durations: RwLock<HashMap<SeriesKey, BoundHistogram<f64>, Hasher>>,
    pub(crate) requests: Stats,
    /// The last hour of request outcomes, for the SLA gauges.
    pub(crate) sla: crate::sla::SlaWindow,
    pub(crate) queries: Stats,
    /// Bound on the first query, so tenants that only serve HTTP export no `rag.*` series.
    pub(crate) query_series: OnceLock<QuerySeries>,
    pub(crate) quota: RwLock<Vec<QuotaSlot>>,
    pub(crate) info: RwLock<Option<RegisteredInfo>>,
    /// Last lookup, in ms since the registry's epoch; kept only when idle tenants are reclaimed.
    last_seen_ms: AtomicU64,
    /// Registered explicitly: never reclaimed.
    /// [`LIVE`], [`PINNED`] (registered explicitly: never reclaimed) or [`RETIRED`] (swept
    /// out; lookups that still find it treat it as absent).
    pub(crate) state: AtomicU8,
    /// The registry's epoch, when idle tenants are reclaimed (`touch` is free otherwise).
    clock: Option<Instant>,
    /// A context holding baggage `tenant.id`, the base of every request's context.
    context: opentelemetry::Context,
}

/// What a finished request's duration series is keyed on, all small and `Copy` so a lookup
/// allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct SeriesKey {
    method: u8,
    status: u16,
    error: ErrorKind,
    route: Option<u32>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum ErrorKind {
    None,
    /// `error.type` is the 5xx status code.
    Status,
    /// `cancelled`, a gRPC status name, or an error's type name: static, so the set is finite.
    Named(&'static str),
}

/// How a request ended, for its duration series.
pub(crate) struct Outcome<'a> {
    pub(crate) method: usize,
    pub(crate) route: Option<&'a str>,
    /// The route's id in the registry's table, looked up once when the request came in; `None`
    /// with a route means the table was full.
    pub(crate) route_id: Option<u32>,
    pub(crate) status: Option<http::StatusCode>,
    /// `cancelled`, or the inner service's error type; `None` lets a 5xx status speak for itself.
    pub(crate) error_type: Option<&'static str>,
    pub(crate) duration: Duration,
    /// When it ended (one clock reading serves the duration and the sliding window).
    pub(crate) end: Instant,
}

impl TenantEntry {
    pub(crate) fn new(
        id: TenantId,
        overflow: bool,
        window: Duration,
        clock: Option<Instant>,
    ) -> Self {
        let id_value = id.to_value();
        TenantEntry {
            kv: id.to_key_value(),
            id,
            overflow,
            active: Default::default(),
            methods_seen: AtomicU16::new(0),
            durations: RwLock::new(HashMap::with_hasher(Hasher::default())),
            requests: Stats::new(window),
            sla: crate::sla::SlaWindow::default(),
            queries: Stats::new(window),
            query_series: OnceLock::new(),
            quota: RwLock::new(Vec::new()),
            info: RwLock::new(None),
            last_seen_ms: AtomicU64::new(0),
            state: AtomicU8::new(LIVE),
            clock,
            context: opentelemetry::Context::new()
                .with_baggage([KeyValue::new(crate::tenant::TENANT_ID_KEY, id_value)]),
        }
    }

    pub(crate) fn context(&self) -> &opentelemetry::Context {
        &self.context
    }

    /// Notes that the tenant was active now; free when idle tenants are not reclaimed.
    pub(crate) fn touch(&self) {
        if let Some(epoch) = self.clock {
            let now = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
            // Sequentially consistent with the sweep's state change and second read (see
            // `retire_if_idle`): one of the two always sees the other.
            self.last_seen_ms.store(now, Ordering::SeqCst);
        }
    }

    /// Nothing in flight and not looked up for `idle_ms`.
    pub(crate) fn is_idle(&self, now_ms: u64, idle_ms: u64) -> bool {
        self.requests.active() == 0
            && self.queries.active() == 0
            && now_ms.saturating_sub(self.last_seen_ms.load(Ordering::Relaxed)) >= idle_ms
    }

    /// Retires the entry if it is idle and not pinned; the state change is what a concurrent
    /// [`TenantEntry::pin`] races against, so exactly one of them wins.
    pub(crate) fn retire_if_idle(&self, now_ms: u64, idle_ms: u64) -> bool {
        if !self.is_idle(now_ms, idle_ms)
            || self
                .state
                .compare_exchange(LIVE, RETIRED, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return false;
        }
        // A lookup may have touched the entry between the first read and the state change;
        // it checks the state after touching, so reading the time again here closes the gap.
        let seen = self.last_seen_ms.load(Ordering::SeqCst);
        if now_ms.saturating_sub(seen) < idle_ms {
            let _ = self
                .state
                .compare_exchange(RETIRED, LIVE, Ordering::SeqCst, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Keeps the entry from ever being reclaimed; false if a sweep retired it first.
    pub(crate) fn pin(&self) -> bool {
        match self
            .state
            .compare_exchange(LIVE, PINNED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(current) => current == PINNED,
        }
    }

    pub(crate) fn is_retired(&self) -> bool {
        self.state.load(Ordering::SeqCst) == RETIRED
    }

    /// The tier given at registration, if any.
    pub(crate) fn tier(&self) -> Option<String> {
        self.info
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|i| i.info.tier.clone())
    }

    pub(crate) fn id(&self) -> &TenantId {
        &self.id
    }

    pub(crate) fn is_overflow(&self) -> bool {
        self.overflow
    }

    /// The prepared `tenant.id` attribute (an `Arc` clone, no allocation).
    pub(crate) fn key_value(&self) -> &KeyValue {
        &self.kv
    }

    pub(crate) fn request_started(&self, method: usize) {
        let method = method.min(METHOD_SLOTS - 1);
        let bit = 1u16 << method;
        // Read first: the bit is set once, and a write on every request would bounce the cache
        // line between threads.
        if self.methods_seen.load(Ordering::Relaxed) & bit == 0 {
            self.methods_seen.fetch_or(bit, Ordering::Relaxed);
        }
        self.active[method].fetch_add(1, Ordering::Relaxed);
        self.requests.start();
    }

    /// Reports this tenant's in-flight requests per method it has served.
    pub(crate) fn observe_active_requests(&self, observe: &mut dyn FnMut(i64, &[KeyValue])) {
        let seen = self.methods_seen.load(Ordering::Relaxed);
        for method in (0..METHOD_SLOTS).filter(|m| seen & (1 << m) != 0) {
            observe(
                self.active[method].load(Ordering::Relaxed),
                &[
                    self.kv.clone(),
                    KeyValue::new(semconv::HTTP_REQUEST_METHOD, semconv::method_name(method)),
                ],
            );
        }
    }

    pub(crate) fn request_finished(&self, registry: &TenantRegistry, outcome: &Outcome<'_>) {
        let http = &registry.inner.http;
        self.active[outcome.method.min(METHOD_SLOTS - 1)].fetch_sub(1, Ordering::Relaxed);
        let failed =
            outcome.error_type.is_some() || outcome.status.is_some_and(|s| s.is_server_error());
        self.requests
            .finish_at(outcome.duration, failed, outcome.end);
        let minute = outcome
            .end
            .saturating_duration_since(registry.inner.epoch)
            .as_secs()
            / 60;
        // The client's own cancellation spends no error budget.
        let server_failed = failed && outcome.error_type != Some(semconv::ERROR_CANCELLED);
        self.sla.record(minute, server_failed);
        self.touch();

        let seconds = outcome.duration.as_secs_f64();
        // A known route that could not get an id would merge with route-less series; record it
        // unbound instead, under its real attributes.
        let key = match (outcome.route, outcome.route_id) {
            (Some(_), None) => None,
            _ => Some(SeriesKey {
                method: outcome.method as u8,
                status: outcome.status.map_or(0, |s| s.as_u16()),
                error: match (outcome.error_type, outcome.status) {
                    (Some(name), _) => ErrorKind::Named(name),
                    (None, Some(s)) if s.is_server_error() => ErrorKind::Status,
                    (None, _) => ErrorKind::None,
                },
                route: outcome.route_id,
            }),
        };
        let Some(key) = key else {
            return self.record_unbound(http, outcome, seconds);
        };
        {
            let map = self.durations.read().unwrap_or_else(|e| e.into_inner());
            if let Some(bound) = map.get(&key) {
                bound.record(seconds);
                return;
            }
        }
        let mut map = self.durations.write().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_SERIES_PER_TENANT && !map.contains_key(&key) {
            drop(map);
            return self.record_unbound(http, outcome, seconds);
        }
        map.entry(key)
            .or_insert_with(|| http.duration.bind(&self.duration_attributes(outcome)))
            .record(seconds);
    }

    pub(crate) fn record_unbound(
        &self,
        http: &HttpInstruments,
        outcome: &Outcome<'_>,
        seconds: f64,
    ) {
        http.duration
            .record(seconds, &self.duration_attributes(outcome));
    }

    pub(crate) fn duration_attributes(&self, outcome: &Outcome<'_>) -> Vec<KeyValue> {
        let mut attrs = Vec::with_capacity(5);
        attrs.push(self.kv.clone());
        attrs.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD,
            semconv::method_name(outcome.method),
        ));
        if let Some(route) = outcome.route {
            attrs.push(KeyValue::new(semconv::HTTP_ROUTE, route.to_owned()));
        }
        if let Some(status) = outcome.status {
            attrs.push(KeyValue::new(
                semconv::HTTP_RESPONSE_STATUS_CODE,
                i64::from(status.as_u16()),
            ));
        }
        if let Some(error) = outcome.error_type {
            attrs.push(KeyValue::new(semconv::ERROR_TYPE, error));
        } else if let Some(status) = outcome.status.filter(|s| s.is_server_error()) {
            attrs.push(KeyValue::new(
                semconv::ERROR_TYPE,
                status.as_str().to_owned(),
            ));
        }
        attrs
    }
}

impl fmt::Debug for TenantEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantEntry").field("id", &self.id).finish()
    }
}
