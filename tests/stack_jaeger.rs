//! End to end with real processes: `examples/rag_service` → the Collector running the shipped
//! `collector-config/otel-collector.yaml` unmodified (addresses through its environment
//! variables) → Jaeger v2. Jaeger's query API finds each trace by its `tenant.id` tag, with the
//! server span, the retrieval and LLM child spans, and the caller's `traceparent` as parent.
//!
//! The binaries come from `.ci/build-stack.sh` (`$TENANT_OTEL_STACK_BIN`, default its cache);
//! without them the test fails. `TENANT_OTEL_SKIP_STACK=1` skips it (quick local runs).

mod stack_support;

use std::time::Duration;

use serde_json::Value;
use stack_support::{fresh_ids, http_get, poll, query, stack_bins, url_encode, Stack};

/// The traces Jaeger holds for `tenant`, found by the `tenant.id` tag.
fn traces_of(stack: &Stack, tenant: &str) -> Vec<Value> {
    let tags = url_encode(&format!(r#"{{"tenant.id":"{tenant}"}}"#));
    let url = format!(
        "http://{}/api/traces?service=rag-service&tags={tags}&lookback=1h&limit=20",
        stack.jaeger_query
    );
    match http_get(&url) {
        Ok((200, body)) => {
            let json: Value = serde_json::from_str(&body).expect("Jaeger answers JSON");
            json["data"].as_array().cloned().unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

fn span<'a>(trace: &'a Value, name: &str) -> &'a Value {
    trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operationName"] == name)
        .unwrap_or_else(|| panic!("no {name:?} span in {trace:#}"))
}

/// The (trace id, span id) of each CHILD_OF reference of `span`.
fn parents(span: &Value) -> Vec<(String, String)> {
    span["references"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["refType"] == "CHILD_OF")
        .map(|r| {
            (
                r["traceID"].as_str().unwrap().to_owned(),
                r["spanID"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Waits until Jaeger has the trace `trace_id` of `tenant` with its three spans (the collector's
/// tail sampling decides 10 s after a trace's first span), and returns every trace of `tenant`.
fn wait_for_trace(stack: &Stack, tenant: &str, trace_id: &str) -> Vec<Value> {
    poll(
        Duration::from_secs(90),
        &format!("trace {trace_id} of {tenant} in Jaeger"),
        || stack.logs(),
        || {
            let traces = traces_of(stack, tenant);
            let complete = traces.iter().any(|t| {
                t["traceID"] == trace_id && t["spans"].as_array().map_or(0, Vec::len) >= 3
            });
            complete.then_some(traces)
        },
    )
}

#[test]
fn rag_service_traces_reach_jaeger_by_tenant_through_the_shipped_collector_config() {
    let Some(bins) = stack_bins("stack_jaeger") else {
        return;
    };
    let stack = Stack::start(&bins);
    let (service, addr) = stack.rag_service();

    // A slow success (kept by the config's keep-slow policy, 2.5 s) and a failure (keep-errors),
    // each in a trace the caller started; neither depends on the 10 % probabilistic share.
    let (slow_trace, caller_span) = fresh_ids();
    let (failed_trace, failed_caller) = fresh_ids();
    assert_ne!(slow_trace, failed_trace);
    let (slow_tenant, failing_tenant) = ("stack-acme", "stack-globex");
    assert_eq!(
        query(
            &addr,
            slow_tenant,
            "latency_ms=2600",
            Some((&slow_trace, &caller_span))
        ),
        200
    );
    assert_eq!(
        query(
            &addr,
            failing_tenant,
            "fail=true",
            Some((&failed_trace, &failed_caller))
        ),
        502
    );

    let traces = wait_for_trace(&stack, slow_tenant, &slow_trace);
    // The tenant's tag finds its trace and nothing of the other tenant.
    assert_eq!(traces.len(), 1, "{slow_tenant} has one trace: {traces:#?}");
    let trace = &traces[0];
    let spans = trace["spans"].as_array().unwrap();
    assert_eq!(
        spans.len(),
        4,
        "server, retrieval, llm.generate, chat gpt-4o-mini: {trace:#}"
    );
    let server = span(trace, "POST /query");
    let server_id = server["spanID"].as_str().unwrap().to_owned();
    assert_eq!(tag(server, "span.kind"), Some(&Value::from("server")));
    assert_eq!(tag(server, "http.route"), Some(&Value::from("/query")));
    // The caller's traceparent is the server span's parent.
    assert_eq!(
        parents(server),
        vec![(slow_trace.clone(), caller_span.clone())]
    );
    for child in ["retrieval", "llm.generate"] {
        let s = span(trace, child);
        assert_eq!(parents(s), vec![(slow_trace.clone(), server_id.clone())]);
    }
    for s in spans {
        assert_eq!(s["traceID"], slow_trace.as_str());
        assert_eq!(
            tag(s, "tenant.id"),
            Some(&Value::from(slow_tenant)),
            "{s:#}"
        );
    }
    // The LLM call on the GenAI conventions: a CLIENT span under the server span.
    let chat = span(trace, "chat gpt-4o-mini");
    assert_eq!(parents(chat), vec![(slow_trace.clone(), server_id.clone())]);
    assert_eq!(tag(chat, "span.kind"), Some(&Value::from("client")));
    assert_eq!(
        tag(chat, "gen_ai.request.model"),
        Some(&Value::from("gpt-4o-mini"))
    );
    // The LLM span took the 2.6 s asked for (Jaeger durations are in µs).
    let llm_us = span(trace, "llm.generate")["duration"].as_u64().unwrap();
    assert!((2_600_000..30_000_000).contains(&llm_us), "{llm_us} µs");

    let failed = wait_for_trace(&stack, failing_tenant, &failed_trace);
    assert_eq!(failed.len(), 1, "{failing_tenant}: {failed:#?}");
    let server = span(&failed[0], "POST /query");
    assert_eq!(tag(server, "error"), Some(&Value::Bool(true)), "{server:#}");
    assert_eq!(
        parents(server),
        vec![(failed_trace.clone(), failed_caller.clone())]
    );
    assert_eq!(tag(server, "tenant.id"), Some(&Value::from(failing_tenant)));

    println!(
        "Jaeger found trace {slow_trace} ({slow_tenant}: {}) and {failed_trace} ({failing_tenant}, error)",
        spans
            .iter()
            .map(|s| s["operationName"].as_str().unwrap())
            .collect::<Vec<_>>()
            .join(", ")
    );
    drop(service);
}
