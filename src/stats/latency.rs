//! Counts and latency percentiles of one kind of work, since start and over a sliding window,
//! for the in-process view.
//!
//! Recorded on every finished request by any number of threads at once, with atomics only: no
//! lock, so tenants past the cap, all sharing the overflow entry, do not queue behind each
//! other. Durations go into log-linear [`Buckets`]; the window is made of halves of a fixed grid
//! (half `k` runs from `k` half-windows after the statistics were made), each counted into one
//! of three rows stamped with the half it holds, so moving on to a new half is a
//! compare-and-swap on a stamp, not a lock.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use super::buckets::{Buckets, Counts, MAX_VALUE, SLOTS};
use super::share::Busy;
use super::snapshot::{StatsSnapshot, WindowSnapshot};
use super::{mean, success_rate};

/// The longest duration recorded, in microseconds (a day).
const MAX_MICROS: u64 = MAX_VALUE;

/// In a row's stamp: the row is being cleared for the half in the other bits.
const CLEARING: u64 = 1 << 63;

/// Counts and durations of one kind of work (HTTP requests, or queries) of one tenant.
#[derive(Debug)]
pub(crate) struct Stats {
    total: AtomicU64,
    errors: AtomicU64,
    active: AtomicI64,
    sum_micros: AtomicU64,
    buckets: Buckets,
    /// Window rows; half `k` is counted in row `k % SLOTS`.
    rows: [Row; SLOTS],
    /// Where the grid of halves starts.
    base: Instant,
    /// Half a window, in nanoseconds (at least a millisecond).
    half_nanos: u64,
}

/// The window counts of one half.
#[derive(Debug)]
struct Row {
    /// The half whose counts the row holds, or that half with [`CLEARING`] while it is emptied
    /// for it. Readers count a row only when its stamp is one of the halves they read.
    stamp: AtomicU64,
    errors: AtomicU64,
    sum_micros: AtomicU64,
}

impl Row {
    fn new(half: u64) -> Self {
        Row {
            stamp: AtomicU64::new(half),
            errors: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    /// True when the row holds `half`'s counts.
    fn holds(&self, half: u64) -> bool {
        self.stamp.load(Ordering::Acquire) == half
    }
}

impl Stats {
    pub(crate) fn new(window: Duration, now: Instant) -> Self {
        let half = (window / 2).max(Duration::from_millis(1));
        Stats {
            total: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            active: AtomicI64::new(0),
            sum_micros: AtomicU64::new(0),
            buckets: Buckets::default(),
            // Each row starts empty and stamped with the first half it will hold.
            rows: std::array::from_fn(|k| Row::new(k as u64)),
            base: now,
            half_nanos: u64::try_from(half.as_nanos()).unwrap_or(u64::MAX),
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
        let half = self.half(now);
        let slot = self.row_for(half);
        self.buckets.record(micros, slot);
        if let Some(slot) = slot {
            let row = &self.rows[slot];
            if error {
                row.errors.fetch_add(1, Ordering::Relaxed);
            }
            row.sum_micros.fetch_add(micros, Ordering::Relaxed);
        }
        if error {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        self.sum_micros.fetch_add(micros, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
    }

    /// Which half of the grid `now` falls in.
    fn half(&self, now: Instant) -> u64 {
        let elapsed = now.saturating_duration_since(self.base);
        let nanos = elapsed
            .as_secs()
            .saturating_mul(1_000_000_000)
            .saturating_add(u64::from(elapsed.subsec_nanos()));
        nanos / self.half_nanos
    }

    /// When half `k` began.
    fn half_start(&self, k: u64) -> Instant {
        let since = Duration::from_nanos(k.saturating_mul(self.half_nanos));
        self.base.checked_add(since).unwrap_or(self.base)
    }

    /// The row a value finished in half `half` is counted in, after making sure that row holds
    /// that half and the next half's row is cleared ahead of time; `None` (the value is counted
    /// since start only) for a writer that is late by a whole window or meets a row another
    /// thread is clearing right after an idle spell: both rare, and neither waits.
    fn row_for(&self, half: u64) -> Option<usize> {
        let slot = (half % SLOTS as u64) as usize;
        let ready = self.claim(slot, half);
        // Usually a single load: the row of the next half was cleared by the first writer of
        // this one, half a window before anyone writes into it.
        let next = half.saturating_add(1);
        self.claim((next % SLOTS as u64) as usize, next);
        ready.then_some(slot)
    }

    /// Makes row `slot` hold half `half`, emptying what it held before (a half that has left
    /// the window: row `slot` last held `half - 3` or earlier). True when it holds `half`.
    fn claim(&self, slot: usize, half: u64) -> bool {
        let row = &self.rows[slot];
        let stamp = row.stamp.load(Ordering::Acquire);
        if stamp == half {
            return true;
        }
        if stamp & CLEARING != 0 || stamp > half {
            return false;
        }
        if row
            .stamp
            .compare_exchange(stamp, half | CLEARING, Ordering::Acquire, Ordering::Acquire)
            .is_err()
        {
            // Another writer moved it on first: usable if it is done and moved it to `half`.
            return row.holds(half);
        }
        self.buckets.clear_slot(slot);
        row.errors.store(0, Ordering::Relaxed);
        row.sum_micros.store(0, Ordering::Relaxed);
        // Release: whoever sees the new stamp sees the row empty.
        row.stamp.store(half, Ordering::Release);
        true
    }

    /// The rows the window read at `now` covers (the current half and the one before), and
    /// since when that window runs.
    fn window_rows(&self, now: Instant) -> (Vec<usize>, Instant) {
        let half = self.half(now);
        let mut rows = Vec::with_capacity(2);
        for k in [Some(half), half.checked_sub(1)].into_iter().flatten() {
            let slot = (k % SLOTS as u64) as usize;
            if self.rows[slot].holds(k) {
                rows.push(slot);
            }
        }
        (rows, self.half_start(half.saturating_sub(1)))
    }

    /// Summed duration of what finished within the sliding window, in microseconds: the busy
    /// time this kind of work took lately. Cheap, unlike a full [`Stats::snapshot`].
    pub(crate) fn window_busy_micros(&self, now: Instant) -> u64 {
        self.window_busy(now).micros
    }

    /// The busy time of the sliding window and the span it was gathered over: from the start
    /// of the previous half to `now`, between half a window and a whole one; at least half a
    /// window, so a tenant seen a moment ago does not divide by a moment.
    pub(crate) fn window_busy(&self, now: Instant) -> Busy {
        let (rows, since) = self.window_rows(now);
        let micros = rows
            .iter()
            .map(|&s| self.rows[s].sum_micros.load(Ordering::Relaxed))
            .fold(0u64, u64::saturating_add);
        Busy {
            micros,
            span: now
                .saturating_duration_since(since)
                .max(Duration::from_nanos(self.half_nanos)),
        }
    }

    pub(crate) fn active(&self) -> i64 {
        self.active.load(Ordering::Relaxed)
    }

    pub(crate) fn snapshot(&self, now: Instant) -> StatsSnapshot {
        // The totals first: every operation recorded before the snapshot began is in them.
        let total = self.total.load(Ordering::Relaxed);
        let errors = self.errors.load(Ordering::Relaxed).min(total);
        let sum = self.sum_micros.load(Ordering::Relaxed);
        let (rows, _) = self.window_rows(now);
        let row_sum = |field: fn(&Row) -> &AtomicU64| {
            rows.iter()
                .map(|&s| field(&self.rows[s]).load(Ordering::Relaxed))
                .fold(0u64, u64::saturating_add)
        };
        let since_start = self.buckets.since_start();
        let window = self.buckets.window(&rows);
        // Counted from the buckets, which the window's percentiles come from too. Writers that
        // finished after the totals were read may be in it: never more than the total.
        let w_total = window.total().min(total);
        let w_errors = row_sum(|r| &r.errors).min(w_total);
        let w_sum = row_sum(|r| &r.sum_micros);
        StatsSnapshot {
            total,
            success: total - errors,
            errors,
            success_rate: success_rate(total, errors),
            active: self.active(),
            avg_ms: mean(sum as f64, total) / 1000.0,
            p50_ms: quantile_ms(&since_start, 500),
            p95_ms: quantile_ms(&since_start, 950),
            p99_ms: quantile_ms(&since_start, 990),
            window: WindowSnapshot {
                total: w_total,
                errors: w_errors,
                success_rate: success_rate(w_total, w_errors),
                avg_ms: mean(w_sum as f64, w_total) / 1000.0,
                p50_ms: quantile_ms(&window, 500),
                p95_ms: quantile_ms(&window, 950),
                p99_ms: quantile_ms(&window, 990),
            },
        }
    }

    /// Bytes these statistics take, inline and on the heap.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        std::mem::size_of::<Self>() + self.buckets.heap_bytes()
    }
}

fn quantile_ms(counts: &Counts, per_mille: u64) -> f64 {
    counts
        .quantile(per_mille)
        .map_or(0.0, |micros| micros as f64 / 1000.0)
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
        // The halves are 30 s of a grid from 0 s: at 50 s the window holds 0 s to 60 s, the data
        // runs from 0 s.
        s.record(Duration::from_secs(3), false, at(40));
        let busy = s.window_busy(at(50));
        assert_eq!(
            (busy.micros, busy.span),
            (5_000_000, Duration::from_secs(50))
        );
        // At 75 s it holds 30 s to 90 s: what finished before 30 s is gone, the data runs from
        // 30 s.
        let busy = s.window_busy(at(75));
        assert_eq!(
            (busy.micros, busy.span),
            (3_000_000, Duration::from_secs(45))
        );
        // Idle for a whole window: nothing, over the window's span (150 s to 200 s).
        let busy = s.window_busy(at(200));
        assert_eq!((busy.micros, busy.span), (0, Duration::from_secs(50)));
        // Writing again after the idle spell starts the halves afresh.
        s.record(Duration::from_secs(1), true, at(201));
        let snap = s.snapshot(at(201));
        assert_eq!((snap.window.total, snap.window.errors), (1, 1));
        assert_eq!(s.window_busy_micros(at(201)), 1_000_000);
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

    #[test]
    fn a_tenant_with_a_few_latencies_keeps_its_statistics_small() {
        let t0 = Instant::now();
        let s = Stats::new(Duration::from_secs(60), t0);
        let empty = s.bytes();
        // Three latencies three orders of magnitude apart, as the memory test's tenants have.
        for (i, ms) in [50, 5, 5000].into_iter().enumerate() {
            s.record(
                Duration::from_millis(ms),
                false,
                t0 + Duration::from_secs(i as u64),
            );
        }
        let used = s.bytes();
        println!("statistics of one kind of work: {empty} bytes empty, {used} with 3 latencies");
        assert!(empty >= 64, "{empty}: the counters alone are larger");
        assert!(empty <= 512, "{empty} bytes before anything was recorded");
        assert!(used > empty, "{used}: recording allocated nothing");
        assert!(used <= 6 * 1024, "{used} bytes for three latencies");
    }

    #[test]
    fn threads_recording_at_once_lose_nothing() {
        const THREADS: u64 = 4;
        const EACH: u64 = 20_000;
        let t0 = Instant::now();
        let s = Stats::new(Duration::from_secs(3600), t0);
        let started = std::sync::Barrier::new(THREADS as usize + 1);
        std::thread::scope(|scope| {
            for t in 0..THREADS {
                let (s, started) = (&s, &started);
                scope.spawn(move || {
                    started.wait();
                    for i in 0..EACH {
                        s.start();
                        // 1 to 1000 ms, one error in ten.
                        let ms = 1 + (i * 7 + t) % 1000;
                        s.finish(Duration::from_millis(ms), i % 10 == 0, t0);
                    }
                });
            }
            // A reader while they write: counts only ever grow, and never panic.
            started.wait();
            let mut last = 0;
            for _ in 0..200 {
                let snap = s.snapshot(t0);
                assert!(snap.total >= last, "{} after {last}", snap.total);
                assert!(snap.window.total <= THREADS * EACH);
                assert!(snap.errors <= snap.total);
                last = snap.total;
            }
        });
        let snap = s.snapshot(t0);
        let n = THREADS * EACH;
        assert_eq!((snap.total, snap.errors, snap.active), (n, n / 10, 0));
        assert_eq!((snap.window.total, snap.window.errors), (n, n / 10));
        let expected_sum: u64 = (0..THREADS)
            .flat_map(|t| (0..EACH).map(move |i| 1 + (i * 7 + t) % 1000))
            .sum();
        assert!((snap.avg_ms - expected_sum as f64 / n as f64).abs() < 1e-6);
        // Evenly spread over 1..=1000 ms: the median near 500 ms.
        assert!((495.0..=505.0).contains(&snap.p50_ms), "{}", snap.p50_ms);
        assert!((982.0..=998.0).contains(&snap.p99_ms), "{}", snap.p99_ms);
    }

    #[test]
    fn window_percentiles_follow_the_recent_halves_only() {
        let t0 = Instant::now();
        let s = Stats::new(Duration::from_secs(10), t0);
        let at = |ms| t0 + Duration::from_millis(ms);
        for _ in 0..100 {
            s.record(Duration::from_millis(900), false, at(1_000));
        }
        for _ in 0..100 {
            s.record(Duration::from_millis(3), false, at(12_000));
        }
        // At 12 s the window holds 5 s to 15 s: only the fast ones.
        let snap = s.snapshot(at(12_000));
        assert_eq!((snap.total, snap.window.total), (200, 100));
        assert!(
            (2.95..=3.05).contains(&snap.window.p99_ms),
            "{}",
            snap.window.p99_ms
        );
        assert!((885.0..=915.0).contains(&snap.p99_ms), "{}", snap.p99_ms);
        // Until 20 s the window still holds the half from 10 s; then it is empty.
        let later = s.snapshot(at(19_999));
        assert_eq!(later.window.total, 100);
        let gone = s.snapshot(at(20_000));
        assert_eq!((gone.total, gone.window.total), (200, 0));
        assert_eq!(gone.window.p99_ms, 0.0);
    }
}
