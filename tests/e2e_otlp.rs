//! `examples/rag_service` exporting over OTLP to a real collector process (`rotel-agent`, which
//! logs what it decodes), over gRPC and over HTTP/protobuf: one query with a caller's
//! `traceparent`, then SIGTERM; the server span and its child spans carry the tenant and the
//! caller's trace, the log records the tenant and the time they were made, counts arrive as
//! integers, the metrics carry the tenant label, and the downstream call rag_service makes
//! carries the trace and the tenant in its baggage.

mod common;
mod processes;

use processes::{first_query, rag_service, sections, Collector};

use std::time::{Duration, SystemTime};

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::Router;

const TRACE_ID: &str = "5bf92f3577b34da6a3ce929d0e0e4736";

async fn export_over(protocol: &str) {
    let agent = Collector::start();
    let port = if protocol == "grpc" {
        agent.grpc_port
    } else {
        agent.http_port
    };

    // The vector store rag_service calls: it keeps the headers it is called with.
    let seen: Arc<Mutex<Vec<http::HeaderMap>>> = Arc::default();
    let store =
        Router::new()
            .route(
                "/search",
                get(
                    |State(seen): State<Arc<Mutex<Vec<http::HeaderMap>>>>,
                     headers: http::HeaderMap| async move {
                        seen.lock().unwrap().push(headers);
                        "[]"
                    },
                ),
            )
            .with_state(Arc::clone(&seen));
    let store_addr = common::serve(store).await;

    let (mut service, addr) = rag_service(|cmd| {
        cmd.args(["--vector-store", &format!("http://{store_addr}")])
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol);
    });
    let before = SystemTime::now();
    assert_eq!(first_query(addr, "acme", TRACE_ID).await.0, 200);
    assert!(service.stop_with("TERM").await.success());
    let after = SystemTime::now();
    // The downstream call carried the trace and the tenant.
    let headers = seen
        .lock()
        .unwrap()
        .pop()
        .expect("rag_service called the vector store");
    let traceparent = headers["traceparent"].to_str().unwrap();
    assert!(traceparent.contains(TRACE_ID), "{traceparent}");
    let baggage = headers["baggage"].to_str().unwrap();
    assert!(baggage.contains("tenant.id=acme"), "{baggage}");

    // The service flushed everything before it exited; the agent logs it as it decodes it.
    let expected = [
        "POST /query",
        "retrieval",
        "llm.generate",
        TRACE_ID,
        "-> tenant.id: Str(acme)",
        "query received",
        "query answered",
        "http.server.request.duration",
        "rag.queries",
        "-> service.name: Str(rag-service)",
        // The LLM call on the GenAI conventions, priced by the table beside the example.
        "chat gpt-4o-mini",
        "-> gen_ai.request.model: Str(gpt-4o-mini)",
        "-> gen_ai.usage.cost.source: Str(local)",
        "gen_ai.client.token.usage",
        "gen_ai.client.operation.duration",
    ];
    agent.wait_for(Duration::from_secs(20), |out| {
        expected.iter().all(|e| out.contains(e))
    });
    let out = agent.output();

    for expected in expected {
        assert!(
            out.contains(expected),
            "{protocol}: no {expected:?} in\n{out}"
        );
    }
    // The server span and both child spans carry the tenant, and so do the log record and
    // the metrics: many times over, never zero.
    assert!(
        out.matches("-> tenant.id: Str(acme)").count() >= 5,
        "{protocol}:\n{out}"
    );

    // Counts are integers, on the spans and on the log record alike.
    for key in ["rag.documents", "llm.tokens"] {
        let on_spans = sections(&out, "ResourceSpans");
        let on_logs = sections(&out, "ResourceLog");
        for (signal, text) in [("span", &on_spans), ("log", &on_logs)] {
            let n = integer_attribute(text, key)
                .unwrap_or_else(|| panic!("{protocol}: no integer {key} on a {signal}:\n{text}"));
            assert!((1..=10_000).contains(&n), "{protocol}: {key}={n}");
        }
    }
    let on_spans = sections(&out, "ResourceSpans");
    for key in ["gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens"] {
        let n = integer_attribute(&on_spans, key)
            .unwrap_or_else(|| panic!("{protocol}: no integer {key} on a span:\n{on_spans}"));
        assert!((1..=10_000).contains(&n), "{protocol}: {key}={n}");
    }
    // Every log record says when it was made: between the query and the end of the service.
    let logs = sections(&out, "ResourceLog");
    let times = log_timestamps(&logs);
    assert!(
        times.len() >= 2,
        "{protocol}: the records' times in\n{logs}"
    );
    let since_epoch = |t: SystemTime| t.duration_since(SystemTime::UNIX_EPOCH).unwrap();
    let (lo, hi) = (
        since_epoch(before) - Duration::from_secs(1),
        since_epoch(after) + Duration::from_secs(1),
    );
    for t in times {
        assert!(
            t >= lo && t <= hi,
            "{protocol}: a record made at {t:?} since the epoch, not within [{lo:?}, {hi:?}]:\n{logs}"
        );
    }
}

/// The value of `-> KEY: Int(N)` in the agent's log, if the key is there as an integer.
fn integer_attribute(text: &str, key: &str) -> Option<i64> {
    let marker = format!("-> {key}: Int(");
    let start = text.find(&marker)? + marker.len();
    let rest = &text[start..];
    rest[..rest.find(')')?].parse().ok()
}

/// The event time of each log record in the agent's log, as time since the epoch.
fn log_timestamps(logs: &str) -> Vec<Duration> {
    logs.lines()
        .filter_map(|l| l.trim().strip_prefix("Timestamp: "))
        .map(|t| {
            // Nanoseconds since the epoch, as the agent prints them.
            let nanos: u64 = t
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("a timestamp? {t:?}"));
            Duration::from_nanos(nanos)
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rag_service_exports_to_a_real_collector_over_grpc() {
    export_over("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rag_service_exports_to_a_real_collector_over_http_protobuf() {
    export_over("http/protobuf").await;
}
