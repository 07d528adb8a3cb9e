//! Per-tenant SLA: error-budget burn rates and the budget left, from the outcomes of the last
//! hour, observed as `tenant.sla.burn_rate` and `tenant.sla.error_budget.remaining`.
//!
//! The SLI is the HTTP requests that failed on the server's side (5xx, a failed inner service, a
//! gRPC server error) over all HTTP requests. A client that goes away before the end of the body
//! spends no budget: that was its choice. The Prometheus rules in `collector-config/` compute the
//! long windows (6 h to 3 d) from the exported counters, where the SLI is the 5xx responses: a
//! gRPC error or a failed inner service has no 5xx status, so only these gauges count them.

use std::sync::atomic::{AtomicU64, Ordering};

use opentelemetry::metrics::{AsyncInstrument, Meter, ObservableGauge};
use opentelemetry::{Key, KeyValue, StringValue};

use crate::metrics::names;

const TIER: Key = Key::from_static_str("tenant.tier");
const WINDOW: Key = Key::from_static_str("window");

/// Minutes kept: the longest window reported.
const MINUTES: usize = 60;

/// The windows burn rates are reported for, in minutes, with their label.
const WINDOWS: [(u64, &str); 2] = [(5, "5m"), (60, "1h")];

/// Objectives per tier: the share of requests that must succeed.
#[derive(Debug, Clone)]
pub(crate) struct Objectives {
    tiers: Vec<(String, f64)>,
    default: f64,
}

impl Default for Objectives {
    /// The tiers of the Prometheus rules: free 99 %, standard 99.5 %, premium 99.9 %; a tenant
    /// with no (or another) tier is held to the standard objective.
    fn default() -> Self {
        Objectives {
            tiers: vec![
                ("free".into(), 0.99),
                ("standard".into(), 0.995),
                ("premium".into(), 0.999),
            ],
            default: 0.995,
        }
    }
}

impl Objectives {
    pub(crate) fn set(&mut self, tier: &str, objective: f64) {
        let objective = objective.clamp(0.0, 0.999_999);
        match self.tiers.iter_mut().find(|(t, _)| t == tier) {
            Some(slot) => slot.1 = objective,
            None => self.tiers.push((tier.to_owned(), objective)),
        }
    }

    fn of(&self, tier: Option<&str>) -> f64 {
        tier.and_then(|tier| self.tiers.iter().find(|(t, _)| t == tier))
            .map_or(self.default, |(_, o)| *o)
    }
}

/// Outcomes per minute over the last hour, in a ring of atomic buckets: recording is two
/// atomic additions, and the minute a bucket holds tells whether it is current, so nothing
/// runs on a timer.
#[derive(Debug)]
pub(crate) struct SlaWindow {
    buckets: [Bucket; MINUTES],
}

#[derive(Debug, Default)]
struct Bucket {
    /// The minute (since the registry's epoch) counted here, plus one: 0 marks a bucket never
    /// used.
    minute: AtomicU64,
    /// Requests in the low 32 bits, failures in the high 32: one word, so a reader (or a reset
    /// racing a writer) never sees more failures than requests.
    counts: AtomicU64,
}

/// One request, failed or not, as it is added to [`Bucket::counts`].
fn packed(error: bool) -> u64 {
    1 | (u64::from(error) << 32)
}

impl Default for SlaWindow {
    fn default() -> Self {
        SlaWindow {
            buckets: std::array::from_fn(|_| Bucket::default()),
        }
    }
}

impl SlaWindow {
    pub(crate) fn record(&self, minute: u64, error: bool) {
        let bucket = &self.buckets[(minute % MINUTES as u64) as usize];
        let tag = minute + 1;
        let held = bucket.minute.load(Ordering::Acquire);
        if held != tag
            && bucket
                .minute
                .compare_exchange(held, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // The first request of a new minute replaces what the bucket held an hour ago with
            // itself. A request of the same minute on another thread may land just before and
            // be lost: the figures are approximate at minute boundaries, never inconsistent.
            bucket.counts.store(packed(error), Ordering::Relaxed);
            return;
        }
        bucket.counts.fetch_add(packed(error), Ordering::Relaxed);
    }

    /// Requests and failures over the last `minutes` minutes up to `now` (the current minute
    /// included).
    fn totals(&self, now: u64, minutes: u64) -> (u64, u64) {
        let oldest = (now + 1).saturating_sub(minutes);
        self.buckets
            .iter()
            .filter(|b| {
                let tag = b.minute.load(Ordering::Acquire);
                tag != 0 && (oldest..=now).contains(&(tag - 1))
            })
            .fold((0, 0), |(t, e), b| {
                let counts = b.counts.load(Ordering::Relaxed);
                (t + (counts & u64::from(u32::MAX)), e + (counts >> 32))
            })
    }
}

/// What one tenant's SLA reports at a collection.
#[derive(Debug, PartialEq)]
pub(crate) struct SlaReading {
    /// `(window label, burn rate)` for each window with requests in it.
    pub(crate) burn_rates: Vec<(&'static str, f64)>,
    /// The fraction of the hour's error budget not yet spent, in `0..=1`.
    pub(crate) budget_remaining: f64,
}

/// Burn rate: the failure ratio over the budget the objective allows (1 spends the budget
/// exactly over the SLO period; 14.4 spends a 30-day budget in 2 days).
pub(crate) fn read(window: &SlaWindow, now: u64, objective: f64) -> Option<SlaReading> {
    let budget = 1.0 - objective;
    let (hour_total, hour_errors) = window.totals(now, MINUTES as u64);
    if hour_total == 0 {
        return None;
    }
    let burn_rates = WINDOWS
        .iter()
        .filter_map(|(minutes, label)| {
            let (total, errors) = window.totals(now, *minutes);
            (total > 0).then(|| (*label, errors as f64 / total as f64 / budget))
        })
        .collect();
    let spent = hour_errors as f64 / hour_total as f64 / budget;
    Some(SlaReading {
        burn_rates,
        budget_remaining: (1.0 - spent).clamp(0.0, 1.0),
    })
}

/// One tenant as the SLA gauges see it.
pub(crate) struct SlaSource<'a> {
    pub(crate) tenant: &'a KeyValue,
    pub(crate) tier: Option<&'a str>,
    pub(crate) window: &'a SlaWindow,
}

/// The two gauges, observed together at each collection from the registry's live tenants.
pub(crate) fn gauges(
    meter: &Meter,
    objectives: Objectives,
    now_minute: impl Fn() -> u64 + Send + Sync + Clone + 'static,
    for_each: impl Fn(&mut dyn FnMut(SlaSource<'_>)) + Send + Sync + Clone + 'static,
) -> [ObservableGauge<f64>; 2] {
    let observe_with = move |report: &mut dyn FnMut(&SlaReading, &[KeyValue])| {
        let now = now_minute();
        for_each(&mut |source: SlaSource<'_>| {
            let objective = objectives.of(source.tier);
            if let Some(reading) = read(source.window, now, objective) {
                let tier = StringValue::from(source.tier.unwrap_or("unknown").to_owned());
                report(
                    &reading,
                    &[source.tenant.clone(), KeyValue::new(TIER, tier)],
                );
            }
        });
    };
    let burn = observe_with.clone();
    let budget = observe_with;
    [
        meter
            .f64_observable_gauge(names::TENANT_SLA_BURN_RATE)
            .with_description(
                "Error-budget burn rate of the tenant's HTTP requests over the window (1 spends the budget exactly over the SLO period).",
            )
            .with_callback(move |observer: &dyn AsyncInstrument<f64>| {
                burn(&mut |reading, attributes| {
                    for (label, rate) in &reading.burn_rates {
                        let mut attributes = attributes.to_vec();
                        attributes.push(KeyValue::new(WINDOW, *label));
                        observer.observe(*rate, &attributes);
                    }
                });
            })
            .build(),
        meter
            .f64_observable_gauge(names::TENANT_SLA_ERROR_BUDGET_REMAINING)
            .with_unit("1")
            .with_description(
                "Fraction of the tenant's error budget left over the last hour of HTTP requests.",
            )
            .with_callback(move |observer: &dyn AsyncInstrument<f64>| {
                budget(&mut |reading, attributes| {
                    observer.observe(reading.budget_remaining, attributes);
                });
            })
            .build(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burn_rates_and_budget_follow_the_failure_ratio() {
        let w = SlaWindow::default();
        // 55 quiet minutes at 0.1 % errors, then 5 minutes at 20 %.
        for minute in 0..55 {
            for i in 0..1000 {
                w.record(minute, i == 0);
            }
        }
        for minute in 55..60 {
            for i in 0..100 {
                w.record(minute, i < 20);
            }
        }
        let r = read(&w, 59, 0.999).unwrap();
        let five = r.burn_rates.iter().find(|(l, _)| *l == "5m").unwrap().1;
        assert!((five - 200.0).abs() < 1e-6, "{five}");
        let hour = r.burn_rates.iter().find(|(l, _)| *l == "1h").unwrap().1;
        let expected = (55.0 + 100.0) / 55_500.0 / 0.001;
        assert!((hour - expected).abs() < 1e-6, "{hour}");
        assert_eq!(r.budget_remaining, 0.0, "the hour's budget is spent");

        let healthy = read(&w, 59, 0.99).unwrap();
        assert!(healthy.budget_remaining > 0.7, "{healthy:?}");
    }

    #[test]
    fn old_minutes_leave_the_window() {
        let w = SlaWindow::default();
        w.record(0, true);
        w.record(3, false);
        assert_eq!(w.totals(3, 5), (2, 1));
        assert_eq!(w.totals(6, 5), (1, 0));
        // An hour later the bucket of minute 0 is reused, not added to.
        w.record(60, false);
        assert_eq!(w.totals(60, 60), (2, 0));
        assert!(read(&w, 200, 0.99).is_none(), "nothing in the last hour");
    }

    #[test]
    fn objectives_by_tier() {
        let mut o = Objectives::default();
        assert_eq!(o.of(Some("premium")), 0.999);
        assert_eq!(o.of(None), 0.995);
        o.set("gold", 0.9999);
        assert_eq!(o.of(Some("gold")), 0.9999);
    }
}
