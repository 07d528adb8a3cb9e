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
//! | tenant info (name, tier, region) | [`TenantRegistry::register_tenant`] with [`TenantInfo`] |
//! | `get_tenant_metrics(tenant)` | [`TenantRegistry::tenant_view`] |
//! | `TenantMetricsCollector` | [`TenantRegistry`] itself |

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::metrics::{
    AsyncInstrument, BoundCounter, BoundGauge, BoundHistogram, Counter, Gauge, Histogram, Meter,
    ObservableGauge,
};
use opentelemetry::{Key, KeyValue};

use crate::entry::TenantEntry;
use crate::metrics::{names, QUERY_DURATION_BUCKETS};
use crate::registry::TenantRegistry;
use crate::semconv;
use crate::tenant::{self, InvalidTenantId, Tenant, TenantId, OVERFLOW_TENANT, UNKNOWN_TENANT};

const STATUS: Key = Key::from_static_str("status");
const RESOURCE_TYPE: Key = Key::from_static_str("resource_type");
const TENANT_TIER: Key = Key::from_static_str("tenant.tier");
const TENANT_REGION: Key = Key::from_static_str("tenant.region");
const TENANT_NAME: Key = Key::from_static_str("tenant.name");

/// Distinct `resource_type` values one tenant may report quota usage for. Quotas are a short,
/// fixed list (queries, tokens, storage, ...); more than this means something feeds free text in.
pub const MAX_QUOTA_RESOURCES: usize = 8;

/// The longest `resource_type` accepted, in bytes.
pub const MAX_RESOURCE_TYPE_LEN: usize = 32;

/// The longest `tenant.name` exported, in bytes; longer names are cut at a character boundary.
pub const MAX_TENANT_NAME_LEN: usize = 128;

/// The longest `tenant.tier` and `tenant.region` exported, in bytes; longer values are cut at a
/// character boundary.
pub const MAX_TENANT_LABEL_LEN: usize = 64;

/// Bucket boundaries for `rag.docs_retrieved`: retrieval returns a handful of documents, rarely
/// more than a hundred.
const DOCS_BUCKETS: [f64; 10] = [0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0];

/// How a query ended.
///
/// ```
/// use tenant_otel::QueryStatus;
///
/// assert_eq!("success".parse::<QueryStatus>(), Ok(QueryStatus::Success));
/// assert_eq!(QueryStatus::Error.as_str(), "error");
/// assert!("maybe".parse::<QueryStatus>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[cfg_attr(feature = "axum", serde(rename_all = "lowercase"))]
pub enum QueryStatus {
    /// The query answered.
    Success,
    /// The query failed.
    Error,
}

impl QueryStatus {
    /// The `status` attribute value: `success` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryStatus::Success => "success",
            QueryStatus::Error => "error",
        }
    }

    fn is_error(self) -> bool {
        self == QueryStatus::Error
    }
}

impl fmt::Display for QueryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status string other than `success` or `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidQueryStatus;

impl fmt::Display for InvalidQueryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("query status must be `success` or `error`")
    }
}

impl std::error::Error for InvalidQueryStatus {}

impl FromStr for QueryStatus {
    type Err = InvalidQueryStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "success" => Ok(QueryStatus::Success),
            "error" => Ok(QueryStatus::Error),
            _ => Err(InvalidQueryStatus),
        }
    }
}

/// What [`QueryGuard::end`] records: the status, and optionally the documents retrieved and
/// the LLM tokens used.
///
/// ```
/// use tenant_otel::{QueryOutcome, QueryStatus};
///
/// let outcome = QueryOutcome::success().docs_retrieved(5).llm_tokens(1200);
/// assert_eq!(outcome.status(), QueryStatus::Success);
/// assert_eq!(QueryOutcome::error().status(), QueryStatus::Error);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryOutcome {
    status: QueryStatus,
    docs: Option<u64>,
    tokens: u64,
}

impl QueryOutcome {
    /// An outcome with this status, no documents and no tokens.
    pub fn new(status: QueryStatus) -> Self {
        QueryOutcome {
            status,
            docs: None,
            tokens: 0,
        }
    }

    /// A successful query.
    pub fn success() -> Self {
        QueryOutcome::new(QueryStatus::Success)
    }

    /// A failed query.
    pub fn error() -> Self {
        QueryOutcome::new(QueryStatus::Error)
    }

    /// Documents the retrieval step returned, recorded in `rag.docs_retrieved`. Left unset,
    /// nothing is recorded there (so queries that never reached retrieval do not drag the
    /// distribution towards zero).
    pub fn docs_retrieved(mut self, docs: u64) -> Self {
        self.docs = Some(docs);
        self
    }

    /// LLM tokens the query used, added to `rag.llm.tokens`.
    pub fn llm_tokens(mut self, tokens: u64) -> Self {
        self.tokens = tokens;
        self
    }

    /// The status.
    pub fn status(&self) -> QueryStatus {
        self.status
    }
}

/// Something the query API can find a tenant from: a raw id (`&str`, `&String`), a
/// [`TenantId`], or a [`Tenant`] already resolved by the layer for the current request.
///
/// A raw id that fails validation is recorded as `__unknown__` rather than refused, so a bad id
/// never costs the caller its query; a tenant past the cardinality cap records under
/// `__overflow__` and counts in `tenant.cardinality.overflow`.
pub trait QueryTenant {
    /// Looks the tenant up in `registry`.
    fn resolve_in(self, registry: &TenantRegistry) -> Tenant;
}

impl QueryTenant for &str {
    fn resolve_in(self, registry: &TenantRegistry) -> Tenant {
        match tenant::validate(self.as_bytes()) {
            Ok(id) => registry.resolve(id),
            Err(_) => registry.unknown(),
        }
    }
}

impl QueryTenant for &String {
    fn resolve_in(self, registry: &TenantRegistry) -> Tenant {
        self.as_str().resolve_in(registry)
    }
}

impl QueryTenant for &TenantId {
    fn resolve_in(self, registry: &TenantRegistry) -> Tenant {
        registry.resolve(self.as_str())
    }
}

impl QueryTenant for &Tenant {
    fn resolve_in(self, _registry: &TenantRegistry) -> Tenant {
        self.clone()
    }
}

impl QueryTenant for Tenant {
    fn resolve_in(self, _registry: &TenantRegistry) -> Tenant {
        self
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
/// use tenant_otel::{QueryOutcome, TenantRegistry};
///
/// let registry = TenantRegistry::builder().build();
/// let query = registry.start_query("finance-team");
/// assert_eq!(registry.tenant_view("finance-team").unwrap().queries.active, 1);
/// // ... retrieval and generation ...
/// query.end(QueryOutcome::success().docs_retrieved(5).llm_tokens(1200));
///
/// let view = registry.tenant_view("finance-team").unwrap();
/// assert_eq!((view.queries.total, view.queries.active), (1, 0));
/// ```
#[must_use = "dropping the guard at once records a cancelled query"]
pub struct QueryGuard {
    tenant: Tenant,
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
        self.started.elapsed()
    }

    /// Ends the query and records it; returns its duration.
    #[doc(alias = "end_query_tracking")]
    pub fn end(mut self, outcome: QueryOutcome) -> Duration {
        self.ended = true;
        let duration = self.started.elapsed();
        let entry = &self.tenant.entry;
        if let Some(series) = entry.query_series.get() {
            series.record(outcome.status, duration, outcome.docs, outcome.tokens);
        }
        entry.queries.finish(duration, outcome.status.is_error());
        entry.touch();
        duration
    }
}

impl Drop for QueryGuard {
    fn drop(&mut self) {
        if self.ended {
            return;
        }
        let duration = self.started.elapsed();
        let entry = &self.tenant.entry;
        if let Some(series) = entry.query_series.get() {
            let (count, hist) = series.cancelled(&entry.key_value().clone());
            count.add(1);
            hist.record(duration.as_secs_f64());
        }
        entry.queries.finish(duration, true);
        entry.touch();
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

/// Tenant metadata exported as `tenant.info` (value 1, with `tenant.name`, `tenant.tier` and
/// `tenant.region`), for joining onto the per-tenant series in queries and dashboards.
///
/// ```
/// use tenant_otel::TenantInfo;
///
/// let info = TenantInfo::new("Finance", "premium", "eu-west-1");
/// assert_eq!(info.tier, "premium");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
pub struct TenantInfo {
    /// Display name; cut to [`MAX_TENANT_NAME_LEN`] bytes.
    pub name: String,
    /// Tier, e.g. `free`, `standard`, `premium`; cut to [`MAX_TENANT_LABEL_LEN`] bytes.
    pub tier: String,
    /// Region; cut to [`MAX_TENANT_LABEL_LEN`] bytes.
    pub region: String,
}

impl TenantInfo {
    /// Metadata with these values.
    pub fn new(
        name: impl Into<String>,
        tier: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        TenantInfo {
            name: name.into(),
            tier: tier.into(),
            region: region.into(),
        }
    }

    fn bounded(mut self) -> Self {
        truncate(&mut self.name, MAX_TENANT_NAME_LEN);
        truncate(&mut self.tier, MAX_TENANT_LABEL_LEN);
        truncate(&mut self.region, MAX_TENANT_LABEL_LEN);
        self
    }
}

fn truncate(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s.truncate(end);
}

/// Why [`TenantRegistry::register_tenant`] refused a tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// The id is not a valid tenant id.
    Invalid(InvalidTenantId),
    /// The id is `__overflow__` or `__unknown__`, which name shared series.
    Reserved,
    /// The cardinality cap is reached; the tenant's metrics go to `__overflow__`.
    CapReached,
}

impl fmt::Display for RegisterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RegisterError::Invalid(e) => e.fmt(f),
            RegisterError::Reserved => f.write_str("this tenant id is reserved"),
            RegisterError::CapReached => f.write_str("the cap on distinct tenants is reached"),
        }
    }
}

impl std::error::Error for RegisterError {}

/// Why [`TenantRegistry::update_quota_usage`] recorded nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum QuotaError {
    /// The tenant id is not valid.
    InvalidTenant(InvalidTenantId),
    /// `resource_type` is empty, longer than [`MAX_RESOURCE_TYPE_LEN`], or has a character
    /// outside `[A-Za-z0-9._-]`.
    InvalidResourceType,
    /// The tenant already reports [`MAX_QUOTA_RESOURCES`] other resource types.
    TooManyResources,
    /// The percentage was NaN or infinite.
    NotFinite,
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaError::InvalidTenant(e) => e.fmt(f),
            QuotaError::InvalidResourceType => write!(
                f,
                "resource_type must be 1 to {MAX_RESOURCE_TYPE_LEN} characters of [A-Za-z0-9._-]"
            ),
            QuotaError::TooManyResources => write!(
                f,
                "a tenant reports at most {MAX_QUOTA_RESOURCES} quota resource types"
            ),
            QuotaError::NotFinite => f.write_str("quota usage must be a finite number"),
        }
    }
}

impl std::error::Error for QuotaError {}

impl TenantRegistry {
    /// Starts tracking a query of `tenant`: `rag.active_queries` goes up until the returned
    /// guard is ended (or dropped, which records a cancelled query).
    ///
    /// The tenant's series are bound on its first query, so this and [`QueryGuard::end`]
    /// allocate nothing afterwards. An invalid id is recorded as `__unknown__`; see
    /// [`QueryTenant`].
    ///
    /// ```
    /// use tenant_otel::{QueryOutcome, TenantRegistry};
    ///
    /// let registry = TenantRegistry::builder().build();
    /// let query = registry.start_query("finance-team");
    /// let took = query.end(QueryOutcome::error());
    /// let view = registry.tenant_view("finance-team").unwrap();
    /// assert_eq!(view.queries.errors, 1);
    /// assert!(took.as_secs() < 60);
    /// ```
    #[doc(alias = "start_query_tracking")]
    pub fn start_query(&self, tenant: impl QueryTenant) -> QueryGuard {
        let tenant = tenant.resolve_in(self);
        let started = Instant::now();
        // Bound now, so the first query's series exist when it ends; `rag.active_queries` is
        // observed from the in-flight count at collection time.
        self.query_series(&tenant.entry);
        tenant.entry.queries.start();
        QueryGuard {
            tenant,
            started,
            ended: false,
        }
    }

    /// Records a query that already finished, in one call (for backfilling from logs or for
    /// callers that time queries themselves). `docs` is recorded in `rag.docs_retrieved` and
    /// `tokens` added to `rag.llm.tokens`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tenant_otel::{QueryStatus, TenantRegistry};
    ///
    /// let registry = TenantRegistry::builder().build();
    /// registry.track_query("marketing-team", QueryStatus::Success, Duration::from_millis(1500), 3, 800);
    /// let view = registry.tenant_view("marketing-team").unwrap();
    /// assert_eq!(view.queries.total, 1);
    /// assert!((view.queries.avg_ms - 1500.0).abs() < 1.0);
    /// ```
    pub fn track_query(
        &self,
        tenant: impl QueryTenant,
        status: QueryStatus,
        duration: Duration,
        docs: u64,
        tokens: u64,
    ) {
        let tenant = tenant.resolve_in(self);
        self.query_series(&tenant.entry)
            .record(status, duration, Some(docs), tokens);
        tenant.entry.queries.record(duration, status.is_error());
    }

    /// Sets `rag.quota.usage` (percent) of `tenant` for `resource_type` (e.g. `queries`,
    /// `tokens`).
    ///
    /// Negative values are clamped to 0; values above 100 are kept (a tenant over its quota is
    /// worth seeing); NaN and infinities are refused. Each tenant may report up to
    /// [`MAX_QUOTA_RESOURCES`] resource types. A tenant past the cardinality cap records under
    /// `__overflow__`, where the last update of any overflowed tenant wins.
    ///
    /// ```
    /// use tenant_otel::TenantRegistry;
    ///
    /// let registry = TenantRegistry::builder().build();
    /// registry.update_quota_usage("finance-team", "queries", 75.0).unwrap();
    /// registry.update_quota_usage("finance-team", "tokens", -3.0).unwrap();
    /// assert!(registry.update_quota_usage("finance-team", "tokens", f64::NAN).is_err());
    /// let view = registry.tenant_view("finance-team").unwrap();
    /// assert_eq!(view.quota.get("queries"), Some(&75.0));
    /// assert_eq!(view.quota.get("tokens"), Some(&0.0));
    /// ```
    pub fn update_quota_usage(
        &self,
        tenant: &str,
        resource_type: &str,
        percent: f64,
    ) -> Result<(), QuotaError> {
        if !percent.is_finite() {
            return Err(QuotaError::NotFinite);
        }
        let percent = percent.max(0.0);
        if resource_type.len() > MAX_RESOURCE_TYPE_LEN
            || tenant::validate(resource_type.as_bytes()).is_err()
        {
            return Err(QuotaError::InvalidResourceType);
        }
        let id = tenant::validate(tenant.as_bytes()).map_err(QuotaError::InvalidTenant)?;
        let entry = Arc::clone(&self.resolve(id).entry);
        {
            let slots = entry.quota.read().unwrap_or_else(|e| e.into_inner());
            if let Some(slot) = slots.iter().find(|s| &*s.resource == resource_type) {
                slot.set(percent);
                return Ok(());
            }
        }
        let mut slots = entry.quota.write().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = slots.iter().find(|s| &*s.resource == resource_type) {
            slot.set(percent);
            return Ok(());
        }
        if slots.len() >= MAX_QUOTA_RESOURCES {
            return Err(QuotaError::TooManyResources);
        }
        let slot = QuotaSlot {
            resource: resource_type.into(),
            gauge: self.inner.query.quota.bind(&[
                entry.key_value().clone(),
                KeyValue::new(RESOURCE_TYPE, resource_type.to_owned()),
            ]),
            percent: AtomicU64::new(0),
        };
        slot.set(percent);
        slots.push(slot);
        Ok(())
    }

    /// Admits `id` to the registry (it gets its own `tenant.id` label even in allowlist mode)
    /// and exports its metadata as `tenant.info`. Registering again replaces the metadata.
    ///
    /// ```
    /// use tenant_otel::{RegisterError, TenantInfo, TenantRegistry};
    ///
    /// let registry = TenantRegistry::builder().max_tenants(1).build();
    /// let finance = registry
    ///     .register_tenant("finance-team", TenantInfo::new("Finance", "premium", "eu-west-1"))
    ///     .unwrap();
    /// assert_eq!(finance.metric_label(), "finance-team");
    /// assert_eq!(
    ///     registry.register_tenant("other", TenantInfo::default()).unwrap_err(),
    ///     RegisterError::CapReached
    /// );
    /// assert!(registry.register_tenant("bad id", TenantInfo::default()).is_err());
    /// ```
    pub fn register_tenant(&self, id: &str, info: TenantInfo) -> Result<Tenant, RegisterError> {
        let id = TenantId::parse(id).map_err(RegisterError::Invalid)?;
        if matches!(id.as_str(), OVERFLOW_TENANT | UNKNOWN_TENANT) {
            return Err(RegisterError::Reserved);
        }
        let entry = self
            .register_entry(id.clone())
            .ok_or(RegisterError::CapReached)?;
        let info = info.bounded();
        let attributes = [
            entry.key_value().clone(),
            KeyValue::new(TENANT_TIER, info.tier.clone()),
            KeyValue::new(TENANT_REGION, info.region.clone()),
            KeyValue::new(TENANT_NAME, info.name.clone()),
        ];
        *entry.info.write().unwrap_or_else(|e| e.into_inner()) = Some(RegisteredInfo {
            info,
            attributes: Arc::new(attributes),
        });
        Ok(Tenant { id, entry })
    }

    fn query_series<'a>(&self, entry: &'a TenantEntry) -> &'a QuerySeries {
        entry
            .query_series
            .get_or_init(|| QuerySeries::bind(&self.inner.query, entry.key_value()))
    }
}

/// The `rag.*` instruments, created once per registry.
#[derive(Debug)]
pub(crate) struct QueryInstruments {
    queries: Counter<u64>,
    duration: Histogram<f64>,
    docs: Histogram<u64>,
    tokens: Counter<u64>,
    pub(crate) quota: Gauge<f64>,
}

impl QueryInstruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        QueryInstruments {
            queries: meter
                .u64_counter(names::RAG_QUERIES)
                .with_unit("{query}")
                .with_description("RAG queries finished, by status.")
                .build(),
            duration: meter
                .f64_histogram(names::RAG_QUERY_DURATION)
                .with_unit("s")
                .with_description("Duration of RAG queries, by status.")
                .with_boundaries(QUERY_DURATION_BUCKETS.to_vec())
                .build(),
            docs: meter
                .u64_histogram(names::RAG_DOCS_RETRIEVED)
                .with_unit("{document}")
                .with_description("Documents retrieved per RAG query.")
                .with_boundaries(DOCS_BUCKETS.to_vec())
                .build(),
            tokens: meter
                .u64_counter(names::RAG_LLM_TOKENS)
                .with_unit("{token}")
                .with_description("LLM tokens used by RAG queries.")
                .build(),
            quota: meter
                .f64_gauge(names::RAG_QUOTA_USAGE)
                .with_unit("%")
                .with_description("Quota usage in percent, by resource type.")
                .build(),
        }
    }
}

/// `tenant.info` is observed at each collection rather than recorded once, so it is exported
/// under delta temporality too and always shows the current metadata.
pub(crate) fn tenant_info_gauge(
    meter: &Meter,
    callback: impl Fn(&mut dyn FnMut(&[KeyValue])) + Send + Sync + 'static,
) -> ObservableGauge<u64> {
    meter
        .u64_observable_gauge(names::TENANT_INFO)
        .with_unit("{tenant}")
        .with_description("Tenant metadata (name, tier, region); the value is always 1.")
        .with_callback(move |observer: &dyn AsyncInstrument<u64>| {
            callback(&mut |attributes| observer.observe(1, attributes));
        })
        .build()
}

/// The `rag.*` series of one tenant, bound once.
pub(crate) struct QuerySeries {
    success: BoundCounter<u64>,
    error: BoundCounter<u64>,
    success_duration: BoundHistogram<f64>,
    error_duration: BoundHistogram<f64>,
    docs: BoundHistogram<u64>,
    tokens: BoundCounter<u64>,
    instruments: QueryInstrumentsRef,
    /// Bound on the first cancellation only: most tenants never have one, and an empty series
    /// would be exported for each of them.
    cancelled: OnceLock<(BoundCounter<u64>, BoundHistogram<f64>)>,
}

/// The unbound instruments a [`QuerySeries`] binds late series from.
struct QueryInstrumentsRef {
    queries: Counter<u64>,
    duration: Histogram<f64>,
}

impl QuerySeries {
    fn bind(instruments: &QueryInstruments, tenant: &KeyValue) -> Self {
        let only_tenant = [tenant.clone()];
        let success = [tenant.clone(), KeyValue::new(STATUS, "success")];
        let error = [tenant.clone(), KeyValue::new(STATUS, "error")];
        QuerySeries {
            success: instruments.queries.bind(&success),
            error: instruments.queries.bind(&error),
            success_duration: instruments.duration.bind(&success),
            error_duration: instruments.duration.bind(&error),
            docs: instruments.docs.bind(&only_tenant),
            tokens: instruments.tokens.bind(&only_tenant),
            instruments: QueryInstrumentsRef {
                queries: instruments.queries.clone(),
                duration: instruments.duration.clone(),
            },
            cancelled: OnceLock::new(),
        }
    }

    fn record(&self, status: QueryStatus, duration: Duration, docs: Option<u64>, tokens: u64) {
        let seconds = duration.as_secs_f64();
        match status {
            QueryStatus::Success => {
                self.success.add(1);
                self.success_duration.record(seconds);
            }
            QueryStatus::Error => {
                self.error.add(1);
                self.error_duration.record(seconds);
            }
        }
        if let Some(docs) = docs {
            self.docs.record(docs);
        }
        if tokens > 0 {
            self.tokens.add(tokens);
        }
    }

    fn cancelled(&self, tenant: &KeyValue) -> &(BoundCounter<u64>, BoundHistogram<f64>) {
        self.cancelled.get_or_init(|| {
            let attributes = [
                tenant.clone(),
                KeyValue::new(STATUS, "error"),
                KeyValue::new(semconv::ERROR_TYPE, semconv::ERROR_CANCELLED),
            ];
            (
                self.instruments.queries.bind(&attributes),
                self.instruments.duration.bind(&attributes),
            )
        })
    }
}

/// One `resource_type` of a tenant's quota: its bound gauge and the last value, for the view.
pub(crate) struct QuotaSlot {
    pub(crate) resource: Box<str>,
    gauge: BoundGauge<f64>,
    /// `f64` bits.
    percent: AtomicU64,
}

impl QuotaSlot {
    fn set(&self, percent: f64) {
        self.percent.store(percent.to_bits(), Ordering::Relaxed);
        self.gauge.record(percent);
    }

    pub(crate) fn percent(&self) -> f64 {
        f64::from_bits(self.percent.load(Ordering::Relaxed))
    }
}

/// A tenant's metadata and its prepared `tenant.info` attributes.
pub(crate) struct RegisteredInfo {
    pub(crate) info: TenantInfo,
    attributes: Arc<[KeyValue; 4]>,
}

impl TenantEntry {
    pub(crate) fn observe_info(&self, observe: &mut dyn FnMut(&[KeyValue])) {
        let attributes = self
            .info
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .map(|i| Arc::clone(&i.attributes));
        if let Some(attributes) = attributes {
            observe(&attributes[..]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        let mut s = "é".repeat(100);
        truncate(&mut s, 7);
        assert_eq!(s, "ééé");
        let info = TenantInfo::new("x".repeat(500), "t".repeat(100), "eu").bounded();
        assert_eq!(info.name.len(), MAX_TENANT_NAME_LEN);
        assert_eq!(info.tier.len(), MAX_TENANT_LABEL_LEN);
        assert_eq!(info.region, "eu");
    }

    #[test]
    fn quota_resources_are_capped_per_tenant() {
        let registry = TenantRegistry::builder().build();
        for i in 0..MAX_QUOTA_RESOURCES {
            registry
                .update_quota_usage("t", &format!("r{i}"), 1.0)
                .unwrap();
        }
        assert_eq!(
            registry.update_quota_usage("t", "one-more", 1.0),
            Err(QuotaError::TooManyResources)
        );
        // Known resources still update.
        registry.update_quota_usage("t", "r0", 42.0).unwrap();
        assert_eq!(
            registry.update_quota_usage("t", "bad resource", 1.0),
            Err(QuotaError::InvalidResourceType)
        );
        assert!(matches!(
            registry.update_quota_usage("t t", "r0", 1.0),
            Err(QuotaError::InvalidTenant(_))
        ));
    }

    #[test]
    fn invalid_ids_fall_back_to_unknown() {
        let registry = TenantRegistry::builder().build();
        registry.track_query(
            "not a tenant!",
            QueryStatus::Success,
            Duration::from_millis(5),
            1,
            1,
        );
        assert_eq!(registry.len(), 0);
        let unknown = registry.tenant_view(UNKNOWN_TENANT).unwrap();
        assert_eq!(unknown.queries.total, 1);
    }
}
