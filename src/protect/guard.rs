//! The decision per request: concurrency, then rate, then fair share; and the permit that gives
//! the slot back when the request ends.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::RateLimiter;

use super::lane::{Lane, TenantGuard};
use super::policy::{Protection, Rate};
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
    /// The tenant is over its rate across all replicas, as Redis decided it
    /// ([`GlobalLimitLayer`](crate::layer::GlobalLimitLayer)).
    GlobalRate,
}

impl ShedReason {
    /// `concurrency`, `rate`, `fair_share` or `global_rate`.
    pub fn as_str(self) -> &'static str {
        match self {
            ShedReason::Concurrency => "concurrency",
            ShedReason::Rate => "rate",
            ShedReason::FairShare => "fair_share",
            ShedReason::GlobalRate => "global_rate",
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
pub(super) struct LimiterClock(pub(super) Clock);

impl governor::clock::Clock for LimiterClock {
    type Instant = Instant;

    fn now(&self) -> Instant {
        self.0.now()
    }
}

pub(super) type Limiter =
    RateLimiter<NotKeyed, InMemoryState, LimiterClock, NoOpMiddleware<Instant>>;

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
    /// The in-flight count of the tenant's lane in this protection.
    inflight: Arc<AtomicU64>,
    protection: Protection,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let load = &self.protection.inner.load;
        load.total.fetch_sub(1, Ordering::AcqRel);
        if self.inflight.fetch_sub(1, Ordering::AcqRel) == 1 {
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
    /// Lets a request of tenant `id`, whose registry entry holds `guard`, through, or says why
    /// not. `tier` is read only when the tenant's limits must be worked out again.
    pub(crate) fn admit(
        &self,
        guard: &TenantGuard,
        id: &str,
        tier: impl FnOnce() -> Option<String>,
        clock: &Clock,
    ) -> Result<Permit, Shed> {
        self.with_lane(guard, id, tier, clock, |lane| self.decide(lane, clock))
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
        f: impl FnOnce(&Lane) -> R,
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

    fn decide(&self, lane: &Lane, clock: &Clock) -> Result<Permit, Shed> {
        let load = &self.inner.load;
        // Counted first, so two requests at once cannot both pass a limit of one.
        let mine = lane.inflight.fetch_add(1, Ordering::AcqRel) + 1;
        if mine == 1 {
            load.tenants.fetch_add(1, Ordering::AcqRel);
        }
        let total = load.total.fetch_add(1, Ordering::AcqRel) + 1;
        let permit = Permit {
            inflight: Arc::clone(&lane.inflight),
            protection: self.clone(),
        };
        if lane
            .local
            .max_concurrent
            .is_some_and(|max| mine > u64::from(max))
        {
            return Err(Shed {
                reason: ShedReason::Concurrency,
                retry_after: Duration::from_secs(1),
            });
        }
        if let Some(limiter) = &lane.limiter {
            if let Err(not_until) = limiter.check() {
                return Err(Shed {
                    reason: ShedReason::Rate,
                    retry_after: not_until.wait_time_from(clock.now()),
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
