//! Latency buckets that many threads count into at once without a lock: log-linear (a fixed
//! number of sub-buckets per power of two, so the relative error is the same at every scale),
//! one atomic counter per bucket, and the powers of two allocated on first use so a tenant that
//! only ever answers in milliseconds never pays for the buckets of an hour.
//!
//! Each power of two (a *group*) counts since start and into [`SLOTS`] rows that the sliding
//! window takes turns with (see `latency.rs`).

use std::fmt;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::OnceLock;

/// Sub-buckets per power of two, as bits: 64 sub-buckets, each 1/64 of its power of two wide,
/// so a bucket's midpoint is within 1/128 (0.8 %) of any value it holds: percentiles within
/// 1 %, as the view has always promised.
const SUB_BITS: u32 = 6;
const SUB: usize = 1 << SUB_BITS;

/// Groups needed for values up to 2^37 (above the longest duration recorded, a day in
/// microseconds): group 0 holds 0..64 exactly, group g ≥ 1 holds [2^(g+5), 2^(g+6)).
const GROUPS: usize = 32;

/// The largest value a bucket is read back as; larger ones are clamped to it when recorded.
pub(super) const MAX_VALUE: u64 = 86_400_000_000;

/// Rows of window counts per group: the two halves of the window being read, and the next half
/// cleared before it begins, so writers seldom find a row that still needs clearing.
pub(super) const SLOTS: usize = 3;

/// One power of two: counts since start (64-bit, they never reset) and per window row (32-bit,
/// halving their memory: a row is cleared every half window, long before one bucket could count
/// four billion operations).
struct Group {
    since_start: [AtomicU64; SUB],
    slots: [[AtomicU32; SUB]; SLOTS],
}

/// Log-linear latency buckets with lazily allocated groups.
#[derive(Default)]
pub(super) struct Buckets {
    /// Allocated with the first value, so a kind of work never done (a tenant without queries)
    /// costs one pointer.
    groups: OnceLock<Box<[OnceLock<Box<Group>>; GROUPS]>>,
}

/// Where a value is counted: its group and sub-bucket.
fn bucket_of(value: u64) -> (usize, usize) {
    if value < SUB as u64 {
        return (0, value as usize);
    }
    // The position of the highest bit, at least SUB_BITS here.
    let exp = 63 - value.leading_zeros();
    let group = (exp - SUB_BITS + 1) as usize;
    let sub = ((value >> (exp - SUB_BITS)) as usize) - SUB;
    (group.min(GROUPS - 1), sub)
}

/// The value a bucket is read back as: the middle of what it holds (exact in group 0 and 1).
fn midpoint(group: usize, sub: usize) -> u64 {
    if group == 0 {
        return sub as u64;
    }
    let width = 1u64 << (group - 1);
    let low = ((SUB + sub) as u64) << (group - 1);
    (low + width / 2).min(MAX_VALUE)
}

/// Non-empty buckets read at one moment, in increasing value: what percentiles are taken from.
#[derive(Debug, Default)]
pub(super) struct Counts {
    buckets: Vec<(u64, u64)>,
    total: u64,
}

impl Counts {
    fn add(&mut self, value: u64, count: u64) {
        if count > 0 {
            self.buckets.push((value, count));
            self.total = self.total.saturating_add(count);
        }
    }

    /// How many values are counted.
    pub(super) fn total(&self) -> u64 {
        self.total
    }

    /// The value at `per_mille` thousandths of the count (the smallest value with at least
    /// that share of the count at or below it), or `None` when there is nothing.
    pub(super) fn quantile(&self, per_mille: u64) -> Option<u64> {
        // Integer arithmetic, so the rank of the 95th percentile of 100 values is 95, not 96
        // because 0.95 is not exact in binary.
        let rank = (u128::from(per_mille.min(1000)) * u128::from(self.total)).div_ceil(1000);
        let rank = u64::try_from(rank).unwrap_or(u64::MAX).max(1);
        let mut seen = 0u64;
        for &(value, count) in &self.buckets {
            seen = seen.saturating_add(count);
            if seen >= rank {
                return Some(value);
            }
        }
        // Only when nothing is counted at all.
        self.buckets.last().map(|&(value, _)| value)
    }
}

impl Buckets {
    fn group(&self, index: usize) -> &Group {
        let groups = self
            .groups
            .get_or_init(|| Box::new(std::array::from_fn(|_| OnceLock::new())));
        groups[index].get_or_init(|| {
            Box::new(Group {
                since_start: std::array::from_fn(|_| AtomicU64::new(0)),
                slots: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU32::new(0))),
            })
        })
    }

    /// Counts `value` since start, and in window row `slot` when there is one.
    pub(super) fn record(&self, value: u64, slot: Option<usize>) {
        let (g, sub) = bucket_of(value.min(MAX_VALUE));
        let group = self.group(g);
        group.since_start[sub].fetch_add(1, Ordering::Relaxed);
        if let Some(slot) = slot {
            group.slots[slot][sub].fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Zeroes window row `slot` in every group allocated so far (a group allocated later starts
    /// at zero).
    pub(super) fn clear_slot(&self, slot: usize) {
        let Some(groups) = self.groups.get() else {
            return;
        };
        for group in groups.iter().filter_map(OnceLock::get) {
            for count in &group.slots[slot] {
                count.store(0, Ordering::Relaxed);
            }
        }
    }

    /// The counts since start.
    pub(super) fn since_start(&self) -> Counts {
        self.read(|group, sub| group.since_start[sub].load(Ordering::Relaxed))
    }

    /// The counts of window rows `slots`, summed bucket by bucket.
    pub(super) fn window(&self, slots: &[usize]) -> Counts {
        self.read(|group, sub| {
            slots
                .iter()
                .map(|&s| u64::from(group.slots[s][sub].load(Ordering::Relaxed)))
                .sum()
        })
    }

    fn read(&self, count: impl Fn(&Group, usize) -> u64) -> Counts {
        let mut counts = Counts::default();
        let Some(groups) = self.groups.get() else {
            return counts;
        };
        for (g, group) in groups.iter().enumerate() {
            let Some(group) = group.get() else { continue };
            for sub in 0..SUB {
                counts.add(midpoint(g, sub), count(group, sub));
            }
        }
        counts
    }

    /// Bytes allocated on the heap for these buckets.
    #[cfg(test)]
    pub(super) fn heap_bytes(&self) -> usize {
        self.groups.get().map_or(0, |groups| {
            std::mem::size_of_val(&**groups)
                + groups.iter().filter(|g| g.get().is_some()).count() * std::mem::size_of::<Group>()
        })
    }
}

impl fmt::Debug for Buckets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let allocated = self
            .groups
            .get()
            .map_or(0, |g| g.iter().filter(|g| g.get().is_some()).count());
        f.debug_struct("Buckets")
            .field("groups_allocated", &allocated)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_value_lands_in_a_bucket_whose_midpoint_is_within_a_128th() {
        for value in (0..5000u64).chain([
            1 << 20,
            (1 << 20) - 1,
            (1 << 20) + 1,
            999_999,
            MAX_VALUE - 1,
            MAX_VALUE,
        ]) {
            let (g, sub) = bucket_of(value);
            assert!(g < GROUPS && sub < SUB, "{value}: {g} {sub}");
            let mid = midpoint(g, sub);
            let err = mid.abs_diff(value) as f64 / value.max(1) as f64;
            assert!(err <= 1.0 / 128.0, "{value} read back as {mid}");
        }
        assert_eq!(midpoint(0, 7), 7);
        assert_eq!(bucket_of(64), (1, 0));
        assert_eq!(bucket_of(127), (1, 63));
        assert_eq!(bucket_of(128), (2, 0));
        assert_eq!(bucket_of(MAX_VALUE).0, GROUPS - 1);
    }

    #[test]
    fn groups_are_allocated_only_where_values_fall() {
        let b = Buckets::default();
        assert_eq!(b.heap_bytes(), 0);
        b.record(1_000, Some(0));
        b.record(1_010, None);
        let one = b.heap_bytes();
        assert!(one > 0);
        b.record(5_000_000, Some(1));
        let two = b.heap_bytes();
        assert_eq!(two - one, std::mem::size_of::<Group>());
        assert_eq!(b.since_start().total, 3);
        assert_eq!(b.window(&[0]).total, 1);
        assert_eq!(b.window(&[0, 1]).total, 2);
        b.clear_slot(0);
        assert_eq!(b.window(&[0, 1]).total, 1);
        assert_eq!(b.since_start().total, 3);
    }

    /// The rank a percentile is taken at, computed independently of the code under test.
    fn exact(sorted: &[u64], per_mille: u64) -> u64 {
        let n = sorted.len() as u64;
        let rank = (per_mille * n).div_ceil(1000).max(1);
        sorted[rank as usize - 1]
    }

    proptest! {
        #[test]
        fn percentiles_are_within_a_128th_of_the_exact_ones(
            // Log-uniform from 1 µs to a day, as latencies spread over orders of magnitude.
            exps in prop::collection::vec(0.0f64..36.3, 1..400)
        ) {
            let b = Buckets::default();
            let mut values: Vec<u64> = exps.iter().map(|e| (2f64.powf(*e) as u64).max(1)).collect();
            for &v in &values {
                b.record(v, Some(2));
            }
            values.sort_unstable();
            for counts in [b.since_start(), b.window(&[2])] {
                prop_assert_eq!(counts.total, values.len() as u64);
                for pm in [500, 950, 990, 1000] {
                    let want = exact(&values, pm);
                    let got = counts.quantile(pm).unwrap();
                    let err = got.abs_diff(want) as f64 / want as f64;
                    prop_assert!(err <= 1.0 / 128.0, "p{pm}: {got} for {want}");
                }
            }
        }
    }
}
