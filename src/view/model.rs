//! The per-tenant view and the platform aggregate beside it.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::time::Instant;

use crate::registry::{TenantEntry, TenantRegistry};
use crate::stats::{mean, success_rate, Sli, StatsSnapshot, TraceRef, WINDOWS};
use crate::tenant::{TenantInfo, OVERFLOW_TENANT, UNKNOWN_TENANT};

/// Every tenant beside the platform aggregate, from [`TenantRegistry::view`].
///
/// `tenants` is sorted worst first: lowest success rate (of requests or queries, whichever is
/// lower), then highest p99 duration. Rates and percentiles come from the sliding window when
/// it holds data, else from the counts since start.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[non_exhaustive]
pub struct PlatformView {
    /// The aggregate over all tenants: what a global dashboard would show.
    pub platform: PlatformSummary,
    /// Each tenant with its own label, plus `__overflow__` and `__unknown__` when they saw
    /// traffic; worst first.
    pub tenants: Vec<TenantView>,
}

/// The platform aggregate of [`PlatformView`].
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[non_exhaustive]
pub struct PlatformSummary {
    /// Tenants with their own label.
    pub tenants: usize,
    /// The cap on distinct tenant labels.
    pub max_tenants: usize,
    /// Requests and queries counted under `__overflow__` since start.
    pub overflowed_requests: u64,
    /// HTTP requests of all tenants.
    pub requests: Aggregate,
    /// Queries of all tenants.
    pub queries: Aggregate,
}

/// Counts and the mean over many tenants: total duration over total count, which is exactly
/// the number that hides a failing tenant among healthy ones.
///
/// The figures are those of a tenant's [`StatsSnapshot`], summed over tenants. Percentiles do not
/// add up across tenants and are not kept for the platform: they read 0 here (each tenant's own
/// are in its [`TenantView`]). In JSON the aggregate keeps its flat shape: `total`, `success`,
/// `errors`, `success_rate`, `active`, `avg_ms`, `window_total`, `window_errors`,
/// `window_success_rate`, `window_avg_ms`.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Aggregate {
    /// The summed counts and means; the window's under `stats.window`.
    pub stats: StatsSnapshot,
}

#[cfg(feature = "axum")]
impl serde::Serialize for Aggregate {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let (s, w) = (&self.stats, &self.stats.window);
        let mut out = serializer.serialize_struct("Aggregate", 10)?;
        out.serialize_field("total", &s.total)?;
        out.serialize_field("success", &s.success)?;
        out.serialize_field("errors", &s.errors)?;
        out.serialize_field("success_rate", &s.success_rate)?;
        out.serialize_field("active", &s.active)?;
        out.serialize_field("avg_ms", &s.avg_ms)?;
        out.serialize_field("window_total", &w.total)?;
        out.serialize_field("window_errors", &w.errors)?;
        out.serialize_field("window_success_rate", &w.success_rate)?;
        out.serialize_field("window_avg_ms", &w.avg_ms)?;
        out.end()
    }
}

/// One tenant in the in-process view.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[non_exhaustive]
pub struct TenantView {
    /// The metric label: the tenant id, `__overflow__` or `__unknown__`.
    pub tenant: String,
    /// Metadata given to [`TenantRegistry::register_tenant`], if any.
    pub info: Option<TenantInfo>,
    /// HTTP requests seen by the layer.
    pub requests: StatsSnapshot,
    /// Queries tracked through the query API.
    pub queries: StatsSnapshot,
    /// Last reported quota usage in percent, by resource type.
    pub quota: BTreeMap<String, f64>,
    /// Where the tenant stands against each of its objectives.
    pub sla: Vec<SloStatus>,
    /// Its last few failed requests whose trace was sampled, newest first.
    pub recent_failures: Vec<TraceRef>,
    /// Its slowest sampled requests of the sliding window (over the registry's
    /// [`slow_trace_floor`](crate::TenantRegistryBuilder::slow_trace_floor)), slowest first.
    pub slowest: Vec<TraceRef>,
}

/// One objective of one tenant: its target, the error budget left over the compliance window,
/// and the burn rates over the alerting windows (those with requests in them).
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[non_exhaustive]
pub struct SloStatus {
    /// Which objective: `availability` or `latency` in JSON.
    pub slo: Sli,
    /// The share of requests that must be good.
    pub objective: f64,
    /// For a latency objective, the threshold a good request stays under, in seconds.
    pub threshold_seconds: Option<f64>,
    /// The share of the compliance window's error budget not yet spent (`None` without
    /// requests).
    pub error_budget_remaining: Option<f64>,
    /// Burn rates by window (`5m` … `3d`).
    pub burn_rates: BTreeMap<&'static str, f64>,
}

impl TenantView {
    fn of(registry: &TenantRegistry, entry: &TenantEntry, now: Instant) -> Self {
        let (recent_failures, slowest) = entry.trace_refs();
        TenantView {
            recent_failures,
            slowest,
            tenant: entry.id().as_str().to_owned(),
            info: entry.info.info(),
            requests: entry.stats.requests.snapshot(now),
            queries: entry.stats.queries.snapshot(now),
            quota: entry.queries.quotas().into_iter().collect(),
            sla: sla(registry, entry, now),
        }
    }

    fn is_idle(&self) -> bool {
        self.requests.total == 0
            && self.queries.total == 0
            && self.requests.active == 0
            && self.queries.active == 0
            && self.quota.is_empty()
            && self.info.is_none()
    }

    /// The lower success rate of requests and queries (window first, then since start).
    fn success_rate(&self) -> f64 {
        recent_rate(&self.requests).min(recent_rate(&self.queries))
    }

    /// The higher p99 of requests and queries (window first, then since start), in ms.
    fn p99_ms(&self) -> f64 {
        recent_p99(&self.requests).max(recent_p99(&self.queries))
    }
}

fn sla(registry: &TenantRegistry, entry: &TenantEntry, now: Instant) -> Vec<SloStatus> {
    let slo = entry.slo();
    let secs = registry.secs(now);
    let slis = [
        Some((Sli::Availability, slo.availability_objective(), None)),
        slo.latency()
            .map(|l| (Sli::Latency, l.target(), Some(l.threshold().as_secs_f64()))),
    ];
    slis.into_iter()
        .flatten()
        .map(|(sli, objective, threshold_seconds)| SloStatus {
            slo: sli,
            objective: objective.get(),
            threshold_seconds,
            error_budget_remaining: entry.stats.slo.budget_remaining(
                secs,
                registry.compliance_days(),
                sli,
                objective,
            ),
            burn_rates: WINDOWS
                .iter()
                .filter_map(|w| {
                    let burn = entry.stats.slo.burn(secs, *w, sli, objective)?;
                    Some((w.label, burn.rate))
                })
                .collect(),
        })
        .collect()
}

fn recent_rate(s: &StatsSnapshot) -> f64 {
    if s.window.total > 0 {
        s.window.success_rate
    } else {
        s.success_rate
    }
}

fn recent_p99(s: &StatsSnapshot) -> f64 {
    if s.window.total > 0 {
        s.window.p99_ms
    } else {
        s.p99_ms
    }
}

fn worst_first(a: &TenantView, b: &TenantView) -> Ordering {
    a.success_rate()
        .total_cmp(&b.success_rate())
        .then_with(|| b.p99_ms().total_cmp(&a.p99_ms()))
        .then_with(|| a.tenant.cmp(&b.tenant))
}

impl Default for Aggregate {
    /// Nothing finished: rates read 1, like [`StatsSnapshot`]'s, so an idle platform does not
    /// look like a failing one.
    fn default() -> Self {
        let mut stats = StatsSnapshot {
            success_rate: 1.0,
            ..StatsSnapshot::default()
        };
        stats.window.success_rate = 1.0;
        Aggregate { stats }
    }
}

impl Aggregate {
    fn add(&mut self, s: &StatsSnapshot) {
        let (a, w) = (&mut self.stats, &s.window);
        // Sums of durations are rebuilt from the means: exact enough for a mean, and it keeps
        // the per-tenant statistics the only place durations are stored.
        let sum = a.avg_ms * a.total as f64 + s.avg_ms * s.total as f64;
        let window_sum = a.window.avg_ms * a.window.total as f64 + w.avg_ms * w.total as f64;
        a.total += s.total;
        a.success += s.success;
        a.errors += s.errors;
        a.active += s.active;
        a.window.total += w.total;
        a.window.errors += w.errors;
        a.avg_ms = mean(sum, a.total);
        a.window.avg_ms = mean(window_sum, a.window.total);
        a.success_rate = success_rate(a.total, a.errors);
        a.window.success_rate = success_rate(a.window.total, a.window.errors);
    }
}

impl TenantRegistry {
    /// Every tenant's requests, queries and quotas beside the platform aggregate, worst
    /// tenant first.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_otel::TenantRegistry;
    /// use tenant_otel::query::QueryStatus;
    ///
    /// let registry = TenantRegistry::builder().build();
    /// for i in 0..9 {
    ///     registry.track_query(format!("t{i}").as_str(), QueryStatus::Success, Duration::from_millis(50), 1, 10)?;
    /// }
    /// registry.track_query("slow", QueryStatus::Error, Duration::from_secs(5), 0, 0)?;
    ///
    /// let view = registry.view();
    /// assert_eq!(view.platform.queries.stats.total, 10);
    /// assert!((view.platform.queries.stats.avg_ms - 545.0).abs() < 1.0);
    /// assert_eq!(view.tenants[0].tenant, "slow"); // worst first
    /// # Ok::<(), tenant_otel::tenant::InvalidTenantId>(())
    /// ```
    pub fn view(&self) -> PlatformView {
        let mut platform = PlatformSummary {
            tenants: self.len(),
            max_tenants: self.max_tenants(),
            overflowed_requests: self.overflowed_requests(),
            ..PlatformSummary::default()
        };
        let now = self.now();
        let mut tenants: Vec<TenantView> = self
            .all_entries()
            .iter()
            .map(|e| TenantView::of(self, e, now))
            .filter(|v| !v.is_idle() || !is_shared(v))
            .collect();
        for t in &tenants {
            platform.requests.add(&t.requests);
            platform.queries.add(&t.queries);
        }
        tenants.sort_by(worst_first);
        PlatformView { platform, tenants }
    }

    /// One tenant's view by metric label (`__overflow__` and `__unknown__` included), or `None`
    /// for a tenant without its own label.
    ///
    /// ```
    /// use tenant_otel::TenantRegistry;
    /// use tenant_otel::query::QueryOutcome;
    ///
    /// let registry = TenantRegistry::builder().build();
    /// registry.start_query("finance-team")?.end(QueryOutcome::success());
    /// let finance = registry.tenant_view("finance-team").unwrap();
    /// assert_eq!(finance.queries.success, 1);
    /// assert!(registry.tenant_view("nobody").is_none());
    /// # Ok::<(), tenant_otel::tenant::InvalidTenantId>(())
    /// ```
    #[doc(alias = "get_tenant_metrics")]
    pub fn tenant_view(&self, id: &str) -> Option<TenantView> {
        self.entry_for_label(id)
            .map(|e| TenantView::of(self, &e, self.now()))
    }
}

fn is_shared(v: &TenantView) -> bool {
    v.tenant == OVERFLOW_TENANT || v.tenant == UNKNOWN_TENANT
}
