//! The decision per request: concurrency, then rate, then fair share; and the permit that gives
//! the slot back when the request ends.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::lane::Lane;
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
    /// The whole protection's load.
    load: Arc<Load>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        let load = &self.load;
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

/// Lets a request through `lane` (under a protection whose load is `load` and fair-share
/// capacity `capacity`), or says why not. Counted first, so two requests at once cannot both
/// pass a limit of one; a refused request's permit gives its count back as it is dropped.
pub(super) fn decide(
    lane: &Lane,
    load: &Arc<Load>,
    capacity: Option<u64>,
    clock: &Clock,
) -> Result<Permit, Shed> {
    let mine = lane.inflight.fetch_add(1, Ordering::AcqRel) + 1;
    if mine == 1 {
        load.tenants.fetch_add(1, Ordering::AcqRel);
    }
    let total = load.total.fetch_add(1, Ordering::AcqRel) + 1;
    let permit = Permit {
        inflight: Arc::clone(&lane.inflight),
        load: Arc::clone(load),
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
    if let Some(capacity) = capacity {
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
