//! One tenant's entry: its label, prepared once, and the parts each capability keeps for it.
//!
//! The entry owns no capability's state itself. Each part is a type of the module that uses it
//! (`ServerSeries` in `instruments` for the layer, `TenantStats` in `stats`, `TenantGuard` in
//! `protect`, `QueryPart`, `InfoPart` and `GenAiPart` in `instruments` for the query API), with its own
//! operations; the entry holds one of each, and composes them where one event touches several
//! (a request that starts or ends).

use std::fmt;
use std::sync::{Arc, Weak};

use opentelemetry::baggage::BaggageExt;
use opentelemetry::{Context, KeyValue};

use super::life::Life;
use super::shared::{millis, Shared};
use crate::instruments::{GenAiPart, InfoPart, Outcome, QueryPart, ServerSeries};
use crate::protect::TenantGuard;
use crate::stats::{Finished, RecentTraces, RefTime, Slo, TenantStats, TraceRef};
use crate::tenant::{TenantId, TENANT_ID_KEY};

/// Everything prepared once for one metric label.
pub(crate) struct TenantEntry {
    id: TenantId,
    /// The prepared `tenant.id` attribute.
    kv: KeyValue,
    /// The shared `__overflow__` or `__unknown__` entry.
    shared_label: bool,
    /// A context holding baggage `tenant.id`, the base of every request's context.
    context: Context,
    /// The W3C `baggage` header of that context, for outgoing calls.
    baggage_header: Option<http::HeaderValue>,
    /// What the registry's entries share: clock, instruments, routes, objectives.
    shared: Arc<Shared>,
    /// Where the entry is in its life under idle reclaim.
    pub(super) life: Life,
    /// Requests in flight and duration series (the layer).
    pub(crate) server: ServerSeries,
    /// Requests, queries and SLO windows (the in-process view, SLOs, alerts).
    pub(crate) stats: TenantStats,
    /// Own limits, and what ties each protection's lane to this entry (protection).
    pub(crate) guard: TenantGuard,
    /// `rag.*` series and quotas (the query API).
    pub(crate) queries: QueryPart,
    /// Registered metadata, `tenant.info`.
    pub(crate) info: InfoPart,
    /// Recent trace ids of failed and slowest requests (the view, alerts).
    pub(crate) traces: RecentTraces,
    /// GenAI series and cost by model (the query API's LLM calls).
    pub(crate) genai: GenAiPart,
}

/// The request's tenant in its context.
#[derive(Clone)]
pub(crate) enum InContext {
    /// In the entry's own prepared context: weak, as the entry owns that context. A request
    /// in flight holds the entry, so the reference upgrades while the request runs.
    Prepared(Weak<TenantEntry>),
    /// A tenant whose id differs from its entry's label (past the cap), or whose context was
    /// not prepared with the entry (a caller's extra baggage kept).
    Handle(TenantId, Arc<TenantEntry>),
}

impl TenantEntry {
    /// The entry of `id` (`shared_label`: the shared `__overflow__` or `__unknown__` one).
    pub(super) fn new(id: TenantId, shared_label: bool, shared: &Arc<Shared>) -> Arc<Self> {
        let now = shared.now();
        Arc::new_cyclic(|this| TenantEntry {
            kv: id.to_key_value(),
            // A weak reference: the entry owns this context, and a strong one would keep it
            // alive forever.
            context: Context::new()
                .with_baggage([KeyValue::new(TENANT_ID_KEY, id.to_value())])
                .with_value(InContext::Prepared(Weak::clone(this))),
            // A valid id is `[A-Za-z0-9._-]`: nothing to percent-encode.
            baggage_header: http::HeaderValue::try_from(format!("{TENANT_ID_KEY}={}", id.as_str()))
                .ok(),
            id,
            shared_label,
            shared: Arc::clone(shared),
            life: Life::default(),
            server: ServerSeries::default(),
            // No tier yet: the default objectives, until registration names one.
            stats: TenantStats::new(shared.window, now, shared.slo.of(None)),
            guard: TenantGuard::new(shared_label),
            queries: QueryPart::default(),
            info: InfoPart::default(),
            traces: RecentTraces::new(shared.traces.slow_floor),
            genai: GenAiPart::default(),
        })
    }

    /// The context holding this tenant's baggage and the tenant itself, prepared once.
    pub(crate) fn context(&self) -> &Context {
        &self.context
    }

    pub(crate) fn id(&self) -> &TenantId {
        &self.id
    }

    /// True for the shared `__overflow__` and `__unknown__` entries.
    pub(crate) fn is_shared(&self) -> bool {
        self.shared_label
    }

    /// The `baggage` header of a context that holds only this tenant.
    pub(crate) fn baggage_header(&self) -> Option<&http::HeaderValue> {
        self.baggage_header.as_ref()
    }

    /// The prepared `tenant.id` attribute (an `Arc` clone, no allocation).
    pub(crate) fn key_value(&self) -> &KeyValue {
        &self.kv
    }

    /// What this entry shares with the others of its registry.
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The tier given at registration, if any.
    pub(crate) fn tier(&self) -> Option<String> {
        self.info.tier()
    }

    /// The objectives that apply: the tenant's own, else its tier's.
    pub(crate) fn slo(&self) -> Slo {
        self.stats
            .own_slo()
            .unwrap_or_else(|| self.shared.slo.of(self.tier().as_deref()))
    }

    /// Notes that the tenant was active now; free when idle tenants are not reclaimed, and for
    /// the shared entries, which are never reclaimed (many tenants' requests would all write
    /// to one cache line).
    pub(crate) fn touch(&self) {
        if self.shared.reclaim_after.is_some() && !self.shared_label {
            self.life
                .touch(self.shared.now_ms(), self.shared.collections());
        }
    }

    /// The tenant's recent failed requests (newest first) and slowest of the window (slowest
    /// first), with links when a trace URL is configured.
    pub(crate) fn trace_refs(&self) -> (Vec<TraceRef>, Vec<TraceRef>) {
        let at = RefTime {
            now_ms: self.shared.now_ms(),
            window_ms: self.shared.window_ms(),
            wall: std::time::SystemTime::now(),
        };
        let url = self.shared.traces.url.as_ref();
        (self.traces.failed(&at, url), self.traces.slowest(&at, url))
    }

    /// Nothing in flight and not active for `idle_ms`.
    pub(super) fn is_idle(&self, now_ms: u64, idle_ms: u64) -> bool {
        self.stats.is_quiet() && self.life.is_idle(now_ms, idle_ms)
    }

    /// A request of `method` came in.
    pub(crate) fn request_started(&self, method: usize) {
        self.server.started(method);
        self.stats.request_started();
    }

    /// A request ended: its duration series, statistics, SLA window, and for a failed or slow
    /// one its trace reference.
    pub(crate) fn request_finished(&self, o: &Outcome<'_>) {
        let since_epoch = self.shared.since_epoch(o.end);
        let failed = o.failure.is_failure();
        self.stats.request_finished(
            o.duration,
            failed,
            o.failure.spends_budget(),
            o.end,
            since_epoch.as_secs(),
        );
        self.touch();
        self.server.finished(&self.shared.http, &self.kv, o);
        let at_ms = millis(since_epoch);
        if self.traces.may_keep(o.duration, failed, at_ms) {
            self.traces.finished(
                Finished {
                    trace_id: o.trace_id,
                    duration: o.duration,
                    status: o.status.map(|s| s.as_u16()),
                    error_type: o.failure.error_type(o.status),
                    at_ms,
                },
                self.shared.window_ms(),
            );
        }
    }
}

impl fmt::Debug for TenantEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantEntry").field("id", &self.id).finish()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::classify::{End, Failure};
    use crate::instruments::{semconv, Outcome, MAX_SERIES_PER_TENANT};
    use crate::registry::TenantRegistry;

    /// A tenant sending every status code on every route it can make up binds at most
    /// `MAX_SERIES_PER_TENANT` series; the rest are still recorded, unbound.
    #[test]
    fn a_tenant_binds_a_bounded_number_of_series() {
        let registry = TenantRegistry::builder().build();
        let tenant = registry.resolve("acme").unwrap();
        let entry = tenant.entry();
        let method = semconv::method_index(&http::Method::GET);
        let mut finished = 0;
        for route in 0..12u32 {
            for code in 200..300u16 {
                let status = http::StatusCode::from_u16(code).ok();
                entry.request_started(method);
                entry.request_finished(&Outcome {
                    method,
                    route: Some("/r"),
                    route_id: Some(route),
                    rpc_code: None,
                    status,
                    failure: Failure::classify(status, None, End::Completed),
                    duration: Duration::from_millis(1),
                    end: registry.now(),
                    trace_id: None,
                });
                finished += 1;
            }
        }
        assert_eq!(finished, 1200);
        assert_eq!(
            entry.server.bound(),
            MAX_SERIES_PER_TENANT,
            "series bound for one tenant"
        );
        let snapshot = entry.stats.requests.snapshot(registry.now());
        assert_eq!(snapshot.total, 1200);
    }
}
