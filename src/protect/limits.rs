//! What a tenant may use, as plain values: requests in flight at once and a token-bucket rate,
//! and the rate limiter a rate is enforced with.

use std::num::NonZeroU32;
use std::time::Instant;

use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::RateLimiter;

use crate::stats::Clock;

/// A token-bucket rate: `per_second` requests a second on average, up to `burst` at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub(super) per_second: NonZeroU32,
    pub(super) burst: NonZeroU32,
}

impl Rate {
    /// `per_second` requests a second, with bursts of as many (0 is read as 1).
    pub fn per_second(per_second: u32) -> Self {
        let n = NonZeroU32::new(per_second).unwrap_or(NonZeroU32::MIN);
        Rate {
            per_second: n,
            burst: n,
        }
    }

    /// The same average, with bursts of up to `burst` requests (0 is read as 1).
    pub fn burst(mut self, burst: u32) -> Self {
        self.burst = NonZeroU32::new(burst).unwrap_or(NonZeroU32::MIN);
        self
    }
}

/// One tenant's limits: requests in flight at once, and a rate.
///
/// ```
/// use tenant_otel::protect::{Limits, Rate};
///
/// let free = Limits::none().concurrency(10).rate(Rate::per_second(50).burst(100));
/// # let _ = free;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[must_use]
pub struct Limits {
    pub(super) max_concurrent: Option<u32>,
    pub(super) rate: Option<Rate>,
}

impl Limits {
    /// No limit.
    pub fn none() -> Self {
        Limits::default()
    }

    /// At most `n` requests in flight at once.
    pub fn concurrency(mut self, n: u32) -> Self {
        self.max_concurrent = Some(n);
        self
    }

    /// At most this rate.
    pub fn rate(mut self, rate: Rate) -> Self {
        self.rate = Some(rate);
        self
    }
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

/// A token bucket for `rate`, on `clock`.
pub(super) fn limiter(rate: Rate, clock: &Clock) -> Limiter {
    let quota = governor::Quota::per_second(rate.per_second).allow_burst(rate.burst);
    governor::RateLimiter::direct_with_clock(quota, LimiterClock(clock.clone()))
}
