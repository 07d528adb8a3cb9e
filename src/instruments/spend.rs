//! Spending as the chargeback table reads it: exact sums of picos without a lock, and one
//! tenant's calls, tokens and cost of one model in the current UTC day and month.

use std::sync::atomic::{AtomicU64, Ordering};

/// Where a call's cost came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CostSource {
    /// Reported by the provider with the call.
    Provider,
    /// Worked out here from the tokens and the price table.
    Local,
}

impl CostSource {
    /// The `gen_ai.usage.cost.source` value.
    pub fn as_str(self) -> &'static str {
        match self {
            CostSource::Provider => "provider",
            CostSource::Local => "local",
        }
    }
}

/// An exact sum of picos in two words (a month of a large tenant's spending passes `u64`'s
/// $18 million), added to without a lock.
#[derive(Debug, Default)]
pub(crate) struct Picos {
    /// Whole units of 2⁶⁴ picos carried out of `low`.
    high: AtomicU64,
    low: AtomicU64,
}

impl Picos {
    pub(crate) fn add(&self, picos: u64) {
        let before = self.low.fetch_add(picos, Ordering::Relaxed);
        if before.checked_add(picos).is_none() {
            self.high.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn get(&self) -> u128 {
        (u128::from(self.high.load(Ordering::Relaxed)) << 64)
            | u128::from(self.low.load(Ordering::Relaxed))
    }

    fn reset(&self) {
        self.low.store(0, Ordering::Relaxed);
        self.high.store(0, Ordering::Relaxed);
    }
}

/// Which sums to read: since start, or of a UTC day or month (numbered from 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Within {
    Start,
    Day(u64),
    Month(u64),
}

/// Totals of one tenant's calls of one model.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ModelTotals {
    pub(crate) calls: u64,
    pub(crate) input_tokens: u64,
    pub(crate) output_tokens: u64,
    /// Exact cost, in picos, reported by the provider.
    pub(crate) provider_picos: u128,
    /// Exact cost, in picos, worked out from the price table.
    pub(crate) local_picos: u128,
}

/// Sums of calls, tokens and cost, since start or within one period.
#[derive(Debug, Default)]
pub(crate) struct Sums {
    calls: AtomicU64,
    input_tokens: AtomicU64,
    output_tokens: AtomicU64,
    provider: Picos,
    local: Picos,
}

impl Sums {
    pub(crate) fn add(&self, input: u64, output: u64, cost: Option<(u64, CostSource)>) {
        self.calls.fetch_add(1, Ordering::Relaxed);
        self.input_tokens.fetch_add(input, Ordering::Relaxed);
        self.output_tokens.fetch_add(output, Ordering::Relaxed);
        match cost {
            Some((picos, CostSource::Provider)) => self.provider.add(picos),
            Some((picos, CostSource::Local)) => self.local.add(picos),
            None => {}
        }
    }

    pub(crate) fn get(&self) -> ModelTotals {
        ModelTotals {
            calls: self.calls.load(Ordering::Relaxed),
            input_tokens: self.input_tokens.load(Ordering::Relaxed),
            output_tokens: self.output_tokens.load(Ordering::Relaxed),
            provider_picos: self.provider.get(),
            local_picos: self.local.get(),
        }
    }

    fn reset(&self) {
        self.calls.store(0, Ordering::Relaxed);
        self.input_tokens.store(0, Ordering::Relaxed);
        self.output_tokens.store(0, Ordering::Relaxed);
        self.provider.reset();
        self.local.reset();
    }
}

/// [`Sums`] of the current period (a UTC day or month, numbered from 1), restarted by the
/// first call of the next one.
#[derive(Debug, Default)]
pub(crate) struct Period {
    /// The period the sums are of; 0 before the first call.
    id: AtomicU64,
    sums: Sums,
}

impl Period {
    /// Adds a call made in period `id`. The first call of a later period restarts the sums,
    /// without a lock: a call racing that first one by a few nanoseconds may be counted in
    /// neither period. A call of an earlier period (a clock stepping back) counts in the
    /// current one.
    pub(crate) fn add(&self, id: u64, input: u64, output: u64, cost: Option<(u64, CostSource)>) {
        let current = self.id.load(Ordering::Acquire);
        if current < id
            && self
                .id
                .compare_exchange(current, id, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.sums.reset();
        }
        self.sums.add(input, output, cost);
    }

    /// The sums of period `id`: nothing if no call was made in it.
    pub(crate) fn get(&self, id: u64) -> ModelTotals {
        if self.id.load(Ordering::Acquire) == id {
            self.sums.get()
        } else {
            ModelTotals::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_restarts_with_the_next_and_reads_empty_for_others() {
        let day = Period::default();
        assert_eq!(day.get(0), ModelTotals::default());
        day.add(5, 100, 10, Some((7, CostSource::Local)));
        day.add(5, 50, 5, Some((3, CostSource::Provider)));
        let five = day.get(5);
        assert_eq!(
            (five.calls, five.input_tokens, five.output_tokens),
            (2, 150, 15)
        );
        assert_eq!((five.local_picos, five.provider_picos), (7, 3));
        assert_eq!(day.get(6), ModelTotals::default());
        day.add(6, 1, 1, None);
        assert_eq!(day.get(5), ModelTotals::default());
        assert_eq!(day.get(6).calls, 1);
        // A late call of day 5 counts in day 6 rather than wiping it.
        day.add(5, 1, 1, None);
        assert_eq!(day.get(6).calls, 2);
    }

    #[test]
    fn picos_carry_past_u64() {
        let p = Picos::default();
        p.add(u64::MAX);
        p.add(2);
        assert_eq!(p.get(), u128::from(u64::MAX) + 2);
    }
}
