//! Per-tenant SLA arithmetic: the last hour of request outcomes in one-minute buckets, the
//! burn rates and the budget left that `tenant.sla.burn_rate` and
//! `tenant.sla.error_budget.remaining` report, and the objectives per tier.
//!
//! The SLI is the HTTP requests that failed on the server's side (see `classify`) over all HTTP
//! requests. The Prometheus rules in `collector-config/` compute the long windows (6 h to 3 d)
//! from the exported counters, where the SLI is the 5xx responses: a gRPC error or a failed
//! inner service has no 5xx status, so only the in-process gauges count those.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Minutes kept: the longest window reported.
const MINUTES: usize = 60;

/// The windows burn rates are reported for, in minutes, with their label.
const WINDOWS: [(u64, &str); 2] = [(5, "5m"), (60, "1h")];

/// An SLA objective: the share of a tenant's requests that must succeed, strictly between 0
/// and 1.
///
/// ```
/// use tenant_otel::Objective;
///
/// let three_nines = Objective::new(0.999).unwrap();
/// assert_eq!(three_nines.get(), 0.999);
/// assert!(Objective::new(f64::NAN).is_err());
/// assert!(Objective::new(1.0).is_err(), "no error budget at all: every burn rate is infinite");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Objective(f64);

impl Objective {
    /// The objective `value`, if it is a number strictly between 0 and 1.
    pub fn new(value: f64) -> Result<Self, InvalidObjective> {
        // NaN fails both comparisons, so it is refused here too.
        if value > 0.0 && value < 1.0 {
            Ok(Objective(value))
        } else {
            Err(InvalidObjective { value })
        }
    }

    /// The share of requests that must succeed.
    pub fn get(self) -> f64 {
        self.0
    }

    /// The share allowed to fail.
    fn budget(self) -> f64 {
        1.0 - self.0
    }
}

impl TryFrom<f64> for Objective {
    type Error = InvalidObjective;

    fn try_from(value: f64) -> Result<Self, Self::Error> {
        Objective::new(value)
    }
}

/// An objective that is not a number strictly between 0 and 1 (NaN included).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvalidObjective {
    value: f64,
}

impl fmt::Display for InvalidObjective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an SLA objective must lie strictly between 0 and 1, not {}",
            self.value
        )
    }
}

impl std::error::Error for InvalidObjective {}

/// Objectives per tier.
#[derive(Debug, Clone)]
pub(crate) struct Objectives {
    tiers: Vec<(String, Objective)>,
    default: Objective,
}

impl Default for Objectives {
    /// The tiers of the Prometheus rules: free 99 %, standard 99.5 %, premium 99.9 %; a tenant
    /// with no (or another) tier is held to the standard objective.
    fn default() -> Self {
        Objectives {
            tiers: vec![
                ("free".into(), Objective(0.99)),
                ("standard".into(), Objective(0.995)),
                ("premium".into(), Objective(0.999)),
            ],
            default: Objective(0.995),
        }
    }
}

impl Objectives {
    pub(crate) fn set(&mut self, tier: &str, objective: Objective) {
        match self.tiers.iter_mut().find(|(t, _)| t == tier) {
            Some(slot) => slot.1 = objective,
            None => self.tiers.push((tier.to_owned(), objective)),
        }
    }

    pub(crate) fn of(&self, tier: Option<&str>) -> Objective {
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
pub(crate) fn read(window: &SlaWindow, now: u64, objective: Objective) -> Option<SlaReading> {
    let budget = objective.budget();
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
        let r = read(&w, 59, Objective(0.999)).unwrap();
        let five = r.burn_rates.iter().find(|(l, _)| *l == "5m").unwrap().1;
        assert!((five - 200.0).abs() < 1e-6, "{five}");
        let hour = r.burn_rates.iter().find(|(l, _)| *l == "1h").unwrap().1;
        let expected = (55.0 + 100.0) / 55_500.0 / 0.001;
        assert!((hour - expected).abs() < 1e-6, "{hour}");
        assert_eq!(r.budget_remaining, 0.0, "the hour's budget is spent");

        let healthy = read(&w, 59, Objective(0.99)).unwrap();
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
        assert!(
            read(&w, 200, Objective(0.99)).is_none(),
            "nothing in the last hour"
        );
    }

    #[test]
    fn objectives_by_tier() {
        let mut o = Objectives::default();
        assert_eq!(o.of(Some("premium")).get(), 0.999);
        assert_eq!(o.of(None).get(), 0.995);
        o.set("gold", Objective::new(0.9999).unwrap());
        assert_eq!(o.of(Some("gold")).get(), 0.9999);
        for bad in [f64::NAN, 0.0, 1.0, -0.5, 2.0, f64::INFINITY] {
            assert!(Objective::new(bad).is_err(), "{bad}");
        }
    }
}
