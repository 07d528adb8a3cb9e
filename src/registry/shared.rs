//! What every entry of one registry shares, made once at build time: the clock and its epoch,
//! the instruments the parts record into, the route table, the objectives by tier. Each entry
//! holds it, so a request records through the entry it looked up and never goes back to the
//! registry.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use opentelemetry::KeyValue;

use super::routes::RouteTable;
use crate::cost::Prices;
use crate::instruments::{
    semconv, GenAiInstruments, HttpInstruments, OperatorInstruments, QueryInstruments,
};
use crate::protect::ShedReason;
use crate::stats::{Clock, SloPolicy, TraceUrl};

/// Shared by a registry and all its entries.
pub(crate) struct Shared {
    /// Where every window reads the time.
    pub(crate) clock: Clock,
    /// Reference point of the entries' activity times and of the SLO buckets.
    epoch: Instant,
    /// Length of the statistics' sliding window.
    pub(super) window: Duration,
    /// Objectives by tier.
    pub(super) slo: SloPolicy,
    pub(crate) http: HttpInstruments,
    pub(crate) query: QueryInstruments,
    pub(crate) operator: OperatorInstruments,
    pub(crate) genai: GenAiInstruments,
    /// The tracer of the query API's LLM call spans: the global provider's at the first call
    /// (`Telemetry::init` sets the provider after building the registry), made once so a call
    /// makes no tracer.
    pub(crate) tracer: std::sync::OnceLock<opentelemetry::global::BoxedTracer>,
    /// The model prices GenAI calls are costed at, replaceable at run time.
    pub(crate) prices: Prices,
    /// Route templates and gRPC methods seen so far, each with a small id for series keys; the
    /// shared string is reused for every span's `http.route` or `rpc.method`.
    pub(crate) routes: RouteTable,
    /// Idle time after which an unpinned tenant gives its slot back, if reclaiming is on.
    pub(super) reclaim_after: Option<Duration>,
    /// Metric collections so far (by any reader).
    collections: AtomicU64,
    /// Which traces the entries keep references to, and where they link.
    pub(crate) traces: TraceSettings,
}

/// The settings of the entries' recent trace references.
#[derive(Debug, Clone)]
pub(crate) struct TraceSettings {
    /// Where a trace is shown, if anywhere.
    pub(crate) url: Option<TraceUrl>,
    /// A successful request must be slower than this to be among a tenant's slowest.
    pub(crate) slow_floor: Duration,
}

/// The instruments a registry records into.
pub(super) struct Instruments {
    pub(super) http: HttpInstruments,
    pub(super) query: QueryInstruments,
    pub(super) operator: OperatorInstruments,
    pub(super) genai: GenAiInstruments,
}

impl Shared {
    pub(super) fn new(
        clock: Clock,
        window: Duration,
        slo: SloPolicy,
        instruments: Instruments,
        reclaim_after: Option<Duration>,
        traces: TraceSettings,
        prices: Prices,
    ) -> Self {
        Shared {
            epoch: clock.now(),
            clock,
            window,
            slo,
            http: instruments.http,
            query: instruments.query,
            operator: instruments.operator,
            genai: instruments.genai,
            tracer: std::sync::OnceLock::new(),
            prices,
            routes: RouteTable::default(),
            reclaim_after,
            collections: AtomicU64::new(0),
            traces,
        }
    }

    /// The time, from the registry's clock.
    pub(crate) fn now(&self) -> Instant {
        self.clock.now()
    }

    /// Seconds from the registry's epoch to `at`: the time SLO buckets are kept in.
    pub(crate) fn secs(&self, at: Instant) -> u64 {
        self.since_epoch(at).as_secs()
    }

    /// The time from the registry's epoch to `at` (one reading serves seconds and milliseconds).
    pub(crate) fn since_epoch(&self, at: Instant) -> Duration {
        at.saturating_duration_since(self.epoch)
    }

    /// Milliseconds from the registry's epoch to now: the time activity is noted in.
    pub(crate) fn now_ms(&self) -> u64 {
        self.ms(self.clock.now())
    }

    /// Milliseconds from the registry's epoch to `at`.
    pub(crate) fn ms(&self, at: Instant) -> u64 {
        millis(self.since_epoch(at))
    }

    /// The statistics' sliding window, in milliseconds.
    pub(crate) fn window_ms(&self) -> u64 {
        u64::try_from(self.window.as_millis()).unwrap_or(u64::MAX)
    }

    /// The compliance window of the error budget, in days.
    pub(crate) fn compliance_days(&self) -> u32 {
        self.slo.compliance_days
    }

    pub(super) fn collections(&self) -> u64 {
        self.collections.load(Ordering::Acquire)
    }

    /// Counts a metric collection; returns the new count.
    pub(super) fn collected(&self) -> u64 {
        self.collections.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Counts a request refused for want of a usable tenant (`missing`, `invalid`, `reserved`).
    pub(crate) fn count_rejected(&self, reason: &'static str) {
        self.operator
            .rejected
            .add(1, &[KeyValue::new(semconv::REASON, reason)]);
    }

    /// Counts a decision of shared limits made without the shared store, for `reason`.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn count_limit_fallback(&self, reason: &'static str) {
        self.operator
            .limit_fallbacks
            .add(1, &[KeyValue::new(semconv::REASON, reason)]);
    }

    /// Counts a request of the tenant labelled `tenant` shed by protection.
    pub(crate) fn count_shed(&self, tenant: &KeyValue, reason: ShedReason) {
        self.operator.shed.add(
            1,
            &[
                tenant.clone(),
                KeyValue::new(semconv::REASON, reason.as_str()),
            ],
        );
    }
}

/// A time from the epoch in milliseconds, as activity and trace references keep it.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Shared")
            .field("window", &self.window)
            .field("reclaim_after", &self.reclaim_after)
            .finish_non_exhaustive()
    }
}
