//! A stopped service flushes what it has: `examples/rag_service` exporting to a collector gets
//! one request, is stopped with SIGTERM (as an orchestrator stops it) or SIGINT (as Ctrl-C
//! does), and its span, child spans, log record and metrics all arrive.

mod common;
mod processes;

use std::time::Duration;

use common::attr;
use fake_opentelemetry_collector::FakeCollectorServer;
use processes::{first_query, rag_service};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

async fn stop_and_collect(signal: &str) {
    let mut collector = FakeCollectorServer::start().await.unwrap();
    let (mut service, addr) = rag_service(|cmd| {
        cmd.env("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint())
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", "grpc")
            .env("OTEL_SERVICE_NAME", "rag-service-under-test");
    });

    let (status, body) = first_query(addr, "acme", TRACE_ID).await;
    assert_eq!(status, 200);
    assert!(body.contains("\"tenant\":\"acme\""));

    let status = service.stop_with(signal).await;
    assert!(status.success(), "a clean exit after {signal}: {status}");

    // Everything was flushed before the process ended: no waiting for a periodic export.
    let spans = collector.exported_spans(3, Duration::from_secs(5)).await;
    let server = spans
        .iter()
        .find(|s| s.name == "POST /query")
        .unwrap_or_else(|| panic!("no server span in {spans:?}"));
    assert_eq!(server.trace_id, TRACE_ID, "joined the caller's trace");
    assert_eq!(
        attr(&server.attributes, "tenant.id").as_deref(),
        Some("acme")
    );
    for child in ["retrieval", "llm.generate"] {
        let span = spans
            .iter()
            .find(|s| s.name == child)
            .unwrap_or_else(|| panic!("no {child} span"));
        assert_eq!(span.trace_id, TRACE_ID);
        assert_eq!(attr(&span.attributes, "tenant.id").as_deref(), Some("acme"));
    }
    // Counts are integers on the wire, not their text.
    for (span, key) in [
        ("retrieval", "rag.documents"),
        ("llm.generate", "llm.tokens"),
    ] {
        let span = spans.iter().find(|s| s.name == span).unwrap();
        assert_integer(&span.attributes, key, span.name.as_ref());
    }
    let logs = collector.exported_logs(2, Duration::from_secs(5)).await;
    let log = logs
        .iter()
        .find(|l| {
            l.body
                .as_deref()
                .is_some_and(|b| b.contains("query received"))
        })
        .unwrap_or_else(|| panic!("no log record in {logs:?}"));
    assert_eq!(attr(&log.attributes, "tenant.id").as_deref(), Some("acme"));
    assert_eq!(log.trace_id, TRACE_ID);
    let answered = logs
        .iter()
        .find(|l| {
            l.body
                .as_deref()
                .is_some_and(|b| b.contains("query answered"))
        })
        .unwrap_or_else(|| panic!("no `query answered` record in {logs:?}"));
    for key in ["rag.documents", "llm.tokens"] {
        assert_integer(&answered.attributes, key, "query answered");
    }
    let metrics = collector.exported_metrics(1, Duration::from_secs(5)).await;
    let names: Vec<String> = metrics
        .iter()
        .flat_map(|m| m.metrics.iter().map(|m| m.name.clone()))
        .collect();
    for expected in ["http.server.request.duration", "rag.queries"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} not among {names:?}"
        );
    }
}

/// The attribute `key` arrived as an integer (`IntValue`) between 1 and 10,000: a count of
/// documents or tokens, not the text of one.
fn assert_integer(attributes: &std::collections::BTreeMap<String, String>, key: &str, of: &str) {
    let raw = attributes
        .get(key)
        .unwrap_or_else(|| panic!("no {key} on {of}: {attributes:?}"));
    assert!(raw.contains("IntValue("), "{of}: {key} is {raw}");
    let n: i64 = attr(attributes, key).unwrap().parse().unwrap();
    assert!((1..=10_000).contains(&n), "{of}: {key}={n}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_spans_logs_and_metrics() {
    stop_and_collect("TERM").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigint_flushes_spans_logs_and_metrics() {
    stop_and_collect("INT").await;
}
