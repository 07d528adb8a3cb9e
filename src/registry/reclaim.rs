//! Idle reclaim: a tenant with nothing in flight and nothing recorded for a while gives its slot
//! back when a newcomer arrives at the cap (each entry's side of it is in `life`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use super::entry::TenantEntry;
use super::Inner;

/// The registry's reclaim bookkeeping.
#[derive(Debug, Default)]
pub(super) struct Reclaim {
    /// When the last sweep for idle tenants ran (ms since the epoch): sweeps are rate-limited so
    /// a flood of new ids past the cap does not scan the map on every request.
    last_sweep_ms: AtomicU64,
    /// Slots of tenants retired while still in the current export interval: given back at the
    /// next collection, so no interval carries more tenants than the cap.
    pending_release: AtomicUsize,
    /// A metric reader collects this registry's instruments (set once, as it is built): only
    /// then is there an export interval to hold a retired tenant's slot back for.
    pub(super) read_by_a_reader: AtomicBool,
}

impl Inner {
    /// Removes an entry a sweep retired but could not take out, giving its slot back.
    pub(super) fn drop_retired(&self, id: &str) {
        if let Ok(Some((_, entry))) = self.tenants.pin().remove_if(id, |_, e| e.life.is_retired()) {
            self.release(entry);
        }
    }

    /// Gives a removed tenant's slot back: now if it recorded nothing since the last metric
    /// collection, else at the next one. Reusing the slot at once would let one export
    /// interval carry the retired tenant's series and its successor's: under churn, many
    /// times the cap in one export. The first interval, from start to the first collection, is
    /// one like the others.
    fn release(&self, entry: &TenantEntry) {
        let collections = self.shared.collections();
        // Without a reader nothing is ever exported: no interval to keep within the cap, and no
        // collection would ever give a held slot back.
        let unread = !self.reclaim.read_by_a_reader.load(Ordering::Relaxed);
        if unread || entry.life.seen_collection() < collections {
            self.admitted.fetch_sub(1, Ordering::AcqRel);
        } else {
            self.reclaim.pending_release.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// A metric collection is under way: the slots held back for the interval it closes are
    /// free again.
    pub(super) fn collected(&self) {
        self.shared.collected();
        let pending = self.reclaim.pending_release.swap(0, Ordering::AcqRel);
        if pending > 0 {
            self.admitted.fetch_sub(pending, Ordering::AcqRel);
        }
    }

    /// Removes the tenants idle for longer than the reclaim time, giving their slots back.
    /// Returns true if any slot was freed.
    pub(super) fn sweep_idle(&self) -> bool {
        let Some(idle) = self.shared.reclaim_after else {
            return false;
        };
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        let now = self.shared.now_ms();
        let last = self.reclaim.last_sweep_ms.load(Ordering::Acquire);
        let sweep_every = (idle_ms / 4).max(1);
        if now.saturating_sub(last) < sweep_every
            || self
                .reclaim
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
            .filter(|(_, e)| e.life.is_live() && e.is_idle(now, idle_ms))
            .map(|(k, _)| Arc::clone(k))
            .collect();
        let mut freed = false;
        for key in stale {
            // Checked again as it is removed: a request may have arrived meanwhile.
            // The map may run the check more than once (when it races a resize): a retired entry
            // must still read as removable the second time.
            if let Ok(Some((_, entry))) = tenants.remove_if(&*key, |_, e| {
                e.life.is_retired() || e.life.retire_if_idle(e.stats.is_quiet(), now, idle_ms)
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
            entry.life.retire();
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
