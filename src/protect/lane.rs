//! Where a protection keeps each tenant's state: one lane per tenant (and, past the cardinality
//! cap, one per hashed bucket), holding its requests in flight and its prepared limits. The lanes
//! live in the protection, so two protections over one registry never see each other's limits or
//! counts; each lane is tied to its tenant's registry entry and swept out once that entry is gone.

use std::fmt;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};

use arc_swap::ArcSwapOption;
use papaya::{Compute, Operation};

use super::limits::{limiter, Limiter, Limits};
use crate::stats::Clock;

/// How many rate and concurrency buckets the tenants past the cardinality cap (the ones whose
/// metrics go to `__overflow__`) are limited on, per [`Protection`](crate::protect::Protection).
///
/// Such a tenant has no entry of its own, so it is limited on the bucket its real id hashes to
/// (with a key chosen at random per process), under the default limits
/// ([`Protection::default_limits`](crate::protect::Protection::default_limits)). A flooder past the cap
/// exhausts only its own bucket: the other overflow tenants in it, about one in
/// `OVERFLOW_BUCKETS`, share its fate, and the rest keep their limits. Memory stays bounded: at
/// most this many buckets, made as ids reach them. Requests without a usable tenant that the
/// layer lets through as `__unknown__` are limited the same way, on buckets of their own.
pub const OVERFLOW_BUCKETS: usize = 1024;

/// The lanes' hasher: keys are small and made here, not by clients.
type Hasher = foldhash::fast::RandomState;

/// A guard's serial number and a bucket (0 for a tenant with an entry of its own).
type LaneKey = (u64, u32);

/// Below this many lanes a protection never sweeps.
const MIN_SWEEP: usize = 64;

/// One tenant's protection state as its registry entry holds it: its own limits, and what ties
/// the protections' lanes to the entry. Memory is bounded by the tenant cap and leaves with a
/// reclaimed tenant.
pub(crate) struct TenantGuard {
    /// Names this guard's lanes in every protection.
    serial: u64,
    /// A lane holds it weakly: once the entry is gone, its lanes can go too.
    alive: Arc<()>,
    /// Bumped when the tenant's own limits or its tier change, so lanes prepare again.
    generation: AtomicU64,
    /// Read when a lane is prepared again, written when an operator changes them: no lock.
    own: ArcSwapOption<Limits>,
    /// For the shared `__overflow__` and `__unknown__` entries: the key that spreads the real ids
    /// over [`OVERFLOW_BUCKETS`].
    buckets: Option<Hasher>,
}

impl TenantGuard {
    /// The guard of a tenant's own entry, or (`shared`) of an entry many tenants share.
    pub(crate) fn new(shared: bool) -> Self {
        static SERIAL: AtomicU64 = AtomicU64::new(0);
        TenantGuard {
            serial: SERIAL.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
            generation: AtomicU64::new(0),
            own: ArcSwapOption::empty(),
            buckets: shared.then(Hasher::default),
        }
    }

    /// Sets (or clears) this tenant's own limits, instead of its tier's.
    pub(crate) fn set_own(&self, limits: Option<Limits>) {
        self.own.store(limits.map(Arc::new));
        self.invalidate();
    }

    /// This tenant's own limits, if any.
    pub(crate) fn own(&self) -> Option<Limits> {
        self.own.load().as_deref().copied()
    }

    /// Makes every protection work the limits out again: the tier changed.
    pub(crate) fn invalidate(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The bucket of a request of tenant `id` through this guard.
    fn bucket(&self, id: &str) -> u32 {
        self.buckets.as_ref().map_or(0, |hasher| {
            // Less than OVERFLOW_BUCKETS: fits.
            (hasher.hash_one(id) % OVERFLOW_BUCKETS as u64) as u32
        })
    }
}

impl fmt::Debug for TenantGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantGuard")
            .field("own", &self.own())
            .field("shared", &self.buckets.is_some())
            .finish()
    }
}

/// One tenant's (or bucket's) state under one protection, for one version of its limits.
pub(super) struct Lane {
    /// Requests in flight: carried over when the limits are prepared again, since permits of
    /// requests still running give their slot back to it.
    pub(super) inflight: Arc<AtomicU64>,
    owner: Weak<()>,
    version: u64,
    generation: u64,
    /// The tenant's limits as configured: what the replicas share.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(super) limits: Limits,
    /// What this replica enforces on its own: `limits`, divided by the replica count when the
    /// protection is told it (see [`Protection::replicas`](super::Protection::replicas)).
    pub(super) local: Limits,
    /// Shared with the lane's next version while the rate stays the same, so a change elsewhere
    /// in the policy does not refill a tenant's bucket.
    pub(super) limiter: Option<Arc<Limiter>>,
}

impl Lane {
    fn is_current(&self, version: u64, generation: u64) -> bool {
        self.version == version && self.generation == generation
    }
}

/// A protection's lanes: read without a lock on every request, written when a tenant first
/// comes through or its limits change.
pub(super) struct Lanes {
    map: papaya::HashMap<LaneKey, Lane, Hasher>,
    /// The size at which the next new lane sweeps out those of entries that are gone: twice
    /// the live lanes after the last sweep, so sweeps cost O(1) per lane made.
    sweep_at: AtomicUsize,
}

impl Default for Lanes {
    fn default() -> Self {
        Lanes {
            map: papaya::HashMap::default(),
            sweep_at: AtomicUsize::new(MIN_SWEEP),
        }
    }
}

impl fmt::Debug for Lanes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lanes")
            .field("lanes", &self.map.len())
            .finish()
    }
}

impl Lanes {
    /// Calls `decide` with the lane of tenant `id` (through `guard`), prepared for the policy's
    /// `version`. `limits` is called only when the lane must be prepared again.
    pub(super) fn with<R>(
        &self,
        guard: &TenantGuard,
        id: &str,
        version: u64,
        limits: impl FnOnce() -> (Limits, Limits),
        clock: &Clock,
        decide: impl FnOnce(&Lane) -> R,
    ) -> R {
        let generation = guard.generation.load(Ordering::Acquire);
        let key = (guard.serial, guard.bucket(id));
        let lanes = self.map.pin();
        if let Some(lane) = lanes.get(&key) {
            if lane.is_current(version, generation) {
                return decide(lane);
            }
        }
        // The tenant's first request through this protection, or its limits changed.
        let (limits, local) = limits();
        let prepare = |old: Option<&Lane>| Lane {
            inflight: old.map_or_else(Arc::default, |o| Arc::clone(&o.inflight)),
            owner: Arc::downgrade(&guard.alive),
            version,
            generation,
            limits,
            local,
            limiter: match old {
                Some(o) if o.local.rate == local.rate => o.limiter.clone(),
                _ => local.rate.map(|rate| Arc::new(limiter(rate, clock))),
            },
        };
        let lane = match lanes.compute(key, |found| match found {
            // Another request prepared it meanwhile.
            Some((_, lane)) if lane.is_current(version, generation) => Operation::Abort(lane),
            found => Operation::Insert(prepare(found.map(|(_, lane)| lane))),
        }) {
            Compute::Inserted(_, lane) => {
                if lanes.len() >= self.sweep_at.load(Ordering::Relaxed) {
                    lanes.retain(|_, lane| lane.owner.strong_count() > 0);
                    let next = (lanes.len() * 2).max(MIN_SWEEP);
                    self.sweep_at.store(next, Ordering::Relaxed);
                }
                lane
            }
            Compute::Updated { new: (_, lane), .. } => lane,
            Compute::Aborted(lane) => lane,
            // The closure never removes.
            Compute::Removed(_, lane) => lane,
        };
        decide(lane)
    }

    /// Lanes held now, of live tenants and of gone ones not yet swept.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protect::Protection;

    fn admit(protection: &Protection, guard: &TenantGuard, id: &str) {
        let clock = Clock::manual();
        drop(protection.admit(guard, id, || None, &clock));
    }

    #[test]
    fn lanes_of_gone_tenants_are_swept() {
        let protection = Protection::new().default_limits(Limits::none().concurrency(1));
        let kept = TenantGuard::new(false);
        admit(&protection, &kept, "kept");
        for i in 0..10_000 {
            admit(&protection, &TenantGuard::new(false), &format!("t-{i}"));
        }
        let lanes = protection.inner.lanes.len();
        // The live one, and at most as many gone ones as the sweep threshold lets build up.
        assert!((1..=MIN_SWEEP).contains(&lanes), "{lanes} lanes");
        let key = (kept.serial, 0);
        assert!(protection.inner.lanes.map.pin().contains_key(&key));
    }

    #[test]
    fn ids_past_the_cap_share_a_bounded_set_of_buckets() {
        let protection = Protection::new().default_limits(Limits::none().concurrency(1));
        let shared = TenantGuard::new(true);
        for i in 0..20_000 {
            admit(&protection, &shared, &format!("t-{i}"));
        }
        let lanes = protection.inner.lanes.len();
        // 20,000 draws leave a bucket of 1,024 empty about 3 times in a million.
        assert!(
            (OVERFLOW_BUCKETS - 2..=OVERFLOW_BUCKETS).contains(&lanes),
            "{lanes} lanes"
        );
        // One id always lands on the same bucket.
        assert_eq!(shared.bucket("t-7"), shared.bucket("t-7"));
    }
}
