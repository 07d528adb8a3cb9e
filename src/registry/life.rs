//! Where an entry is in its life under idle reclaim, and when it was last active.
//!
//! An entry is [`LIVE`], [`PINNED`] (registered explicitly: never reclaimed) or [`RETIRED`]
//! (swept out; a lookup that still finds it treats it as gone and clears it). Retiring is a
//! state change that registration races against, so a registered tenant is never swept out from
//! under it.

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};

pub(super) const LIVE: u8 = 0;
pub(super) const PINNED: u8 = 1;
pub(super) const RETIRED: u8 = 2;

/// The reclaim part of an entry.
pub(super) struct Life {
    /// Last activity, in ms since the registry's epoch; kept only when idle tenants are
    /// reclaimed.
    last_seen_ms: AtomicU64,
    state: AtomicU8,
    /// The registry's collection count when the tenant was last active: a tenant retired
    /// before a collection has passed may still be in the current export interval.
    seen_collection: AtomicU64,
}

impl Default for Life {
    fn default() -> Self {
        Life {
            last_seen_ms: AtomicU64::new(0),
            state: AtomicU8::new(LIVE),
            seen_collection: AtomicU64::new(0),
        }
    }
}

impl Life {
    /// Notes activity at `now_ms`, during the export interval after `collections` collections.
    pub(super) fn touch(&self, now_ms: u64, collections: u64) {
        self.seen_collection.store(collections, Ordering::Relaxed);
        // Sequentially consistent with the sweep's state change and second read (see
        // `retire_if_idle`): one of the two always sees the other.
        self.last_seen_ms.store(now_ms, Ordering::SeqCst);
    }

    /// Not active for `idle_ms` (what is in flight is the caller's to check).
    pub(super) fn is_idle(&self, now_ms: u64, idle_ms: u64) -> bool {
        now_ms.saturating_sub(self.last_seen_ms.load(Ordering::Relaxed)) >= idle_ms
    }

    /// The collection count when the tenant was last active.
    pub(super) fn seen_collection(&self) -> u64 {
        self.seen_collection.load(Ordering::Relaxed)
    }

    /// Retires a live entry that `quiet` says is idle; the state change is what a concurrent
    /// [`Life::pin`] races against, so exactly one of them wins.
    pub(super) fn retire_if_idle(&self, quiet: bool, now_ms: u64, idle_ms: u64) -> bool {
        if !quiet
            || !self.is_idle(now_ms, idle_ms)
            || self
                .state
                .compare_exchange(LIVE, RETIRED, Ordering::SeqCst, Ordering::SeqCst)
                .is_err()
        {
            return false;
        }
        // A lookup may have touched the entry between the first read and the state change;
        // it checks the state after touching, so reading the time again here closes the gap.
        let seen = self.last_seen_ms.load(Ordering::SeqCst);
        if now_ms.saturating_sub(seen) < idle_ms {
            let _ = self
                .state
                .compare_exchange(RETIRED, LIVE, Ordering::SeqCst, Ordering::SeqCst);
            return false;
        }
        true
    }

    /// Keeps the entry from ever being reclaimed; false if a sweep retired it first.
    pub(super) fn pin(&self) -> bool {
        match self
            .state
            .compare_exchange(LIVE, PINNED, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(current) => current == PINNED,
        }
    }

    pub(super) fn is_live(&self) -> bool {
        self.state.load(Ordering::Acquire) == LIVE
    }

    pub(super) fn is_retired(&self) -> bool {
        self.state.load(Ordering::SeqCst) == RETIRED
    }

    /// As a sweep whose removal lost a race leaves it.
    #[cfg(test)]
    pub(super) fn retire(&self) {
        self.state.store(RETIRED, Ordering::SeqCst);
    }
}

impl fmt::Debug for Life {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Life")
            .field("state", &self.state.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}
