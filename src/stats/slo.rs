//! One tenant's request outcomes in time buckets, and the burn rates and error budget read from
//! them.
//!
//! Three rings of atomic buckets: 120 one-minute buckets (the 5m, 30m, 1h and 2h windows), 72
//! one-hour buckets (6h, 1d, 3d) and 31 one-day buckets (the compliance window). A request adds
//! to one bucket of each ring; the period a bucket holds says whether it is current, so nothing
//! runs on a timer and an idle tenant costs nothing. About 7 KiB a tenant.
//!
//! A window includes the current, partial period: the 6h window is the current hour and the five
//! before it. The SLIs are the requests that failed on the server's side (see `classify`) and
//! the requests slower than the latency objective's threshold, each over all requests.

use std::sync::atomic::{AtomicU64, Ordering};

use super::objective::Objective;

/// A burn-rate window, by the label it is exported with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Window {
    pub(crate) label: &'static str,
    pub(crate) minutes: u64,
}

/// The windows of the SRE workbook's multi-window, multi-burn-rate alerts.
pub(crate) const WINDOWS: [Window; 7] = [
    Window {
        label: "5m",
        minutes: 5,
    },
    Window {
        label: "30m",
        minutes: 30,
    },
    Window {
        label: "1h",
        minutes: 60,
    },
    Window {
        label: "2h",
        minutes: 120,
    },
    Window {
        label: "6h",
        minutes: 360,
    },
    Window {
        label: "1d",
        minutes: 1440,
    },
    Window {
        label: "3d",
        minutes: 4320,
    },
];

/// The window named `label`.
pub(crate) fn window(label: &str) -> Window {
    WINDOWS
        .into_iter()
        .find(|w| w.label == label)
        .unwrap_or(WINDOWS[0])
}

const MINUTE_BUCKETS: usize = 120;
const HOUR_BUCKETS: usize = 72;
const DAY_BUCKETS: usize = super::objective::MAX_COMPLIANCE_DAYS as usize;

/// What is counted of each request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) total: u64,
    /// Failed on the server's side.
    pub(crate) failed: u64,
    /// Slower than the latency objective's threshold.
    pub(crate) slow: u64,
}

/// Which objective a status or an alert is about: the service level indicator it counts.
///
/// Exported as the `slo` attribute and JSON field by [`as_str`](Self::as_str).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(
    feature = "axum",
    derive(serde::Serialize),
    serde(rename_all = "snake_case")
)]
#[non_exhaustive]
pub enum Sli {
    /// Requests that did not fail on the server's side, over all requests (`availability`).
    Availability,
    /// Requests faster than the latency objective's threshold, over all requests (`latency`).
    Latency,
}

impl Sli {
    /// The `slo` attribute value: `availability` or `latency`.
    pub fn as_str(self) -> &'static str {
        match self {
            Sli::Availability => "availability",
            Sli::Latency => "latency",
        }
    }

    fn bad(self, c: Counts) -> u64 {
        match self {
            Sli::Availability => c.failed,
            Sli::Latency => c.slow,
        }
    }
}

impl std::fmt::Display for Sli {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A burn rate over one window, with the counts it came from (the alert rules look at both).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Burn {
    /// The bad share over the share the objective allows: 1 spends the budget exactly over the
    /// compliance window.
    pub(crate) rate: f64,
    pub(crate) bad: u64,
    pub(crate) total: u64,
}

#[derive(Debug, Default)]
struct Bucket {
    /// The period counted here, plus one: 0 marks a bucket never used.
    tag: AtomicU64,
    total: AtomicU64,
    failed: AtomicU64,
    slow: AtomicU64,
}

impl Bucket {
    /// What the bucket holds, if it holds `period`.
    fn counts_of(&self, period: u64) -> Option<Counts> {
        (self.tag.load(Ordering::Acquire) == period + 1).then(|| self.counts())
    }

    fn counts(&self) -> Counts {
        let total = self.total.load(Ordering::Relaxed);
        // A reset racing this read may show more failures than requests for a moment.
        Counts {
            total,
            failed: self.failed.load(Ordering::Relaxed).min(total),
            slow: self.slow.load(Ordering::Relaxed).min(total),
        }
    }

    fn store(&self, c: Counts) {
        self.total.store(c.total, Ordering::Relaxed);
        self.failed.store(c.failed, Ordering::Relaxed);
        self.slow.store(c.slow, Ordering::Relaxed);
    }

    fn add(&self, c: Counts) {
        for (counter, n) in [
            (&self.total, c.total),
            (&self.failed, c.failed),
            (&self.slow, c.slow),
        ] {
            if n > 0 {
                counter.fetch_add(n, Ordering::Relaxed);
            }
        }
    }
}

#[derive(Debug)]
struct Ring<const N: usize> {
    buckets: [Bucket; N],
}

impl<const N: usize> Default for Ring<N> {
    fn default() -> Self {
        Ring {
            buckets: std::array::from_fn(|_| Bucket::default()),
        }
    }
}

impl<const N: usize> Ring<N> {
    fn bucket(&self, period: u64) -> &Bucket {
        &self.buckets[(period % N as u64) as usize]
    }

    /// Adds `c` to `period`, taking the bucket over from the period it held a ring ago.
    fn add(&self, period: u64, c: Counts) {
        let bucket = self.bucket(period);
        let tag = period + 1;
        let held = bucket.tag.load(Ordering::Acquire);
        if held != tag
            && bucket
                .tag
                .compare_exchange(held, tag, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            // A writer of the same period on another thread may land just before and be lost:
            // the figures are approximate at period boundaries, never out of bounds.
            bucket.store(c);
            return;
        }
        bucket.add(c);
    }

    /// The counts of the periods `oldest..=now` still held (a bucket's tag names its period
    /// exactly, so a period older than the ring that was never taken over still counts).
    fn counts(&self, oldest: u64, now: u64) -> Counts {
        let mut c = Counts::default();
        for b in &self.buckets {
            let tag = b.tag.load(Ordering::Acquire);
            if tag != 0 && (oldest..=now).contains(&(tag - 1)) {
                let b = b.counts();
                c.total += b.total;
                c.failed += b.failed;
                c.slow += b.slow;
            }
        }
        c
    }
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, o: Counts) {
        self.total += o.total;
        self.failed += o.failed;
        self.slow += o.slow;
    }
}

/// One tenant's outcomes over every window.
///
/// A request writes to the minute ring alone (one to three atomic additions). The hour and day
/// rings are filled when a new minute begins: the request that opens it folds the finished
/// minutes in, so the coarse rings cost nothing per request. Readers of a long window add the
/// minutes not folded yet.
#[derive(Debug, Default)]
pub(crate) struct SloWindows {
    minutes: Ring<MINUTE_BUCKETS>,
    hours: Ring<HOUR_BUCKETS>,
    days: Ring<DAY_BUCKETS>,
    /// Every minute before this one is in the hour and day rings.
    folded: AtomicU64,
}

impl SloWindows {
    /// Records one request that ended `secs` seconds after the registry's epoch.
    pub(crate) fn record(&self, secs: u64, failed: bool, slow: bool) {
        let minute = secs / 60;
        let bucket = self.minutes.bucket(minute);
        let one = Counts {
            total: 1,
            failed: u64::from(failed),
            slow: u64::from(slow),
        };
        if bucket.tag.load(Ordering::Acquire) != minute + 1 {
            // Before the bucket is taken over (it may hold a minute two hours old).
            self.fold_before(minute);
        }
        self.minutes.add(minute, one);
    }

    /// Folds every finished minute before `minute` into the hour and day rings, once.
    fn fold_before(&self, minute: u64) {
        let from = self.folded.fetch_max(minute, Ordering::AcqRel);
        if from >= minute {
            return;
        }
        // By bucket, not by minute: after a long idle stretch the gap is long, the ring short.
        for bucket in &self.minutes.buckets {
            let Some(m) = bucket.tag.load(Ordering::Acquire).checked_sub(1) else {
                continue;
            };
            if (from..minute).contains(&m) {
                if let Some(c) = bucket.counts_of(m) {
                    self.hours.add(m / 60, c);
                    self.days.add(m / 1440, c);
                }
            }
        }
    }

    /// The counts over the last `minutes` up to `secs` after the epoch, from the finest ring that
    /// covers them.
    pub(crate) fn counts(&self, secs: u64, minutes: u64) -> Counts {
        let minute = secs / 60;
        if minutes <= MINUTE_BUCKETS as u64 {
            return self
                .minutes
                .counts((minute + 1).saturating_sub(minutes), minute);
        }
        let (period, ring_counts) = if minutes <= HOUR_BUCKETS as u64 * 60 {
            let periods = minutes.div_ceil(60);
            let now = minute / 60;
            (
                60,
                self.hours.counts((now + 1).saturating_sub(periods), now),
            )
        } else {
            let periods = minutes.div_ceil(1440);
            let now = minute / 1440;
            (
                1440,
                self.days.counts((now + 1).saturating_sub(periods), now),
            )
        };
        // The coarse window starts at the beginning of its oldest period.
        let oldest = (minute / period + 1).saturating_sub(minutes.div_ceil(period)) * period;
        let folded = self.folded.load(Ordering::Acquire);
        let mut c = ring_counts;
        c += self.minutes.counts(folded.max(oldest), minute);
        c
    }

    /// The burn rate of `sli` over `window`, or `None` with no request in it.
    pub(crate) fn burn(
        &self,
        secs: u64,
        window: Window,
        sli: Sli,
        objective: Objective,
    ) -> Option<Burn> {
        let c = self.counts(secs, window.minutes);
        (c.total > 0).then(|| {
            let bad = sli.bad(c);
            Burn {
                rate: bad as f64 / c.total as f64 / objective.budget(),
                bad,
                total: c.total,
            }
        })
    }

    /// The share of the compliance window's error budget of `sli` not yet spent, in `0..=1`, or
    /// `None` with no request in the window.
    pub(crate) fn budget_remaining(
        &self,
        secs: u64,
        days: u32,
        sli: Sli,
        objective: Objective,
    ) -> Option<f64> {
        let c = self.counts(secs, u64::from(days) * 1440);
        (c.total > 0).then(|| {
            let spent = sli.bad(c) as f64 / c.total as f64 / objective.budget();
            (1.0 - spent).clamp(0.0, 1.0)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(v: f64) -> Objective {
        Objective::new(v).unwrap()
    }

    #[test]
    fn burn_rates_follow_the_failure_ratio() {
        let w = SloWindows::default();
        // 55 quiet minutes at 0.1 % errors, then 5 minutes at 20 %.
        for minute in 0..55 {
            for i in 0..1000 {
                w.record(minute * 60, i == 0, false);
            }
        }
        for minute in 55..60 {
            for i in 0..100 {
                w.record(minute * 60 + 30, i < 20, i < 50);
            }
        }
        let now = 59 * 60 + 59;
        let five = w
            .burn(now, window("5m"), Sli::Availability, obj(0.999))
            .unwrap();
        assert!((five.rate - 200.0).abs() < 1e-6, "{five:?}");
        assert_eq!((five.bad, five.total), (100, 500));
        let hour = w
            .burn(now, window("1h"), Sli::Availability, obj(0.999))
            .unwrap();
        let expected = (55.0 + 100.0) / 55_500.0 / 0.001;
        assert!((hour.rate - expected).abs() < 1e-6, "{hour:?}");
        let slow = w.burn(now, window("5m"), Sli::Latency, obj(0.99)).unwrap();
        assert!((slow.rate - 50.0).abs() < 1e-6, "{slow:?}");
        assert_eq!(
            w.budget_remaining(now, 30, Sli::Availability, obj(0.999)),
            Some(0.0),
            "a 30-day budget spent in an hour"
        );
        let healthy = w
            .budget_remaining(now, 30, Sli::Availability, obj(0.99))
            .unwrap();
        assert!(
            (healthy - (1.0 - 155.0 / 55_500.0 / 0.01)).abs() < 1e-9,
            "{healthy}"
        );
    }

    #[test]
    fn long_windows_read_the_coarse_rings() {
        let w = SloWindows::default();
        // One request a minute for three days, failing during the first day only.
        for minute in 0..3 * 1440 {
            w.record(minute * 60, minute < 1440, false);
        }
        let now = 3 * 1440 * 60 - 1;
        let day = w.counts(now, 1440);
        assert_eq!((day.total, day.failed), (1440, 0));
        let three = w.counts(now, 4320);
        assert_eq!((three.total, three.failed), (4320, 1440));
        let six = w.counts(now, 360);
        assert_eq!(six.total, 360);
        let month = w.counts(now, 30 * 1440);
        assert_eq!(month.total, 4320);
    }

    #[test]
    fn an_idle_tenants_last_minutes_still_count_in_the_long_windows() {
        let w = SloWindows::default();
        for minute in 0..11 {
            w.record(minute * 60, minute == 10, false);
        }
        // Three idle hours: minute 10 was never folded (no minute opened after it), but the day
        // still holds it.
        let day = w.counts(190 * 60, 1440);
        assert_eq!((day.total, day.failed), (11, 1));
        // A request now takes minute 10's bucket over only after folding it.
        w.record(250 * 60, false, false);
        let day = w.counts(250 * 60, 1440);
        assert_eq!((day.total, day.failed), (12, 1));
    }

    #[test]
    fn old_periods_leave_the_window() {
        let w = SloWindows::default();
        w.record(0, true, false);
        w.record(3 * 60, false, false);
        assert_eq!(w.counts(3 * 60, 5).total, 2);
        assert_eq!(w.counts(6 * 60, 5).total, 1);
        // Two hours later the bucket of minute 0 is reused, not added to.
        w.record(120 * 60, false, false);
        let c = w.counts(120 * 60, 120);
        assert_eq!((c.total, c.failed), (2, 0));
        assert!(w
            .burn(500 * 60, window("5m"), Sli::Availability, obj(0.99))
            .is_none());
    }
}
