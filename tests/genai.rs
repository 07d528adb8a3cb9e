//! LLM calls through the query API, as exported: the GenAI span and metrics by tenant and
//! model, and known token streams × a price table → the exact cost, in process and in the
//! exported `tenant.cost` counter.

use std::time::Duration;

use opentelemetry::trace::{Span, SpanKind, TraceContextExt, Tracer, TracerProvider};
use opentelemetry::{KeyValue, Value};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, Metric, MetricData, ResourceMetrics};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};
use opentelemetry_sdk::trace::{InMemorySpanExporter, SdkTracerProvider};
use tenant_otel::cost::Money;
use tenant_otel::cost::{Currency, ModelPrice, PriceTable, Prices, TokenUsage};
use tenant_otel::query::{LlmCall, LlmCostSource};
use tenant_otel::TenantRegistry;

fn attr<'a>(attrs: impl IntoIterator<Item = &'a KeyValue>, key: &str) -> Option<Value> {
    attrs
        .into_iter()
        .find(|kv| kv.key.as_str() == key)
        .map(|kv| kv.value.clone())
}

fn s(v: &str) -> Option<Value> {
    Some(Value::from(v.to_owned()))
}

fn metric<'a>(collected: &'a [ResourceMetrics], name: &str) -> Option<&'a Metric> {
    collected
        .iter()
        .flat_map(|rm| rm.scope_metrics())
        .flat_map(|sm| sm.metrics())
        .find(|m| m.name() == name)
}

/// (count, sum) of the `gen_ai.client.token.usage` point of tenant, model and token type.
fn tokens(collected: &[ResourceMetrics], tenant: &str, model: &str, kind: &str) -> (u64, u64) {
    let m = metric(collected, "gen_ai.client.token.usage").expect("token usage exported");
    assert_eq!(m.unit(), "{token}");
    let AggregatedMetrics::U64(MetricData::Histogram(h)) = m.data() else {
        panic!("gen_ai.client.token.usage is a u64 histogram");
    };
    let points: Vec<_> = h
        .data_points()
        .filter(|p| {
            attr(p.attributes(), "tenant.id") == s(tenant)
                && attr(p.attributes(), "gen_ai.request.model") == s(model)
                && attr(p.attributes(), "gen_ai.token.type") == s(kind)
        })
        .collect();
    assert_eq!(points.len(), 1, "{tenant} {model} {kind}");
    let p = points[0];
    assert_eq!(attr(p.attributes(), "gen_ai.operation.name"), s("chat"));
    (p.count(), p.sum())
}

/// The `tenant.cost` total of a tenant and model.
fn cost_cents(collected: &[ResourceMetrics], tenant: &str, model: &str) -> u64 {
    let m = metric(collected, "tenant.cost").expect("tenant.cost exported");
    assert_eq!(m.unit(), "{USD_cent}");
    let AggregatedMetrics::U64(MetricData::Sum(sum)) = m.data() else {
        panic!("tenant.cost is a u64 counter");
    };
    sum.data_points()
        .filter(|p| {
            attr(p.attributes(), "tenant.id") == s(tenant)
                && attr(p.attributes(), "gen_ai.request.model") == s(model)
                && attr(p.attributes(), "cost.source") == s("tokens")
        })
        .map(|p| p.value())
        .sum()
}

#[test]
fn known_token_streams_cost_exactly_in_process_in_the_counter_and_on_spans() {
    let spans = InMemorySpanExporter::default();
    let tracer_provider = SdkTracerProvider::builder()
        .with_simple_exporter(spans.clone())
        .build();
    opentelemetry::global::set_tracer_provider(tracer_provider.clone());
    let exporter = InMemoryMetricExporter::default();
    let meters = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let table = PriceTable::new(Currency::USD)
        .model(
            "gpt-4o",
            ModelPrice::per_million("2.50", "10.00")
                .unwrap()
                .cached_input_per_million("1.25")
                .unwrap(),
        )
        .model(
            "gpt-4o-mini",
            ModelPrice::per_million("0.15", "0.60").unwrap(),
        );
    let registry = TenantRegistry::builder()
        .meter_provider(&meters)
        .prices(Prices::new(table))
        .build();

    // acme: 1,000 calls of gpt-4o, 1,234 in (200 cached) and 567 out: $0.008505 each.
    let big = TokenUsage {
        input: 1_234,
        output: 567,
        cached_input: 200,
    };
    let parent_tracer = tracer_provider.tracer("test");
    let parent = parent_tracer.start("rag query");
    let parent_id = parent.span_context().span_id();
    let cx = opentelemetry::Context::current_with_span(parent);
    {
        let _attached = cx.clone().attach();
        for _ in 0..1_000 {
            let cost = registry
                .record_llm_call(
                    "acme",
                    &LlmCall::new("openai", "gpt-4o", big).duration(Duration::from_millis(800)),
                )
                .unwrap()
                .unwrap();
            assert_eq!(cost.amount.picos(), 8_505_000_000);
            assert_eq!(cost.source, LlmCostSource::Local);
        }
    }
    // An unpriced model: no cost, `_OTHER` in metrics.
    let none = registry
        .record_llm_call("acme", &LlmCall::new("self-hosted", "mystery-7b", big))
        .unwrap();
    assert_eq!(none, None);
    // beta: 333 calls of gpt-4o-mini at 100 in / 50 out ($0.000045 each, $0.014985 in all),
    // and one whose cost the provider reported: $2.50.
    for _ in 0..333 {
        registry
            .record_llm_call(
                "beta",
                &LlmCall::new("openai", "gpt-4o-mini", TokenUsage::new(100, 50)),
            )
            .unwrap();
    }
    let provider = registry
        .record_llm_call(
            "beta",
            &LlmCall::new("openai", "gpt-4o-mini", TokenUsage::new(100, 50))
                .provider_cost(Money::from_minor(250, Currency::USD)),
        )
        .unwrap()
        .unwrap();
    assert_eq!(provider.source, LlmCostSource::Provider);

    // In process: exact picos by model and source.
    let acme = registry.llm_costs("acme");
    let gpt4o = acme.iter().find(|m| m.model == "gpt-4o").unwrap();
    assert_eq!(
        (gpt4o.calls, gpt4o.input_tokens, gpt4o.output_tokens),
        (1_000, 1_234_000, 567_000)
    );
    assert_eq!(gpt4o.local.picos(), 8_505_000_000_000);
    assert_eq!(gpt4o.provider.picos(), 0);
    let other = acme.iter().find(|m| m.model == "_OTHER").unwrap();
    assert_eq!((other.calls, other.total().picos()), (1, 0));
    let beta = registry.llm_costs("beta");
    assert_eq!(beta.len(), 1);
    assert_eq!(beta[0].calls, 334);
    assert_eq!(beta[0].local.picos(), 14_985_000_000);
    assert_eq!(beta[0].provider.picos(), 2_500_000_000_000);
    assert_eq!(beta[0].total().minor_units(), 251);

    // Exported: whole cents as they accrued, the remainder carried (exact to the cent, never
    // ahead of the exact total).
    meters.force_flush().unwrap();
    let collected = exporter.get_finished_metrics().unwrap();
    assert_eq!(cost_cents(&collected, "acme", "gpt-4o"), 850); // $8.505
    assert_eq!(cost_cents(&collected, "beta", "gpt-4o-mini"), 251); // $2.514985
                                                                    // A series that never cost anything is not exported as a zero.
    assert_eq!(cost_cents(&collected, "acme", "_OTHER"), 0);
    let AggregatedMetrics::U64(MetricData::Sum(cost)) =
        metric(&collected, "tenant.cost").unwrap().data()
    else {
        panic!("tenant.cost is a u64 counter");
    };
    assert_eq!(cost.data_points().count(), 2);
    assert_eq!(
        tokens(&collected, "acme", "gpt-4o", "input"),
        (1_000, 1_234_000)
    );
    assert_eq!(
        tokens(&collected, "acme", "gpt-4o", "output"),
        (1_000, 567_000)
    );
    assert_eq!(tokens(&collected, "acme", "_OTHER", "input"), (1, 1_234));
    assert_eq!(
        tokens(&collected, "beta", "gpt-4o-mini", "output"),
        (334, 16_700)
    );
    let duration = metric(&collected, "gen_ai.client.operation.duration").unwrap();
    assert_eq!(duration.unit(), "s");
    let AggregatedMetrics::F64(MetricData::Histogram(h)) = duration.data() else {
        panic!("duration is an f64 histogram");
    };
    let acme_duration = h
        .data_points()
        .find(|p| {
            attr(p.attributes(), "tenant.id") == s("acme")
                && attr(p.attributes(), "gen_ai.request.model") == s("gpt-4o")
        })
        .unwrap();
    // Calls without a duration record none, and bind no empty series.
    assert_eq!(h.data_points().count(), 1);
    assert_eq!(acme_duration.count(), 1_000);
    assert!((acme_duration.sum() - 800.0).abs() < 1e-6);
    assert!(metric(&collected, "gen_ai.client.inference.usage.input_tokens").is_none());

    // Spans: one CLIENT span per call, a child of the current span.
    let finished = spans.get_finished_spans().unwrap();
    let llm: Vec<_> = finished
        .iter()
        .filter(|span| {
            // The other test's calls go through the same global tracer provider.
            span.span_kind == SpanKind::Client
                && [s("acme"), s("beta")].contains(&attr(&span.attributes, "tenant.id"))
        })
        .collect();
    assert_eq!(llm.len(), 1_000 + 1 + 334);
    let first = llm[0];
    assert_eq!(first.name, "chat gpt-4o");
    assert_eq!(first.parent_span_id, parent_id);
    let a = &first.attributes;
    assert_eq!(attr(a, "gen_ai.operation.name"), s("chat"));
    assert_eq!(attr(a, "gen_ai.provider.name"), s("openai"));
    assert_eq!(attr(a, "gen_ai.request.model"), s("gpt-4o"));
    assert_eq!(
        attr(a, "gen_ai.usage.input_tokens"),
        Some(Value::I64(1_234))
    );
    assert_eq!(attr(a, "gen_ai.usage.output_tokens"), Some(Value::I64(567)));
    assert_eq!(attr(a, "tenant.id"), s("acme"));
    assert_eq!(attr(a, "gen_ai.usage.cost.currency"), s("USD"));
    assert_eq!(attr(a, "gen_ai.usage.cost.source"), s("local"));
    let Some(Value::F64(amount)) = attr(a, "gen_ai.usage.cost.amount") else {
        panic!("cost amount is a float");
    };
    assert!((amount - 0.008505).abs() < 1e-12, "{amount}");
    let took = first.end_time.duration_since(first.start_time).unwrap();
    assert_eq!(took, Duration::from_millis(800));
    let mystery = llm.iter().find(|s| s.name == "chat mystery-7b").unwrap();
    assert_eq!(
        attr(&mystery.attributes, "gen_ai.request.model"),
        s("mystery-7b")
    );
    assert_eq!(attr(&mystery.attributes, "gen_ai.usage.cost.amount"), None);
    let last = llm.last().unwrap();
    assert_eq!(
        attr(&last.attributes, "gen_ai.usage.cost.source"),
        s("provider")
    );
    assert_eq!(
        attr(&last.attributes, "gen_ai.usage.cost.amount"),
        Some(Value::F64(2.5))
    );
}

/// Calls from several threads at once: the whole cents exported add up to the exact total,
/// however the remainders were carried between them.
#[test]
fn cents_carried_across_threads_add_up_exactly() {
    let exporter = InMemoryMetricExporter::default();
    let meters = SdkMeterProvider::builder()
        .with_reader(PeriodicReader::builder(exporter.clone()).build())
        .build();
    let table = PriceTable::new(Currency::USD).model(
        "gpt-4o-mini",
        ModelPrice::per_million("0.15", "0.60").unwrap(),
    );
    let registry = TenantRegistry::builder()
        .meter_provider(&meters)
        .prices(Prices::new(table))
        .build();
    const THREADS: u64 = 4;
    let per_thread: u64 = if std::env::var_os("TENANT_OTEL_QUICK").is_some() {
        2_500
    } else {
        25_000
    };
    std::thread::scope(|scope| {
        for _ in 0..THREADS {
            scope.spawn(|| {
                // $0.00075 a call: three quarters of a cent, never a whole one alone.
                let call = LlmCall::new("openai", "gpt-4o-mini", TokenUsage::new(1_000, 1_000));
                for _ in 0..per_thread {
                    registry.record_llm_call("zeta", &call).unwrap();
                }
            });
        }
    });
    let calls = THREADS * per_thread;
    let exact_picos = u128::from(calls) * 750_000_000;
    let costs = registry.llm_costs("zeta");
    assert_eq!(costs[0].calls, calls);
    assert_eq!(costs[0].local.picos(), exact_picos);
    meters.force_flush().unwrap();
    let collected = exporter.get_finished_metrics().unwrap();
    let exported = cost_cents(&collected, "zeta", "gpt-4o-mini");
    // 100,000 calls: $75.00 exactly (10,000 quick: $7.50).
    assert_eq!(u128::from(exported), exact_picos / 10_000_000_000);
    assert!(exported > 0);
}
