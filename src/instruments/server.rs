//! One tenant's server series: its requests in flight per method (observed into
//! `http.server.active_requests`) and its duration histograms, bound once per (method, route,
//! status) and recorded into directly at the end of each request.

use std::fmt;
use std::sync::atomic::{AtomicI64, AtomicU16, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::metrics::BoundHistogram;
use opentelemetry::KeyValue;

use super::semconv::{self, METHOD_SLOTS};
use super::HttpInstruments;
use crate::classify::{Failure, GrpcCode};

/// Distinct (method, route, status) series bound per tenant before falling back to unbound
/// recording, which the SDK's own limit then bounds.
pub(crate) const MAX_SERIES_PER_TENANT: usize = 512;

/// The maps' hasher: keys are small and `Copy`, made here from the request's outcome.
type Hasher = foldhash::fast::RandomState;

/// How a request ended, for its duration series, statistics and SLA.
#[derive(Debug)]
pub(crate) struct Outcome<'a> {
    pub(crate) method: usize,
    pub(crate) route: Option<&'a str>,
    /// The route's id in the registry's table, looked up once when the request came in; `None`
    /// with a route means the table was full.
    pub(crate) route_id: Option<u32>,
    /// A gRPC call's status code: its duration goes to `rpc.server.call.duration`, with the
    /// route as its method.
    pub(crate) rpc_code: Option<GrpcCode>,
    pub(crate) status: Option<http::StatusCode>,
    pub(crate) failure: Failure,
    pub(crate) duration: Duration,
    /// When it ended (one clock reading serves the duration and the sliding window).
    pub(crate) end: Instant,
    /// Its trace, if the sampler kept it: what the tenant's recent trace references point at.
    pub(crate) trace_id: Option<opentelemetry::trace::TraceId>,
}

/// What a finished request's duration series is keyed on, all small and `Copy` so a lookup
/// allocates nothing.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct SeriesKey {
    method: u8,
    /// The HTTP status, or for a gRPC call its status code.
    status: u16,
    rpc: bool,
    failure: Failure,
    route: Option<u32>,
}

/// The server series of one tenant.
pub(crate) struct ServerSeries {
    /// Requests in flight per method, observed into `http.server.active_requests` at
    /// collection time: a series exists only while its entry does, so a reclaimed tenant's
    /// series go with it (the SDK keeps up-down counters cumulative even under delta, and a
    /// bound one would stay exported for good).
    active: [AtomicI64; METHOD_SLOTS],
    /// The methods this tenant has served, one bit each: their series are reported, at zero
    /// too, for as long as the tenant keeps its slot.
    methods_seen: AtomicU16,
    /// Read on every finished request: a map readers do not serialize on, not a lock.
    durations: papaya::HashMap<SeriesKey, BoundHistogram<f64>, Hasher>,
}

impl Default for ServerSeries {
    fn default() -> Self {
        ServerSeries {
            active: Default::default(),
            methods_seen: AtomicU16::new(0),
            durations: papaya::HashMap::with_hasher(Hasher::default()),
        }
    }
}

impl fmt::Debug for ServerSeries {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerSeries")
            .field("bound", &self.durations.len())
            .finish_non_exhaustive()
    }
}

impl ServerSeries {
    /// A request of `method` came in.
    pub(crate) fn started(&self, method: usize) {
        let method = method.min(METHOD_SLOTS - 1);
        let bit = 1u16 << method;
        // Read first: the bit is set once, and a write on every request would bounce the cache
        // line between threads.
        if self.methods_seen.load(Ordering::Relaxed) & bit == 0 {
            self.methods_seen.fetch_or(bit, Ordering::Relaxed);
        }
        self.active[method].fetch_add(1, Ordering::Relaxed);
    }

    /// A request ended: out of flight, and its duration recorded in its series (labelled
    /// `tenant`).
    pub(crate) fn finished(&self, http: &HttpInstruments, tenant: &KeyValue, o: &Outcome<'_>) {
        self.active[o.method.min(METHOD_SLOTS - 1)].fetch_sub(1, Ordering::Relaxed);
        let seconds = o.duration.as_secs_f64();
        let histogram = match o.rpc_code {
            Some(_) => &http.rpc_duration,
            None => &http.duration,
        };
        // A known route that could not get an id would merge with route-less series; record it
        // unbound instead, under its real attributes.
        if o.route.is_some() && o.route_id.is_none() {
            return histogram.record(seconds, &duration_attributes(tenant, o));
        }
        let key = SeriesKey {
            method: o.method as u8,
            status: match o.rpc_code {
                Some(code) => u16::from(code.get()),
                None => o.status.map_or(0, |s| s.as_u16()),
            },
            rpc: o.rpc_code.is_some(),
            failure: o.failure,
            route: o.route_id,
        };
        let durations = self.durations.pin();
        if let Some(bound) = durations.get(&key) {
            bound.record(seconds);
            return;
        }
        // The bound is approximate under a race (two new series at once may both get in): the
        // map stays within a few of it, and the SDK's own limit stands behind.
        if durations.len() >= MAX_SERIES_PER_TENANT {
            return histogram.record(seconds, &duration_attributes(tenant, o));
        }
        durations
            .get_or_insert_with(key, || histogram.bind(&duration_attributes(tenant, o)))
            .record(seconds);
    }

    /// Reports the requests in flight per method this tenant has served.
    pub(crate) fn observe_active(
        &self,
        tenant: &KeyValue,
        observe: &mut dyn FnMut(i64, &[KeyValue]),
    ) {
        let seen = self.methods_seen.load(Ordering::Relaxed);
        for method in (0..METHOD_SLOTS).filter(|m| seen & (1 << m) != 0) {
            observe(
                self.active[method].load(Ordering::Relaxed),
                &[
                    tenant.clone(),
                    KeyValue::new(semconv::HTTP_REQUEST_METHOD, semconv::method_name(method)),
                ],
            );
        }
    }

    /// Duration series bound so far.
    #[cfg(test)]
    pub(crate) fn bound(&self) -> usize {
        self.durations.len()
    }
}

fn duration_attributes(tenant: &KeyValue, o: &Outcome<'_>) -> Vec<KeyValue> {
    let mut attrs = Vec::with_capacity(5);
    attrs.push(tenant.clone());
    if let Some(code) = o.rpc_code {
        attrs.push(KeyValue::new(semconv::RPC_SYSTEM_NAME, "grpc"));
        attrs.push(KeyValue::new(
            semconv::RPC_METHOD,
            o.route.unwrap_or(semconv::OTHER).to_owned(),
        ));
        attrs.push(KeyValue::new(
            semconv::RPC_RESPONSE_STATUS_CODE,
            code.name(),
        ));
        if let Some(error) = o.failure.error_type(o.status) {
            attrs.push(KeyValue::new(semconv::ERROR_TYPE, error));
        }
        return attrs;
    }
    attrs.push(KeyValue::new(
        semconv::HTTP_REQUEST_METHOD,
        semconv::method_name(o.method),
    ));
    if let Some(route) = o.route {
        attrs.push(KeyValue::new(semconv::HTTP_ROUTE, route.to_owned()));
    }
    if let Some(status) = o.status {
        attrs.push(KeyValue::new(
            semconv::HTTP_RESPONSE_STATUS_CODE,
            i64::from(status.as_u16()),
        ));
    }
    if let Some(error) = o.failure.error_type(o.status) {
        attrs.push(KeyValue::new(semconv::ERROR_TYPE, error));
    }
    attrs
}
