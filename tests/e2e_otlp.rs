//! `examples/rag_service` exporting over OTLP to a real collector process (`rotel-agent`, from
//! `pip install rotel`, which logs what it decodes), over gRPC and over HTTP/protobuf: one query
//! with a caller's `traceparent`, then SIGTERM; the server span and its child spans carry the
//! tenant and the caller's trace, the log record the tenant, the metrics the tenant label, and
//! the downstream call rag_service makes carries the trace and the tenant in its baggage.

mod processes;

use processes::{example, first_query, free_port, Collector, Process};

use std::process::{Command, Stdio};
use std::time::Duration;

use std::sync::{Arc, Mutex};

use axum::extract::State;
use axum::routing::get;
use axum::Router;

const TRACE_ID: &str = "5bf92f3577b34da6a3ce929d0e0e4736";

async fn export_over(protocol: &str) {
    let service_port = free_port();
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
    let store_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let store_addr = store_listener.local_addr().unwrap();
    let store_server = tokio::spawn(async move { axum::serve(store_listener, store).await });

    let mut service = Process(
        Command::new(example("rag_service"))
            .args(["--addr", &format!("127.0.0.1:{service_port}")])
            .args(["--vector-store", &format!("http://{store_addr}")])
            .env(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                format!("http://127.0.0.1:{port}"),
            )
            .env("OTEL_EXPORTER_OTLP_PROTOCOL", protocol)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    assert_eq!(first_query(service_port, "acme", TRACE_ID).await.0, 200);
    assert!(service.stop_with("TERM").await.success());
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
    store_server.abort();

    // Let the agent log the last batches, then read what it decoded.
    tokio::time::sleep(Duration::from_millis(700)).await;
    let out = agent.output();

    for expected in [
        "POST /query",
        "retrieval",
        "llm.generate",
        TRACE_ID,
        "-> tenant.id: Str(acme)",
        "query received",
        "http.server.request.duration",
        "rag.queries",
        "-> service.name: Str(rag-service)",
    ] {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rag_service_exports_to_a_real_collector_over_grpc() {
    export_over("grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rag_service_exports_to_a_real_collector_over_http_protobuf() {
    export_over("http/protobuf").await;
}
