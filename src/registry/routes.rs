//! Route interning: each route template (or gRPC method) gets a small id for series keys, one
//! shared string that every span's `http.route` reuses, and its span names, made once per
//! method.

use std::borrow::Cow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::TenantRegistry;
use crate::instruments::semconv::{server_span_name, METHOD_SLOTS};

/// A known route: its id and its server span names by method.
#[derive(Debug)]
pub(super) struct RouteEntry {
    id: u32,
    span_names: [OnceLock<&'static str>; METHOD_SLOTS + 1],
}

impl RouteEntry {
    fn new(id: u32) -> Self {
        RouteEntry {
            id,
            span_names: Default::default(),
        }
    }

    fn span_name(&self, method: usize, route: &str) -> Cow<'static, str> {
        let Some(slot) = self.span_names.get(method) else {
            return server_span_name(method, Some(route));
        };
        if let Some(name) = slot.get() {
            return Cow::Borrowed(name);
        }
        match leak_span_name(method, route) {
            Some(name) => Cow::Borrowed(*slot.get_or_init(|| name)),
            None => server_span_name(method, Some(route)),
        }
    }
}

/// Span names made `'static` in the process's lifetime, across every registry. The SDK takes a
/// span's name as `Cow<'static, str>`, so a name shared by all spans of a route must live
/// forever; the route table bounds how many a registry makes, and this bounds them all (a
/// process that builds registry after registry formats names per span past it).
const MAX_LEAKED_SPAN_NAMES: usize = 16 * 1024;

fn leak_span_name(method: usize, route: &str) -> Option<&'static str> {
    static LEAKED: AtomicUsize = AtomicUsize::new(0);
    LEAKED
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            (n < MAX_LEAKED_SPAN_NAMES).then_some(n + 1)
        })
        .ok()?;
    Some(Box::leak(
        server_span_name(method, Some(route))
            .into_owned()
            .into_boxed_str(),
    ))
}

/// A route as the table knows it.
pub(crate) struct Interned {
    pub(crate) id: u32,
    pub(crate) name: Arc<str>,
    /// The server span name for the method asked for.
    pub(crate) span_name: Cow<'static, str>,
}

/// Distinct routes remembered for metrics; an application has a fixed set of route templates,
/// so reaching this means something feeds raw paths in as routes, and those lose `http.route`.
pub(super) const MAX_ROUTES: usize = 1024;

impl TenantRegistry {
    /// True once a request matched an HTTP route: from then on, a request that matches none
    /// went to the router's fallback (a 404, usually).
    pub(crate) fn routes_known(&self) -> bool {
        self.inner.saw_http_route.load(Ordering::Relaxed)
    }

    /// A route or gRPC method already in the table, without adding it.
    pub(crate) fn known_route(&self, route: &str, method: usize) -> Option<Interned> {
        let routes = self.inner.routes.pin();
        let (key, entry) = routes.get_key_value(route)?;
        Some(Interned {
            id: entry.id,
            name: Arc::clone(key),
            span_name: entry.span_name(method, route),
        })
    }

    /// The route's id, shared string and span name for `method`, or `None` once
    /// [`MAX_ROUTES`] are known.
    pub(crate) fn route(&self, route: &str, method: usize) -> Option<Interned> {
        if method != crate::instruments::semconv::RPC_SLOT
            && !self.inner.saw_http_route.load(Ordering::Relaxed)
        {
            self.inner.saw_http_route.store(true, Ordering::Relaxed);
        }
        let routes = self.inner.routes.pin();
        let interned = |key: &Arc<str>, entry: &RouteEntry| Interned {
            id: entry.id,
            name: Arc::clone(key),
            span_name: entry.span_name(method, route),
        };
        if let Some((key, entry)) = routes.get_key_value(route) {
            return Some(interned(key, entry));
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
        match routes.try_insert(Arc::clone(&key), RouteEntry::new(id)) {
            Ok(entry) => Some(interned(&key, entry)),
            Err(existing) => {
                let entry = existing.current;
                let key = routes
                    .get_key_value(route)
                    .map_or(key, |(k, _)| Arc::clone(k));
                Some(interned(&key, entry))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_id(registry: &TenantRegistry, route: &str) -> Option<u32> {
        registry.route(route, 0).map(|r| r.id)
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
    fn span_names_are_made_once_per_route_and_method() {
        let registry = TenantRegistry::builder().build();
        let get = semconv_index("GET");
        let first = registry.route("/orders/{id}", get).unwrap().span_name;
        let again = registry.route("/orders/{id}", get).unwrap().span_name;
        assert_eq!(first, "GET /orders/{id}");
        match (first, again) {
            (Cow::Borrowed(a), Cow::Borrowed(b)) => assert!(std::ptr::eq(a, b)),
            other => panic!("not shared: {other:?}"),
        }
        let other = registry.route("/orders/{id}", METHOD_SLOTS - 1).unwrap();
        assert_eq!(other.span_name, "HTTP /orders/{id}");
    }

    fn semconv_index(method: &str) -> usize {
        crate::instruments::semconv::method_index(&method.parse().unwrap())
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
