//! The decision per request: concurrency, then rate, then fair share; and the permit that gives
//! the slot back when the request ends.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use governor::clock::Clock as _;
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

use super::policy::{Limits, Protection};
use crate::stats::Clock;

/// Why a request was shed, as `tenant.shed` and the `reason` of `tenant.requests.shed` name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ShedReason {
    /// The tenant has its limit of requests in flight.
    Concurrency,
    /// The tenant is over its rate.
    Rate,
    /// The service is saturated and the tenant holds more than its fair share.
    FairShare,
}

impl ShedReason {
    /// `concurrency`, `rate` or `fair_share`.
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::Concurrency => "concurrency",
            ShedReason::Rate => "rate",
            ShedReason::FairShare => "fair_share",
        }
    }
}

impl fmt::Display for ShedReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A request refused: why, and when to try again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Shed {
    pub(crate) reason: ShedReason,
    pub(crate) retry_after: Duration,
}

/// The governor clock over the crate's clock, so limits run on simulated time in tests.
#[derive(Debug, Clone)]
struct LimiterClock(Clock);

impl governor::clock::Clock for LimiterClock {
    type Instant = Instant;

    fn now(&self) -> Instant {
        self.0.now()
    }
}

type Limiter = RateLimiter<NotKeyed, InMemoryState, LimiterClock, NoOpMiddleware<Instant>>;

/// The limits in force for one tenant, with its token bucket, for one version of the policy.
struct Prepared {
    version: u64,
    limits: Limits,
    limiter: Option<Limiter>,
}

/// One tenant's protection state, held in its registry entry, so its memory is bounded by the
/// tenant cap and goes with the tenant.
#[derive(Default)]
pub(crate) struct TenantGuard {
    inflight: AtomicU64,
    own: RwLock<Option<Limits>>,
    prepared: RwLock<Option<Arc<Prepared>>>,
}

impl TenantGuard {
    /// Sets (or clears) this tenant's own limits, instead of its tier's.
    pub(crate) fn set_own(&self, limits: Option<Limits>) {
        *self.own.write().unwrap_or_else(|e| e.into_inner()) = limits;
        self.invalidate();
    }

    /// This tenant's own limits, if any.
    pub(crate) fn own(&self) -> Option<Limits> {
        *self.own.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Forgets the prepared limits: the tier changed.
    pub(crate) fn invalidate(&self) {
        *self.prepared.write().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Requests of this tenant in flight through a protection now.
    pub(crate) fn in_flight(&self) -> u64 {
        self.inflight.load(Ordering::Acquire)
    }

    fn prepared(
        &self,
        protection: &Protection,
        tier: impl FnOnce() -> Option<String>,
        clock: &Clock,
    ) -> Arc<Prepared> {
        let version = protection.inner.version.load(Ordering::Acquire);
        if let Some(p) = &*self.prepared.read().unwrap_or_else(|e| e.into_inner()) {
            if p.version == version {
                return Arc::clone(p);
            }
        }
        let limits = self
            .own()
            .unwrap_or_else(|| protection.limits_of(tier().as_deref()));
        let limiter = limits.rate.map(|rate| {
            let quota = Quota::per_second(rate.per_second).allow_burst(rate.burst);
            RateLimiter::direct_with_clock(quota, LimiterClock(clock.clone()))
        });
        let prepared = Arc::new(Prepared {
            version,
            limits,
            limiter,
        });
        *self.prepared.write().unwrap_or_else(|e| e.into_inner()) = Some(Arc::clone(&prepared));
        prepared
    }
}

impl fmt::Debug for TenantGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantGuard")
            .field("inflight", &self.in_flight())
            .field("own", &self.own())
            .finish()
    }
}

/// The service's load through one protection: requests in flight, and tenants with any.
#[derive(Debug, Default)]
pub(super) struct Load {
    total: AtomicU64,
    tenants: AtomicU64,
}

impl Load {
    pub(super) fn total(&self) -> u64 {
        self.total.load(Ordering::Acquire)
    }
}

/// A request let through: holds its tenant's slot until dropped, at the end of the request.
pub(crate) struct Permit {
    guard: Arc<dyn AsGuard>,
    protection: Protection,
}

/// What a permit gives its slot back to: the tenant's entry, which owns the guard.
pub(crate) trait AsGuard: Send + Sync {
    fn guard(&self) -> &TenantGuard;
}

impl Drop for Permit {
    fn drop(&mut self) {
        let load = &self.protection.inner.load;
        load.total.fetch_sub(1, Ordering::AcqRel);
        if self.guard.guard().inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
            load.tenants.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

impl fmt::Debug for Permit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Permit").finish_non_exhaustive()
    }
}

impl Protection {
    /// Lets a request of the tenant that owns `guard` through, or says why not. `tier` is read
    /// only when the tenant's limits must be worked out again.
    pub(crate) fn admit(
        &self,
        owner: Arc<dyn AsGuard>,
        tier: impl FnOnce() -> Option<String>,
        clock: &Clock,
    ) -> Result<Permit, Shed> {
        let guard = owner.guard();
        let prepared = guard.prepared(self, tier, clock);
        let load = &self.inner.load;
        // Counted first, so two requests at once cannot both pass a limit of one.
        let mine = guard.inflight.fetch_add(1, Ordering::AcqRel) + 1;
        if mine == 1 {
            load.tenants.fetch_add(1, Ordering::AcqRel);
        }
        let total = load.total.fetch_add(1, Ordering::AcqRel) + 1;
        let permit = Permit {
            guard: owner,
            protection: self.clone(),
        };
        if prepared
            .limits
            .max_concurrent
            .is_some_and(|max| mine > u64::from(max))
        {
            return Err(Shed {
                reason: ShedReason::Concurrency,
                retry_after: Duration::from_secs(1),
            });
        }
        if let Some(limiter) = &prepared.limiter {
            if let Err(not_until) = limiter.check() {
                return Err(Shed {
                    reason: ShedReason::Rate,
                    retry_after: not_until.wait_time_from(LimiterClock(clock.clone()).now()),
                });
            }
        }
        if let Some(capacity) = self.capacity() {
            if total > capacity {
                // Everyone at or under an equal split of the capacity keeps being served.
                let tenants = load.tenants.load(Ordering::Acquire).max(1);
                let fair = capacity.div_ceil(tenants).max(1);
                if mine > fair {
                    return Err(Shed {
                        reason: ShedReason::FairShare,
                        retry_after: Duration::from_secs(1),
                    });
                }
            }
        }
        Ok(permit)
    }
}
