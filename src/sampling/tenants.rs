//! Which tenants have a budget of their own. A sampler that follows a registry gives one to
//! exactly the tenants the registry admits: the registry admits, bounds and reclaims tenants, and
//! the sampler's state follows it. Without a registry, at most `max_tenants` have one, and a
//! budget that counted nothing in the current interval makes room for a newcomer.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use papaya::{Guard, LocalGuard};

use super::budget::Budget;
use crate::registry::TenantRegistry;

type Hasher = foldhash::fast::RandomState;

/// Where a sampler's tenants come from. Kept per handle, beside the shared state: wiring a clone
/// to a registry leaves the original alone.
#[derive(Clone, Debug)]
pub(super) enum Tenants {
    /// Its own: at most `max_tenants` at a time.
    Own,
    /// A registry's.
    Registry(TenantRegistry),
    /// The registry `init()` builds after the tracer provider; its own until then.
    Later(Arc<OnceLock<TenantRegistry>>),
}

impl Tenants {
    pub(super) fn registry(&self) -> Option<&TenantRegistry> {
        match self {
            Tenants::Own => None,
            Tenants::Registry(registry) => Some(registry),
            Tenants::Later(cell) => cell.get(),
        }
    }
}

/// Each tenant's budget, by id.
pub(super) struct Budgets {
    map: papaya::HashMap<Arc<str>, Budget, Hasher>,
    /// Without a registry: budgets of their own at most.
    max_tenants: usize,
    /// One thread sweeps at a time; the others go on without waiting for it.
    sweeping: AtomicBool,
    /// The interval a sampler without a registry last swept in, plus one (0: never): one sweep
    /// an interval, so a flood of ids past the limit does not scan the map on every span.
    swept: AtomicU64,
}

impl Budgets {
    pub(super) fn new(max_tenants: usize) -> Self {
        Budgets {
            map: papaya::HashMap::with_hasher(Hasher::default()),
            max_tenants,
            sweeping: AtomicBool::new(false),
            swept: AtomicU64::new(0),
        }
    }

    pub(super) fn guard(&self) -> LocalGuard<'_> {
        self.map.guard()
    }

    /// `id`'s own budget, or `None` when it shares one. A known tenant costs a lookup in the
    /// registry (when there is one) and one here: no lock, no allocation.
    pub(super) fn of<'g>(
        &self,
        id: &str,
        registry: Option<&TenantRegistry>,
        interval: u32,
        guard: &'g impl Guard,
    ) -> Option<&'g Budget> {
        match registry {
            Some(registry) => {
                // The registry decides who has a label, and so a budget, of their own.
                if !registry.is_admitted(id) {
                    return None;
                }
                if let Some(budget) = self.map.get(id, guard) {
                    return Some(budget);
                }
                // Budgets of tenants the registry has reclaimed linger until the map holds twice
                // the cap; a sweep then leaves at most the cap, so under churn each newcomer pays
                // for about one entry of a sweep.
                if self.map.len() >= registry.max_tenants().saturating_mul(2) {
                    self.sweep(guard, |id, _| registry.is_admitted(id));
                }
            }
            None => {
                if let Some(budget) = self.map.get(id, guard) {
                    return Some(budget);
                }
                if self.map.len() >= self.max_tenants {
                    let stamp = u64::from(interval) + 1;
                    let last = self.swept.load(Ordering::Relaxed);
                    if last == stamp
                        || self
                            .swept
                            .compare_exchange(last, stamp, Ordering::AcqRel, Ordering::Relaxed)
                            .is_err()
                    {
                        return None;
                    }
                    // A budget that counted nothing in this interval holds nothing the next
                    // decision needs: a fresh one reads the same.
                    self.sweep(guard, |_, budget| budget.kept_in(interval) > 0);
                    if self.map.len() >= self.max_tenants {
                        return None;
                    }
                }
            }
        }
        Some(
            self.map
                .get_or_insert_with(Arc::from(id), Budget::default, guard),
        )
    }

    /// Keeps the budgets `keep` says, unless another thread is sweeping already. A decision that
    /// got a budget just before it was swept out counts one trace in a budget nobody reads
    /// again: at most a trace over the floor or cap for that tenant, once.
    fn sweep(&self, guard: &impl Guard, keep: impl FnMut(&Arc<str>, &Budget) -> bool) {
        if self.sweeping.swap(true, Ordering::Acquire) {
            return;
        }
        self.map.retain(keep, guard);
        self.sweeping.store(false, Ordering::Release);
    }

    /// Tenants with a budget of their own now.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use opentelemetry::trace::{SpanKind, TraceId};
    use opentelemetry::KeyValue;
    use opentelemetry_sdk::trace::{SamplingDecision, ShouldSample};

    use super::*;
    use crate::sampling::TenantSampler;
    use crate::stats::Clock;

    fn sampled(sampler: &TenantSampler, tenant: &str, n: u128) -> bool {
        let result = sampler.should_sample(
            None,
            TraceId::from(n),
            "GET",
            &SpanKind::Server,
            &[KeyValue::new("tenant.id", tenant.to_owned())],
            &[],
        );
        result.decision == SamplingDecision::RecordAndSample
    }

    #[test]
    fn budgets_of_reclaimed_tenants_are_swept_under_churn() {
        const CAP: usize = 50;
        let clock = Clock::manual();
        let registry = TenantRegistry::builder()
            .max_tenants(CAP)
            .clock(clock.clone())
            .reclaim_idle_after(Duration::from_secs(1))
            .build();
        let sampler = TenantSampler::builder()
            .floor(1)
            .ratio(0.0)
            .clock(clock.clone())
            .registry(&registry)
            .build();
        let mut most = 0;
        for wave in 0..40 {
            clock.advance(Duration::from_secs(2));
            for i in 0..CAP {
                let id = format!("w{wave}-{i}");
                assert!(!registry.resolve(&id).unwrap().is_overflow());
                // Within one sampling interval: only the registry's reclaim frees a budget.
                assert!(sampled(&sampler, &id, 1), "{id} gets its floor");
                assert!(!sampled(&sampler, &id, 2), "{id} is held to it");
                most = most.max(sampler.inner.budgets.len());
            }
        }
        assert!(most >= CAP, "every admitted tenant had a budget: {most}");
        assert!(most <= 2 * CAP + 1, "{most} budgets for a cap of {CAP}");
    }

    #[test]
    fn a_sampler_without_a_registry_keeps_at_most_its_limit() {
        let clock = Clock::manual();
        let sampler = TenantSampler::builder()
            .floor(1)
            .ratio(0.0)
            .max_tenants(10)
            .interval(Duration::from_secs(60))
            .clock(clock.clone())
            .build();
        let mut own = 0;
        for interval in 0..5 {
            for i in 0..100 {
                let id = format!("i{interval}-{i}");
                // The shared budget keeps one trace an interval; the rest are tenants' own.
                own += usize::from(sampled(&sampler, &id, 1));
                assert!(sampler.inner.budgets.len() <= 10);
            }
            clock.advance(Duration::from_secs(60));
        }
        // Ten of their own each interval, the first included, plus the shared floor.
        assert_eq!(own, 5 * (10 + 1));
    }
}
