//! End to end with real processes: the tail sampling of the shipped
//! `collector-config/otel-collector.yaml` (keep-errors, keep-slow ≥ 2.5 s, 10 % of the rest) under
//! a noisy neighbour. 50 tenants send through `examples/rag_service` → the Collector → Jaeger v2:
//! one loud tenant 1,000 fast successes, each of the 49 small ones 10 fast successes and 2
//! failures (`fail=true`). Jaeger's query API must then hold every one of the 98 failures, each
//! under its own tenant, while the loud tenant's successes are thinned to about a tenth.
//!
//! The test waits for the collector to have decided on every trace it sent (its own
//! `otelcol_processor_tail_sampling_*` metrics) and for Jaeger to hold every span the collector
//! kept, so the counts are final, not a snapshot of traces still in flight.
//!
//! The binaries come from `.ci/build-stack.sh`; without them the test fails.
//! `TENANT_OTEL_SKIP_STACK=1` skips it (quick local runs).

mod stack_support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use stack_support::{http_get, poll, query, sample_sum, stack_bins, Stack};

const LOUD: &str = "ts-loud";
const LOUD_SUCCESSES: usize = 1000;
const SMALL_TENANTS: usize = 49;
const SMALL_SUCCESSES: usize = 10;
const SMALL_FAILURES: usize = 2;
/// Concurrent callers: enough to send the ~1,600 requests in seconds on two cores.
const CALLERS: usize = 4;
/// Each request makes a server span and three children (retrieval, llm.generate, and the LLM
/// call's `chat` span); a failed LLM call records no `chat` span.
const SPANS_PER_TRACE: usize = 4;

/// True when Jaeger holds every span of `trace`: four, or three when the query failed.
fn whole(trace: &Value) -> bool {
    let spans = trace["spans"].as_array().map_or(&[][..], Vec::as_slice);
    let failed = spans.iter().any(|s| {
        s["operationName"] == "POST /query" && tag(s, "error") == Some(&Value::Bool(true))
    });
    spans.len() == SPANS_PER_TRACE - usize::from(failed)
}

fn small(i: usize) -> String {
    format!("ts-small-{i:02}")
}

/// Every request of the test, `(tenant, fail)`, interleaved so the loud tenant's traffic
/// surrounds the small tenants' failures instead of coming before or after them.
fn requests() -> Vec<(String, bool)> {
    let mut small_requests = Vec::new();
    for round in 0..SMALL_SUCCESSES + SMALL_FAILURES {
        for i in 0..SMALL_TENANTS {
            small_requests.push((small(i), round % 6 == 5));
        }
    }
    let mut all = Vec::new();
    let mut small_iter = small_requests.into_iter();
    for n in 0..LOUD_SUCCESSES {
        all.push((LOUD.to_owned(), false));
        // About one small request for every two loud ones.
        if n % 2 == 0 {
            all.extend(small_iter.next());
        }
    }
    all.extend(small_iter);
    all
}

/// Per tenant, the traces Jaeger holds: (with an error, without), each checked to have all
/// its spans, all of the same tenant.
fn kept_by_tenant(traces: &[Value]) -> BTreeMap<String, (usize, usize)> {
    let mut kept: BTreeMap<String, (usize, usize)> = BTreeMap::new();
    for trace in traces {
        let spans = trace["spans"].as_array().unwrap();
        assert!(whole(trace), "a whole trace: {trace:#}");
        let server = spans
            .iter()
            .find(|s| s["operationName"] == "POST /query")
            .unwrap_or_else(|| panic!("no server span in {trace:#}"));
        let tenant = tag(server, "tenant.id")
            .and_then(Value::as_str)
            .unwrap_or_else(|| panic!("no tenant.id on {server:#}"))
            .to_owned();
        for s in spans {
            assert_eq!(tag(s, "tenant.id"), Some(&Value::from(tenant.as_str())));
        }
        let entry = kept.entry(tenant).or_default();
        if tag(server, "error") == Some(&Value::Bool(true)) {
            entry.0 += 1;
        } else {
            entry.1 += 1;
        }
    }
    kept
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

/// Every trace of rag-service Jaeger holds, or `None` while its API does not answer.
fn jaeger_traces(stack: &Stack) -> Option<Vec<Value>> {
    let url = format!(
        "http://{}/api/traces?service=rag-service&lookback=1h&limit=100000",
        stack.jaeger_query
    );
    let (200, body) = http_get(&url).ok()? else {
        return None;
    };
    let json: Value = serde_json::from_str(&body).expect("Jaeger answers JSON");
    Some(json["data"].as_array().cloned().unwrap_or_default())
}

#[test]
fn tail_sampling_keeps_every_small_tenants_errors_and_thins_the_loud_tenant() {
    let Some(bins) = stack_bins("stack_tail_sampling") else {
        return;
    };
    let stack = Stack::start(&bins);
    // A queue that holds every span of the test: the SDK's default (2,048) could drop some of
    // the ~4,800 spans when the callers outpace the exporter, and a dropped failure would look
    // like one the collector sampled away.
    let (service, addr) = stack.rag_service_with(&[], &[("OTEL_BSP_MAX_QUEUE_SIZE", "16384")]);

    let requests = Arc::new(requests());
    let total = requests.len();
    assert_eq!(
        total,
        LOUD_SUCCESSES + SMALL_TENANTS * (SMALL_SUCCESSES + SMALL_FAILURES)
    );
    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let callers: Vec<_> = (0..CALLERS)
        .map(|_| {
            let (requests, next, addr) = (Arc::clone(&requests), Arc::clone(&next), addr.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((tenant, fail)) = requests.get(i) else {
                    return;
                };
                // Fast: far below keep-slow's 2.5 s, so only errors and the 10 % share keep.
                let q = format!("latency_ms=1&fail={fail}");
                let expected = if *fail { 502 } else { 200 };
                assert_eq!(query(&addr, tenant, &q, None), expected, "{tenant} {q}");
            })
        })
        .collect();
    for caller in callers {
        caller.join().expect("every request answered as expected");
    }
    let sent_in = started.elapsed();

    // The collector decides on a trace decision_wait (10 s) after its first span; its metrics
    // say when it has decided on all of them, and how many it kept.
    let telemetry = format!("http://{}/metrics", stack.telemetry);
    let decided = |sampled: &str| {
        let (200, text) = http_get(&telemetry).ok()? else {
            return None;
        };
        // The collector's own metrics carry no `_total` (its exporter adds no suffixes);
        // either spelling is the same counter.
        let name = "otelcol_processor_tail_sampling_global_count_traces_sampled";
        let labels = [("sampled", sampled)];
        sample_sum(&text, name, &labels)
            .or_else(|| sample_sum(&text, &format!("{name}_total"), &labels))
    };
    let (kept, dropped) = poll(
        Duration::from_secs(120),
        &format!("the collector's decision on all {total} traces"),
        || {
            let text = http_get(&telemetry).map(|r| r.1).unwrap_or_default();
            let tail: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("tail_sampling") && !l.starts_with('#'))
                .collect();
            format!(
                "{}\n--- collector metrics\n{}",
                stack.logs(),
                tail.join("\n")
            )
        },
        || {
            let kept = decided("true").unwrap_or(0.0) as usize;
            let dropped = decided("false").unwrap_or(0.0) as usize;
            assert!(kept + dropped <= total, "{kept} + {dropped} decisions");
            (kept + dropped == total).then_some((kept, dropped))
        },
    );
    let decided_in = started.elapsed();
    // Then Jaeger holds every span of every kept trace.
    let traces = poll(
        Duration::from_secs(60),
        &format!("the {kept} kept traces in Jaeger"),
        || stack.logs(),
        || {
            let traces = jaeger_traces(&stack)?;
            let spans: usize = traces
                .iter()
                .map(|t| t["spans"].as_array().map_or(0, Vec::len))
                .sum();
            assert!(spans <= kept * SPANS_PER_TRACE, "{spans} spans in Jaeger");
            (traces.len() == kept && traces.iter().all(whole)).then_some(traces)
        },
    );
    let stored_in = started.elapsed();
    assert_eq!(traces.len(), kept);

    let by_tenant = kept_by_tenant(&traces);
    // Every failure of every small tenant, whatever the loud tenant sent around it.
    let mut small_errors = 0;
    let mut small_successes = 0;
    for i in 0..SMALL_TENANTS {
        let (errors, successes) = by_tenant.get(&small(i)).copied().unwrap_or_default();
        assert_eq!(errors, SMALL_FAILURES, "{}: {by_tenant:?}", small(i));
        assert!(successes <= SMALL_SUCCESSES);
        small_errors += errors;
        small_successes += successes;
    }
    assert_eq!(small_errors, SMALL_TENANTS * SMALL_FAILURES);
    let (loud_errors, loud_kept) = by_tenant[LOUD];
    assert_eq!(loud_errors, 0);
    // keep-share-of-the-rest hashes the (random) trace id: the loud tenant's kept successes are
    // Binomial(1000, 0.10), mean 100 and standard deviation √(1000·0.1·0.9) ≈ 9.5. 30..=200 is
    // more than 7 standard deviations either side (a false failure once in 10¹¹ runs), and
    // still fails if sampling were off (1,000 kept) or dropped everything that is not an error
    // (0 kept). The small tenants' 490 successes are Binomial(490, 0.10): mean 49, σ ≈ 6.6;
    // 10..=110 is 5.9 σ below and 9 σ above.
    assert!(
        (30..=200).contains(&loud_kept),
        "{LOUD}: {loud_kept} of {LOUD_SUCCESSES} successes kept"
    );
    assert!(
        (10..=110).contains(&small_successes),
        "small tenants: {small_successes} of {} successes kept",
        SMALL_TENANTS * SMALL_SUCCESSES
    );
    // No tenant but the 50 that sent.
    assert_eq!(by_tenant.len(), SMALL_TENANTS + 1, "{by_tenant:?}");
    assert_eq!(kept, loud_kept + small_errors + small_successes);

    println!(
        "{total} requests sent in {sent_in:.1?}; the collector decided on all by {decided_in:.1?} \
         (kept {kept}, dropped {dropped}); Jaeger held all kept spans by {stored_in:.1?}"
    );
    println!(
        "kept: {small_errors} of {} small-tenant errors, {small_successes} of {} small-tenant \
         successes, {loud_kept} of {LOUD_SUCCESSES} loud-tenant successes",
        SMALL_TENANTS * SMALL_FAILURES,
        SMALL_TENANTS * SMALL_SUCCESSES
    );
    drop(service);
}
