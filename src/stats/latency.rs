//! Counts and latency percentiles of one kind of work, since start and over a sliding window,
//! for the in-process view.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::share::Busy;
use super::{mean, success_rate};

/// The longest duration recorded, in microseconds (a day).
const MAX_MICROS: u64 = 86_400_000_000;

/// Two significant figures: percentiles within 1 %, at a few KiB per histogram.
const SIGFIG: u8 = 2;

/// Counts and durations of one kind of work (HTTP requests, or queries) of one tenant.
#[derive(Debug)]
pub(crate) struct Stats {
    total: AtomicU64,
    errors: AtomicU64,
    active: AtomicI64,
    sum_micros: AtomicU64,
    latency: Mutex<Latency>,
}

/// Durations in microseconds, since start and over a sliding window.
///
/// The window is two halves that take turns: the older half is cleared when a new half begins, so
/// a read covers between half a window and a whole one of the most recent data, at the cost of two
/// histograms instead of one per time slice.
#[derive(Debug)]
struct Latency {
    since_start: Histogram<u64>,
    /// 32-bit counts halve the memory of the two window halves; a half is cleared every half
    /// window, long before one bucket could count four billion requests.
    halves: [Histogram<u32>; 2],
    /// Which half is being written.
    current: usize,
    /// When the current half began.
    half_started: Instant,
    /// Since when the window's data runs: the start of the half kept as `prev_*`, or of the
    /// current half when there is none.
    prev_started: Instant,
    half: Duration,
    window_count: u64,
    window_errors: u64,
    window_sum_micros: u64,
    prev_count: u64,
    prev_errors: u64,
    prev_sum_micros: u64,
}

/// A point-in-time reading of one tenant's requests or queries, from the in-process view.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Operations finished since start.
    pub total: u64,
    /// Of which succeeded.
    pub success: u64,
    /// Of which failed.
    pub errors: u64,
    /// `success / total`, or 1 when nothing finished yet.
    pub success_rate: f64,
    /// Operations in flight now.
    pub active: i64,
    /// Mean duration since start, in milliseconds.
    pub avg_ms: f64,
    /// Duration percentiles since start, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile since start, in milliseconds.
    pub p95_ms: f64,
    /// 99th percentile since start, in milliseconds.
    pub p99_ms: f64,
    /// The same over the recent sliding window.
    pub window: WindowSnapshot,
}

/// Statistics over the sliding window.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[non_exhaustive]
pub struct WindowSnapshot {
    /// Operations finished in the window.
    pub total: u64,
    /// Of which failed.
    pub errors: u64,
    /// `1 - errors / total`, or 1 when nothing finished in the window.
    pub success_rate: f64,
    /// Mean duration in the window, in milliseconds.
    pub avg_ms: f64,
    /// Median in the window, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile in the window, in milliseconds.
    pub p95_ms: f64,
    /// 99th percentile in the window, in milliseconds.
    pub p99_ms: f64,
}

fn new_histogram<T: hdrhistogram::Counter>() -> Histogram<T> {
    // Auto-resizing: a tenant that only ever answers in milliseconds never pays for the buckets
    // of an hour.
    let mut h = Histogram::new(SIGFIG).expect("2 significant figures is a valid precision");
    h.auto(true);
    h
}

impl Stats {
    pub(crate) fn new(window: Duration, now: Instant) -> Self {
        let half = (window / 2).max(Duration::from_millis(1));
        Stats {
            total: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            active: AtomicI64::new(0),
            sum_micros: AtomicU64::new(0),
            latency: Mutex::new(Latency {
                since_start: new_histogram(),
                halves: [new_histogram(), new_histogram()],
                current: 0,
                half_started: now,
                prev_started: now,
                half,
                window_count: 0,
                window_errors: 0,
                window_sum_micros: 0,
                prev_count: 0,
                prev_errors: 0,
                prev_sum_micros: 0,
            }),
        }
    }

    pub(crate) fn start(&self) {
        self.active.fetch_add(1, Ordering::Relaxed);
    }

    /// Records a finished operation that was counted in flight by [`Stats::start`], at `now`
    /// (the caller's clock reading, which also timed it).
    pub(crate) fn finish(&self, duration: Duration, error: bool, now: Instant) {
        self.active.fetch_sub(1, Ordering::Relaxed);
        self.record(duration, error, now);
    }

    /// Records a finished operation (one-shot tracking: it was never in flight here).
    pub(crate) fn record(&self, duration: Duration, error: bool, now: Instant) {
        // A day is longer than any request or query; a larger figure (say `Duration::MAX` from a
        // careless caller) is clamped so sums cannot overflow.
        let micros = u64::try_from(duration.as_micros())
            .unwrap_or(u64::MAX)
            .clamp(1, MAX_MICROS);
        self.total.fetch_add(1, Ordering::Relaxed);
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        // A poisoned lock only means another thread panicked mid-record; the counts are still
        // usable, and telemetry must not take the request down with it.
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        l.rotate(now);
        // Auto-resize means record cannot fail for lack of range; saturate anyway.
        let _ = l.since_start.record(micros);
        let cur = l.current;
        let _ = l.halves[cur].record(micros);
        l.window_count += 1;
        l.window_errors += u64::from(error);
        l.window_sum_micros = l.window_sum_micros.saturating_add(micros);
    }

    /// Summed duration of what finished within the sliding window, in microseconds: the busy
    /// time this kind of work took lately. Cheap, unlike a full [`Stats::snapshot`].
    pub(crate) fn window_busy_micros(&self, now: Instant) -> u64 {
        self.window_busy(now).micros
    }

    /// The busy time of the sliding window and the span it was gathered over, which is anything
    /// from half a window to a window and a half depending on when the halves last turned; at
    /// least half a window, so a tenant seen a moment ago does not divide by a moment.
    pub(crate) fn window_busy(&self, now: Instant) -> Busy {
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        l.rotate(now);
        Busy {
            micros: l.window_sum_micros.saturating_add(l.prev_sum_micros),
            span: now.saturating_duration_since(l.prev_started).max(l.half),
        }
    }

    pub(crate) fn active(&self) -> i64 {
        self.active.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self, now: Instant) -> StatsSnapshot {
        let total = self.total.load(Ordering::Relaxed);
        let errors = self.errors.load(Ordering::Relaxed).min(total);
        let sum = self.sum_micros.load(Ordering::Relaxed);
        let mut l = self.latency.lock().unwrap_or_else(|e| e.into_inner());
        l.rotate(now);
        let mut window_hist = l.halves[0].clone();
        let _ = window_hist.add(&l.halves[1]);
        let w_total = l.window_count.saturating_add(l.prev_count);
        let w_errors = l.window_errors.saturating_add(l.prev_errors);
        let w_sum = l.window_sum_micros.saturating_add(l.prev_sum_micros);
        StatsSnapshot {
            total,
            success: total - errors,
            errors,
            success_rate: success_rate(total, errors),
            active: self.active(),
            avg_ms: mean(sum as f64, total) / 1000.0,
            p50_ms: quantile_ms(&l.since_start, 0.50),
            p95_ms: quantile_ms(&l.since_start, 0.95),
            p99_ms: quantile_ms(&l.since_start, 0.99),
            window: WindowSnapshot {
                total: w_total,
                errors: w_errors,
                success_rate: success_rate(w_total, w_errors),
                avg_ms: mean(w_sum as f64, w_total) / 1000.0,
                p50_ms: quantile_ms(&window_hist, 0.50),
                p95_ms: quantile_ms(&window_hist, 0.95),
                p99_ms: quantile_ms(&window_hist, 0.99),
            },
        }
    }
}

impl Latency {
    fn rotate(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.half_started);
        if elapsed < self.half {
            return;
        }
        if elapsed >= self.half * 2 {
            // Idle for a whole window: nothing recent is left.
            self.halves[0].reset();
            self.halves[1].reset();
            self.prev_count = 0;
            self.prev_errors = 0;
            self.prev_sum_micros = 0;
            self.prev_started = now;
        } else {
            self.prev_count = self.window_count;
            self.prev_errors = self.window_errors;
            self.prev_sum_micros = self.window_sum_micros;
            self.prev_started = self.half_started;
            self.current ^= 1;
            let cur = self.current;
            self.halves[cur].reset();
        }
        self.window_count = 0;
        self.window_errors = 0;
        self.window_sum_micros = 0;
        self.half_started = now;
    }
}

fn quantile_ms<T: hdrhistogram::Counter>(h: &Histogram<T>, q: f64) -> f64 {
    if h.is_empty() {
        0.0
    } else {
        h.value_at_quantile(q) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_and_rates() {
        let s = Stats::new(Duration::from_secs(60), Instant::now());
        for i in 0..100 {
            s.record(
                Duration::from_millis(10 * (i + 1)),
                i % 10 == 0,
                Instant::now(),
            );
        }
        let snap = s.snapshot(Instant::now());
        assert_eq!(snap.total, 100);
        assert_eq!(snap.errors, 10);
        assert!((snap.success_rate - 0.9).abs() < 1e-9);
        assert!((snap.avg_ms - 505.0).abs() < 0.5, "{}", snap.avg_ms);
        assert!(
            (snap.p50_ms - 500.0).abs() / 500.0 < 0.02,
            "{}",
            snap.p50_ms
        );
        assert!(
            (snap.p99_ms - 990.0).abs() / 990.0 < 0.02,
            "{}",
            snap.p99_ms
        );
        assert_eq!(snap.window.total, 100);
    }

    #[test]
    fn the_window_forgets_old_data() {
        let t0 = Instant::now();
        let s = Stats::new(Duration::from_millis(40), t0);
        s.record(Duration::from_secs(5), true, t0);
        let later = t0 + Duration::from_millis(60);
        s.record(Duration::from_millis(50), false, later);
        let snap = s.snapshot(later);
        assert_eq!(snap.total, 2);
        assert_eq!(snap.window.total, 1);
        assert_eq!(snap.window.errors, 0);
        assert!(snap.window.p99_ms < 100.0);
        assert!(snap.p99_ms > 4000.0);
    }

    #[test]
    fn absurd_durations_are_clamped_not_overflowed() {
        let s = Stats::new(Duration::from_secs(60), Instant::now());
        for _ in 0..3 {
            s.record(Duration::MAX, false, Instant::now());
        }
        let snap = s.snapshot(Instant::now());
        assert_eq!(snap.total, 3);
        assert!((snap.avg_ms - 86_400_000.0).abs() < 1.0, "{}", snap.avg_ms);
        assert!(snap.p99_ms <= 86_400_000.0 * 1.01);
    }

    #[test]
    fn busy_time_comes_with_the_span_it_covers() {
        let t0 = Instant::now();
        let s = Stats::new(Duration::from_secs(60), t0);
        let at = |secs| t0 + Duration::from_secs(secs);
        // Just seen: at least half a window, not the moment since.
        s.record(Duration::from_secs(2), false, at(1));
        let busy = s.window_busy(at(1));
        assert_eq!(
            (busy.micros, busy.span),
            (2_000_000, Duration::from_secs(30))
        );
        // The halves turn at 40 s: the data runs from 0 s.
        s.record(Duration::from_secs(3), false, at(40));
        let busy = s.window_busy(at(50));
        assert_eq!(
            (busy.micros, busy.span),
            (5_000_000, Duration::from_secs(50))
        );
        // They turn again at 75 s: what finished before 40 s is gone, the data runs from 40 s.
        let busy = s.window_busy(at(75));
        assert_eq!(
            (busy.micros, busy.span),
            (3_000_000, Duration::from_secs(35))
        );
        // Idle for a whole window: nothing, over half a window.
        let busy = s.window_busy(at(200));
        assert_eq!((busy.micros, busy.span), (0, Duration::from_secs(30)));
    }

    #[test]
    fn active_comes_back_down() {
        let s = Stats::new(Duration::from_secs(1), Instant::now());
        s.start();
        s.start();
        assert_eq!(s.active(), 2);
        s.finish(Duration::from_millis(1), false, Instant::now());
        s.finish(Duration::from_millis(1), true, Instant::now());
        assert_eq!(s.active(), 0);
    }
}
