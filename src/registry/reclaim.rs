//! Idle reclaim: a tenant with nothing in flight and nothing recorded for a while gives its slot
//! back when a newcomer arrives at the cap.
//!
//! An entry is [`LIVE`], [`PINNED`] (registered explicitly: never reclaimed) or [`RETIRED`]
//! (swept out; a lookup that still finds it treats it as gone and clears it). Retiring is a
//! state change that registration races against, so a registered tenant is never swept out from
//! under it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use super::entry::TenantEntry;
use super::Inner;
use crate::stats::Clock;

/// What an entry needs to note its activity when idle tenants are reclaimed.
#[derive(Debug)]
pub(crate) struct ReclaimClock {
    pub(crate) clock: Clock,
    pub(crate) epoch: Instant,
    pub(crate) collections: Arc<AtomicU64>,
}

pub(crate) const LIVE: u8 = 0;
pub(crate) const PINNED: u8 = 1;
pub(crate) const RETIRED: u8 = 2;

impl TenantEntry {
    /// Notes that the tenant was active now; free when idle tenants are not reclaimed.
    pub(crate) fn touch(&self) {
        if let Some(ReclaimClock {
            clock,
            epoch,
            collections,
        }) = &self.clock
        {
            self.seen_collection
                .store(collections.load(Ordering::Relaxed), Ordering::Relaxed);
            let elapsed = clock.now().saturating_duration_since(*epoch);
            let now = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
            // Sequentially consistent with the sweep's state change and second read (see
            // `retire_if_idle`): one of the two always sees the other.
            self.last_seen_ms.store(now, Ordering::SeqCst);
        }
    }

    /// Nothing in flight and not looked up for `idle_ms`.
    fn is_idle(&self, now_ms: u64, idle_ms: u64) -> bool {
        self.requests.active() == 0
            && self.queries.active() == 0
            && now_ms.saturating_sub(self.last_seen_ms.load(Ordering::Relaxed)) >= idle_ms
    }

    /// Retires the entry if it is idle and not pinned; the state change is what a concurrent
    /// [`TenantEntry::pin`] races against, so exactly one of them wins.
    fn retire_if_idle(&self, now_ms: u64, idle_ms: u64) -> bool {
        if !self.is_idle(now_ms, idle_ms)
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

    pub(super) fn is_retired(&self) -> bool {
        self.state.load(Ordering::SeqCst) == RETIRED
    }
}

impl Inner {
    fn now_ms(&self) -> u64 {
        let elapsed = self.clock.now().saturating_duration_since(self.epoch);
        u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
    }

    /// Removes an entry a sweep retired but could not take out, giving its slot back.
    pub(super) fn drop_retired(&self, id: &str) {
        if let Ok(Some((_, entry))) = self.tenants.pin().remove_if(id, |_, e| e.is_retired()) {
            self.release(entry);
        }
    }

    /// Gives a removed tenant's slot back: now if it recorded nothing since the last metric
    /// collection, else at the next one. Reusing the slot at once would let one export
    /// interval carry the retired tenant's series and its successor's: under churn, many
    /// times the cap in one export. The first interval, from start to the first collection, is
    /// one like the others.
    fn release(&self, entry: &TenantEntry) {
        let collections = self.collections.load(Ordering::Acquire);
        // Without a reader nothing is ever exported: no interval to keep within the cap, and no
        // collection would ever give a held slot back.
        let unread = !self.read_by_a_reader.load(Ordering::Relaxed);
        if unread || entry.seen_collection.load(Ordering::Relaxed) < collections {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
        } else {
            self.pending_release.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A metric collection is under way: the slots held back for the interval it closes are
    /// free again.
    pub(super) fn collected(&self) {
        self.collections.fetch_add(1, Ordering::AcqRel);
        let pending = self.pending_release.swap(0, Ordering::AcqRel);
        if pending > 0 {
            self.admitted.fetch_sub(pending, Ordering::AcqRel);
        }
    }

    /// Removes the tenants idle for longer than the reclaim time, giving their slots back.
    /// Returns true if any slot was freed.
    pub(super) fn sweep_idle(&self) -> bool {
        let Some(idle) = self.reclaim_after else {
            return false;
        };
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let now = self.now_ms();
        let last = self.last_sweep_ms.load(Ordering::Acquire);
        let sweep_every = (idle_ms / 4).max(1);
        if now.saturating_sub(last) < sweep_every
            || self
                .last_sweep_ms
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Acquire)
                .is_err()
        {
            // Swept recently, or another thread is sweeping now.
            return false;
        }
        let tenants = self.tenants.pin();
        let stale: Vec<Arc<str>> = tenants
            .iter()
            .filter(|(_, e)| e.state.load(Ordering::Acquire) == LIVE && e.is_idle(now, idle_ms))
            .map(|(k, _)| Arc::clone(k))
            .collect();
        let mut freed = false;
        for key in stale {
            // Checked again as it is removed: a request may have arrived meanwhile.
            // The map may run the check more than once (when it races a resize): a retired entry
            // must still read as removable the second time.
            if let Ok(Some((_, entry))) = tenants.remove_if(&*key, |_, e| {
                e.is_retired() || e.retire_if_idle(now, idle_ms)
            }) {
                self.release(entry);
                freed = true;
            }
        }
        freed
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::registry::TenantRegistry;

    #[test]
    fn a_retired_entry_left_in_the_map_is_cleared_not_spun_on() {
        let registry = TenantRegistry::builder()
            .max_tenants(1)
            .reclaim_idle_after(Duration::from_secs(3600))
            .build();
        assert_eq!(registry.resolve("a").unwrap().metric_label(), "a");
        // As after a sweep whose removal lost a race with a resize of the map.
        let retire = |registry: &TenantRegistry| {
            let entry = registry.entry_for_label("a").unwrap();
            entry.state.store(RETIRED, Ordering::SeqCst);
            entry
        };
        let old = retire(&registry);
        let again = registry.resolve("a").unwrap();
        assert_eq!(again.metric_label(), "a", "admitted afresh within the cap");
        assert!(!Arc::ptr_eq(again.entry(), &old));
        assert_eq!(registry.len(), 1);
        retire(&registry);
        assert!(registry.register("a").is_ok());
        assert_eq!(registry.len(), 1);
    }
}
