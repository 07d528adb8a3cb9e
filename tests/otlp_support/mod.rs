//! Exports through a fake OTLP/gRPC collector and reads back what arrived on the wire.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use fake_opentelemetry_collector::{ExportedMetric, FakeCollectorServer};
use tenant_otel::init::Protocol;
use tenant_otel::Telemetry;

/// A metric as exported, flattened from the fake collector's JSON form.
pub type Metric = serde_json::Value;

pub struct Pipeline {
    pub server: FakeCollectorServer,
    pub telemetry: Telemetry,
}

/// A collector and a `Telemetry` exporting to it over gRPC. The export interval is long, so
/// the one export that matters is the flush at shutdown, holding the cumulative totals.
pub async fn pipeline(max_tenants: usize) -> Pipeline {
    let server = FakeCollectorServer::start()
        .await
        .expect("fake collector starts");
    let telemetry = Telemetry::builder()
        .otlp_endpoint(server.endpoint())
        .protocol(Protocol::Grpc)
        .without_tracing_subscriber()
        .without_globals()
        .registry(tenant_otel::TenantRegistry::builder().max_tenants(max_tenants))
        .metric_export_interval(Duration::from_secs(3600))
        // The contract covers the Prometheus names too.
        .prometheus_endpoint()
        .init()
        .expect("telemetry initialises");
    Pipeline { server, telemetry }
}

impl Pipeline {
    /// Shuts the providers down (flushing metrics) and returns the last exported state of
    /// each metric by name.
    pub async fn finish(self) -> BTreeMap<String, Metric> {
        let Pipeline {
            mut server,
            telemetry,
        } = self;
        // The gRPC exporter needs the runtime while shutdown blocks, so block elsewhere.
        let shutdown = tokio::task::spawn_blocking(move || telemetry.shutdown());
        let mut batches: Vec<ExportedMetric> = Vec::new();
        // The collector's channel holds 64 batches; drain while the flush is under way.
        loop {
            let got = server.exported_metrics(1, Duration::from_millis(500)).await;
            let done = shutdown.is_finished();
            batches.extend(got);
            if done {
                batches.extend(server.exported_metrics(0, Duration::ZERO).await);
                break;
            }
        }
        shutdown
            .await
            .expect("shutdown task")
            .expect("shutdown flushes without error");
        let mut by_name = BTreeMap::new();
        for batch in batches {
            let batch = serde_json::to_value(&batch).expect("exported metrics serialise");
            for metric in batch["metrics"].as_array().cloned().unwrap_or_default() {
                let name = metric["name"].as_str().unwrap_or_default().to_owned();
                by_name.insert(name, metric);
            }
        }
        by_name
    }
}

/// `Sum`, `Gauge`, `Histogram`, ... as the OTLP data kind of `metric`.
pub fn kind(metric: &Metric) -> &str {
    metric["data"]
        .as_object()
        .and_then(|o| o.keys().next())
        .map(String::as_str)
        .unwrap_or("none")
}

/// The data points of `metric`, whatever its kind.
pub fn points(metric: &Metric) -> Vec<Metric> {
    let data = &metric["data"];
    let inner = data
        .as_object()
        .and_then(|o| o.values().next())
        .cloned()
        .unwrap_or_default();
    inner["data_points"].as_array().cloned().unwrap_or_default()
}

/// The attributes of a data point.
pub fn attrs(point: &Metric) -> BTreeMap<String, String> {
    point["attributes"]
        .as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| (k.clone(), plain(v.as_str().unwrap_or_default())))
                .collect()
        })
        .unwrap_or_default()
}

/// The collector renders attribute values with `Debug`
/// (`Some(AnyValue { value: Some(StringValue("acme")) })`); this takes the value back out.
fn plain(rendered: &str) -> String {
    for kind in ["StringValue(", "IntValue(", "DoubleValue(", "BoolValue("] {
        if let Some(start) = rendered.find(kind) {
            let rest = &rendered[start + kind.len()..];
            let end = rest.rfind(')').unwrap_or(rest.len());
            let inner = &rest[..end];
            let inner = inner.trim_end_matches([')', ' ', '}']);
            return match inner.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                Some(s) => s.replace("\\\"", "\"").replace("\\\\", "\\"),
                None => inner.to_owned(),
            };
        }
    }
    rendered.to_owned()
}

pub fn keys(point: &Metric) -> BTreeSet<String> {
    attrs(point).into_keys().collect()
}

/// A number data point's value as f64.
pub fn value(point: &Metric) -> f64 {
    let v = &point["value"];
    v["AsDouble"]
        .as_f64()
        .or_else(|| v["AsInt"].as_f64())
        .unwrap_or(f64::NAN)
}

/// Points of `metric` whose attributes include all of `want`.
pub fn matching(metric: &Metric, want: &[(&str, &str)]) -> Vec<Metric> {
    points(metric)
        .into_iter()
        .filter(|p| {
            let a = attrs(p);
            want.iter()
                .all(|(k, v)| a.get(*k).map(String::as_str) == Some(*v))
        })
        .collect()
}

/// Sum of the values of number points matching `want`.
pub fn total(metric: &Metric, want: &[(&str, &str)]) -> f64 {
    matching(metric, want).iter().map(value).sum()
}

/// Histogram totals over the points matching `want`: (count, sum, merged bucket counts,
/// bounds).
pub fn histogram(metric: &Metric, want: &[(&str, &str)]) -> (u64, f64, Vec<u64>, Vec<f64>) {
    let mut count = 0;
    let mut sum = 0.0;
    let mut buckets: Vec<u64> = Vec::new();
    let mut bounds = Vec::new();
    for p in matching(metric, want) {
        count += p["count"].as_u64().unwrap_or(0);
        sum += p["sum"].as_f64().unwrap_or(0.0);
        let b: Vec<u64> = p["bucket_counts"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_u64().unwrap_or(0)).collect())
            .unwrap_or_default();
        if buckets.is_empty() {
            buckets = vec![0; b.len()];
        }
        for (acc, n) in buckets.iter_mut().zip(b) {
            *acc += n;
        }
        bounds = p["explicit_bounds"]
            .as_array()
            .map(|a| a.iter().map(|v| v.as_f64().unwrap_or(f64::NAN)).collect())
            .unwrap_or_default();
    }
    (count, sum, buckets, bounds)
}

/// The `q` quantile estimated from bucket counts the way Prometheus' `histogram_quantile`
/// does: linear interpolation inside the bucket that holds the rank.
pub fn quantile(q: f64, buckets: &[u64], bounds: &[f64]) -> f64 {
    let total: u64 = buckets.iter().sum();
    if total == 0 {
        return f64::NAN;
    }
    let rank = q * total as f64;
    let mut seen = 0u64;
    for (i, &n) in buckets.iter().enumerate() {
        if n > 0 && (seen + n) as f64 >= rank {
            let lower = if i == 0 { 0.0 } else { bounds[i - 1] };
            let Some(&upper) = bounds.get(i) else {
                // The +Inf bucket: Prometheus answers with the highest finite bound.
                return lower;
            };
            return lower + (upper - lower) * (rank - seen as f64) / n as f64;
        }
        seen += n;
    }
    bounds.last().copied().unwrap_or(f64::NAN)
}

/// Distinct `tenant.id` values across every data point of every metric.
pub fn tenant_ids(metrics: &BTreeMap<String, Metric>) -> BTreeSet<String> {
    metrics
        .values()
        .flat_map(points)
        .filter_map(|p| attrs(&p).get("tenant.id").cloned())
        .collect()
}
