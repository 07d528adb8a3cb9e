//! Every public entry point that takes a tenant id holds to the layer's rules, and the registry's
//! outputs hold to the contract: one rule for invalid and reserved ids, a cap that bounds what
//! is counted as it says, objectives that cannot turn the SLA gauges into NaN, and no empty
//! series exported.

use std::collections::BTreeSet;
use std::time::Duration;

use opentelemetry::Value;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use tenant_otel::query::{QueryOutcome, QueryStatus, QuotaError};
use tenant_otel::slo::Objective;
use tenant_otel::tenant::InvalidTenantId;
use tenant_otel::{RegisterError, TenantId, TenantInfo, TenantRegistry, TenantRegistryBuilder};

/// A registry recording into an in-memory exporter.
struct Pipeline {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
    registry: TenantRegistry,
}

fn pipeline(configure: impl FnOnce(TenantRegistryBuilder) -> TenantRegistryBuilder) -> Pipeline {
    let exporter = InMemoryMetricExporter::default();
    let provider = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let registry = configure(TenantRegistry::builder().meter_provider(&provider)).build();
    Pipeline {
        provider,
        exporter,
        registry,
    }
}

impl Pipeline {
    /// One collection.
    fn collect(&self) -> Collected {
        self.exporter.reset();
        self.provider.force_flush().unwrap();
        Collected(self.exporter.get_finished_metrics().unwrap())
    }
}

struct Collected(Vec<ResourceMetrics>);

impl Collected {
    fn metrics(&self) -> impl Iterator<Item = &Metric> {
        self.0
            .iter()
            .flat_map(|rm| rm.scope_metrics())
            .flat_map(|sm| sm.metrics())
    }

    fn get(&self, name: &str) -> Option<&Metric> {
        self.metrics().find(|m| m.name() == name)
    }
}

fn string_attr<'a>(
    mut attrs: impl Iterator<Item = &'a opentelemetry::KeyValue>,
    key: &str,
) -> Option<String> {
    attrs
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| match &kv.value {
            Value::String(s) => s.to_string(),
            other => other.to_string(),
        })
}

/// Every `tenant.id` value on any data point.
fn tenant_labels<'a>(metrics: impl IntoIterator<Item = &'a Metric>) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in metrics {
        let mut add = |attrs: Option<String>| out.extend(attrs);
        match m.data() {
            AggregatedMetrics::F64(MetricData::Histogram(h)) => h
                .data_points()
                .for_each(|p| add(string_attr(p.attributes(), "tenant.id"))),
            AggregatedMetrics::U64(MetricData::Histogram(h)) => h
                .data_points()
                .for_each(|p| add(string_attr(p.attributes(), "tenant.id"))),
            AggregatedMetrics::U64(MetricData::Sum(s)) => s
                .data_points()
                .for_each(|p| add(string_attr(p.attributes(), "tenant.id"))),
            AggregatedMetrics::I64(MetricData::Sum(s)) => s
                .data_points()
                .for_each(|p| add(string_attr(p.attributes(), "tenant.id"))),
            AggregatedMetrics::F64(MetricData::Gauge(g)) => g
                .data_points()
                .for_each(|p| add(string_attr(p.attributes(), "tenant.id"))),
            AggregatedMetrics::U64(MetricData::Gauge(g)) => g
                .data_points()
                .for_each(|p| add(string_attr(p.attributes(), "tenant.id"))),
            _ => {}
        }
    }
    out
}

const BAD_IDS: [&str; 4] = ["has space", "a/b", "", "evil\"}\nfake_metric 1"];

#[test]
fn every_entry_point_refuses_an_invalid_id_as_the_layer_does() {
    let ten_kb = "x".repeat(10 * 1024);
    let p = pipeline(|b| b.max_tenants(10));
    let r = &p.registry;
    for bad in BAD_IDS.iter().copied().chain([ten_kb.as_str()]) {
        let layer_says = TenantId::parse(bad).unwrap_err();
        assert_eq!(r.resolve(bad).unwrap_err(), layer_says, "{bad:?}");
        assert_eq!(
            r.register(bad).unwrap_err(),
            RegisterError::Invalid(layer_says.clone())
        );
        assert_eq!(
            r.register_tenant(bad, TenantInfo::default()).unwrap_err(),
            RegisterError::Invalid(layer_says.clone())
        );
        assert_eq!(r.start_query(bad).unwrap_err(), layer_says);
        assert_eq!(
            r.track_query(bad, QueryStatus::Success, Duration::ZERO, 1, 1)
                .unwrap_err(),
            layer_says
        );
        assert_eq!(
            r.update_quota_usage(bad, "tokens", 50.0).unwrap_err(),
            QuotaError::InvalidTenant(layer_says.clone())
        );
    }
    // A flood of invalid ids takes no slot from the real tenants.
    for i in 0..2000 {
        let _ = r.resolve(&format!("bad id {i}"));
        let _ = r.start_query(format!("bad/{i}").as_str());
    }
    assert!(r.is_empty());
    let layer = tenant_otel::TenantLayer::builder()
        .registry(r.clone())
        .without_spans()
        .build();
    for i in 0..10 {
        let id = format!("real-{i}");
        assert_eq!(r.resolve(&id).unwrap().metric_label(), id, "a slot is free");
        serve(&layer, &id, 200);
    }
    r.start_query("real-0")
        .unwrap()
        .end(QueryOutcome::success());

    let labels = tenant_labels(p.collect().metrics());
    let expected: BTreeSet<String> = (0..10).map(|i| format!("real-{i}")).collect();
    assert_eq!(labels, expected, "no invalid id reached a label");
    assert!(r
        .view()
        .tenants
        .iter()
        .all(|t| t.tenant.starts_with("real-")));
}

#[test]
fn reserved_ids_are_refused_everywhere_with_one_error() {
    let p = pipeline(|b| b);
    let r = &p.registry;
    for reserved in ["__overflow__", "__unknown__"] {
        assert_eq!(r.resolve(reserved).unwrap_err(), InvalidTenantId::Reserved);
        assert_eq!(
            r.register(reserved).unwrap_err(),
            RegisterError::Invalid(InvalidTenantId::Reserved)
        );
        assert_eq!(
            r.register_tenant(reserved, TenantInfo::new("x", "premium", "eu"))
                .unwrap_err(),
            RegisterError::Invalid(InvalidTenantId::Reserved)
        );
        assert_eq!(
            r.start_query(reserved).unwrap_err(),
            InvalidTenantId::Reserved
        );
        assert_eq!(
            r.track_query(reserved, QueryStatus::Error, Duration::ZERO, 0, 0)
                .unwrap_err(),
            InvalidTenantId::Reserved
        );
        assert_eq!(
            r.update_quota_usage(reserved, "tokens", 99.0).unwrap_err(),
            QuotaError::InvalidTenant(InvalidTenantId::Reserved)
        );
    }
    assert_eq!(r.overflowed_requests(), 0);
    let metrics = p.collect();
    assert!(
        tenant_labels(metrics.metrics()).is_empty(),
        "nothing written into the shared series: {:?}",
        tenant_labels(metrics.metrics())
    );
    assert!(metrics.get("tenant.cardinality.overflow").is_none());
}

#[test]
fn an_allowlist_longer_than_the_cap_raises_the_cap() {
    let allowed = ["a", "b", "c", "d", "e"].map(|id| TenantId::parse(id).unwrap());
    let p = pipeline(|b| b.max_tenants(3).allowlist(allowed.clone()));
    let r = &p.registry;
    assert_eq!(r.max_tenants(), 5);
    for id in &allowed {
        assert_eq!(r.resolve(id.as_str()).unwrap().metric_label(), id.as_str());
    }
    assert_eq!(r.resolve("f").unwrap().metric_label(), "__overflow__");
    assert_eq!(r.overflowed_requests(), 1);
    assert_eq!(r.register("g").unwrap_err(), RegisterError::CapReached);
}

#[test]
fn only_requests_count_as_overflowed_requests() {
    let p = pipeline(|b| b.max_tenants(1));
    let r = &p.registry;
    r.resolve("first").unwrap();
    // Past the cap: a query, a one-shot query and a quota update share `__overflow__`...
    r.start_query("q").unwrap().end(QueryOutcome::success());
    r.track_query("t", QueryStatus::Success, Duration::from_millis(3), 1, 1)
        .unwrap();
    r.update_quota_usage("u", "tokens", 10.0).unwrap();
    assert_eq!(r.tenant_view("__overflow__").unwrap().queries.total, 2);
    // ... but only requests count as requests.
    assert_eq!(r.overflowed_requests(), 0);
    assert!(p.collect().get("tenant.cardinality.overflow").is_none());
    assert_eq!(r.resolve("request").unwrap().metric_label(), "__overflow__");
    assert_eq!(r.overflowed_requests(), 1);
    let metrics = p.collect();
    let counter = metrics.get("tenant.cardinality.overflow").expect("counted");
    let AggregatedMetrics::U64(MetricData::Sum(sum)) = counter.data() else {
        panic!("a u64 counter: {counter:?}");
    };
    let total: u64 = sum.data_points().map(|p| p.value()).sum();
    assert_eq!(total, 1);
}

#[test]
fn objectives_outside_zero_to_one_are_refused_and_gauges_stay_finite() {
    for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0, 1.0, 1.5] {
        assert!(Objective::new(bad).is_err(), "{bad}");
    }
    let strict = Objective::new(0.999_999).unwrap();
    let p = pipeline(|b| b.objective("platinum", strict));
    let r = &p.registry;
    r.register_tenant("acme", TenantInfo::new("Acme", "platinum", "eu"))
        .unwrap();
    r.register_tenant("initech", TenantInfo::new("Initech", "free", "us"))
        .unwrap();
    // The SLA counts HTTP requests.
    let layer = tenant_otel::TenantLayer::builder()
        .registry(r.clone())
        .without_spans()
        .build();
    serve(&layer, "acme", 500);
    serve(&layer, "acme", 200);
    serve(&layer, "initech", 200);

    let metrics = p.collect();
    let mut seen = 0;
    for name in ["tenant.sla.burn_rate", "tenant.sla.error_budget.remaining"] {
        let m = metrics
            .get(name)
            .unwrap_or_else(|| panic!("{name} exported"));
        let AggregatedMetrics::F64(MetricData::Gauge(g)) = m.data() else {
            panic!("{name}: an f64 gauge");
        };
        for point in g.data_points() {
            assert!(point.value().is_finite(), "{name}: {}", point.value());
            seen += 1;
        }
    }
    assert!(seen >= 4, "both tenants report both gauges: {seen}");
}

/// One request with status `status` through `layer`, to its end.
fn serve(layer: &tenant_otel::TenantLayer, tenant: &str, status: u16) {
    use futures_util::FutureExt;
    use tower::{service_fn, Layer, ServiceExt};

    let service = layer.layer(service_fn(move |_req: http::Request<()>| async move {
        let res = http::Response::builder()
            .status(status)
            .body(http_body_util::Empty::<axum::body::Bytes>::new())
            .unwrap();
        Ok::<_, std::convert::Infallible>(res)
    }));
    let req = http::Request::builder()
        .header("x-tenant-id", tenant)
        .body(())
        .unwrap();
    let res = service.oneshot(req).now_or_never().unwrap().unwrap();
    assert_eq!(res.status().as_u16(), status);
}

#[test]
fn a_series_that_recorded_nothing_exports_no_point() {
    let p = pipeline(|b| b);
    let r = &p.registry;
    r.start_query("acme").unwrap().end(QueryOutcome::success());
    r.track_query(
        "initech",
        QueryStatus::Error,
        Duration::from_millis(8),
        0,
        0,
    )
    .unwrap();
    let metrics = p.collect();

    let durations = metrics.get("rag.query.duration").expect("exported");
    let AggregatedMetrics::F64(MetricData::Histogram(h)) = durations.data() else {
        panic!("an f64 histogram");
    };
    let mut series = BTreeSet::new();
    for point in h.data_points() {
        assert!(point.count() > 0, "an empty point: {point:?}");
        assert!(point.min().is_some_and(f64::is_finite));
        assert!(point.max().is_some_and(f64::is_finite));
        series.insert((
            string_attr(point.attributes(), "tenant.id").unwrap(),
            string_attr(point.attributes(), "status").unwrap(),
        ));
    }
    let expected: BTreeSet<_> = [
        ("acme".to_owned(), "success".to_owned()),
        ("initech".to_owned(), "error".to_owned()),
    ]
    .into();
    assert_eq!(series, expected, "only the series that recorded");

    // No documents or tokens reported by `acme`: none of its series for them either.
    for name in ["rag.docs_retrieved", "rag.llm.tokens"] {
        if let Some(m) = metrics.get(name) {
            assert!(
                !tenant_labels([m]).contains("acme"),
                "{name} has an empty acme series"
            );
        }
    }
}
