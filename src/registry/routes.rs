//! Route interning: each route template (or gRPC method) gets a small id for series keys, one
//! shared string that every span's `http.route` reuses, and its span names, made once per
//! method.
//!
//! HTTP routes and gRPC methods are kept apart, each within a budget of its own. HTTP routes
//! are the router's templates, a fixed set; gRPC methods are admitted once the application
//! answered one (the layer decides when), and whatever noise reaches that table can only fill
//! its own budget, never take an HTTP route's place.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use super::Hasher;
use crate::instruments::semconv::{server_span_name, METHOD_SLOTS, RPC_SLOT};

/// A known route: its id and its server span names by method.
#[derive(Debug)]
struct RouteEntry {
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

/// Distinct gRPC methods remembered for span names and `rpc.method`; past it a method is
/// `_OTHER`. Its ids follow the HTTP routes' (`MAX_ROUTES..`), so the two never share one.
pub(super) const MAX_RPC_METHODS: usize = 1024;

/// The registry's route templates and gRPC methods.
pub(crate) struct RouteTable {
    http: Interner,
    rpc: Interner,
    /// An HTTP route has been matched (see `routes_known`).
    saw_http_route: AtomicBool,
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable {
            http: Interner::new(0, MAX_ROUTES),
            rpc: Interner::new(MAX_ROUTES, MAX_RPC_METHODS),
            saw_http_route: AtomicBool::new(false),
        }
    }
}

/// Names to small ids, within a budget.
struct Interner {
    names: papaya::HashMap<Arc<str>, RouteEntry, Hasher>,
    /// Ids handed out so far.
    taken: AtomicU32,
    first_id: u32,
    budget: u32,
}

impl Interner {
    fn new(first_id: usize, budget: usize) -> Self {
        Interner {
            names: papaya::HashMap::with_hasher(Hasher::default()),
            taken: AtomicU32::new(0),
            first_id: u32::try_from(first_id).unwrap_or(u32::MAX),
            budget: u32::try_from(budget).unwrap_or(u32::MAX),
        }
    }

    /// `name` if it is known, without adding it.
    fn get(&self, name: &str, method: usize) -> Option<Interned> {
        let names = self.names.pin();
        let (key, entry) = names.get_key_value(name)?;
        Some(entry.interned(key, method, name))
    }

    /// `name`, added if the budget allows.
    fn get_or_add(&self, name: &str, method: usize) -> Option<Interned> {
        let names = self.names.pin();
        if let Some((key, entry)) = names.get_key_value(name) {
            return Some(entry.interned(key, method, name));
        }
        // Ids come from a counter, never from the map's length: two names added at once must
        // not share one, or their durations would merge into one series.
        // Bounded, so a flood of unknown names past the budget cannot wrap the counter around.
        let n = self
            .taken
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < self.budget).then_some(n + 1)
            })
            .ok()?;
        let key: Arc<str> = Arc::from(name);
        // Two threads may race to add the same name; both get the one that won (the loser's id
        // is simply never used).
        match names.try_insert(Arc::clone(&key), RouteEntry::new(self.first_id + n)) {
            Ok(entry) => Some(entry.interned(&key, method, name)),
            Err(existing) => {
                let entry = existing.current;
                let key = names
                    .get_key_value(name)
                    .map_or(key, |(k, _)| Arc::clone(k));
                Some(entry.interned(&key, method, name))
            }
        }
    }
}

impl RouteEntry {
    fn interned(&self, key: &Arc<str>, method: usize, name: &str) -> Interned {
        Interned {
            id: self.id,
            name: Arc::clone(key),
            span_name: self.span_name(method, name),
        }
    }
}

impl RouteTable {
    /// True once a request matched an HTTP route: from then on, a request that matches none
    /// went to the router's fallback (a 404, usually).
    pub(crate) fn routes_known(&self) -> bool {
        self.saw_http_route.load(Ordering::Relaxed)
    }

    /// The HTTP route's id, shared string and span name for `method`, or `None` once
    /// [`MAX_ROUTES`] are known.
    pub(crate) fn route(&self, route: &str, method: usize) -> Option<Interned> {
        if !self.saw_http_route.load(Ordering::Relaxed) {
            self.saw_http_route.store(true, Ordering::Relaxed);
        }
        self.http.get_or_add(route, method)
    }

    /// A gRPC method (`package.Service/Method`) already admitted, without admitting it.
    pub(crate) fn known_rpc_method(&self, method: &str) -> Option<Interned> {
        self.rpc.get(method, RPC_SLOT)
    }

    /// Admits a gRPC method the application answered, or `None` once [`MAX_RPC_METHODS`] are
    /// known. Which answers count is the caller's decision
    /// ([`answered_by_application`](crate::classify::answered_by_application)).
    pub(crate) fn admit_rpc_method(&self, method: &str) -> Option<Interned> {
        self.rpc.get_or_add(method, RPC_SLOT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route_id(registry: &RouteTable, route: &str) -> Option<u32> {
        registry.route(route, 0).map(|r| r.id)
    }

    #[test]
    fn routes_added_at_once_never_share_an_id() {
        for _ in 0..200 {
            let registry = RouteTable::default();
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
        let registry = RouteTable::default();
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
        let registry = RouteTable::default();
        for i in 0..MAX_ROUTES {
            assert_eq!(route_id(&registry, &format!("/r{i}")), Some(i as u32));
        }
        for _ in 0..10_000 {
            assert_eq!(route_id(&registry, "/one-too-many"), None);
        }
        assert_eq!(
            registry.http.taken.load(Ordering::Relaxed) as usize,
            MAX_ROUTES
        );
        assert_eq!(route_id(&registry, "/r7"), Some(7));
    }

    #[test]
    fn grpc_methods_have_a_budget_of_their_own() {
        let registry = RouteTable::default();
        assert_eq!(route_id(&registry, "/orders"), Some(0));
        for i in 0..MAX_RPC_METHODS {
            let admitted = registry.admit_rpc_method(&format!("pkg.Svc/M{i}")).unwrap();
            assert_eq!(
                admitted.id as usize,
                MAX_ROUTES + i,
                "after the HTTP routes' ids"
            );
            assert_eq!(admitted.span_name, format!("pkg.Svc/M{i}"));
        }
        assert!(registry.admit_rpc_method("pkg.Svc/OneTooMany").is_none());
        assert!(registry.known_rpc_method("pkg.Svc/OneTooMany").is_none());
        assert_eq!(
            registry.known_rpc_method("pkg.Svc/M3").unwrap().id as usize,
            MAX_ROUTES + 3
        );
        // The full method table takes nothing from the HTTP routes.
        assert_eq!(route_id(&registry, "/orders"), Some(0));
        assert_eq!(route_id(&registry, "/items"), Some(1));
        assert!(registry.known_rpc_method("/items").is_none());
    }
}
