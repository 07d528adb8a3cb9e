//! Go's reference HTTP instrumentation as a peer, both ways, with real processes: the Go program
//! of `collector-config/peers/otelhttp/` (`otelhttp` with the W3C tracecontext and baggage
//! propagators) calls `examples/rag_service` as a client, and serves as the vector store that
//! `rag_service` calls through `ClientLayer` (`--vector-store`). One request crosses both:
//!
//!   Go CLIENT span ─traceparent, baggage tenant.id─▶ rag_service SERVER span … retrieval
//!     ─▶ rag_service CLIENT span ─traceparent, baggage tenant.id─▶ Go SERVER span
//!
//! rag_service's spans are found in Jaeger through the shipped collector config; the Go spans and
//! what the Go server received come from the Go program's own output. The Go client sends the
//! tenant in baggage only (no `x-tenant-id`): rag_service's default chain trusts a caller's
//! baggage, and the server span says so with `tenant.source=baggage`.
//!
//! The binaries come from `.ci/build-stack.sh` (`otelhttp-peer` among them); without them the
//! test fails. `TENANT_OTEL_SKIP_STACK=1` skips it (quick local runs).

mod stack_support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use stack_support::{free_addr, http_get, poll, stack_bins_with, Process, Stack};

const TENANT: &str = "go-peer-tenant";

fn tag<'a>(span: &'a Value, key: &str) -> Option<&'a Value> {
    span["tags"]
        .as_array()?
        .iter()
        .find(|t| t["key"] == key)
        .map(|t| &t["value"])
}

/// The span ids of each CHILD_OF reference of `span`, with their trace ids.
fn parents(span: &Value) -> Vec<(String, String)> {
    span["references"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["refType"] == "CHILD_OF")
        .map(|r| {
            (
                r["traceID"].as_str().unwrap_or("").to_owned(),
                r["spanID"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

/// The trace id and span id of a W3C `traceparent` (`00-TRACE-SPAN-FLAGS`).
fn ids(traceparent: &str) -> (String, String) {
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {traceparent:?}");
    assert_eq!(
        (parts[1].len(), parts[2].len()),
        (32, 16),
        "{traceparent:?}"
    );
    (parts[1].to_owned(), parts[2].to_owned())
}

#[test]
fn go_otelhttp_and_rag_service_are_parent_and_child_both_ways_with_the_tenant_in_baggage() {
    let Some(bins) = stack_bins_with("stack_otelhttp", &["otelhttp-peer"]) else {
        return;
    };
    let peer = bins.join("otelhttp-peer");
    let stack = Stack::start(&bins);

    // The Go server, as rag_service's vector store.
    let go_addr = free_addr();
    let mut cmd = Command::new(&peer);
    cmd.args(["server", "-addr", &go_addr]);
    let mut go_server = Process::spawn("otelhttp-peer-server", cmd, stack.dir.path());
    go_server.wait_ready(&format!("http://{go_addr}/search"), Duration::from_secs(30));
    let (service, addr) =
        stack.rag_service_with(&["--vector-store", &format!("http://{go_addr}")], &[]);

    // The Go client. The request fails on purpose (fail=true: 502 after retrieval), so the
    // shipped tail sampling keeps its trace (keep-errors) instead of a 10 % share.
    let out = Command::new(&peer)
        .args(["client", "-tenant", TENANT, "-url"])
        .arg(format!("http://{addr}/query?fail=true&latency_ms=1"))
        .output()
        .expect("run otelhttp-peer client");
    assert!(
        out.status.success(),
        "otelhttp-peer client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let client: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&out.stdout));
    });
    assert_eq!(client["status"], 502, "{client:#}");
    assert_eq!(client["baggage"], format!("tenant.id={TENANT}"));
    let (trace_id, go_client_span) = ids(client["traceparent"].as_str().unwrap());
    // The traceparent that went over the wire names the CLIENT span the Go SDK recorded.
    let recorded = client["spans"].as_array().unwrap();
    assert!(
        recorded.iter().any(|s| s["kind"] == "client"
            && s["span_id"] == go_client_span.as_str()
            && s["trace_id"] == trace_id.as_str()),
        "{client:#}"
    );

    // What the Go server saw of this trace: rag_service's retrieval call.
    let go_seen: Value = poll(
        Duration::from_secs(30),
        "the Go server's line for the trace",
        || go_server.log(),
        || {
            go_server
                .log()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| l["trace_id"] == trace_id.as_str())
        },
    );
    assert_eq!(go_seen["tenant"], TENANT, "{go_seen:#}");
    assert!(
        go_seen["baggage"]
            .as_str()
            .unwrap()
            .contains(&format!("tenant.id={TENANT}")),
        "{go_seen:#}"
    );
    let rust_client_span = go_seen["parent_span_id"].as_str().unwrap().to_owned();
    assert_eq!(
        ids(go_seen["traceparent"].as_str().unwrap()),
        (trace_id.clone(), rust_client_span.clone())
    );

    // rag_service's spans of that trace, through the collector, in Jaeger.
    let url = format!("http://{}/api/traces/{trace_id}", stack.jaeger_query);
    let spans: Vec<Value> = poll(
        Duration::from_secs(90),
        &format!("trace {trace_id} in Jaeger with rag_service's server and client spans"),
        || stack.logs(),
        || {
            let (200, body) = http_get(&url).ok()? else {
                return None;
            };
            let json: Value = serde_json::from_str(&body).ok()?;
            let spans = json["data"][0]["spans"].as_array()?.clone();
            let kinds: Vec<&str> = spans
                .iter()
                .filter_map(|s| tag(s, "span.kind")?.as_str())
                .collect();
            (kinds.contains(&"server") && kinds.contains(&"client")).then_some(spans)
        },
    );
    let of_kind = |kind: &str| -> Vec<&Value> {
        spans
            .iter()
            .filter(|s| tag(s, "span.kind") == Some(&Value::from(kind)))
            .collect()
    };
    let (servers, clients) = (of_kind("server"), of_kind("client"));
    assert_eq!((servers.len(), clients.len()), (1, 1), "{spans:#?}");
    let (server, client_span) = (servers[0], clients[0]);

    // Go → Rust: the Go CLIENT span is the parent of rag_service's SERVER span, whose tenant
    // came from the baggage.
    assert_eq!(
        parents(server),
        vec![(trace_id.clone(), go_client_span.clone())],
        "{server:#}"
    );
    assert_eq!(tag(server, "tenant.id"), Some(&Value::from(TENANT)));
    assert_eq!(tag(server, "tenant.source"), Some(&Value::from("baggage")));
    // Rust → Go: rag_service's CLIENT span is the parent of the Go SERVER span, and carries the
    // tenant the Go server read from the baggage.
    assert_eq!(
        client_span["spanID"],
        rust_client_span.as_str(),
        "{client_span:#}"
    );
    assert_eq!(tag(client_span, "tenant.id"), Some(&Value::from(TENANT)));
    let server_id = server["spanID"].as_str().unwrap();
    let retrieval = spans
        .iter()
        .find(|s| s["operationName"] == "retrieval")
        .expect("a retrieval span");
    assert_eq!(
        parents(retrieval),
        vec![(trace_id.clone(), server_id.to_owned())]
    );
    assert_eq!(
        parents(client_span),
        vec![(
            trace_id.clone(),
            retrieval["spanID"].as_str().unwrap().to_owned()
        )]
    );

    println!(
        "trace {trace_id}: Go client span {go_client_span} → rag_service server span {server_id} \
         (tenant.source=baggage) → retrieval {} → rag_service client span {rust_client_span} → \
         Go server span {} (baggage tenant.id={})",
        retrieval["spanID"].as_str().unwrap(),
        go_seen["span_id"].as_str().unwrap(),
        go_seen["tenant"].as_str().unwrap()
    );
    drop(service);
}
