//! A multi-tenant RAG platform, observed per tenant.
//!
//! `POST /query` answers a question in two steps, retrieval and an LLM call, each a child span
//! of the request's server span; the tenant comes from `x-tenant-id` (400 with a JSON error
//! without a valid one). The operator's endpoints sit outside the tenant layer: `GET /tenants`
//! and `GET /tenants/{id}` (the in-process view, with the SLA and the alerts firing),
//! `GET /tenants/costs` (what each tenant's LLM calls cost today and this month, JSON or
//! `?format=csv`), `GET /metrics` (Prometheus text), `GET /health` (neither traced nor counted).
//!
//! Each LLM call is recorded on the GenAI conventions (`record_llm_call`: a `chat {model}`
//! CLIENT span, `gen_ai.client.*` metrics, `tenant.cost`), priced by the LiteLLM-format table
//! `examples/rag_prices.json` (`--prices` for another).
//!
//! Each query says how it goes, so one tenant can be made to fail or to crawl while the others
//! stay healthy: `?fail=true` makes the LLM call fail (the answer is a 502), `?latency_ms=N`
//! makes it take N ms (default 50). `--help` shows the same.
//!
//! ```sh
//! cargo run --example rag_service -- --addr 127.0.0.1:8000
//! q='{"question":"what is RAG?"}'; json='content-type: application/json'
//! curl -s -XPOST localhost:8000/query -H 'x-tenant-id: acme' -H "$json" -d "$q"
//! curl -s -XPOST 'localhost:8000/query?fail=true' -H 'x-tenant-id: globex' -H "$json" -d "$q"
//! curl -s localhost:8000/tenants/acme
//! ```
//!
//! The first line on standard output is `listening on http://ADDR`: with `--addr 127.0.0.1:0`
//! the system picks a free port, and a script reads which from that line.
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, traces, metrics and logs go to that collector too.
//! Ctrl-C or SIGTERM stops it after the requests in flight, and flushes all telemetry.

use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use clap::Parser;
use serde::{Deserialize, Serialize};
use tenant_otel::alert::AlertEvent;
use tenant_otel::cost::{PriceTable, Prices, TokenUsage};
use tenant_otel::query::{LlmCall, QueryOutcome};
use tenant_otel::view::TenantView;
use tenant_otel::{Telemetry, Tenant, TenantInfo, TenantRegistry};
use tracing::Instrument;

#[derive(Parser)]
#[command(
    about = "A multi-tenant RAG service instrumented with tenant-otel",
    after_help = KNOBS
)]
struct Args {
    /// Where to listen (port 0: any free port; the first line printed says which).
    #[arg(long, default_value = "127.0.0.1:8000")]
    addr: String,
    /// A tenant's tier, as `TENANT=TIER` (repeatable): exported in `tenant.info`, it picks the
    /// tenant's objectives and its alerts' routes.
    #[arg(long = "tier", value_parser = tenant_tier)]
    tiers: Vec<(String, String)>,
    /// A vector store to call during retrieval (`GET {URL}/search`), with the request's
    /// `traceparent` and baggage (the tenant) passed on; without one, retrieval is simulated.
    #[arg(long)]
    vector_store: Option<String>,
    /// Where a trace is shown: a Jaeger UI base URL (links `{URL}/trace/{trace_id}`) or a URL
    /// with `{trace_id}` in it; `/tenants/{id}` then links each recent failed and slowest
    /// request to its trace (default: `$TENANT_OTEL_TRACE_URL`, else ids without links).
    #[arg(long)]
    trace_url: Option<String>,
    /// Model prices in LiteLLM's JSON format (`model_prices_and_context_window.json`); the
    /// default is the small table shipped beside this example.
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/rag_prices.json"))]
    prices: std::path::PathBuf,
}

/// The HTTP client of downstream calls (`reqwest`, through `reqwest-middleware`): each call gets
/// a CLIENT span, carries the current trace and tenant, and is timed in
/// `http.client.request.duration` by tenant.
type Downstream = reqwest_middleware::ClientWithMiddleware;

/// What `--help` says after the options: the per-query knobs that make a tenant fail or slow.
const KNOBS: &str = "\
Each query says how it goes (query parameters of POST /query):
  fail=true       the LLM call fails: 502, counted as a failed query of that tenant
  latency_ms=N    the LLM call takes N ms (default 50)
  model=NAME      the model it uses (default gpt-4o-mini; priced by --prices, else _OTHER)

Make one tenant fail while another stays healthy:
  q='{\"question\":\"what is RAG?\"}'; json='content-type: application/json'
  curl -XPOST 'localhost:8000/query?fail=true' -H 'x-tenant-id: globex' -H \"$json\" -d \"$q\"
  curl -XPOST 'localhost:8000/query' -H 'x-tenant-id: acme' -H \"$json\" -d \"$q\"
  curl localhost:8000/tenants/globex      # success rate, SLA, the alerts firing

Endpoints: POST /query (needs x-tenant-id), GET /tenants, GET /tenants/{id},
GET /tenants/costs (?format=csv), GET /metrics, GET /health. OTEL_EXPORTER_OTLP_ENDPOINT set: traces, metrics and logs go there too.";

fn tenant_tier(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(t, tier)| (t.to_owned(), tier.to_owned()))
        .ok_or_else(|| format!("expected TENANT=TIER, not {s:?}"))
}

#[derive(Deserialize)]
struct Question {
    question: String,
}

#[derive(Deserialize)]
struct Knobs {
    /// How long the LLM call takes, in ms.
    #[serde(default = "default_latency")]
    latency_ms: u64,
    /// Make the LLM call fail.
    #[serde(default)]
    fail: bool,
    /// The model the LLM call uses.
    #[serde(default = "default_model")]
    model: String,
}

fn default_model() -> String {
    "gpt-4o-mini".into()
}

fn default_latency() -> u64 {
    50
}

#[derive(Serialize)]
struct Answer {
    tenant: String,
    answer: String,
    documents: u64,
    tokens: u64,
}

#[derive(Clone)]
struct App {
    telemetry: std::sync::Arc<Telemetry>,
    vector_store: Option<(String, Downstream)>,
}

async fn query(
    State(app): State<App>,
    tenant: Tenant,
    Query(knobs): Query<Knobs>,
    Json(q): Json<Question>,
) -> Response {
    let registry = app.telemetry.registry();
    let Ok(guard) = registry.start_query(&tenant) else {
        return error(StatusCode::BAD_REQUEST, "invalid tenant");
    };
    // High-cardinality details belong on spans and logs, never on metrics.
    tracing::info!(question.len = q.question.len(), "query received");
    let documents = retrieve(&q.question, app.vector_store.clone())
        .instrument(tracing::info_span!(
            "retrieval",
            rag.documents = tracing::field::Empty
        ))
        .await;
    let generated = generate(&q.question, documents, &knobs)
        .instrument(tracing::info_span!(
            "llm.generate",
            llm.model = knobs.model.as_str(),
            llm.tokens = tracing::field::Empty
        ))
        .await;
    match generated {
        Ok((answer, usage, took)) => {
            let tokens = usage.input + usage.output;
            // The call as the GenAI conventions record it, priced per tenant; its span is a
            // child of the request's server span (the layer's context, current here).
            let provider = if knobs.model.starts_with("claude") {
                "anthropic"
            } else {
                "openai"
            };
            let call = LlmCall::new(provider, &knobs.model, usage).duration(took);
            if let Err(e) = registry.record_llm_call(&tenant, &call) {
                tracing::warn!(error = %e, "LLM call not recorded");
            }
            tracing::info!(
                rag.documents = as_i64(documents),
                llm.tokens = as_i64(tokens),
                "query answered"
            );
            guard.end(
                QueryOutcome::success()
                    .docs_retrieved(documents)
                    .llm_tokens(tokens),
            );
            Json(Answer {
                tenant: tenant.id().to_string(),
                answer,
                documents,
                tokens,
            })
            .into_response()
        }
        Err(why) => {
            tracing::error!(error = why, "query failed");
            guard.end(QueryOutcome::error().docs_retrieved(documents));
            error(StatusCode::BAD_GATEWAY, why)
        }
    }
}

/// Retrieval: a vector search that finds a few documents.
async fn retrieve(question: &str, store: Option<(String, Downstream)>) -> u64 {
    match store {
        Some((url, client)) => {
            if let Err(e) = client.get(format!("{url}/search")).send().await {
                tracing::warn!(error = %e, "vector store unreachable");
            }
        }
        None => tokio::time::sleep(Duration::from_millis(5)).await,
    }
    let documents = 3 + (question.len() as u64 % 5);
    // As i64: tracing-opentelemetry 0.34 exports a u64 field as a string.
    tracing::Span::current().record("rag.documents", as_i64(documents));
    documents
}

/// The LLM call: takes `latency_ms`, fails on request; the tokens it used and how long it took.
async fn generate(
    question: &str,
    documents: u64,
    knobs: &Knobs,
) -> Result<(String, TokenUsage, Duration), &'static str> {
    let started = std::time::Instant::now();
    tokio::time::sleep(Duration::from_millis(knobs.latency_ms)).await;
    if knobs.fail {
        return Err("the LLM provider returned an error");
    }
    // The prompt grows with the documents retrieved; the answer is short.
    let usage = TokenUsage::new(
        100 + 20 * documents + question.len() as u64,
        40 + 5 * documents,
    );
    tracing::Span::current().record("llm.tokens", as_i64(usage.input + usage.output));
    Ok((
        format!("an answer from {documents} documents"),
        usage,
        started.elapsed(),
    ))
}

/// A count as an OTel integer attribute (`IntValue`), which is signed.
fn as_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// One tenant, in the field names of the platform's API.
#[derive(Serialize)]
struct TenantReport {
    tenant: String,
    total_queries: u64,
    success_count: u64,
    error_count: u64,
    success_rate: f64,
    avg_duration_seconds: f64,
    p99_duration_seconds: f64,
    requests: u64,
    sla: Vec<tenant_otel::view::SloStatus>,
    firing_alerts: Vec<AlertReport>,
    /// The tenant's last failed requests and slowest of the window, with their trace links.
    recent_failures: Vec<tenant_otel::view::TraceRef>,
    slowest: Vec<tenant_otel::view::TraceRef>,
}

#[derive(Serialize)]
struct AlertReport {
    alert: &'static str,
    slo: Option<&'static str>,
    since_seconds: f64,
    summary: String,
}

fn report(view: TenantView, alerts: Vec<AlertEvent>) -> TenantReport {
    let q = &view.queries;
    TenantReport {
        total_queries: q.total,
        success_count: q.success,
        error_count: q.errors,
        success_rate: q.success_rate,
        avg_duration_seconds: q.avg_ms / 1000.0,
        p99_duration_seconds: q.p99_ms / 1000.0,
        requests: view.requests.total,
        firing_alerts: alerts
            .into_iter()
            .map(|a| AlertReport {
                alert: a.kind.as_str(),
                slo: a.slo.map(|s| s.as_str()),
                since_seconds: a.at.saturating_duration_since(a.since).as_secs_f64(),
                summary: a.to_string(),
            })
            .collect(),
        sla: view.sla,
        recent_failures: view.recent_failures,
        slowest: view.slowest,
        tenant: view.tenant,
    }
}

async fn tenants(State(app): State<App>) -> Response {
    let view = app.telemetry.registry().view();
    let alerts = app.telemetry.alerts();
    let tenants: Vec<TenantReport> = view
        .tenants
        .into_iter()
        .map(|t| {
            let firing = alerts.firing_for(&t.tenant);
            report(t, firing)
        })
        .collect();
    Json(serde_json::json!({
        "platform": {
            "total_queries": view.platform.queries.stats.total,
            "success_rate": view.platform.queries.stats.success_rate,
            "avg_duration_seconds": view.platform.queries.stats.avg_ms / 1000.0,
            "tenants": view.platform.tenants,
        },
        "tenants": tenants,
    }))
    .into_response()
}

/// What each tenant's LLM calls cost today and this month, worst first: JSON, or CSV.
async fn costs(State(app): State<App>, Query(format): Query<Format>) -> Response {
    let costs = app.telemetry.registry().costs();
    match format.format.as_deref() {
        Some("csv") => ([("content-type", "text/csv")], costs.to_csv()).into_response(),
        _ => Json(costs).into_response(),
    }
}

#[derive(Deserialize)]
struct Format {
    format: Option<String>,
}

async fn tenant(State(app): State<App>, Path(id): Path<String>) -> Response {
    match app.telemetry.registry().tenant_view(&id) {
        Some(view) => Json(report(view, app.telemetry.alerts().firing_for(&id))).into_response(),
        None => error(StatusCode::NOT_FOUND, "no such tenant"),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    // OTEL_SERVICE_NAME wins when set.
    let service_name = std::env::var("OTEL_SERVICE_NAME").unwrap_or_else(|_| "rag-service".into());
    let telemetry = std::sync::Arc::new(
        Telemetry::builder()
            .service_name(service_name)
            .registry({
                let registry =
                    TenantRegistry::builder().prices(Prices::new(PriceTable::load(&args.prices)?));
                match &args.trace_url {
                    Some(url) => registry.trace_url(url.as_str()),
                    None => registry,
                }
            })
            .prometheus_endpoint()
            .init()?,
    );
    for (tenant, tier) in &args.tiers {
        telemetry
            .registry()
            .register_tenant(tenant, TenantInfo::new(tenant, tier, ""))?;
    }
    let vector_store = args.vector_store.map(|url| {
        let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(telemetry.client_layer())
            .build();
        (url, client)
    });
    let app = App {
        telemetry: std::sync::Arc::clone(&telemetry),
        vector_store,
    };

    let tenant_layer = telemetry.layer_builder().json_errors().build();
    let router = Router::new()
        .route("/query", post(query))
        .layer(tenant_layer)
        // Added after the layer: the operator's endpoints need no tenant and are not counted.
        .route("/tenants", get(tenants))
        .route("/tenants/costs", get(costs))
        .route("/tenants/{id}", get(tenant))
        .route("/health", get(|| async { "ok" }))
        .with_state(app)
        .merge(tenant_otel::view::prometheus_router(
            telemetry
                .prometheus_registry()
                .expect("asked for with prometheus_endpoint()")
                .clone(),
        ));

    let listener = tokio::net::TcpListener::bind(&args.addr).await?;
    // On stdout, first, for scripts and tests that asked for port 0.
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, router)
        .with_graceful_shutdown(tenant_otel::shutdown_signal())
        .await?;
    telemetry.shutdown()?;
    Ok(())
}
