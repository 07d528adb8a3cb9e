//! Route interning: each route template gets a small id for series keys, and one shared string
//! that every span's `http.route` reuses.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::TenantRegistry;

/// Distinct routes remembered for metrics; an application has a fixed set of route templates,
/// so reaching this means something feeds raw paths in as routes, and those lose `http.route`.
pub(super) const MAX_ROUTES: usize = 1024;

impl TenantRegistry {
    /// The route's id and shared string, or `None` once [`MAX_ROUTES`] are known.
    pub(crate) fn route(&self, route: &str) -> Option<(u32, Arc<str>)> {
        let routes = self.inner.routes.pin();
        if let Some((key, id)) = routes.get_key_value(route) {
            return Some((*id, Arc::clone(key)));
        }
        // Ids come from a counter, never from the map's length: two routes added at once must
        // not share one, or their durations would merge into one series.
        // Bounded, so a flood of unknown routes past the cap cannot wrap the counter around.
        let id = self
            .inner
            .next_route
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                ((n as usize) < MAX_ROUTES).then_some(n + 1)
            })
            .ok()?;
        let key: Arc<str> = Arc::from(route);
        // Two threads may race to add the same route; both get the one that won (the loser's id
        // is simply never used).
        match routes.try_insert(Arc::clone(&key), id) {
            Ok(_) => Some((id, key)),
            Err(existing) => {
                let id = *existing.current;
                let key = routes
                    .get_key_value(route)
                    .map_or(key, |(k, _)| Arc::clone(k));
                Some((id, key))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_id(registry: &TenantRegistry, route: &str) -> Option<u32> {
        registry.route(route).map(|(id, _)| id)
    }

    #[test]
    fn routes_added_at_once_never_share_an_id() {
        for _ in 0..200 {
            let registry = TenantRegistry::builder().build();
            let ids: Vec<u32> = std::thread::scope(|s| {
                let a = s.spawn(|| route_id(&registry, "/a").unwrap());
                let b = s.spawn(|| route_id(&registry, "/b").unwrap());
                vec![a.join().unwrap(), b.join().unwrap()]
            });
            assert_ne!(ids[0], ids[1]);
            assert_eq!(route_id(&registry, "/a"), Some(ids[0]));
            assert_eq!(route_id(&registry, "/b"), Some(ids[1]));
        }
    }

    #[test]
    fn the_route_table_stops_at_its_bound() {
        let registry = TenantRegistry::builder().build();
        for i in 0..MAX_ROUTES {
            assert_eq!(route_id(&registry, &format!("/r{i}")), Some(i as u32));
        }
        for _ in 0..10_000 {
            assert_eq!(route_id(&registry, "/one-too-many"), None);
        }
        assert_eq!(
            registry.inner.next_route.load(Ordering::Relaxed) as usize,
            MAX_ROUTES
        );
        assert_eq!(route_id(&registry, "/r7"), Some(7));
    }
}
