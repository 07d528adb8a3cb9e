//! The tenant registry: one lookup per request from a tenant id to everything prepared for that
//! tenant, with the cardinality cap as its admission rule.
//!
//! - [`TenantRegistry`] and its [`TenantRegistryBuilder`]: the surface.
//! - [`Tenant`]: what a lookup returns, the handle requests and queries record through.
//! - `admission`: who gets a label of their own (cap, allowlist, `__overflow__`).
//! - `entry`: one tenant's prepared state (attribute, baggage context, bound series,
//!   statistics, SLA window) and what a finished request records through it.
//! - `routes`: route templates interned once, for series keys and span attributes.
//! - `reclaim`: idle tenants giving their slot back.
//! - `observe`: what the observable instruments read at each collection.

mod admission;
mod builder;
mod entry;
mod handle;
mod observe;
mod reclaim;
mod routes;

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) use crate::stats::Clock;
use crate::stats::Slo;
pub use admission::RegisterError;
pub use builder::TenantRegistryBuilder;
pub use entry::MAX_QUOTA_RESOURCES;
pub use handle::Tenant;

pub(crate) use admission::Count;
pub(crate) use entry::{Outcome, TenantEntry, TooManyResources, MAX_SERIES_PER_TENANT};

use crate::instruments::semconv;
use crate::instruments::{HttpInstruments, Observers, OperatorInstruments, QueryInstruments};
use crate::protect::{Limits, ShedReason};
use crate::stats::{SloPolicy, StatsSnapshot};
use crate::tenant::{
    validate_client_id, InvalidTenantId, TenantId, OVERFLOW_TENANT, UNKNOWN_TENANT,
};
use opentelemetry::KeyValue;

/// The maps' hasher: a lookup per request hashes the tenant id, so a fast hasher matters. Keys
/// are client-controlled, but the seed is random per process and the maps are capped, so
/// SipHash's stronger collision resistance buys nothing here.
type Hasher = foldhash::fast::RandomState;

pub(crate) const DEFAULT_MAX_TENANTS: usize = TenantRegistry::DEFAULT_MAX_TENANTS;
pub(crate) const DEFAULT_WINDOW: Duration = TenantRegistry::DEFAULT_WINDOW;

/// Maps tenant ids to their prepared state, and bounds how many get their own metric series.
///
/// Every request makes one lookup here. A known tenant costs a read of a map that readers do not
/// serialize on; a new tenant is admitted while fewer than the cap have been; past the cap (or
/// outside the allowlist) it shares the `__overflow__` entry, so memory and series stay bounded
/// however many distinct ids arrive. Every method that takes a tenant id validates it as the
/// layer does, and refuses what the layer would refuse.
///
/// ```
/// use tenant_otel::TenantRegistry;
/// use tenant_otel::tenant::InvalidTenantId;
///
/// let registry = TenantRegistry::builder().max_tenants(2).build();
/// assert_eq!(registry.resolve("a")?.metric_label(), "a");
/// assert_eq!(registry.resolve("b")?.metric_label(), "b");
/// let c = registry.resolve("c")?;
/// assert_eq!(c.metric_label(), "__overflow__");
/// assert_eq!(c.id().as_str(), "c"); // spans still see the real id
/// assert_eq!(registry.overflowed_requests(), 1);
/// assert!(matches!(registry.resolve("a b"), Err(InvalidTenantId::InvalidByte { .. })));
/// # Ok::<(), InvalidTenantId>(())
/// ```
///
/// The registry is also where queries are tracked ([`start_query`](Self::start_query),
/// [`track_query`](Self::track_query)), quotas and tenant metadata are recorded, and the
/// in-process view is read ([`view`](Self::view)).
#[doc(alias = "TenantMetricsCollector")]
#[derive(Clone)]
pub struct TenantRegistry {
    inner: Arc<Inner>,
}

struct Inner {
    /// Lock-free reads: two threads serving requests never write to a shared cache line to
    /// look a tenant up (a sharded `RwLock` map would, for its reader count).
    tenants: papaya::HashMap<Arc<str>, Arc<TenantEntry>, Hasher>,
    admitted: AtomicUsize,
    max_tenants: usize,
    allowlist_only: bool,
    overflow: Arc<TenantEntry>,
    unknown: Arc<TenantEntry>,
    overflowed: AtomicU64,
    /// Route templates and gRPC methods seen so far, each with a small id for series keys; the
    /// shared string is reused for every span's `http.route` or `rpc.method`.
    routes: routes::RouteTable,
    /// Where every window reads the time.
    clock: Clock,
    /// Reference point of the entries' clocks and of the SLO buckets.
    epoch: Instant,
    /// Idle time after which an unpinned tenant gives its slot back, if reclaiming is on.
    reclaim_after: Option<Duration>,
    /// When the last sweep for idle tenants ran (ms since `epoch`): sweeps are rate-limited so
    /// a flood of new ids past the cap does not scan the map on every request.
    last_sweep_ms: AtomicU64,
    /// Metric collections so far (by any reader).
    collections: Arc<AtomicU64>,
    /// Slots of tenants retired while still in the current export interval: given back at the
    /// next collection, so no interval carries more tenants than the cap.
    pending_release: AtomicUsize,
    /// A metric reader collects this registry's instruments (set once, as it is built): only
    /// then is there an export interval to hold a retired tenant's slot back for.
    read_by_a_reader: AtomicBool,
    window: Duration,
    slo: SloPolicy,
    http: HttpInstruments,
    query: QueryInstruments,
    operator: OperatorInstruments,
    /// Kept so the observable instruments' callbacks live as long as the registry.
    _observers: Observers,
}

impl Default for TenantRegistry {
    fn default() -> Self {
        TenantRegistry::builder().build()
    }
}

impl TenantRegistry {
    /// The default cap on distinct `tenant.id` values in metrics.
    pub const DEFAULT_MAX_TENANTS: usize = 1000;

    /// The default length of the sliding window of the in-process view.
    pub const DEFAULT_WINDOW: Duration = Duration::from_secs(60);

    /// A builder with the defaults: cap 1000, no allowlist, the global meter provider.
    pub fn builder() -> TenantRegistryBuilder {
        TenantRegistryBuilder::default()
    }

    /// The process-wide registry, which every [`TenantLayer`](crate::TenantLayer) and
    /// [`ClientLayer`](crate::ClientLayer) built without a registry of its own records into:
    /// one cap on tenant labels for the whole process, as for the metric streams it bounds,
    /// however many layers there are. Made with the defaults on first use, on the global meter
    /// provider as it is then: set that provider first ([`init`](fn@crate::init) gives its
    /// layers its own registry).
    pub fn global() -> TenantRegistry {
        static GLOBAL: std::sync::OnceLock<TenantRegistry> = std::sync::OnceLock::new();
        GLOBAL
            .get_or_init(|| TenantRegistry::builder().build())
            .clone()
    }

    /// Validates `id` as the layer does and looks it up, admitting it while the cap allows.
    /// This is the lookup of a request: past the cap it is counted in
    /// `tenant.cardinality.overflow`.
    pub fn resolve(&self, id: &str) -> Result<Tenant, InvalidTenantId> {
        let id = validate_client_id(id.as_bytes())?;
        Ok(self.lookup(id, Count::Request))
    }

    /// Admits `id` explicitly, for good (in allowlist mode, this is how a tenant is allowed):
    /// it keeps its label whatever [`reclaim_idle_after`](TenantRegistryBuilder::reclaim_idle_after)
    /// says.
    ///
    /// ```
    /// use tenant_otel::{RegisterError, TenantRegistry};
    ///
    /// let registry = TenantRegistry::builder().max_tenants(1).build();
    /// assert!(registry.register("acme").is_ok());
    /// assert_eq!(registry.register("initech").unwrap_err(), RegisterError::CapReached);
    /// assert!(matches!(registry.register("__overflow__"), Err(RegisterError::Invalid(_))));
    /// ```
    pub fn register(&self, id: &str) -> Result<Tenant, RegisterError> {
        let id = TenantId::parse(id)?;
        self.register_entry(&id)
            .map(|entry| Tenant::of(&entry))
            .ok_or(RegisterError::CapReached)
    }

    /// HTTP requests counted under `__overflow__` since start (what
    /// `tenant.cardinality.overflow` counts).
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
        self.inner.tenants.pin().values().map(Tenant::of).collect()
    }

    /// The in-process request statistics of a tenant's metric label (`__overflow__` and
    /// `__unknown__` included), if it has one.
    pub fn request_stats(&self, label: &str) -> Option<StatsSnapshot> {
        self.entry_for_label(label)
            .map(|e| e.requests.snapshot(self.now()))
    }

    /// The entry of a metric label, the shared ones included.
    pub(crate) fn entry_for_label(&self, label: &str) -> Option<Arc<TenantEntry>> {
        match label {
            OVERFLOW_TENANT => Some(Arc::clone(&self.inner.overflow)),
            UNKNOWN_TENANT => Some(Arc::clone(&self.inner.unknown)),
            _ => self.inner.tenants.pin().get(label).map(Arc::clone),
        }
    }

    /// Every entry, the shared `__overflow__` and `__unknown__` ones last.
    pub(crate) fn all_entries(&self) -> Vec<Arc<TenantEntry>> {
        let mut out = Vec::with_capacity(self.len() + 2);
        self.inner.for_each_arc(|e| out.push(Arc::clone(e)));
        out
    }

    /// Counts a request in flight for `tenant`.
    pub(crate) fn request_started(&self, tenant: &Tenant, method: usize) {
        tenant.entry().request_started(method);
    }

    /// Records a finished request of `tenant`: duration series, statistics, SLA window.
    pub(crate) fn request_finished(&self, tenant: &Tenant, outcome: &Outcome<'_>) {
        let secs = self.inner.secs(outcome.end);
        tenant
            .entry()
            .request_finished(&self.inner.http, secs, outcome);
    }

    /// The time, from the registry's clock.
    pub(crate) fn now(&self) -> Instant {
        self.inner.clock.now()
    }

    /// The clock every window, alert and limit of this registry reads.
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// The objectives that apply to `tenant`: its own, else its tier's.
    ///
    /// ```
    /// use tenant_otel::{TenantInfo, TenantRegistry};
    ///
    /// let registry = TenantRegistry::builder().build();
    /// let acme = registry.register_tenant("acme", TenantInfo::new("Acme", "premium", "eu"))?;
    /// assert_eq!(registry.slo(&acme).availability_objective().get(), 0.999);
    /// # Ok::<(), tenant_otel::RegisterError>(())
    /// ```
    pub fn slo(&self, tenant: &Tenant) -> Slo {
        self.inner.slo_of(tenant.entry())
    }

    /// Gives `id` objectives of its own instead of its tier's (`None`: back to the tier's),
    /// from now on; the tenant is registered for good if it was not.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_otel::TenantRegistry;
    /// use tenant_otel::slo::{Objective, Slo};
    ///
    /// let registry = TenantRegistry::builder().build();
    /// let strict = Slo::availability(Objective::new(0.9999)?)
    ///     .with_latency(Duration::from_millis(250), Objective::new(0.99)?);
    /// let acme = registry.set_tenant_slo("acme", Some(strict))?;
    /// assert_eq!(registry.slo(&acme), strict);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn set_tenant_slo(&self, id: &str, slo: Option<Slo>) -> Result<Tenant, RegisterError> {
        let tenant = self.register(id)?;
        let entry = tenant.entry();
        let effective = slo.unwrap_or_else(|| self.inner.slo.of(entry.tier().as_deref()));
        entry.set_slo(slo, effective);
        Ok(tenant)
    }

    /// [`slo`](Self::slo) of an entry.
    pub(crate) fn slo_of_entry(&self, entry: &TenantEntry) -> Slo {
        self.inner.slo_of(entry)
    }

    /// Gives `id` limits of its own instead of its tier's (`None`: back to the tier's), from
    /// its next request on; the tenant is registered for good if it was not.
    ///
    /// ```
    /// use tenant_otel::TenantRegistry;
    /// use tenant_otel::protect::Limits;
    ///
    /// let registry = TenantRegistry::builder().build();
    /// registry.set_tenant_limits("big-customer", Some(Limits::none().concurrency(500)))?;
    /// # Ok::<(), tenant_otel::RegisterError>(())
    /// ```
    pub fn set_tenant_limits(
        &self,
        id: &str,
        limits: Option<Limits>,
    ) -> Result<Tenant, RegisterError> {
        let tenant = self.register(id)?;
        tenant.entry().guard.set_own(limits);
        Ok(tenant)
    }

    /// The tier `id` was registered with, if it is known and has one; never admits it.
    ///
    /// ```
    /// use tenant_otel::{TenantInfo, TenantRegistry};
    ///
    /// let registry = TenantRegistry::builder().build();
    /// registry.register_tenant("acme", TenantInfo::new("Acme", "premium", "eu"))?;
    /// assert_eq!(registry.tier_of("acme").as_deref(), Some("premium"));
    /// assert_eq!(registry.tier_of("globex"), None);
    /// # Ok::<(), tenant_otel::RegisterError>(())
    /// ```
    pub fn tier_of(&self, id: &str) -> Option<String> {
        self.inner
            .tenants
            .pin()
            .get(id)
            .and_then(|entry| entry.tier())
    }

    /// The instruments outgoing calls record into.
    pub(crate) fn http_instruments(&self) -> &HttpInstruments {
        &self.inner.http
    }

    /// The `tenant.id` metric attribute for a valid tenant in `cx`'s baggage (a service whose
    /// callers pass the tenant on), capped as every metric is; not counted as a request.
    pub(crate) fn baggage_metric_attribute(&self, cx: &opentelemetry::Context) -> Option<KeyValue> {
        let id = crate::tenant::tenant_of(cx)?;
        if crate::tenant::is_reserved(id.as_str()) {
            return None;
        }
        let tenant = self.lookup(id.as_str(), Count::Other);
        Some(tenant.entry().key_value().clone())
    }

    /// Counts a request refused for want of a usable tenant (`missing`, `invalid`, `reserved`).
    pub(crate) fn count_rejected(&self, reason: &'static str) {
        self.inner
            .operator
            .rejected
            .add(1, &[KeyValue::new(semconv::REASON, reason)]);
    }

    /// Counts a request of `tenant` shed by protection.
    pub(crate) fn count_shed(&self, tenant: &Tenant, reason: ShedReason) {
        self.inner.operator.shed.add(
            1,
            &[
                tenant.entry().key_value().clone(),
                KeyValue::new(semconv::REASON, reason.as_str()),
            ],
        );
    }

    /// Counts a decision of shared limits made without the shared store, for `reason`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn count_limit_fallback(&self, reason: &'static str) {
        self.inner
            .operator
            .limit_fallbacks
            .add(1, &[KeyValue::new(semconv::REASON, reason)]);
    }

    /// The compliance window of the error budget, in days.
    pub fn compliance_days(&self) -> u32 {
        self.inner.slo.compliance_days
    }

    /// Seconds from the registry's epoch to `at`: the time SLO buckets are kept in.
    pub(crate) fn secs(&self, at: Instant) -> u64 {
        self.inner.secs(at)
    }

    /// Calls `f` with every entry, the shared ones last.
    pub(crate) fn for_each_entry(&self, f: impl FnMut(&TenantEntry)) {
        self.inner.for_each_entry(f);
    }

    /// Applies the tier's objectives to `entry`, unless it has its own: after its tier changed.
    pub(crate) fn refresh_slo(&self, entry: &TenantEntry) {
        entry.apply_slo(self.inner.slo_of(entry));
    }

    /// The alert and shedding counters.
    pub(crate) fn operator_instruments(&self) -> &OperatorInstruments {
        &self.inner.operator
    }

    /// The query instruments, for binding a tenant's `rag.*` series.
    pub(crate) fn query_instruments(&self) -> &QueryInstruments {
        &self.inner.query
    }

    /// Not part of the API: one request through the recording path (resolve, start, finish)
    /// without a service around it, so the benchmarks can time exactly that.
    #[cfg(feature = "__bench")]
    #[doc(hidden)]
    pub fn __bench_request(&self, id: &str, route: &str, status: u16, duration: Duration) {
        let Ok(tenant) = self.resolve(id) else {
            return;
        };
        let method = crate::instruments::semconv::method_index(&http::Method::GET);
        let status = http::StatusCode::from_u16(status).ok();
        self.request_started(&tenant, method);
        self.request_finished(
            &tenant,
            &Outcome {
                method,
                route: Some(route),
                route_id: self.route(route, method).map(|r| r.id),
                rpc_code: None,
                status,
                failure: crate::classify::Failure::classify(
                    status,
                    None,
                    crate::classify::End::Completed,
                ),
                duration,
                end: self.now(),
            },
        );
    }
}

impl Inner {
    /// Every live entry, the shared `__overflow__` and `__unknown__` ones last.
    fn for_each_arc(&self, mut f: impl FnMut(&Arc<TenantEntry>)) {
        for entry in self.tenants.pin().values() {
            f(entry);
        }
        f(&self.overflow);
        f(&self.unknown);
    }

    fn for_each_entry(&self, mut f: impl FnMut(&TenantEntry)) {
        self.for_each_arc(|e| f(e));
    }

    fn secs(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.epoch).as_secs()
    }

    fn slo_of(&self, entry: &TenantEntry) -> Slo {
        entry
            .slo_override()
            .unwrap_or_else(|| self.slo.of(entry.tier().as_deref()))
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
