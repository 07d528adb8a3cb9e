//! One tenant's entry in the registry: everything prepared once for its metric label, and what
//! a finished request records through it.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU16, AtomicU64, AtomicU8, Ordering};
use std::sync::{Arc, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use opentelemetry::baggage::BaggageExt;
use opentelemetry::metrics::{BoundGauge, BoundHistogram};
use opentelemetry::{Context, KeyValue};

use super::handle::InContext;
use super::reclaim::ReclaimClock;
use super::Hasher;
use crate::classify::{Failure, GrpcCode};
use crate::instruments::semconv::{self, METHOD_SLOTS};
use crate::instruments::{HttpInstruments, QuerySeries};
use crate::protect::TenantGuard;
use crate::stats::{Load, Slo, SloWindows, Stats};
use crate::tenant::{TenantId, TenantInfo, TENANT_ID_KEY};

/// Distinct (method, route, status) series bound per tenant before falling back to unbound
/// recording, which the SDK's own limit then bounds.
pub(crate) const MAX_SERIES_PER_TENANT: usize = 512;

/// Distinct `resource_type` values one tenant may report quota usage for. Quotas are a short,
/// fixed list (queries, tokens, storage, ...); more than this means something feeds free text in.
pub const MAX_QUOTA_RESOURCES: usize = 8;

/// Everything prepared once for one metric label.
pub(crate) struct TenantEntry {
    pub(super) id: TenantId,
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
    /// Read on every finished request: a map readers do not serialize on, not a lock.
    durations: papaya::HashMap<SeriesKey, BoundHistogram<f64>, Hasher>,
    pub(crate) requests: Stats,
    /// Request outcomes over every SLO window.
    pub(crate) slo: SloWindows,
    /// Requests slower than this count against the latency objective (`u64::MAX`: none).
    slow_after_micros: AtomicU64,
    /// This tenant's own objectives, instead of its tier's.
    slo_override: RwLock<Option<Slo>>,
    pub(crate) queries: Stats,
    /// Made on the first query, so tenants that only serve HTTP report no `rag.*` series.
    pub(crate) query_series: OnceLock<QuerySeries>,
    quota: RwLock<Vec<QuotaSlot>>,
    info: RwLock<Option<RegisteredInfo>>,
    /// Last lookup, in ms since the registry's epoch; kept only when idle tenants are reclaimed.
    pub(super) last_seen_ms: AtomicU64,
    /// Where the entry is in its life under idle reclaim (see `reclaim`).
    pub(super) state: AtomicU8,
    /// The registry's clock and epoch, when idle tenants are reclaimed (`touch` is free
    /// otherwise).
    pub(super) clock: Option<ReclaimClock>,
    /// The registry's collection count when the tenant was last active: a tenant retired
    /// before a collection has passed may still be in the current export interval.
    pub(super) seen_collection: AtomicU64,
    /// A context holding baggage `tenant.id`, the base of every request's context.
    context: Context,
    /// The W3C `baggage` header of that context, for outgoing calls.
    baggage_header: Option<http::HeaderValue>,
    /// Protection state: own limits, and what ties each protection's lane to this entry.
    pub(crate) guard: TenantGuard,
}

/// What a finished request's duration series is keyed on, all small and `Copy` so a lookup
/// allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct SeriesKey {
    method: u8,
    /// The HTTP status, or for a gRPC call its status code.
    status: u16,
    rpc: bool,
    failure: Failure,
    route: Option<u32>,
}

/// How a request ended, for its duration series, statistics and SLA.
#[derive(Debug)]
pub(crate) struct Outcome<'a> {
    pub(crate) method: usize,
    pub(crate) route: Option<&'a str>,
    /// The route's id in the registry's table, looked up once when the request came in; `None`
    /// with a route means the table was full.
    pub(crate) route_id: Option<u32>,
    /// A gRPC call's status code: its duration goes to `rpc.server.call.duration`, with the
    /// route as its method.
    pub(crate) rpc_code: Option<GrpcCode>,
    pub(crate) status: Option<http::StatusCode>,
    pub(crate) failure: Failure,
    pub(crate) duration: Duration,
    /// When it ended (one clock reading serves the duration and the sliding window).
    pub(crate) end: Instant,
}

/// One `resource_type` of a tenant's quota: its bound gauge and the last value, for the view.
struct QuotaSlot {
    resource: Box<str>,
    gauge: BoundGauge<f64>,
    /// `f64` bits.
    percent: AtomicU64,
}

impl QuotaSlot {
    fn set(&self, percent: f64) {
        self.percent.store(percent.to_bits(), Ordering::Relaxed);
        self.gauge.record(percent);
    }
}

/// A tenant already reports [`MAX_QUOTA_RESOURCES`] other resource types.
#[derive(Debug)]
pub(crate) struct TooManyResources;

/// A tenant's metadata and its prepared `tenant.info` attributes.
struct RegisteredInfo {
    info: TenantInfo,
    attributes: Arc<[KeyValue; 4]>,
}

impl TenantEntry {
    pub(super) fn new(
        id: TenantId,
        overflow: bool,
        window: Duration,
        now: Instant,
        clock: Option<ReclaimClock>,
    ) -> Arc<Self> {
        Arc::new_cyclic(|this| TenantEntry {
            kv: id.to_key_value(),
            // A weak reference: the entry owns this context, and a strong one would keep it
            // alive forever.
            context: Context::new()
                .with_baggage([KeyValue::new(TENANT_ID_KEY, id.to_value())])
                .with_value(InContext::Prepared(Weak::clone(this))),
            // A valid id is `[A-Za-z0-9._-]`: nothing to percent-encode.
            baggage_header: http::HeaderValue::try_from(format!("{TENANT_ID_KEY}={}", id.as_str()))
                .ok(),
            id,
            overflow,
            active: Default::default(),
            methods_seen: AtomicU16::new(0),
            durations: papaya::HashMap::with_hasher(Hasher::default()),
            requests: Stats::new(window, now),
            slo: SloWindows::default(),
            slow_after_micros: AtomicU64::new(u64::MAX),
            slo_override: RwLock::new(None),
            guard: TenantGuard::new(overflow),
            queries: Stats::new(window, now),
            query_series: OnceLock::new(),
            quota: RwLock::new(Vec::new()),
            info: RwLock::new(None),
            last_seen_ms: AtomicU64::new(0),
            state: AtomicU8::new(super::reclaim::LIVE),
            clock,
            seen_collection: AtomicU64::new(0),
        })
    }

    /// The context holding this tenant's baggage and the tenant itself, prepared once.
    pub(crate) fn context(&self) -> &Context {
        &self.context
    }

    pub(crate) fn id(&self) -> &TenantId {
        &self.id
    }

    /// True for the shared `__overflow__` and `__unknown__` entries.
    pub(crate) fn is_shared(&self) -> bool {
        self.overflow
    }

    /// The `baggage` header of a context that holds only this tenant.
    pub(crate) fn baggage_header(&self) -> Option<&http::HeaderValue> {
        self.baggage_header.as_ref()
    }

    /// The prepared `tenant.id` attribute (an `Arc` clone, no allocation).
    pub(crate) fn key_value(&self) -> &KeyValue {
        &self.kv
    }

    /// The tier given at registration, if any.
    pub(crate) fn tier(&self) -> Option<String> {
        read(&self.info).as_ref().map(|i| i.info.tier.clone())
    }

    /// The metadata given at registration, if any.
    pub(crate) fn info(&self) -> Option<TenantInfo> {
        read(&self.info).as_ref().map(|i| i.info.clone())
    }

    /// Replaces the metadata, with its `tenant.info` attributes prepared once.
    pub(crate) fn set_info(&self, info: TenantInfo) {
        let info = info.bounded();
        let attributes = Arc::new([
            self.kv.clone(),
            KeyValue::new(semconv::TENANT_TIER, info.tier.clone()),
            KeyValue::new(semconv::TENANT_REGION, info.region.clone()),
            KeyValue::new(semconv::TENANT_NAME, info.name.clone()),
        ]);
        *self.info.write().unwrap_or_else(|e| e.into_inner()) =
            Some(RegisteredInfo { info, attributes });
        // The tier may have changed, and with it the limits.
        self.guard.invalidate();
    }

    /// Reports `tenant.info` for this tenant, if it has metadata.
    pub(crate) fn observe_info(&self, observe: &mut dyn FnMut(u64, &[KeyValue])) {
        let attributes = read(&self.info).as_ref().map(|i| Arc::clone(&i.attributes));
        if let Some(attributes) = attributes {
            observe(1, &attributes[..]);
        }
    }

    /// Sets the quota usage of `resource`, binding its gauge on first use.
    pub(crate) fn set_quota(
        &self,
        resource: &str,
        percent: f64,
        bind: impl FnOnce() -> BoundGauge<f64>,
    ) -> Result<(), TooManyResources> {
        let find = |slots: &[QuotaSlot]| slots.iter().position(|s| &*s.resource == resource);
        {
            let slots = read(&self.quota);
            if let Some(i) = find(&slots) {
                slots[i].set(percent);
                return Ok(());
            }
        }
        let mut slots = self.quota.write().unwrap_or_else(|e| e.into_inner());
        // Another thread may have added it between the two locks.
        if let Some(i) = find(&slots) {
            slots[i].set(percent);
            return Ok(());
        }
        if slots.len() >= MAX_QUOTA_RESOURCES {
            return Err(TooManyResources);
        }
        let slot = QuotaSlot {
            resource: resource.into(),
            gauge: bind(),
            percent: AtomicU64::new(0),
        };
        slot.set(percent);
        slots.push(slot);
        Ok(())
    }

    /// The last quota usage reported, by resource type.
    pub(crate) fn quotas(&self) -> Vec<(String, f64)> {
        read(&self.quota)
            .iter()
            .map(|s| {
                let percent = f64::from_bits(s.percent.load(Ordering::Relaxed));
                (s.resource.to_string(), percent)
            })
            .collect()
    }

    /// Requests and queries in flight, and the busy time over the sliding window.
    pub(crate) fn load(&self, now: Instant) -> Load {
        let active = self.requests.active().max(0) + self.queries.active().max(0);
        Load {
            inflight: u64::try_from(active).unwrap_or(0),
            busy_micros: self
                .requests
                .window_busy_micros(now)
                .saturating_add(self.queries.window_busy_micros(now)),
        }
    }

    pub(super) fn request_started(&self, method: usize) {
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
    pub(super) fn observe_active_requests(&self, observe: &mut dyn FnMut(i64, &[KeyValue])) {
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

    /// The tenant's own objectives, if set.
    pub(crate) fn slo_override(&self) -> Option<Slo> {
        *read(&self.slo_override)
    }

    /// Sets (or clears) the tenant's own objectives; `effective` is what now applies.
    pub(super) fn set_slo(&self, own: Option<Slo>, effective: Slo) {
        *self.slo_override.write().unwrap_or_else(|e| e.into_inner()) = own;
        self.apply_slo(effective);
    }

    /// Prepares the recording path for the objectives that apply now.
    pub(super) fn apply_slo(&self, effective: Slo) {
        let micros = effective.latency().map_or(u64::MAX, |l| {
            u64::try_from(l.threshold().as_micros()).unwrap_or(u64::MAX)
        });
        self.slow_after_micros.store(micros, Ordering::Relaxed);
    }

    /// Records a finished request, `secs` seconds after the registry's epoch.
    pub(super) fn request_finished(&self, http: &HttpInstruments, secs: u64, o: &Outcome<'_>) {
        self.active[o.method.min(METHOD_SLOTS - 1)].fetch_sub(1, Ordering::Relaxed);
        self.requests
            .finish(o.duration, o.failure.is_failure(), o.end);
        let slow =
            o.duration.as_micros() >= u128::from(self.slow_after_micros.load(Ordering::Relaxed));
        self.slo.record(secs, o.failure.spends_budget(), slow);
        self.touch();

        let seconds = o.duration.as_secs_f64();
        // A known route that could not get an id would merge with route-less series; record it
        // unbound instead, under its real attributes.
        let histogram = match o.rpc_code {
            Some(_) => &http.rpc_duration,
            None => &http.duration,
        };
        if o.route.is_some() && o.route_id.is_none() {
            return histogram.record(seconds, &self.duration_attributes(o));
        }
        let key = SeriesKey {
            method: o.method as u8,
            status: match o.rpc_code {
                Some(code) => u16::from(code.get()),
                None => o.status.map_or(0, |s| s.as_u16()),
            },
            rpc: o.rpc_code.is_some(),
            failure: o.failure,
            route: o.route_id,
        };
        let durations = self.durations.pin();
        if let Some(bound) = durations.get(&key) {
            bound.record(seconds);
            return;
        }
        // The bound is approximate under a race (two new series at once may both get in): the
        // map stays within a few of it, and the SDK's own limit stands behind.
        if durations.len() >= MAX_SERIES_PER_TENANT {
            return histogram.record(seconds, &self.duration_attributes(o));
        }
        durations
            .get_or_insert_with(key, || histogram.bind(&self.duration_attributes(o)))
            .record(seconds);
    }

    fn duration_attributes(&self, o: &Outcome<'_>) -> Vec<KeyValue> {
        let mut attrs = Vec::with_capacity(5);
        attrs.push(self.kv.clone());
        if let Some(code) = o.rpc_code {
            attrs.push(KeyValue::new(semconv::RPC_SYSTEM_NAME, "grpc"));
            attrs.push(KeyValue::new(
                semconv::RPC_METHOD,
                o.route.unwrap_or(semconv::OTHER).to_owned(),
            ));
            attrs.push(KeyValue::new(
                semconv::RPC_RESPONSE_STATUS_CODE,
                code.name(),
            ));
            if let Some(error) = o.failure.error_type(o.status) {
                attrs.push(KeyValue::new(semconv::ERROR_TYPE, error));
            }
            return attrs;
        }
        attrs.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD,
            semconv::method_name(o.method),
        ));
        if let Some(route) = o.route {
            attrs.push(KeyValue::new(semconv::HTTP_ROUTE, route.to_owned()));
        }
        if let Some(status) = o.status {
            attrs.push(KeyValue::new(
                semconv::HTTP_RESPONSE_STATUS_CODE,
                i64::from(status.as_u16()),
            ));
        }
        if let Some(error) = o.failure.error_type(o.status) {
            attrs.push(KeyValue::new(semconv::ERROR_TYPE, error));
        }
        attrs
    }
}

/// A read lock that survives poisoning: a panic elsewhere must not take telemetry, or the
/// request recording it, down too.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read().unwrap_or_else(|e| e.into_inner())
}

impl fmt::Debug for TenantEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantEntry").field("id", &self.id).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::classify::{End, Failure};
    use crate::registry::TenantRegistry;

    /// A tenant sending every status code on every route it can make up binds at most
    /// `MAX_SERIES_PER_TENANT` series; the rest are still recorded, unbound.
    #[test]
    fn a_tenant_binds_a_bounded_number_of_series() {
        let registry = TenantRegistry::builder().build();
        let tenant = registry.resolve("acme").unwrap();
        let method = semconv::method_index(&http::Method::GET);
        let mut finished = 0;
        for route in 0..12u32 {
            for code in 200..300u16 {
                let status = http::StatusCode::from_u16(code).ok();
                registry.request_started(&tenant, method);
                registry.request_finished(
                    &tenant,
                    &Outcome {
                        method,
                        route: Some("/r"),
                        route_id: Some(route),
                        rpc_code: None,
                        status,
                        failure: Failure::classify(status, None, End::Completed),
                        duration: Duration::from_millis(1),
                        end: registry.now(),
                    },
                );
                finished += 1;
            }
        }
        let bound = tenant.entry().durations.len();
        assert_eq!(finished, 1200);
        assert_eq!(bound, MAX_SERIES_PER_TENANT, "series bound for one tenant");
        assert_eq!(tenant.entry().requests.snapshot(registry.now()).total, 1200);
    }
}
