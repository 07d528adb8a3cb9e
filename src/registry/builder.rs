//! [`TenantRegistryBuilder`]: the cap, the allowlist, the window, reclaim and objectives.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::metrics::{Meter, MeterProvider};

use super::entry::TenantEntry;
use super::shared::{Instruments, Shared, TraceSettings};
use super::{Hasher, Inner, TenantRegistry, DEFAULT_MAX_TENANTS, DEFAULT_WINDOW};
use crate::cost::{Currency, PriceTable, Prices};
use crate::instruments::genai::latest_from_env;
use crate::instruments::{
    register_observers, scope, GenAiInstruments, HttpInstruments, OperatorInstruments,
    QueryInstruments,
};
use crate::stats::{Clock, Objective, Slo, SloPolicy, TraceUrl, MAX_COMPLIANCE_DAYS};
use crate::tenant::{TenantId, OVERFLOW_TENANT, UNKNOWN_TENANT};

/// Builds a [`TenantRegistry`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TenantRegistryBuilder {
    max_tenants: usize,
    allowlist: Option<Vec<TenantId>>,
    meter: Option<Meter>,
    window: Duration,
    reclaim_after: Option<Duration>,
    slo: SloPolicy,
    clock: Clock,
    trace_url: Option<String>,
    slow_trace_floor: Duration,
    prices: Option<Prices>,
}

/// The environment variable a trace URL is read from when the builder sets none.
pub(crate) const TRACE_URL_ENV: &str = "TENANT_OTEL_TRACE_URL";

/// The default of [`TenantRegistryBuilder::slow_trace_floor`].
pub(crate) const DEFAULT_SLOW_TRACE_FLOOR: Duration = Duration::from_millis(500);

impl Default for TenantRegistryBuilder {
    fn default() -> Self {
        TenantRegistryBuilder {
            max_tenants: DEFAULT_MAX_TENANTS,
            allowlist: None,
            meter: None,
            window: DEFAULT_WINDOW,
            reclaim_after: None,
            slo: SloPolicy::default(),
            clock: Clock::system(),
            trace_url: None,
            slow_trace_floor: DEFAULT_SLOW_TRACE_FLOOR,
            prices: None,
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
    /// More can be allowed later with [`TenantRegistry::register`], within the cap.
    ///
    /// An allowlist longer than [`max_tenants`](Self::max_tenants) raises the cap to its
    /// length: every tenant named here gets its label.
    ///
    /// ```
    /// use tenant_otel::{TenantId, TenantRegistry};
    ///
    /// let ids = ["a", "b", "c", "d", "e"].map(|id| TenantId::parse(id).unwrap());
    /// let registry = TenantRegistry::builder().max_tenants(3).allowlist(ids).build();
    /// assert_eq!(registry.max_tenants(), 5);
    /// assert_eq!(registry.resolve("e").unwrap().metric_label(), "e");
    /// ```
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
    /// ([`TelemetryBuilder::registry`](crate::TelemetryBuilder::registry) sets it for a registry
    /// that reclaims): the reclaimed tenant's bound instruments are dropped and the SDK frees their
    /// series. Under cumulative temporality the SDK keeps reporting every series it has ever
    /// seen, so the number of exported series would keep growing with every tenant that comes
    /// and goes, even though this registry stays within its cap.
    ///
    /// A slot is reused only once the retired tenant's last series has been exported: at the
    /// next metric collection if it recorded anything since the last one (the first interval,
    /// before any collection, included), so no export carries more tenants than the cap. A
    /// registry whose instruments no reader collects exports nothing, and gives slots back at
    /// once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_otel::{Clock, TenantRegistry};
    ///
    /// let clock = Clock::manual();
    /// let registry = TenantRegistry::builder()
    ///     .max_tenants(1)
    ///     .clock(clock.clone())
    ///     .reclaim_idle_after(Duration::from_secs(60))
    ///     .build();
    /// assert_eq!(registry.resolve("a").unwrap().metric_label(), "a");
    /// assert_eq!(registry.resolve("b").unwrap().metric_label(), "__overflow__");
    /// clock.advance(Duration::from_secs(61));
    /// assert_eq!(registry.resolve("b").unwrap().metric_label(), "b"); // `a` went quiet
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
    /// use tenant_otel::TenantRegistry;
    /// use tenant_otel::slo::Objective;
    ///
    /// let registry = TenantRegistry::builder()
    ///     .objective("enterprise", Objective::new(0.9995)?)
    ///     .build();
    /// # let _ = registry;
    /// # Ok::<(), tenant_otel::slo::InvalidObjective>(())
    /// ```
    pub fn objective(mut self, tier: &str, objective: Objective) -> Self {
        self.slo.set_availability(tier, objective);
        self
    }

    /// The objectives of tenants of `tier`: availability and, optionally, latency (default:
    /// availability alone, as [`objective`](Self::objective) gives it). A tenant can have its
    /// own with [`TenantRegistry::set_tenant_slo`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_otel::TenantRegistry;
    /// use tenant_otel::slo::{Objective, Slo};
    ///
    /// let premium = Slo::availability(Objective::new(0.999)?)
    ///     .with_latency(Duration::from_secs(1), Objective::new(0.99)?);
    /// let registry = TenantRegistry::builder().slo("premium", premium).build();
    /// # let _ = registry;
    /// # Ok::<(), tenant_otel::slo::InvalidObjective>(())
    /// ```
    pub fn slo(mut self, tier: &str, slo: Slo) -> Self {
        self.slo.set(tier, slo);
        self
    }

    /// The compliance window the error budget is counted over, in days (default 30; at most
    /// [`MAX_COMPLIANCE_DAYS`], at least 1).
    pub fn compliance_days(mut self, days: u32) -> Self {
        self.slo.compliance_days = days.clamp(1, MAX_COMPLIANCE_DAYS);
        self
    }

    /// The clock every window, alert and limit reads (default: the system's). A
    /// [`Clock::manual`] runs the registry on simulated time.
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Where the trace of a tenant's recent failed or slowest request is shown, for the links
    /// of the view (`/tenants/{id}`) and of alert events: a URL with a `{trace_id}`
    /// placeholder (Tempo in Grafana, any UI), or a Jaeger UI base URL, which links to
    /// `{base}/trace/{trace_id}`. Default: the `TENANT_OTEL_TRACE_URL` environment variable
    /// when set, else no links (the trace ids are still given).
    ///
    /// ```
    /// use tenant_otel::TenantRegistry;
    ///
    /// let registry = TenantRegistry::builder().trace_url("http://localhost:16686").build();
    /// # let _ = registry;
    /// ```
    pub fn trace_url(mut self, url: impl Into<String>) -> Self {
        self.trace_url = Some(url.into());
        self
    }

    /// A successful request must take longer than this to be among a tenant's slowest recent
    /// requests (default 500 ms): a fast one records nothing. Failed requests are always kept.
    pub fn slow_trace_floor(mut self, floor: Duration) -> Self {
        self.slow_trace_floor = floor;
        self
    }

    /// The cap the registry will have: [`max_tenants`](Self::max_tenants), or the allowlist's
    /// length if that is longer.
    pub(crate) fn effective_max_tenants(&self) -> usize {
        let allowed = self.allowlist.as_ref().map_or(0, Vec::len);
        self.max_tenants.max(allowed)
    }

    /// True when idle tenants are reclaimed.
    #[cfg_attr(not(feature = "prometheus"), allow(dead_code))]
    pub(crate) fn reclaims_idle(&self) -> bool {
        self.reclaim_after.is_some()
    }

    /// The model prices the query API's LLM calls are costed at
    /// ([`TenantRegistry::record_llm_call`]); keep a clone to replace the table while the
    /// service runs. Costs are kept and exported in this table's currency. Without prices,
    /// only the costs providers report are counted, and every model is `_OTHER` in metrics.
    ///
    /// ```
    /// use tenant_otel::TenantRegistry;
    /// use tenant_otel::cost::{Currency, ModelPrice, PriceTable, Prices};
    ///
    /// let prices = Prices::new(
    ///     PriceTable::new(Currency::USD).model("gpt-4o-mini", ModelPrice::per_million("0.15", "0.60")?),
    /// );
    /// let registry = TenantRegistry::builder().prices(prices.clone()).build();
    /// assert_eq!(registry.prices().current().len(), 1);
    /// # Ok::<(), tenant_otel::cost::InvalidPrice>(())
    /// ```
    pub fn prices(mut self, prices: Prices) -> Self {
        self.prices = Some(prices);
        self
    }

    /// Builds the registry.
    pub fn build(self) -> TenantRegistry {
        let meter = self
            .meter
            .clone()
            .unwrap_or_else(|| opentelemetry::global::meter_with_scope(scope()));
        let prices = self
            .prices
            .clone()
            .unwrap_or_else(|| Prices::new(PriceTable::new(Currency::USD)));
        let currency = prices.current().currency();
        let shared = Arc::new(Shared::new(
            self.clock.clone(),
            self.window,
            self.slo.clone(),
            Instruments {
                http: HttpInstruments::new(&meter),
                query: QueryInstruments::new(&meter),
                operator: OperatorInstruments::new(&meter),
                genai: GenAiInstruments::new(&meter, currency, latest_from_env()),
            },
            self.reclaim_after,
            TraceSettings {
                url: self
                    .trace_url
                    .clone()
                    .or_else(|| std::env::var(TRACE_URL_ENV).ok())
                    .and_then(|u| TraceUrl::new(&u)),
                slow_floor: self.slow_trace_floor,
            },
            prices,
        ));
        let label = |name| TenantEntry::new(TenantId::from_validated(name), true, &shared);
        let max_tenants = self.effective_max_tenants();
        let inner = Arc::new_cyclic(|weak| Inner {
            tenants: papaya::HashMap::with_hasher(Hasher::default()),
            admitted: AtomicUsize::new(0),
            max_tenants,
            allowlist_only: self.allowlist.is_some(),
            overflow: label(OVERFLOW_TENANT),
            unknown: label(UNKNOWN_TENANT),
            overflowed: AtomicU64::new(0),
            reclaim: Default::default(),
            shared: Arc::clone(&shared),
            _observers: register_observers(&meter, weak.clone()),
        });
        // Each observable instrument's callback holds the registry weakly, and the SDK keeps a
        // callback only for a meter with at least one reader that takes the instrument (a no-op
        // meter, or an SDK provider without readers, drops it at once). So a weak reference
        // left now means a reader will collect: nothing else has one yet.
        inner
            .reclaim
            .read_by_a_reader
            .store(Arc::weak_count(&inner) > 0, Ordering::Relaxed);
        let registry = TenantRegistry { inner };
        for id in self.allowlist.into_iter().flatten() {
            // Within the cap by construction; a reserved id cannot be a `TenantId`.
            let _ = registry.register_entry(&id);
        }
        registry
    }
}
