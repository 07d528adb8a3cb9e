//! Admission: who gets a label of their own. The cardinality cap is the map's admission rule, so
//! memory and series stay bounded however many distinct ids arrive; past it (or outside the
//! allowlist) a tenant shares the `__overflow__` entry.

use std::fmt;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::entry::TenantEntry;
use super::handle::Tenant;
use super::{Inner, TenantRegistry};
use crate::tenant::{is_reserved, InvalidTenantId, TenantId, UNKNOWN_TENANT};

/// Why [`TenantRegistry::register`] or
/// [`TenantRegistry::register_tenant`](crate::TenantRegistry::register_tenant) refused a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegisterError {
    /// The id is not a valid tenant id ([`InvalidTenantId::Reserved`] for `__overflow__` and
    /// `__unknown__`).
    Invalid(InvalidTenantId),
    /// The cardinality cap is reached; the tenant's metrics go to `__overflow__`.
    CapReached,
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::Invalid(e) => e.fmt(f),
            RegisterError::CapReached => f.write_str("the cap on distinct tenants is reached"),
        }
    }
}

impl std::error::Error for RegisterError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RegisterError::Invalid(e) => Some(e),
            RegisterError::CapReached => None,
        }
    }
}

impl From<InvalidTenantId> for RegisterError {
    fn from(e: InvalidTenantId) -> Self {
        RegisterError::Invalid(e)
    }
}

/// What a lookup of an id past the cap does besides sharing `__overflow__`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Count {
    /// A request: counted in `tenant.cardinality.overflow`, whose unit is requests.
    Request,
    /// A query, a quota update: not a request, not counted.
    Other,
}

impl TenantRegistry {
    /// Looks up (or admits) an id that passed [`validate_client_id`](crate::tenant) already.
    pub(crate) fn lookup(&self, id: &str, count: Count) -> Tenant {
        debug_assert!(
            !is_reserved(id),
            "reserved ids are refused before the lookup"
        );
        let inner = &*self.inner;
        if let Some(entry) = inner.tenants.pin().get(id) {
            // Touch, then look at the state: a sweep retires only after reading the touch time
            // again, so either it sees this touch and backs off, or this sees the retirement.
            entry.touch();
            if !entry.life.is_retired() {
                return Tenant::of(entry);
            }
            inner.drop_retired(id);
        }
        if !inner.allowlist_only && inner.claim_slot() {
            return Tenant::of(&inner.insert(TenantId::from_validated(id)));
        }
        if count == Count::Request {
            inner.overflowed.fetch_add(1, Ordering::Relaxed);
            inner.shared.http.overflow.add(1, &[]);
        }
        // Spans keep the real id: this allocation happens only past the cap.
        Tenant::sharing(TenantId::from_validated(id), &inner.overflow)
    }

    /// True when `id` has a label of its own now. Never admits it, and is not activity: an idle
    /// tenant asked about is still reclaimed.
    pub(crate) fn is_admitted(&self, id: &str) -> bool {
        self.inner
            .tenants
            .pin()
            .get(id)
            .is_some_and(|entry| !entry.life.is_retired())
    }

    /// The lookup of a request's tenant: [`lookup`](Self::lookup), except for a request that
    /// matched no route (`matched_no_route`) once the router has shown it names its routes.
    /// Such a request went to the router's fallback: a known tenant is itself, an unknown one is
    /// recorded under `__unknown__` (keeping its id on spans) and takes no slot. A scanner
    /// probing made-up paths must not use the cap up.
    pub(crate) fn lookup_request(&self, id: &str, matched_no_route: bool) -> Tenant {
        let inner = &*self.inner;
        if !(matched_no_route && inner.shared.routes.routes_known()) {
            return self.lookup(id, Count::Request);
        }
        if let Some(entry) = inner.tenants.pin().get(id) {
            entry.touch();
            if !entry.life.is_retired() {
                return Tenant::of(entry);
            }
        }
        Tenant::sharing(TenantId::from_validated(id), &inner.unknown)
    }

    /// Admits `id` and pins its entry against reclaim, or `None` when the cap is reached.
    pub(crate) fn register_entry(&self, id: &TenantId) -> Option<Arc<TenantEntry>> {
        let inner = &*self.inner;
        // A sweep may retire the entry found, between the lookup and the pin: then look again,
        // and admit the tenant anew once the retired entry has left the map.
        loop {
            let found = inner.tenants.pin().get(id.as_str()).map(Arc::clone);
            if found.as_ref().is_some_and(|e| e.life.is_retired()) {
                inner.drop_retired(id.as_str());
                continue;
            }
            let entry = match found {
                Some(entry) => entry,
                None if inner.claim_slot() => inner.insert(id.clone()),
                None => return None,
            };
            if entry.life.pin() {
                return Some(entry);
            }
            std::hint::spin_loop();
        }
    }

    /// The tenant used for requests without a usable id when the layer lets them through.
    pub fn unknown(&self) -> Tenant {
        let unknown = &self.inner.unknown;
        debug_assert_eq!(unknown.id().as_str(), UNKNOWN_TENANT);
        Tenant::of(unknown)
    }
}

impl Inner {
    /// A free slot, after sweeping out idle tenants if there was none.
    fn claim_slot(&self) -> bool {
        self.reserve_slot() || (self.sweep_idle() && self.reserve_slot())
    }

    fn reserve_slot(&self) -> bool {
        self.admitted
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max_tenants).then_some(n + 1)
            })
            .is_ok()
    }

    /// Inserts after a slot was reserved; gives the slot back if another thread won the race.
    fn insert(&self, id: TenantId) -> Arc<TenantEntry> {
        let key = Arc::clone(id.shared());
        let tenants = self.tenants.pin();
        match tenants.try_insert_with(key, || {
            let entry = TenantEntry::new(id, false, &self.shared);
            entry.touch();
            entry
        }) {
            Ok(entry) => Arc::clone(entry),
            Err(existing) => {
                self.admitted.fetch_sub(1, Ordering::AcqRel);
                Arc::clone(existing)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tenant::OVERFLOW_TENANT;

    #[test]
    fn cap_bounds_admission_and_counts_overflow() {
        let registry = TenantRegistry::builder().max_tenants(3).build();
        for i in 0..10 {
            let t = registry.resolve(&format!("t{i}")).unwrap();
            if i < 3 {
                assert_eq!(t.metric_label(), format!("t{i}"));
            } else {
                assert_eq!(t.metric_label(), OVERFLOW_TENANT);
                assert_eq!(t.id().as_str(), format!("t{i}"));
            }
        }
        // Known tenants keep resolving to their own entry.
        assert_eq!(registry.resolve("t1").unwrap().metric_label(), "t1");
        assert_eq!(registry.len(), 3);
        assert_eq!(registry.overflowed_requests(), 7);
    }

    #[test]
    fn allowlist_admits_only_registered_tenants() {
        let registry = TenantRegistry::builder()
            .allowlist([TenantId::parse("gold").unwrap()])
            .build();
        assert_eq!(registry.resolve("gold").unwrap().metric_label(), "gold");
        assert_eq!(
            registry.resolve("other").unwrap().metric_label(),
            OVERFLOW_TENANT
        );
        assert!(registry.register("other").is_ok());
        assert_eq!(registry.resolve("other").unwrap().metric_label(), "other");
    }

    #[test]
    fn reserved_labels_cannot_be_claimed_or_registered() {
        let registry = TenantRegistry::builder().build();
        for reserved in [OVERFLOW_TENANT, UNKNOWN_TENANT] {
            assert_eq!(
                registry.resolve(reserved).unwrap_err(),
                InvalidTenantId::Reserved
            );
            assert_eq!(
                registry.register(reserved).unwrap_err(),
                RegisterError::Invalid(InvalidTenantId::Reserved)
            );
        }
        assert_eq!(registry.len(), 0);
        assert_eq!(registry.overflowed_requests(), 0);
        assert!(registry.register("real").is_ok());
        assert_eq!(registry.len(), 1);
    }

    #[test]
    fn concurrent_admission_never_passes_the_cap() {
        let registry = TenantRegistry::builder().max_tenants(50).build();
        std::thread::scope(|s| {
            for t in 0..4 {
                let registry = registry.clone();
                s.spawn(move || {
                    for i in 0..500 {
                        let _ = registry.resolve(&format!("id-{}", (i * 7 + t) % 300));
                    }
                });
            }
        });
        assert_eq!(registry.len(), 50);
    }
}
