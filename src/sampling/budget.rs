//! Each tenant's count of traces kept in the current interval: one atomic word, so deciding
//! takes no lock, and no lock is shared by all tenants.

use std::sync::atomic::{AtomicU64, Ordering};

/// The interval index in the high 32 bits, the traces kept in it in the low 32.
#[derive(Debug, Default)]
pub(super) struct Budget {
    word: AtomicU64,
    /// The tenant's ratio as `f64` bits, refreshed once per interval (its tier may change).
    ratio: AtomicU64,
    /// The interval the ratio was read in, plus one (0: never).
    ratio_interval: AtomicU64,
}

/// What the budget allows for one more root trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Allowance {
    /// Under the floor: keep it.
    Floor,
    /// Between the floor and the cap: the ratio decides.
    Ratio,
    /// At the cap: drop it.
    Capped,
}

impl Budget {
    /// Traces kept in `interval`.
    pub(super) fn kept_in(&self, interval: u32) -> u32 {
        let word = self.word.load(Ordering::Relaxed);
        if (word >> 32) as u32 == interval {
            word as u32
        } else {
            0
        }
    }

    /// Where the tenant stands in `interval`, before this trace.
    pub(super) fn allowance(&self, interval: u32, floor: u32, cap: u32) -> Allowance {
        let kept = self.kept_in(interval);
        if kept < floor {
            Allowance::Floor
        } else if kept >= cap {
            Allowance::Capped
        } else {
            Allowance::Ratio
        }
    }

    /// Counts a kept trace in `interval`, unless the cap was reached meanwhile (another thread
    /// kept one): then the trace must be dropped, and this returns false.
    pub(super) fn keep(&self, interval: u32, cap: u32) -> bool {
        let mut word = self.word.load(Ordering::Relaxed);
        loop {
            let kept = if (word >> 32) as u32 == interval {
                word as u32
            } else {
                0
            };
            if kept >= cap {
                return false;
            }
            let next = (u64::from(interval) << 32) | u64::from(kept + 1);
            match self
                .word
                .compare_exchange_weak(word, next, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return true,
                Err(now) => word = now,
            }
        }
    }

    /// The tenant's ratio, read with `read` at most once per interval.
    pub(super) fn ratio(&self, interval: u32, read: impl FnOnce() -> f64) -> f64 {
        let stamp = u64::from(interval) + 1;
        if self.ratio_interval.load(Ordering::Relaxed) == stamp {
            return f64::from_bits(self.ratio.load(Ordering::Relaxed));
        }
        let ratio = read();
        self.ratio.store(ratio.to_bits(), Ordering::Relaxed);
        self.ratio_interval.store(stamp, Ordering::Relaxed);
        ratio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_then_ratio_then_cap_and_a_new_interval_starts_over() {
        let b = Budget::default();
        for _ in 0..2 {
            assert_eq!(b.allowance(7, 2, 3), Allowance::Floor);
            assert!(b.keep(7, 3));
        }
        assert_eq!(b.allowance(7, 2, 3), Allowance::Ratio);
        assert!(b.keep(7, 3));
        assert_eq!(b.allowance(7, 2, 3), Allowance::Capped);
        assert!(!b.keep(7, 3));
        assert_eq!(b.allowance(8, 2, 3), Allowance::Floor);
    }

    #[test]
    fn two_threads_never_keep_past_the_cap() {
        let b = Budget::default();
        let kept: u32 = std::thread::scope(|s| {
            let a = s.spawn(|| (0..10_000).filter(|_| b.keep(1, 500)).count());
            let c = s.spawn(|| (0..10_000).filter(|_| b.keep(1, 500)).count());
            (a.join().unwrap() + c.join().unwrap()) as u32
        });
        assert_eq!(kept, 500);
    }
}
