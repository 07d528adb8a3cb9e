//! From a page to the trace, end to end with real processes: `examples/rag_service` (with
//! `--trace-url` at Jaeger) → the Collector running the shipped `otel-collector.yaml` → Jaeger.
//! One tenant fails; its `/tenants/{id}` page lists the failed requests with links, and each
//! link's trace id leads, through Jaeger's API, to the failing request's server span with its
//! `tenant.id` and error status. The healthy tenant's page links nothing.
//!
//! The binaries come from `.ci/build-stack.sh` (see `tests/stack_jaeger.rs`);
//! `TENANT_OTEL_SKIP_STACK=1` skips the test.

mod stack_support;

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use stack_support::{fresh_ids, http_get, poll, query, stack_bins, Stack};

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

fn page(service: &str, tenant: &str) -> Value {
    let (status, body) = http_get(&format!("http://{service}/tenants/{tenant}")).unwrap();
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

#[test]
fn a_failing_tenants_page_links_its_traces_in_jaeger() {
    let Some(bins) = stack_bins("stack_trace_links") else {
        return;
    };
    let stack = Stack::start(&bins);
    let jaeger = format!("http://{}", stack.jaeger_query);
    let (service, addr) = stack.rag_service_with(&["--trace-url", &jaeger], &[]);

    let (healthy, failing) = ("links-acme", "links-globex");
    for _ in 0..3 {
        assert_eq!(query(&addr, healthy, "latency_ms=5", None), 200);
    }
    let mut sent = BTreeSet::new();
    for _ in 0..3 {
        let (trace, caller) = fresh_ids();
        assert_eq!(
            query(&addr, failing, "fail=true", Some((&trace, &caller))),
            502
        );
        sent.insert(trace);
    }
    assert_eq!(sent.len(), 3);

    // The page of the failing tenant: its three failed requests, each linked to Jaeger.
    let globex = page(&addr, failing);
    let failures = globex["recent_failures"].as_array().unwrap();
    assert_eq!(failures.len(), 3, "{globex:#}");
    let mut linked = BTreeSet::new();
    for f in failures {
        assert_eq!(f["status"], 502, "{f}");
        let url = f["url"].as_str().unwrap();
        let id = url
            .strip_prefix(&format!("{jaeger}/trace/"))
            .unwrap_or_else(|| panic!("{url} is not a link into {jaeger}"));
        assert_eq!(f["trace_id"].as_str(), Some(id));
        linked.insert(id.to_owned());
    }
    assert_eq!(linked, sent);
    let acme = page(&addr, healthy);
    assert_eq!(acme["recent_failures"], Value::Array(vec![]), "{acme:#}");
    assert_eq!(acme["slowest"], Value::Array(vec![]), "{acme:#}");

    // Follow the newest link to Jaeger's API: the failing request's server span is there.
    let link = failures[0]["url"].as_str().unwrap();
    let api = link.replace("/trace/", "/api/traces/");
    let trace = poll(
        Duration::from_secs(90),
        &format!("{api} in Jaeger"),
        || stack.logs(),
        || match http_get(&api) {
            Ok((200, body)) => {
                let json: Value = serde_json::from_str(&body).ok()?;
                let trace = json["data"].as_array()?.first()?.clone();
                let server = trace["spans"]
                    .as_array()?
                    .iter()
                    .any(|s| s["operationName"] == "POST /query");
                server.then_some(trace)
            }
            _ => None,
        },
    );
    let id = failures[0]["trace_id"].as_str().unwrap();
    assert_eq!(trace["traceID"], id);
    let server = trace["spans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["operationName"] == "POST /query")
        .unwrap();
    assert_eq!(tag(server, "tenant.id"), Some(&Value::from(failing)));
    assert_eq!(tag(server, "error"), Some(&Value::Bool(true)), "{server:#}");
    assert_eq!(tag(server, "span.kind"), Some(&Value::from("server")));
    println!(
        "page of {failing} linked {} traces; {link} found in Jaeger with its server span (error)",
        failures.len()
    );
    drop(service);
}
