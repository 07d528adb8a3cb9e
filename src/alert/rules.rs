//! The alert rules and their thresholds, and which conditions hold for which tenant now.

use std::time::{Duration, Instant};

use super::event::{AlertKind, Measure, Reading, Window as Over};
use crate::registry::{TenantEntry, TenantRegistry};
use crate::stats::{noisy_neighbors, window, NoisyRule, Objective, Sli, Window};
use crate::tenant::TenantId;

/// A multi-window burn-rate rule: both windows above `factor`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct BurnRule {
    long: Window,
    short: Window,
    factor: f64,
}

/// The rules alerts are decided by, with their thresholds.
///
/// The defaults:
/// - **page** when the error budget burns above 14.4× over both 1h and 5m, or above 6× over
///   both 6h and 30m; **ticket** above 3× over 1d and 2h, or above 1× over 3d and 6h (the SRE
///   workbook's multi-window, multi-burn-rate rules for a 30-day objective), for the
///   availability objective and, where a tier has one, the latency objective;
/// - a burn-rate rule needs at least 5 bad requests in its short window: a quiet tenant with 4
///   requests in an hour, one of them failed, burns at 250× a 99.9 % objective, and must not
///   wake anyone up;
/// - **success_rate** when fewer than 95 % of the requests of the last two minutes (the current
///   one and the one before) succeeded, with at least 20 requests in them: the fast detector;
/// - **latency** when the p99 over the view's sliding window is over 5 s, with at least 20
///   requests in it;
/// - **quota** when a quota is over 90 % used;
/// - **noisy_neighbor** when a tenant takes more than its share of a loaded service, so that the
///   others wait: it holds more than 40 % of the busy time over the view's sliding window, while
///   the whole service averages at least 32 requests in flight over it and at least 3 tenants
///   have work. Busy time is the time spent serving the HTTP and gRPC requests that finished in
///   the window; divided by the window's length it is the number of requests in flight on
///   average (Little's law), so it does not name whoever holds the one request in flight at the
///   moment of evaluation. A tenant whose requests are merely slow on a service far from its
///   capacity is not noisy either: nobody waits for it. Set the minimum near the concurrency
///   the service saturates at (with [`Protection::fair_share`](crate::protect::Protection::fair_share),
///   its capacity) with [`noisy_neighbor_min_load`](AlertRules::noisy_neighbor_min_load). The
///   Prometheus rule `TenantMonopolizingInflight` in `collector-config/` decides the same way
///   over 5 minutes;
/// - an alert resolves once its condition has been false for a minute, so a value hovering at a
///   threshold does not flap.
///
/// ```
/// use std::time::Duration;
/// use tenant_otel::alert::AlertRules;
///
/// let rules = AlertRules::default()
///     .success_rate_below(0.99)
///     .p99_above(Duration::from_secs(2))
///     .resolve_after(Duration::from_secs(300));
/// # let _ = rules;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct AlertRules {
    page: Vec<BurnRule>,
    ticket: Vec<BurnRule>,
    min_bad_requests: u64,
    success_rate: f64,
    success_minutes: u64,
    min_requests: u64,
    p99: Duration,
    quota_percent: f64,
    noisy: NoisyRule,
    pub(super) resolve_after: Duration,
}

impl Default for AlertRules {
    fn default() -> Self {
        let rule = |long, short, factor| BurnRule {
            long: window(long),
            short: window(short),
            factor,
        };
        AlertRules {
            page: vec![rule("1h", "5m", 14.4), rule("6h", "30m", 6.0)],
            ticket: vec![rule("1d", "2h", 3.0), rule("3d", "6h", 1.0)],
            min_bad_requests: 5,
            success_rate: 0.95,
            success_minutes: 2,
            min_requests: 20,
            p99: Duration::from_secs(5),
            quota_percent: 90.0,
            noisy: NoisyRule {
                share: 0.4,
                min_tenants: 3,
                min_in_flight: 32.0,
            },
            resolve_after: Duration::from_secs(60),
        }
    }
}

impl AlertRules {
    /// Bad requests a burn-rate rule needs in its short window before it fires (default 5).
    pub fn min_bad_requests(mut self, n: u64) -> Self {
        self.min_bad_requests = n;
        self
    }

    /// The success rate under which `success_rate` fires (default 0.95).
    pub fn success_rate_below(mut self, rate: f64) -> Self {
        self.success_rate = rate;
        self
    }

    /// Requests the `success_rate` and `latency` rules need before they judge (default 20).
    pub fn min_requests(mut self, n: u64) -> Self {
        self.min_requests = n;
        self
    }

    /// The p99 over which `latency` fires (default 5 s).
    pub fn p99_above(mut self, p99: Duration) -> Self {
        self.p99 = p99;
        self
    }

    /// The quota usage in percent over which `quota` fires (default 90).
    pub fn quota_above(mut self, percent: f64) -> Self {
        self.quota_percent = percent;
        self
    }

    /// The share of the service's busy time over which a tenant is a noisy neighbour (default
    /// 0.4), and how many tenants must have work in the window for anyone to be one (default 3;
    /// never fewer than 2, as a tenant alone has no neighbour).
    pub fn noisy_neighbor(mut self, share: f64, min_active_tenants: usize) -> Self {
        self.noisy.share = share;
        self.noisy.min_tenants = min_active_tenants;
        self
    }

    /// How loaded the service must be for anyone to be a noisy neighbour: the requests in flight
    /// in all, on average over the sliding window (default 32). Below it nobody waits for
    /// anybody. Set it near the concurrency the service saturates at (its worker or connection
    /// pool, or the capacity given to
    /// [`Protection::fair_share`](crate::protect::Protection::fair_share)); `f64::INFINITY` turns the
    /// rule off. A negative value counts as 0 and NaN leaves the setting as it was.
    ///
    /// ```
    /// use tenant_otel::alert::AlertRules;
    /// use tenant_otel::protect::Protection;
    ///
    /// let capacity = 64;
    /// let protection = Protection::new().fair_share(capacity);
    /// let rules = AlertRules::default().noisy_neighbor_min_load(f64::from(capacity) * 0.8);
    /// # let _ = (protection, rules);
    /// ```
    pub fn noisy_neighbor_min_load(mut self, in_flight: f64) -> Self {
        if !in_flight.is_nan() {
            self.noisy.min_in_flight = in_flight.max(0.0);
        }
        self
    }

    /// How long a condition must stay false before its alert resolves (default 60 s).
    pub fn resolve_after(mut self, hold: Duration) -> Self {
        self.resolve_after = hold;
        self
    }
}

/// A condition that holds for a tenant now.
#[derive(Debug)]
pub(super) struct Condition {
    pub(super) tenant: TenantId,
    pub(super) tier: String,
    pub(super) kind: AlertKind,
    pub(super) slo: Option<Sli>,
    pub(super) readings: Vec<Reading>,
}

impl AlertRules {
    /// Every condition that holds at `now`, for every tenant with its own label (the shared
    /// `__overflow__` and `__unknown__` entries mix many tenants: an alert on them names no one).
    pub(super) fn evaluate(&self, registry: &TenantRegistry, now: Instant) -> Vec<Condition> {
        let secs = registry.secs(now);
        let mut out = Vec::new();
        let mut loads = Vec::new();
        registry.for_each_entry(|e| {
            if e.is_shared() {
                return;
            }
            let tier = e.tier().unwrap_or_else(|| "unknown".to_owned());
            let mut push = |kind, slo, readings| {
                out.push(Condition {
                    tenant: e.id().clone(),
                    tier: tier.clone(),
                    kind,
                    slo,
                    readings,
                })
            };
            let slo = e.slo();
            let slis = [
                Some((Sli::Availability, slo.availability_objective())),
                slo.latency().map(|l| (Sli::Latency, l.target())),
            ];
            for (sli, objective) in slis.into_iter().flatten() {
                for (kind, rules) in [
                    (AlertKind::Page, &self.page),
                    (AlertKind::Ticket, &self.ticket),
                ] {
                    if let Some(readings) = self.burning(e, secs, sli, objective, rules) {
                        push(kind, Some(sli), readings);
                    }
                }
            }
            if let Some(reading) = self.success_rate(e, secs) {
                push(AlertKind::SuccessRate, None, vec![reading]);
            }
            if let Some(reading) = self.latency(e, now) {
                push(AlertKind::Latency, None, vec![reading]);
            }
            if let Some(reading) = self.quota(e) {
                push(AlertKind::Quota, None, vec![reading]);
            }
            loads.push((
                (e.id().clone(), tier),
                e.stats.requests.window_busy(now).in_flight(),
            ));
        });
        self.noisy_neighbors(&loads, &mut out);
        out
    }

    /// The readings of the first rule of `rules` whose two windows both burn above its factor.
    fn burning(
        &self,
        e: &TenantEntry,
        secs: u64,
        sli: Sli,
        objective: Objective,
        rules: &[BurnRule],
    ) -> Option<Vec<Reading>> {
        rules.iter().find_map(|rule| {
            let long = e.stats.slo.burn(secs, rule.long, sli, objective)?;
            let short = e.stats.slo.burn(secs, rule.short, sli, objective)?;
            let holds = long.rate > rule.factor
                && short.rate > rule.factor
                && short.bad >= self.min_bad_requests;
            holds.then(|| {
                [(rule.long, long.rate), (rule.short, short.rate)]
                    .map(|(w, value)| Reading {
                        measure: Measure::BurnRate,
                        // Every window of `WINDOWS` has its name (tested in `event`).
                        window: Over::burn(w.minutes).unwrap_or(Over::Sliding),
                        value,
                        threshold: rule.factor,
                    })
                    .to_vec()
            })
        })
    }

    fn success_rate(&self, e: &TenantEntry, secs: u64) -> Option<Reading> {
        let c = e.stats.slo.counts(secs, self.success_minutes);
        if c.total < self.min_requests.max(1) {
            return None;
        }
        let rate = 1.0 - c.failed as f64 / c.total as f64;
        (rate < self.success_rate).then_some(Reading {
            measure: Measure::SuccessRate,
            window: Over::TwoMinutes,
            value: rate,
            threshold: self.success_rate,
        })
    }

    fn latency(&self, e: &TenantEntry, now: Instant) -> Option<Reading> {
        let window = e.stats.requests.snapshot(now).window;
        let p99 = window.p99_ms / 1000.0;
        (window.total >= self.min_requests.max(1) && p99 > self.p99.as_secs_f64()).then_some(
            Reading {
                measure: Measure::P99Seconds,
                window: Over::Sliding,
                value: p99,
                threshold: self.p99.as_secs_f64(),
            },
        )
    }

    fn quota(&self, e: &TenantEntry) -> Option<Reading> {
        let highest = e
            .queries
            .quotas()
            .into_iter()
            .map(|(_, percent)| percent)
            .fold(f64::NEG_INFINITY, f64::max);
        (highest > self.quota_percent).then_some(Reading {
            measure: Measure::QuotaPercent,
            window: Over::Now,
            value: highest,
            threshold: self.quota_percent,
        })
    }

    /// Names the noisy neighbours among the tenants, given each one's requests in flight on
    /// average over the sliding window.
    fn noisy_neighbors(&self, loads: &[((TenantId, String), f64)], out: &mut Vec<Condition>) {
        let rule = self.noisy;
        noisy_neighbors(loads, rule, |(tenant, tier), share, in_flight| {
            out.push(Condition {
                tenant: tenant.clone(),
                tier: tier.clone(),
                kind: AlertKind::NoisyNeighbor,
                slo: None,
                readings: vec![
                    Reading {
                        measure: Measure::Share,
                        window: Over::Sliding,
                        value: share,
                        threshold: rule.share,
                    },
                    Reading {
                        measure: Measure::InFlight,
                        window: Over::Sliding,
                        value: in_flight,
                        threshold: rule.min_in_flight,
                    },
                ],
            })
        });
    }
}
