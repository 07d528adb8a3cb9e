//! The tenant registry: one lookup per request from a tenant id to everything prepared for that
//! tenant, with the cardinality cap as its admission rule.
//!
//! The registry admits, bounds and reclaims tenants and hands out their entries; it keeps no
//! capability's state. An entry is a struct of parts, one per capability, each a type of the
//! module that owns it with its own operations: the server series (`instruments`), the
//! statistics and SLO windows (`stats`), the protection guard (`protect`), the query series,
//! quotas and registered metadata (`instruments`, used by `query`). A new capability adds one
//! part (a field and its constructor call in `entry`), not fields and methods to the registry.
//! The parts are plain fields, fixed at compile time: no lookup by type or name, no indirection
//! on the request path. A capability that sits above the registry in the module order keeps its
//! per-tenant state type in a lower module (as `query` does in `instruments`), so this module
//! never reaches up.
//!
//! Every entry also holds what the registry's entries share (`Shared`: clock, instruments,
//! route table, objectives by tier), so a request looks its tenant up once and records through
//! that entry to its end, without coming back here.
//!
//! The files read top-down, each using only those above it:
//!
//! - `routes`: route templates interned once, for series keys and span attributes.
//! - `life`: an entry's state under idle reclaim.
//! - `shared`: what every entry of a registry shares.
//! - `entry`: one tenant's label and parts.
//! - `handle`: [`Tenant`], what a lookup returns, the handle requests and queries record through.
//! - `reclaim`: idle tenants giving their slot back.
//! - `admission`: who gets a label of their own (cap, allowlist, `__overflow__`).
//! - `observe`: what the observable instruments read at each collection.
//! - `builder`: [`TenantRegistryBuilder`].

mod admission;
mod builder;
mod entry;
mod handle;
mod life;
mod observe;
mod reclaim;
mod routes;
mod shared;

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) use crate::stats::Clock;
use crate::stats::Slo;
pub use admission::RegisterError;
pub use builder::TenantRegistryBuilder;
pub use handle::Tenant;

pub(crate) use crate::instruments::MAX_SERIES_PER_TENANT;
pub(crate) use admission::Count;
pub(crate) use entry::TenantEntry;
pub(crate) use shared::Shared;

use crate::instruments::{HttpInstruments, Observers};
use crate::protect::Limits;
use crate::stats::StatsSnapshot;
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
    reclaim: reclaim::Reclaim,
    /// What every entry shares (each holds it too).
    shared: Arc<Shared>,
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
            .map(|e| e.stats.requests.snapshot(self.now()))
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

    /// The time, from the registry's clock.
    pub(crate) fn now(&self) -> Instant {
        self.inner.shared.now()
    }

    /// The clock every window, alert and limit of this registry reads.
    pub fn clock(&self) -> &Clock {
        &self.inner.shared.clock
    }

    /// What every entry of this registry shares: clock, instruments, route table.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.inner.shared
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
        tenant.entry().slo()
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
        let effective = slo.unwrap_or_else(|| self.inner.shared.slo.of(entry.tier().as_deref()));
        entry.stats.set_own_slo(slo, effective);
        Ok(tenant)
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
        &self.inner.shared.http
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

    /// The compliance window of the error budget, in days.
    pub fn compliance_days(&self) -> u32 {
        self.inner.shared.compliance_days()
    }

    /// Seconds from the registry's epoch to `at`: the time SLO buckets are kept in.
    pub(crate) fn secs(&self, at: Instant) -> u64 {
        self.inner.shared.secs(at)
    }

    /// Calls `f` with every entry, the shared ones last.
    pub(crate) fn for_each_entry(&self, f: impl FnMut(&TenantEntry)) {
        self.inner.for_each_entry(f);
    }

    /// Not part of the API: one request through the recording path (resolve, start, finish)
    /// without a service around it, so the benchmarks can time exactly that.
    #[cfg(feature = "__bench")]
    #[doc(hidden)]
    pub fn __bench_request(&self, id: &str, route: &str, status: u16, duration: Duration) {
        let Ok(tenant) = self.resolve(id) else {
            return;
        };
        let entry = tenant.entry();
        let method = crate::instruments::semconv::method_index(&http::Method::GET);
        let status = http::StatusCode::from_u16(status).ok();
        entry.request_started(method);
        entry.request_finished(&crate::instruments::Outcome {
            method,
            route: Some(route),
            route_id: entry.shared().routes.route(route, method).map(|r| r.id),
            rpc_code: None,
            status,
            failure: crate::classify::Failure::classify(
                status,
                None,
                crate::classify::End::Completed,
            ),
            duration,
            end: entry.shared().now(),
            trace_id: None,
        });
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
