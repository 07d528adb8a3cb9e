//! What each tenant may use: limits per tier, with per-tenant overrides, and the service's
//! capacity for fair-share shedding. Changeable at run time: a change applies from the next
//! request on.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::guard::{decide, Load, Permit, Shed};
use super::lane::{Lanes, TenantGuard};
use super::limits::{Limits, Rate};
use crate::stats::Clock;

/// Per-tenant protection for [`TenantLayer`](crate::TenantLayer): limits by tier (and per tenant,
/// through [`TenantRegistry::set_tenant_limits`](crate::TenantRegistry::set_tenant_limits)),
/// and a fair-share mode that, when the whole service has more requests in flight than its
/// capacity, sheds the tenants holding more than their fair share first and never those below
/// it. A shed request gets `429 Too Many Requests` with `Retry-After` (gRPC:
/// `RESOURCE_EXHAUSTED`), its span says `tenant.shed` and why, and `tenant.requests.shed`
/// counts it.
///
/// Clones share the policy: a change through one applies to every layer built with it, from the
/// next request on. They also share each tenant's count of requests in flight, so a concurrency
/// limit holds across all those layers; layers given different `Protection`s each keep their own
/// limits and counts, even over one registry.
///
/// A tenant past the registry's cardinality cap has no limits of its own: it gets the default
/// limits on one of [`OVERFLOW_BUCKETS`](crate::protect::OVERFLOW_BUCKETS) buckets picked by its
/// real id, so a flooder among those tenants holds back only the few that share its bucket.
///
/// ```
/// use tenant_otel::protect::{Limits, Protection, Rate};
/// use tenant_otel::TenantLayer;
///
/// let protection = Protection::new()
///     .tier("free", Limits::none().concurrency(4).rate(Rate::per_second(20)))
///     .tier("premium", Limits::none().concurrency(64))
///     .fair_share(256);
/// let layer = TenantLayer::builder().protection(protection.clone()).build();
/// // Later, at run time:
/// protection.set_tier("free", Limits::none().concurrency(2));
/// # let _ = layer;
/// ```
#[derive(Debug, Clone, Default)]
#[must_use]
pub struct Protection {
    pub(super) inner: Arc<Shared>,
}

#[derive(Debug, Default)]
pub(super) struct Shared {
    /// Read without a lock when a lane is prepared; replaced whole on a change.
    policy: ArcSwap<Policy>,
    /// Bumped on every change, so tenants' lanes know to prepare their limits again.
    version: AtomicU64,
    /// Fair-share capacity plus one; 0 when off.
    capacity: AtomicU64,
    /// Replicas each enforcing a share of every limit; 0 and 1 both mean one.
    replicas: AtomicU32,
    /// Shared with every permit, which gives its slot back to it.
    load: Arc<Load>,
    /// Each tenant's requests in flight and prepared limits under this protection.
    pub(super) lanes: Lanes,
}

#[derive(Debug, Clone, Default)]
struct Policy {
    tiers: Vec<(String, Limits)>,
    default: Limits,
}

impl Protection {
    /// No limits and no fair share yet.
    pub fn new() -> Self {
        Protection::default()
    }

    /// The limits of tenants of `tier`.
    pub fn tier(self, tier: &str, limits: Limits) -> Self {
        self.set_tier(tier, limits);
        self
    }

    /// The limits of tenants without a tier, or of a tier not named (default: none).
    pub fn default_limits(self, limits: Limits) -> Self {
        self.set_default_limits(limits);
        self
    }

    /// Fair-share shedding once more than `capacity` requests are in flight in all.
    pub fn fair_share(self, capacity: u32) -> Self {
        self.set_capacity(Some(capacity));
        self
    }

    /// Each replica of the service enforces `1/replicas` of every limit (rate, burst and
    /// concurrency, rounded up, at least 1): the cheap approximation of a limit across all
    /// replicas when there is no shared store, exact when the load balancer spreads each tenant
    /// evenly. With Redis, use [`GlobalLimitLayer`](crate::layer::GlobalLimitLayer) instead.
    /// [`Protection::replicas_from_env`] reads the count from `TENANT_OTEL_REPLICAS`.
    pub fn replicas(self, replicas: u32) -> Self {
        self.set_replicas(replicas);
        self
    }

    /// [`Protection::replicas`] from the environment variable `TENANT_OTEL_REPLICAS` (say, set
    /// from the deployment's replica count); unset or not a positive integer: one replica.
    pub fn replicas_from_env(self) -> Self {
        let replicas = std::env::var("TENANT_OTEL_REPLICAS")
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .unwrap_or(1);
        self.replicas(replicas)
    }

    /// Changes the replica count that limits are divided by, at run time (say, on scaling).
    pub fn set_replicas(&self, replicas: u32) {
        self.inner
            .replicas
            .store(replicas.max(1), Ordering::Release);
        self.inner.version.fetch_add(1, Ordering::AcqRel);
    }

    /// The replica count limits are divided by.
    pub fn replica_count(&self) -> u32 {
        self.inner.replicas.load(Ordering::Acquire).max(1)
    }

    /// This replica's share of `limits`.
    fn local_share(&self, limits: Limits) -> Limits {
        let n = self.replica_count();
        if n == 1 {
            return limits;
        }
        let share = |v: NonZeroU32| NonZeroU32::new(v.get().div_ceil(n)).unwrap_or(NonZeroU32::MIN);
        Limits {
            max_concurrent: limits.max_concurrent.map(|c| c.div_ceil(n).max(1)),
            rate: limits.rate.map(|r| Rate {
                per_second: share(r.per_second),
                burst: share(r.burst),
            }),
        }
    }

    /// Changes the limits of `tier`, at run time.
    pub fn set_tier(&self, tier: &str, limits: Limits) {
        self.change(|p| match p.tiers.iter_mut().find(|(t, _)| t == tier) {
            Some(slot) => slot.1 = limits,
            None => p.tiers.push((tier.to_owned(), limits)),
        });
    }

    /// Changes the limits of tenants without a named tier, at run time.
    pub fn set_default_limits(&self, limits: Limits) {
        self.change(|p| p.default = limits);
    }

    /// Changes the capacity of fair-share shedding (`None`: off), at run time.
    pub fn set_capacity(&self, capacity: Option<u32>) {
        // Read on every request: an atomic, not the policy's lock.
        let raw = capacity.map_or(0, |c| u64::from(c) + 1);
        self.inner.capacity.store(raw, Ordering::Release);
    }

    /// Requests in flight through the layers of this protection now.
    pub fn in_flight(&self) -> u64 {
        self.inner.load.total()
    }

    /// Copies the policy, changes the copy and puts it in place (again, if another change got
    /// in between): readers never wait, and no change is lost.
    fn change(&self, f: impl Fn(&mut Policy)) {
        self.inner.policy.rcu(|old| {
            let mut policy = Policy::clone(old);
            f(&mut policy);
            policy
        });
        self.inner.version.fetch_add(1, Ordering::AcqRel);
    }

    /// The limits of `tier`.
    fn limits_of(&self, tier: Option<&str>) -> Limits {
        let p = self.inner.policy.load();
        tier.and_then(|tier| p.tiers.iter().find(|(t, _)| t == tier))
            .map_or(p.default, |(_, l)| *l)
    }

    fn capacity(&self) -> Option<u64> {
        self.inner.capacity.load(Ordering::Acquire).checked_sub(1)
    }

    /// Lets a request of tenant `id`, whose registry entry holds `guard`, through, or says why
    /// not. `tier` is read only when the tenant's limits must be worked out again.
    pub(crate) fn admit(
        &self,
        guard: &TenantGuard,
        id: &str,
        tier: impl FnOnce() -> Option<String>,
        clock: &Clock,
    ) -> Result<Permit, Shed> {
        self.with_lane(guard, id, tier, clock, |lane| {
            decide(lane, &self.inner.load, self.capacity(), clock)
        })
    }

    /// The rate tenant `id` is held to across all replicas (its limits before any division by
    /// the replica count), as its lane has it prepared: no allocation for a known tenant.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn shared_rate(
        &self,
        guard: &TenantGuard,
        id: &str,
        tier: impl FnOnce() -> Option<String>,
        clock: &Clock,
    ) -> Option<Rate> {
        self.with_lane(guard, id, tier, clock, |lane| lane.limits.rate)
    }

    fn with_lane<R>(
        &self,
        guard: &TenantGuard,
        id: &str,
        tier: impl FnOnce() -> Option<String>,
        clock: &Clock,
        f: impl FnOnce(&super::lane::Lane) -> R,
    ) -> R {
        let version = self.inner.version.load(Ordering::Acquire);
        let limits = || {
            let limits = guard
                .own()
                .unwrap_or_else(|| self.limits_of(tier().as_deref()));
            (limits, self.local_share(limits))
        };
        self.inner.lanes.with(guard, id, version, limits, clock, f)
    }
}
