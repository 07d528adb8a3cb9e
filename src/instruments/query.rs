//! The `rag.*` instruments of query tracking, and one tenant's series of them.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::metrics::{
    BoundCounter, BoundGauge, BoundHistogram, Counter, Gauge, Histogram, Meter,
};
use opentelemetry::KeyValue;

use super::{names, semconv, QUERY_DURATION_BUCKETS};
use crate::classify::CANCELLED;

/// Bucket boundaries for `rag.docs_retrieved`: retrieval returns a handful of documents, rarely
/// more than a hundred.
const DOCS_BUCKETS: [f64; 10] = [0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 250.0];

/// The `rag.*` instruments, created once per registry.
#[derive(Debug, Clone)]
pub(crate) struct QueryInstruments {
    queries: Counter<u64>,
    duration: Histogram<f64>,
    docs: Histogram<u64>,
    tokens: Counter<u64>,
    quota: Gauge<f64>,
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

    /// `rag.quota.usage` of one tenant and resource type, bound once.
    pub(crate) fn bind_quota(&self, tenant: &KeyValue, resource_type: &str) -> BoundGauge<f64> {
        self.quota.bind(&[
            tenant.clone(),
            KeyValue::new(semconv::RESOURCE_TYPE, resource_type.to_owned()),
        ])
    }
}

/// How a query ended, as its series tell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueryEnd {
    Success,
    Error,
    /// Dropped without an end: `status=error` with `error.type=cancelled`.
    Cancelled,
}

/// One series of `rag.queries` and its `rag.query.duration`.
type Pair = (BoundCounter<u64>, BoundHistogram<f64>);

/// The `rag.*` series of one tenant. Each is bound when it first records: a bound series is
/// exported from then on, and one bound ahead of time would be exported empty (a histogram
/// point with count 0 and min/max at the float limits).
#[derive(Debug)]
pub(crate) struct QuerySeries {
    tenant: KeyValue,
    instruments: QueryInstruments,
    success: OnceLock<Pair>,
    error: OnceLock<Pair>,
    cancelled: OnceLock<Pair>,
    docs: OnceLock<BoundHistogram<u64>>,
    tokens: OnceLock<BoundCounter<u64>>,
}

impl QuerySeries {
    pub(crate) fn new(instruments: &QueryInstruments, tenant: &KeyValue) -> Self {
        QuerySeries {
            tenant: tenant.clone(),
            instruments: instruments.clone(),
            success: OnceLock::new(),
            error: OnceLock::new(),
            cancelled: OnceLock::new(),
            docs: OnceLock::new(),
            tokens: OnceLock::new(),
        }
    }

    pub(crate) fn record(&self, end: QueryEnd, duration: Duration, docs: Option<u64>, tokens: u64) {
        let (slot, status, error_type) = match end {
            QueryEnd::Success => (&self.success, "success", None),
            QueryEnd::Error => (&self.error, "error", None),
            QueryEnd::Cancelled => (&self.cancelled, "error", Some(CANCELLED)),
        };
        let (count, histogram) = slot.get_or_init(|| {
            let mut attributes = vec![self.tenant.clone(), KeyValue::new(semconv::STATUS, status)];
            if let Some(error_type) = error_type {
                attributes.push(KeyValue::new(semconv::ERROR_TYPE, error_type));
            }
            (
                self.instruments.queries.bind(&attributes),
                self.instruments.duration.bind(&attributes),
            )
        });
        count.add(1);
        histogram.record(duration.as_secs_f64());
        if let Some(docs) = docs {
            self.docs
                .get_or_init(|| {
                    self.instruments
                        .docs
                        .bind(std::slice::from_ref(&self.tenant))
                })
                .record(docs);
        }
        if tokens > 0 {
            self.tokens
                .get_or_init(|| {
                    self.instruments
                        .tokens
                        .bind(std::slice::from_ref(&self.tenant))
                })
                .add(tokens);
        }
    }
}

/// Distinct `resource_type` values one tenant may report quota usage for. Quotas are a short,
/// fixed list (queries, tokens, storage, ...); more than this means something feeds free text in.
pub const MAX_QUOTA_RESOURCES: usize = 8;

/// One tenant's state for the query API: its `rag.*` series and its quota gauges.
#[derive(Default)]
pub(crate) struct QueryPart {
    /// Made on the first query, so tenants that only serve HTTP report no `rag.*` series.
    series: OnceLock<QuerySeries>,
    /// Filled in order, each slot once: a resource type is found by a scan of at most
    /// [`MAX_QUOTA_RESOURCES`] slots, with no lock.
    quotas: [OnceLock<QuotaSlot>; MAX_QUOTA_RESOURCES],
}

/// One `resource_type` of a tenant's quota: its bound gauge and the last value, for the view.
struct QuotaSlot {
    resource: Box<str>,
    gauge: BoundGauge<f64>,
    /// `f64` bits.
    percent: AtomicU64,
}

impl QuotaSlot {
    fn set(&self, percent: f64) {
        self.percent.store(percent.to_bits(), Ordering::Relaxed);
        self.gauge.record(percent);
    }
}

/// A tenant already reports [`MAX_QUOTA_RESOURCES`] other resource types.
#[derive(Debug)]
pub(crate) struct TooManyResources;

impl QueryPart {
    /// The tenant's `rag.*` series, made on first use.
    pub(crate) fn series(&self, instruments: &QueryInstruments, tenant: &KeyValue) -> &QuerySeries {
        self.series
            .get_or_init(|| QuerySeries::new(instruments, tenant))
    }

    /// The tenant's `rag.*` series, if it has run a query.
    pub(crate) fn series_if_made(&self) -> Option<&QuerySeries> {
        self.series.get()
    }

    /// Sets the quota usage of `resource` for the tenant labelled `tenant`, binding its gauge on
    /// first use.
    pub(crate) fn set_quota(
        &self,
        instruments: &QueryInstruments,
        tenant: &KeyValue,
        resource: &str,
        percent: f64,
    ) -> Result<(), TooManyResources> {
        // Every writer walks the slots in the same order and a slot is filled once, so two
        // threads adding one resource at once end on the same slot: the second finds the
        // first's there.
        for slot in &self.quotas {
            let found = slot.get_or_init(|| QuotaSlot {
                resource: resource.into(),
                gauge: instruments.bind_quota(tenant, resource),
                percent: AtomicU64::new(0),
            });
            if &*found.resource == resource {
                found.set(percent);
                return Ok(());
            }
        }
        Err(TooManyResources)
    }

    /// The last quota usage reported, by resource type.
    pub(crate) fn quotas(&self) -> Vec<(String, f64)> {
        self.quotas
            .iter()
            .map_while(OnceLock::get)
            .map(|s| {
                let percent = f64::from_bits(s.percent.load(Ordering::Relaxed));
                (s.resource.to_string(), percent)
            })
            .collect()
    }
}

impl fmt::Debug for QueryPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("QueryPart")
            .field("series", &self.series.get().is_some())
            .field("quotas", &self.quotas())
            .finish()
    }
}
