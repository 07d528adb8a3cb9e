//! Query tracking: the `rag.*` instruments of the telemetry contract, tenant metadata
//! (`tenant.info`) and quota usage, recorded per tenant through the [`TenantRegistry`].
//!
//! Every operation of the original monitoring design has a counterpart here:
//!
//! | design | here |
//! | --- | --- |
//! | `start_query_tracking(tenant)` | [`TenantRegistry::start_query`] → [`QueryGuard`] |
//! | `end_query_tracking(ctx, status, docs, tokens)` | [`QueryGuard::end`] with a [`QueryOutcome`] |
//! | `track_query(tenant, status, duration, docs, tokens)` | [`TenantRegistry::track_query`] |
//! | `update_quota_usage(tenant, resource, percent)` | [`TenantRegistry::update_quota_usage`] |
//! | tenant info (name, tier, region) | [`TenantRegistry::register_tenant`] with [`TenantInfo`](crate::TenantInfo) |
//! | an LLM call's tokens, duration and cost | [`TenantRegistry::record_llm_call`] with an [`LlmCall`] |
//! | `get_tenant_metrics(tenant)` | [`TenantRegistry::tenant_view`] |
//! | `TenantMetricsCollector` | [`TenantRegistry`] itself |
//!
//! Every call that takes a raw tenant id validates it as the layer does and refuses what the
//! layer would refuse, `__overflow__` and `__unknown__` included.

mod genai;
mod info;
mod outcome;
mod quota;

use std::fmt;
use std::time::{Duration, Instant};

pub use genai::{LlmCall, LlmCost, LlmCostSource, ModelCost, Operation, MAX_MODELS};
pub use outcome::{InvalidQueryStatus, QueryOutcome, QueryStatus};
pub use quota::{QuotaError, MAX_RESOURCE_TYPE_LEN};

pub use crate::instruments::query::MAX_QUOTA_RESOURCES;

use crate::instruments::{QueryEnd, QuerySeries};
use crate::registry::{Clock, Count, Tenant, TenantEntry, TenantRegistry};
use crate::tenant::{validate_client_id, InvalidTenantId, TenantId};

/// Something the query API can find a tenant from: a raw id (`&str`, `&String`), a
/// [`TenantId`], or a [`Tenant`] already resolved by the layer for the current request.
///
/// A raw id is validated as the layer validates it, and refused with the reason if it is not a
/// tenant id. A tenant past the cardinality cap records under `__overflow__`.
pub trait QueryTenant {
    /// Looks the tenant up in `registry`.
    fn resolve_in(self, registry: &TenantRegistry) -> Result<Tenant, InvalidTenantId>;
}

impl QueryTenant for &str {
    fn resolve_in(self, registry: &TenantRegistry) -> Result<Tenant, InvalidTenantId> {
        let id = validate_client_id(self.as_bytes())?;
        Ok(registry.lookup(id, Count::Other))
    }
}

impl QueryTenant for &String {
    fn resolve_in(self, registry: &TenantRegistry) -> Result<Tenant, InvalidTenantId> {
        self.as_str().resolve_in(registry)
    }
}

impl QueryTenant for &TenantId {
    fn resolve_in(self, registry: &TenantRegistry) -> Result<Tenant, InvalidTenantId> {
        self.as_str().resolve_in(registry)
    }
}

impl QueryTenant for &Tenant {
    fn resolve_in(self, _registry: &TenantRegistry) -> Result<Tenant, InvalidTenantId> {
        Ok(self.clone())
    }
}

impl QueryTenant for Tenant {
    fn resolve_in(self, _registry: &TenantRegistry) -> Result<Tenant, InvalidTenantId> {
        Ok(self)
    }
}

/// A query in flight, from [`TenantRegistry::start_query`].
///
/// While it lives, the tenant's `rag.active_queries` is one higher. [`end`](Self::end) records
/// the query; dropping the guard without ending it (an early return, a `?`, a cancelled future)
/// records a failed query with `status=error` and `error.type=cancelled` on `rag.queries` and
/// `rag.query.duration` (`error.type` appears only on that series), and brings the active count
/// back down all the same.
///
/// ```
/// use tenant_otel::TenantRegistry;
/// use tenant_otel::query::QueryOutcome;
///
/// let registry = TenantRegistry::builder().build();
/// let query = registry.start_query("finance-team")?;
/// assert_eq!(registry.tenant_view("finance-team").unwrap().queries.active, 1);
/// // ... retrieval and generation ...
/// query.end(QueryOutcome::success().docs_retrieved(5).llm_tokens(1200));
///
/// let view = registry.tenant_view("finance-team").unwrap();
/// assert_eq!((view.queries.total, view.queries.active), (1, 0));
/// # Ok::<(), tenant_otel::tenant::InvalidTenantId>(())
/// ```
#[must_use = "dropping the guard at once records a cancelled query"]
pub struct QueryGuard {
    tenant: Tenant,
    clock: Clock,
    started: Instant,
    ended: bool,
}

impl QueryGuard {
    /// The tenant the query is recorded for ([`Tenant::metric_label`] tells whether that is
    /// `__overflow__`).
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// Time since the query started.
    pub fn elapsed(&self) -> Duration {
        self.clock.now().saturating_duration_since(self.started)
    }

    /// Ends the query and records it; returns its duration.
    #[doc(alias = "end_query_tracking")]
    pub fn end(mut self, outcome: QueryOutcome) -> Duration {
        self.ended = true;
        self.record(
            outcome.status.end(),
            outcome.status.is_error(),
            outcome.docs,
            outcome.tokens,
        )
    }

    fn record(&self, end: QueryEnd, error: bool, docs: Option<u64>, tokens: u64) -> Duration {
        let now = self.clock.now();
        let duration = now.saturating_duration_since(self.started);
        let entry = self.tenant.entry();
        if let Some(series) = entry.queries.series_if_made() {
            series.record(end, duration, docs, tokens);
        }
        entry.stats.queries.finish(duration, error, now);
        entry.touch();
        duration
    }
}

impl Drop for QueryGuard {
    fn drop(&mut self) {
        if !self.ended {
            self.record(QueryEnd::Cancelled, true, None, 0);
        }
    }
}

impl fmt::Debug for QueryGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryGuard")
            .field("tenant", &self.tenant)
            .field("elapsed", &self.elapsed())
            .finish()
    }
}

impl TenantRegistry {
    /// Starts tracking a query of `tenant`: `rag.active_queries` goes up until the returned
    /// guard is ended (or dropped, which records a cancelled query). An id the layer would
    /// refuse is refused here too, with the reason, and records nothing.
    ///
    /// ```
    /// use tenant_otel::TenantRegistry;
    /// use tenant_otel::query::QueryOutcome;
    /// use tenant_otel::tenant::InvalidTenantId;
    ///
    /// let registry = TenantRegistry::builder().build();
    /// let query = registry.start_query("finance-team")?;
    /// let took = query.end(QueryOutcome::error());
    /// let view = registry.tenant_view("finance-team").unwrap();
    /// assert_eq!(view.queries.errors, 1);
    /// assert!(took.as_secs() < 60);
    /// assert_eq!(registry.start_query("__overflow__").unwrap_err(), InvalidTenantId::Reserved);
    /// # Ok::<(), InvalidTenantId>(())
    /// ```
    #[doc(alias = "start_query_tracking")]
    pub fn start_query(&self, tenant: impl QueryTenant) -> Result<QueryGuard, InvalidTenantId> {
        let tenant = tenant.resolve_in(self)?;
        let clock = self.clock().clone();
        let started = clock.now();
        // Made now, so `rag.active_queries` reports this tenant from its first query on; it is
        // observed from the in-flight count at collection time.
        query_series(tenant.entry());
        tenant.entry().stats.queries.start();
        Ok(QueryGuard {
            tenant,
            clock,
            started,
            ended: false,
        })
    }

    /// Records a query that already finished, in one call (for backfilling from logs or for
    /// callers that time queries themselves). `docs` is recorded in `rag.docs_retrieved` and
    /// `tokens` added to `rag.llm.tokens`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_otel::TenantRegistry;
    /// use tenant_otel::query::QueryStatus;
    ///
    /// let registry = TenantRegistry::builder().build();
    /// registry.track_query("marketing-team", QueryStatus::Success, Duration::from_millis(1500), 3, 800)?;
    /// let view = registry.tenant_view("marketing-team").unwrap();
    /// assert_eq!(view.queries.total, 1);
    /// assert!((view.queries.avg_ms - 1500.0).abs() < 1.0);
    /// assert!(registry.track_query("not a tenant!", QueryStatus::Success, Duration::ZERO, 0, 0).is_err());
    /// # Ok::<(), tenant_otel::tenant::InvalidTenantId>(())
    /// ```
    pub fn track_query(
        &self,
        tenant: impl QueryTenant,
        status: QueryStatus,
        duration: Duration,
        docs: u64,
        tokens: u64,
    ) -> Result<(), InvalidTenantId> {
        let tenant = tenant.resolve_in(self)?;
        let entry = tenant.entry();
        query_series(entry).record(status.end(), duration, Some(docs), tokens);
        entry
            .stats
            .queries
            .record(duration, status.is_error(), entry.shared().now());
        Ok(())
    }
}

/// The tenant's `rag.*` series, made on its first query.
fn query_series(entry: &TenantEntry) -> &QuerySeries {
    entry
        .queries
        .series(&entry.shared().query, entry.key_value())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalid_ids_are_refused_and_record_nothing() {
        let registry = TenantRegistry::builder().build();
        let result = registry.track_query(
            "not a tenant!",
            QueryStatus::Success,
            Duration::from_millis(5),
            1,
            1,
        );
        assert!(matches!(result, Err(InvalidTenantId::InvalidByte { .. })));
        assert!(registry.start_query("").is_err());
        assert_eq!(registry.len(), 0);
        let unknown = registry.tenant_view(crate::tenant::UNKNOWN_TENANT).unwrap();
        assert_eq!(unknown.queries.total, 0);
    }
}
