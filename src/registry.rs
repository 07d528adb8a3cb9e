//! The tenant registry: one lookup per request from a tenant id to everything prepared for that
//! tenant, with the cardinality cap as its admission rule.

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use opentelemetry::metrics::{Meter, MeterProvider, ObservableGauge, ObservableUpDownCounter};
use opentelemetry::InstrumentationScope;

use crate::entry::{Outcome, TenantEntry, LIVE};
use crate::metrics::HttpInstruments;
use crate::query::QueryInstruments;
use crate::semconv;
use crate::stats::StatsSnapshot;
use crate::tenant::{Tenant, TenantId, OVERFLOW_TENANT, UNKNOWN_TENANT};

/// The maps' hasher: a lookup per request hashes the tenant id, so a fast hasher matters. Keys
/// are client-controlled, but the seed is random per process and the maps are capped, so
/// SipHash's stronger collision resistance buys nothing here.
pub(crate) type Hasher = foldhash::fast::RandomState;

/// The default cap on distinct `tenant.id` values in metrics.
pub const DEFAULT_MAX_TENANTS: usize = 1000;

/// The default length of the sliding window of the in-process view.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

/// Distinct routes remembered for metrics; an application has a fixed set of route templates,
/// so reaching this means something feeds raw paths in as routes, and those lose `http.route`.
const MAX_ROUTES: usize = 1024;

/// Maps tenant ids to their prepared state, and bounds how many get their own metric series.
///
/// Every request makes one lookup here. A known tenant costs a read of a sharded map that readers
/// do not serialize on; a new tenant is admitted while fewer than the cap have been; past the cap
/// (or outside the allowlist) it shares the `__overflow__` entry, so memory and series stay
/// bounded however many distinct ids arrive.
///
/// ```
/// use tenant_otel::TenantRegistry;
///
/// let registry = TenantRegistry::builder().max_tenants(2).build();
/// assert_eq!(registry.resolve("a").metric_label(), "a");
/// assert_eq!(registry.resolve("b").metric_label(), "b");
/// let c = registry.resolve("c");
/// assert_eq!(c.metric_label(), "__overflow__");
/// assert_eq!(c.id().as_str(), "c"); // spans still see the real id
/// assert_eq!(registry.overflowed_requests(), 1);
/// ```
///
/// The registry is also where queries are tracked ([`start_query`](Self::start_query),
/// [`track_query`](Self::track_query)), quotas and tenant metadata are recorded, and the
/// in-process view is read ([`view`](Self::view)).
#[doc(alias = "TenantMetricsCollector")]
#[derive(Clone)]
pub struct TenantRegistry {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    /// Lock-free reads: two threads serving requests never write to a shared cache line to
    /// look a tenant up (a sharded `RwLock` map would, for its reader count).
    tenants: papaya::HashMap<Arc<str>, Arc<TenantEntry>, Hasher>,
    admitted: AtomicUsize,
    max_tenants: usize,
    allowlist_only: bool,
    overflow: Arc<TenantEntry>,
    unknown: Arc<TenantEntry>,
    overflowed: AtomicU64,
    /// Route templates seen so far, each with a small id for series keys; the shared string is
    /// reused for every span's `http.route`.
    routes: papaya::HashMap<Arc<str>, u32, Hasher>,
    next_route: AtomicU32,
    /// Reference point of the `last_seen` clocks of the entries.
    pub(crate) epoch: Instant,
    /// Idle time after which an unpinned tenant gives its slot back, if reclaiming is on.
    reclaim_after: Option<Duration>,
    /// When the last sweep for idle tenants ran (ms since `epoch`): sweeps are rate-limited so
    /// a flood of new ids past the cap does not scan the map on every request.
    last_sweep_ms: AtomicU64,
    pub(crate) window: Duration,
    pub(crate) http: HttpInstruments,
    pub(crate) query: QueryInstruments,
    /// Kept so the `tenant.info` callback lives as long as the registry.
    _info_gauge: ObservableGauge<u64>,
    /// Kept so the `tenant.resource.share` callback lives as long as the registry.
    _share_gauge: ObservableGauge<f64>,
    /// Kept so the in-flight callbacks live as long as the registry.
    _active: [ObservableUpDownCounter<i64>; 2],
    /// Kept so the SLA callbacks live as long as the registry.
    _sla: [ObservableGauge<f64>; 2],
}

/// Builds a [`TenantRegistry`].
#[derive(Debug, Clone)]
pub struct TenantRegistryBuilder {
    max_tenants: usize,
    allowlist: Option<Vec<TenantId>>,
    meter: Option<Meter>,
    window: Duration,
    reclaim_after: Option<Duration>,
    objectives: crate::sla::Objectives,
}

impl Default for TenantRegistryBuilder {
    fn default() -> Self {
        TenantRegistryBuilder {
            max_tenants: DEFAULT_MAX_TENANTS,
            allowlist: None,
            meter: None,
            window: DEFAULT_WINDOW,
            reclaim_after: None,
            objectives: crate::sla::Objectives::default(),
        }
    }
}

impl TenantRegistryBuilder {
    /// At most this many distinct tenants get their own `tenant.id` in metrics (default 1000);
    /// the rest are labelled `__overflow__`.
    pub fn max_tenants(mut self, max: usize) -> Self {
        self.max_tenants = max;
        self
    }

    /// Only these tenants get their own label; every other id is `__overflow__` in metrics.
    /// More can be allowed later with [`TenantRegistry::register`].
    pub fn allowlist<I, T>(mut self, tenants: I) -> Self
    where
        I: IntoIterator<Item = T>,
        T: Into<TenantId>,
    {
        self.allowlist = Some(tenants.into_iter().map(Into::into).collect());
        self
    }

    /// Record metrics with this meter provider (default: the global one, as it is when
    /// [`build`](Self::build) runs).
    pub fn meter_provider<P: MeterProvider + ?Sized>(mut self, provider: &P) -> Self {
        self.meter = Some(provider.meter_with_scope(scope()));
        self
    }

    /// Length of the in-process view's sliding window (default 60 s).
    pub fn window(mut self, window: Duration) -> Self {
        self.window = window;
        self
    }

    /// Let a tenant give its slot back once it has had nothing in flight and nothing recorded
    /// for `idle` (default: never). Only a new tenant arriving at the cap triggers the sweep,
    /// at most once per quarter of `idle`. Tenants admitted with
    /// [`TenantRegistry::register`] or [`TenantRegistry::register_tenant`] keep their slot.
    ///
    /// Use it with **delta** temporality
    /// ([`TelemetryBuilder::reclaim_idle_tenants_after`](crate::TelemetryBuilder::reclaim_idle_tenants_after)
    /// sets both): the reclaimed tenant's bound instruments are dropped and the SDK frees their
    /// series. Under cumulative temporality the SDK keeps reporting every series it has ever
    /// seen, so the number of exported series would keep growing with every tenant that comes
    /// and goes, even though this registry stays within its cap.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_otel::TenantRegistry;
    ///
    /// let registry = TenantRegistry::builder()
    ///     .max_tenants(1)
    ///     .reclaim_idle_after(Duration::from_millis(20))
    ///     .build();
    /// assert_eq!(registry.resolve("a").metric_label(), "a");
    /// assert_eq!(registry.resolve("b").metric_label(), "__overflow__");
    /// std::thread::sleep(Duration::from_millis(30));
    /// assert_eq!(registry.resolve("b").metric_label(), "b"); // `a` went quiet
    /// ```
    pub fn reclaim_idle_after(mut self, idle: Duration) -> Self {
        self.reclaim_after = Some(idle);
        self
    }

    /// The objective (share of HTTP requests that must succeed) of tenants of `tier`, as
    /// registered with [`TenantRegistry::register_tenant`], for `tenant.sla.burn_rate` and
    /// `tenant.sla.error_budget.remaining`. The defaults are those of the Prometheus rules:
    /// `free` 0.99, `standard` 0.995, `premium` 0.999, and 0.995 for a tenant without a tier.
    ///
    /// ```
    /// let registry = tenant_otel::TenantRegistry::builder()
    ///     .objective("enterprise", 0.9995)
    ///     .build();
    /// # let _ = registry;
    /// ```
    pub fn objective(mut self, tier: &str, objective: f64) -> Self {
        self.objectives.set(tier, objective);
        self
    }

    /// Builds the registry.
    pub fn build(self) -> TenantRegistry {
        let meter = self
            .meter
            .unwrap_or_else(|| opentelemetry::global::meter_with_scope(scope()));
        let http = HttpInstruments::new(&meter);
        let query = QueryInstruments::new(&meter);
        let reserved = |name| {
            Arc::new(TenantEntry::new(
                TenantId::reserved(name),
                true,
                self.window,
                None,
            ))
        };
        // The callback holds the registry weakly: the meter provider outlives it otherwise,
        // and a strong reference would keep every tenant entry alive through the provider.
        let epoch = Instant::now();
        let inner = Arc::new_cyclic(|weak: &std::sync::Weak<Inner>| {
            let weak_sla = weak.clone();
            let sla_gauges = crate::sla::gauges(
                &meter,
                self.objectives.clone(),
                move || epoch.elapsed().as_secs() / 60,
                move |report| {
                    if let Some(inner) = weak_sla.upgrade() {
                        inner.for_each_entry(|e| {
                            let tier = e.tier();
                            report(crate::sla::SlaSource {
                                tenant: e.key_value(),
                                tier: tier.as_deref(),
                                window: &e.sla,
                            });
                        });
                    }
                },
            );
            let weak_share = weak.clone();
            let weak_requests = weak.clone();
            let active_requests = crate::active::requests(&meter, move |observe| {
                if let Some(inner) = weak_requests.upgrade() {
                    inner.for_each_entry(|e| e.observe_active_requests(&mut *observe));
                }
            });
            let weak_queries = weak.clone();
            let active_queries = crate::active::queries(&meter, move |observe| {
                if let Some(inner) = weak_queries.upgrade() {
                    inner.for_each_entry(|e| {
                        // Only tenants that have run a query have `rag.*` series.
                        if e.query_series.get().is_some() {
                            observe(e.queries.active(), std::slice::from_ref(e.key_value()));
                        }
                    });
                }
            });
            let weak = weak.clone();
            let info_gauge = crate::query::tenant_info_gauge(&meter, move |observe| {
                if let Some(inner) = weak.upgrade() {
                    for (_, entry) in inner.tenants.pin().iter() {
                        entry.observe_info(&mut *observe);
                    }
                }
            });
            let weak = weak_share;
            let share_gauge = crate::share::gauge(&meter, move || {
                let Some(inner) = weak.upgrade() else {
                    return Vec::new();
                };
                let tenants = inner.tenants.pin();
                let loads = tenants
                    .values()
                    .chain([&inner.overflow, &inner.unknown])
                    .map(|e| (e.key_value().clone(), crate::share::Load::of(e)))
                    .collect();
                loads
            });
            Inner {
                tenants: papaya::HashMap::with_hasher(Hasher::default()),
                admitted: AtomicUsize::new(0),
                max_tenants: self.max_tenants,
                allowlist_only: self.allowlist.is_some(),
                overflow: reserved(OVERFLOW_TENANT),
                unknown: reserved(UNKNOWN_TENANT),
                overflowed: AtomicU64::new(0),
                routes: papaya::HashMap::with_hasher(Hasher::default()),
                next_route: AtomicU32::new(0),
                epoch,
                reclaim_after: self.reclaim_after,
                last_sweep_ms: AtomicU64::new(0),
                window: self.window,
                http,
                query,
                _info_gauge: info_gauge,
                _share_gauge: share_gauge,
                _active: [active_requests, active_queries],
                _sla: sla_gauges,
            }
        });
        let registry = TenantRegistry { inner };
        for id in self.allowlist.into_iter().flatten() {
            registry.register(id);
        }
        registry
    }
}

pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("tenant-otel")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

impl Default for TenantRegistry {
    fn default() -> Self {
        TenantRegistry::builder().build()
    }
}

impl TenantRegistry {
    /// A builder with the defaults: cap 1000, no allowlist, the global meter provider.
    pub fn builder() -> TenantRegistryBuilder {
        TenantRegistryBuilder::default()
    }

    /// Looks up (or admits) a validated tenant id.
    pub fn resolve(&self, id: &str) -> Tenant {
        let inner = &*self.inner;
        if let Some(entry) = inner.tenants.pin().get(id) {
            // Touch, then look at the state: a sweep retires only after reading the touch time
            // again, so either it sees this touch and backs off, or this sees the retirement.
            entry.touch();
            if !entry.is_retired() {
                return Tenant {
                    id: entry.id.clone(),
                    entry: Arc::clone(entry),
                };
            }
            inner.drop_retired(id);
        }
        if id == UNKNOWN_TENANT {
            return self.unknown();
        }
        if !inner.allowlist_only && id != OVERFLOW_TENANT {
            if let Some(tenant) = self.admit(id) {
                return tenant;
            }
        }
        inner.overflowed.fetch_add(1, Ordering::Relaxed);
        inner.http.overflow.add(1, &[]);
        Tenant {
            // Spans keep the real id: this allocation happens only past the cap.
            id: TenantId::from_validated(id),
            entry: Arc::clone(&inner.overflow),
        }
    }

    /// Admits `id` explicitly (in allowlist mode, this is how a tenant is allowed). Returns
    /// false when the cap is reached, or for the reserved `__overflow__` and `__unknown__`.
    pub fn register(&self, id: impl Into<TenantId>) -> bool {
        self.register_entry(id.into()).is_some()
    }

    /// Admits `id` and returns its entry, or `None` when the cap is reached or the id is
    /// reserved.
    pub(crate) fn register_entry(&self, id: TenantId) -> Option<Arc<TenantEntry>> {
        if matches!(id.as_str(), OVERFLOW_TENANT | UNKNOWN_TENANT) {
            // A tenant of that name would shadow the shared series in every lookup.
            return None;
        }
        let inner = &*self.inner;
        // A sweep may retire the entry found, between the lookup and the pin: then look again,
        // and admit the tenant anew once the retired entry has left the map.
        loop {
            let found = inner.tenants.pin().get(id.as_str()).map(Arc::clone);
            if found.as_ref().is_some_and(|e| e.is_retired()) {
                inner.drop_retired(id.as_str());
                continue;
            }
            let entry = match found {
                Some(entry) => entry,
                None => {
                    if !inner.claim_slot() {
                        return None;
                    }
                    inner.insert(id.clone())
                }
            };
            if entry.pin() {
                return Some(entry);
            }
            std::hint::spin_loop();
        }
    }

    /// The tenant used for requests without a usable id when the layer lets them through.
    pub fn unknown(&self) -> Tenant {
        Tenant {
            id: self.inner.unknown.id.clone(),
            entry: Arc::clone(&self.inner.unknown),
        }
    }

    /// Requests (and queries) counted under `__overflow__` since start.
    pub fn overflowed_requests(&self) -> u64 {
        self.inner.overflowed.load(Ordering::Relaxed)
    }

    /// Tenants that have their own label now.
    pub fn len(&self) -> usize {
        self.inner.tenants.len()
    }

    /// True when no tenant has been admitted yet.
    pub fn is_empty(&self) -> bool {
        self.inner.tenants.is_empty()
    }

    /// The cap on distinct tenant labels.
    pub fn max_tenants(&self) -> usize {
        self.inner.max_tenants
    }

    /// The tenants with their own label, in no particular order.
    pub fn tenants(&self) -> Vec<Tenant> {
        self.inner
            .tenants
            .pin()
            .values()
            .map(|e| Tenant {
                id: e.id.clone(),
                entry: Arc::clone(e),
            })
            .collect()
    }

    /// The in-process request statistics of a tenant's metric label (`__overflow__` and
    /// `__unknown__` included), if it has one.
    pub fn request_stats(&self, label: &str) -> Option<StatsSnapshot> {
        self.entry_for_label(label).map(|e| e.requests.snapshot())
    }

    pub(crate) fn entry_for_label(&self, label: &str) -> Option<Arc<TenantEntry>> {
        match label {
            OVERFLOW_TENANT => Some(Arc::clone(&self.inner.overflow)),
            UNKNOWN_TENANT => Some(Arc::clone(&self.inner.unknown)),
            _ => self.inner.tenants.pin().get(label).map(Arc::clone),
        }
    }

    pub(crate) fn all_entries(&self) -> Vec<Arc<TenantEntry>> {
        let mut out: Vec<_> = self.inner.tenants.pin().values().map(Arc::clone).collect();
        out.push(Arc::clone(&self.inner.overflow));
        out.push(Arc::clone(&self.inner.unknown));
        out
    }

    /// Not part of the API: one request through the recording path (resolve, start, finish)
    /// without a service around it, so the benchmarks can time exactly that.
    #[doc(hidden)]
    pub fn __bench_request(&self, id: &str, route: &str, status: u16, duration: Duration) {
        let tenant = self.resolve(id);
        let method = semconv::method_index(&http::Method::GET);
        tenant.entry.request_started(method);
        tenant.entry.request_finished(
            self,
            &Outcome {
                method,
                route: Some(route),
                route_id: self.route_id(route),
                status: http::StatusCode::from_u16(status).ok(),
                error_type: None,
                duration,
                end: Instant::now(),
            },
        );
    }

    /// A small number identifying a route template, or `None` once [`MAX_ROUTES`] are known.
    pub(crate) fn route_id(&self, route: &str) -> Option<u32> {
        self.route(route).map(|(id, _)| id)
    }

    /// The route's id and shared string, or `None` once [`MAX_ROUTES`] are known.
    pub(crate) fn route(&self, route: &str) -> Option<(u32, Arc<str>)> {
        let routes = self.inner.routes.pin();
        if let Some((key, id)) = routes.get_key_value(route) {
            return Some((*id, Arc::clone(key)));
        }
        // Ids come from a counter, never from the map's length: two routes added at once must
        // not share one, or their durations would merge into one series.
        // Bounded, so a flood of unknown routes past the cap cannot wrap the counter around.
        let id = self
            .inner
            .next_route
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                ((n as usize) < MAX_ROUTES).then_some(n + 1)
            })
            .ok()?;
        let key: Arc<str> = Arc::from(route);
        // Two threads may race to add the same route; both get the one that won (the loser's id
        // is simply never used).
        match routes.try_insert(Arc::clone(&key), id) {
            Ok(_) => Some((id, key)),
            Err(existing) => {
                let id = *existing.current;
                let key = routes
                    .get_key_value(route)
                    .map_or(key, |(k, _)| Arc::clone(k));
                Some((id, key))
            }
        }
    }

    fn admit(&self, id: &str) -> Option<Tenant> {
        let inner = &*self.inner;
        if !inner.claim_slot() {
            return None;
        }
        let tenant_id = TenantId::from_validated(id);
        let entry = inner.insert(tenant_id);
        Some(Tenant {
            id: entry.id.clone(),
            entry,
        })
    }
}

impl Inner {
    /// Every live entry, the shared `__overflow__` and `__unknown__` ones included.
    fn for_each_entry(&self, mut f: impl FnMut(&TenantEntry)) {
        for entry in self.tenants.pin().values() {
            f(entry);
        }
        f(&self.overflow);
        f(&self.unknown);
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Removes an entry a sweep retired but could not take out, giving its slot back.
    fn drop_retired(&self, id: &str) {
        if let Ok(Some(_)) = self.tenants.pin().remove_if(id, |_, e| e.is_retired()) {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Removes the tenants idle for longer than `reclaim_after`, giving their slots back.
    /// Returns true if any slot was freed.
    fn sweep_idle(&self) -> bool {
        let Some(idle) = self.reclaim_after else {
            return false;
        };
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let now = self.now_ms();
        let last = self.last_sweep_ms.load(Ordering::Acquire);
        let sweep_every = (idle_ms / 4).max(1);
        if now.saturating_sub(last) < sweep_every
            || self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            // Swept recently, or another thread is sweeping now.
            return false;
        }
        let tenants = self.tenants.pin();
        let stale: Vec<Arc<str>> = tenants
            .iter()
            .filter(|(_, e)| e.state.load(Ordering::Acquire) == LIVE && e.is_idle(now, idle_ms))
            .map(|(k, _)| Arc::clone(k))
            .collect();
        let mut freed = false;
        for key in stale {
            // Checked again as it is removed: a request may have arrived meanwhile.
            // The map may run the check more than once (when it races a resize): a retired entry
            // must still read as removable the second time.
            if let Ok(Some(_)) = tenants.remove_if(&*key, |_, e| {
                e.is_retired() || e.retire_if_idle(now, idle_ms)
            }) {
                self.admitted.fetch_sub(1, Ordering::AcqRel);
                freed = true;
            }
        }
        freed
    }

    /// A free slot, after sweeping out idle tenants if there was none.
    fn claim_slot(&self) -> bool {
        self.reserve_slot() || (self.sweep_idle() && self.reserve_slot())
    }

    fn reserve_slot(&self) -> bool {
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_tenants).then_some(n + 1)
            })
            .is_ok()
    }

    /// Inserts after a slot was reserved; gives the slot back if another thread won the race.
    fn insert(&self, id: TenantId) -> Arc<TenantEntry> {
        let key = Arc::clone(id.shared());
        let clock = self.reclaim_after.map(|_| self.epoch);
        let tenants = self.tenants.pin();
        match tenants.try_insert_with(key, || {
            let entry = TenantEntry::new(id, false, self.window, clock);
            entry.touch();
            Arc::new(entry)
        }) {
            Ok(entry) => Arc::clone(entry),
            Err(existing) => {
                self.admitted.fetch_sub(1, Ordering::AcqRel);
                Arc::clone(existing)
            }
        }
    }
}

impl fmt::Debug for TenantRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantRegistry")
            .field("tenants", &self.len())
            .field("max_tenants", &self.inner.max_tenants)
            .field("allowlist_only", &self.inner.allowlist_only)
            .field("overflowed_requests", &self.overflowed_requests())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::RETIRED;

    #[test]
    fn cap_bounds_admission_and_counts_overflow() {
        let registry = TenantRegistry::builder().max_tenants(3).build();
        for i in 0..10 {
            let t = registry.resolve(&format!("t{i}"));
            if i < 3 {
                assert_eq!(t.metric_label(), format!("t{i}"));
            } else {
                assert_eq!(t.metric_label(), OVERFLOW_TENANT);
                assert_eq!(t.id().as_str(), format!("t{i}"));
            }
        }
        // Known tenants keep resolving to their own entry.
        assert_eq!(registry.resolve("t1").metric_label(), "t1");
        assert_eq!(registry.len(), 3);
        assert_eq!(registry.overflowed_requests(), 7);
    }

    #[test]
    fn allowlist_admits_only_registered_tenants() {
        let registry = TenantRegistry::builder()
            .allowlist([TenantId::parse("gold").unwrap()])
            .build();
        assert_eq!(registry.resolve("gold").metric_label(), "gold");
        assert_eq!(registry.resolve("other").metric_label(), OVERFLOW_TENANT);
        assert!(registry.register(TenantId::parse("other").unwrap()));
        assert_eq!(registry.resolve("other").metric_label(), "other");
    }

    #[test]
    fn reserved_labels_cannot_be_claimed() {
        let registry = TenantRegistry::builder().build();
        assert!(registry.resolve(UNKNOWN_TENANT).is_unknown());
        let t = registry.resolve(OVERFLOW_TENANT);
        assert_eq!(t.metric_label(), OVERFLOW_TENANT);
        assert_eq!(registry.len(), 0);
    }

    #[test]
    fn reserved_labels_cannot_be_registered() {
        let registry = TenantRegistry::builder().build();
        assert!(!registry.register(TenantId::reserved(OVERFLOW_TENANT)));
        assert!(!registry.register(TenantId::reserved(UNKNOWN_TENANT)));
        assert_eq!(registry.len(), 0);
        assert_eq!(
            registry.resolve(OVERFLOW_TENANT).metric_label(),
            OVERFLOW_TENANT
        );
        assert!(registry.register(TenantId::parse("real").unwrap()));
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn routes_added_at_once_never_share_an_id() {
        for _ in 0..200 {
            let registry = TenantRegistry::builder().build();
            let ids: Vec<u32> = std::thread::scope(|s| {
                let a = s.spawn(|| registry.route_id("/a").unwrap());
                let b = s.spawn(|| registry.route_id("/b").unwrap());
                vec![a.join().unwrap(), b.join().unwrap()]
            });
            assert_ne!(ids[0], ids[1]);
            assert_eq!(registry.route_id("/a"), Some(ids[0]));
            assert_eq!(registry.route_id("/b"), Some(ids[1]));
        }
    }

    #[test]
    fn a_retired_entry_left_in_the_map_is_cleared_not_spun_on() {
        let registry = TenantRegistry::builder()
            .max_tenants(1)
            .reclaim_idle_after(Duration::from_secs(3600))
            .build();
        assert_eq!(registry.resolve("a").metric_label(), "a");
        // As after a sweep whose removal lost a race with a resize of the map.
        let retire = |registry: &TenantRegistry| {
            let entry = registry.entry_for_label("a").unwrap();
            entry.state.store(RETIRED, Ordering::SeqCst);
            entry
        };
        let old = retire(&registry);
        let again = registry.resolve("a");
        assert_eq!(again.metric_label(), "a", "admitted afresh within the cap");
        assert!(!Arc::ptr_eq(again.entry(), &old));
        assert_eq!(registry.len(), 1);
        retire(&registry);
        assert!(registry.register(TenantId::parse("a").unwrap()));
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn the_route_table_stops_at_its_bound() {
        let registry = TenantRegistry::builder().build();
        for i in 0..MAX_ROUTES {
            assert_eq!(registry.route_id(&format!("/r{i}")), Some(i as u32));
        }
        for _ in 0..10_000 {
            assert_eq!(registry.route_id("/one-too-many"), None);
        }
        assert_eq!(
            registry.inner.next_route.load(Ordering::Relaxed) as usize,
            MAX_ROUTES
        );
        assert_eq!(registry.route_id("/r7"), Some(7));
    }

    #[test]
    fn concurrent_admission_never_passes_the_cap() {
        let registry = TenantRegistry::builder().max_tenants(50).build();
        std::thread::scope(|s| {
            for t in 0..4 {
                let registry = registry.clone();
                s.spawn(move || {
                    for i in 0..500 {
                        registry.resolve(&format!("id-{}", (i * 7 + t) % 300));
                    }
                });
            }
        });
        assert_eq!(registry.len(), 50);
    }
}
