//! One tenant's statistics as its registry entry holds them: requests and queries over the
//! sliding window, request outcomes over every SLO window, and the objectives they are judged
//! by.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;

use super::latency::Stats;
use super::objective::Slo;
use super::share::Load;
use super::slo::SloWindows;

/// The statistics part of a tenant's entry.
pub(crate) struct TenantStats {
    /// HTTP and gRPC requests.
    pub(crate) requests: Stats,
    /// Queries tracked through the query API.
    pub(crate) queries: Stats,
    /// Request outcomes over every SLO window.
    pub(crate) slo: SloWindows,
    /// Requests slower than this count against the latency objective (`u64::MAX`: none). Read
    /// on every finished request: an atomic, prepared when the objectives change.
    slow_after_micros: AtomicU64,
    /// This tenant's own objectives, instead of its tier's: rarely written, read without a lock.
    own_slo: ArcSwapOption<Slo>,
}

impl TenantStats {
    /// Empty statistics over a sliding `window`, judged by `slo` until told otherwise.
    pub(crate) fn new(window: Duration, now: Instant, slo: Slo) -> Self {
        let stats = TenantStats {
            requests: Stats::new(window, now),
            queries: Stats::new(window, now),
            slo: SloWindows::default(),
            slow_after_micros: AtomicU64::new(u64::MAX),
            own_slo: ArcSwapOption::empty(),
        };
        stats.apply_slo(slo);
        stats
    }

    /// A request came in.
    pub(crate) fn request_started(&self) {
        self.requests.start();
    }

    /// A request ended at `end`, `secs` seconds after the registry's epoch: `failed` as the
    /// view counts failures, `spends_budget` as the availability objective does.
    pub(crate) fn request_finished(
        &self,
        duration: Duration,
        failed: bool,
        spends_budget: bool,
        end: Instant,
        secs: u64,
    ) {
        self.requests.finish(duration, failed, end);
        let slow =
            duration.as_micros() >= u128::from(self.slow_after_micros.load(Ordering::Relaxed));
        self.slo.record(secs, spends_budget, slow);
    }

    /// Nothing in flight, neither requests nor queries.
    pub(crate) fn is_quiet(&self) -> bool {
        self.requests.active() == 0 && self.queries.active() == 0
    }

    /// Requests and queries in flight, and the busy time over the sliding window.
    pub(crate) fn load(&self, now: Instant) -> Load {
        let active = self.requests.active().max(0) + self.queries.active().max(0);
        Load {
            inflight: u64::try_from(active).unwrap_or(0),
            busy_micros: self
                .requests
                .window_busy_micros(now)
                .saturating_add(self.queries.window_busy_micros(now)),
        }
    }

    /// The tenant's own objectives, if set.
    pub(crate) fn own_slo(&self) -> Option<Slo> {
        self.own_slo.load().as_deref().copied()
    }

    /// Sets (or clears) the tenant's own objectives; `effective` is what now applies.
    pub(crate) fn set_own_slo(&self, own: Option<Slo>, effective: Slo) {
        self.own_slo.store(own.map(Arc::new));
        self.apply_slo(effective);
    }

    /// Prepares the recording path for the objectives that apply now.
    pub(crate) fn apply_slo(&self, effective: Slo) {
        let micros = effective.latency().map_or(u64::MAX, |l| {
            u64::try_from(l.threshold().as_micros()).unwrap_or(u64::MAX)
        });
        self.slow_after_micros.store(micros, Ordering::Relaxed);
    }
}

impl fmt::Debug for TenantStats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantStats")
            .field("own_slo", &self.own_slo())
            .finish_non_exhaustive()
    }
}
