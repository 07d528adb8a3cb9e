//! Two services set up as the README's "Calls to other services" shows, on loopback: each
//! router wrapped in `telemetry.layer()` with its defaults, the first calling the second with
//! reqwest through `telemetry.client_layer()`. The second sees the caller's tenant and joins its
//! trace; a service facing the public never takes the tenant from a caller's baggage.

use axum::routing::get;
use axum::Router;
use opentelemetry::trace::SpanKind;
use opentelemetry_sdk::trace::SpanData;

mod common;
use common::{count_kind, serve, span_attr as attr, spans_when};
use tenant_otel::layer::Edge;

/// One service as the README sets it up: `init()`'s telemetry (spans to an exporter of the
/// test's), its router wrapped in `telemetry.layer()`, nothing else configured.
struct Service {
    telemetry: tenant_otel::Telemetry,
    spans: opentelemetry_sdk::trace::InMemorySpanExporter,
}

impl Service {
    fn new(name: &str) -> Service {
        let spans = opentelemetry_sdk::trace::InMemorySpanExporter::default();
        let telemetry = tenant_otel::Telemetry::builder()
            .service_name(name)
            .span_exporter(spans.clone())
            .without_tracing_subscriber()
            .without_globals()
            .alerts(tenant_otel::alert::Alerts::default().manual())
            .init()
            .unwrap();
        Service { telemetry, spans }
    }

    /// The finished spans, once `done` holds for them (the batch processor flushed each time).
    async fn spans_when(&self, done: impl Fn(&[SpanData]) -> bool) -> Vec<SpanData> {
        let provider = self.telemetry.tracer_provider().clone();
        spans_when(
            &self.spans,
            move || {
                let _ = provider.force_flush();
            },
            done,
        )
        .await
    }
}

/// The set-up of the README's "Calls to other services", as written: two services on
/// loopback, each with `telemetry.layer()` and its defaults; the first calls the second with a
/// reqwest client through `telemetry.client_layer()`. The second sees the tenant (from the
/// baggage the client layer sent) and joins the same trace, under the CLIENT span.
#[tokio::test(flavor = "multi_thread")]
async fn the_next_service_sees_the_same_tenant_and_trace_with_the_defaults() {
    let inventory = Service::new("inventory");
    let inventory_addr =
        serve(
            Router::new()
                .route(
                    "/stock",
                    get(|tenant: tenant_otel::Tenant| async move {
                        format!("stock of {}", tenant.id())
                    }),
                )
                .layer(inventory.telemetry.layer()),
        )
        .await;

    let orders = Service::new("orders");
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(orders.telemetry.client_layer())
        .build();
    let stock_url = format!("http://{inventory_addr}/stock");
    let orders_addr = serve(
        Router::new()
            .route(
                "/orders",
                get(move || {
                    let (client, url) = (client.clone(), stock_url.clone());
                    async move {
                        let res = client.get(url).send().await.unwrap();
                        format!("{} {}", res.status().as_u16(), res.text().await.unwrap())
                    }
                }),
            )
            .layer(orders.telemetry.layer()),
    )
    .await;

    let res = reqwest::Client::new()
        .get(format!("http://{orders_addr}/orders"))
        .header("x-tenant-id", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.text().await.unwrap(), "200 stock of acme");

    let upstream = orders
        .spans_when(|s| {
            count_kind(s, SpanKind::Server) >= 1 && count_kind(s, SpanKind::Client) >= 1
        })
        .await;
    let downstream = inventory
        .spans_when(|s| count_kind(s, SpanKind::Server) >= 1)
        .await;
    let of = |spans: &[SpanData], kind: SpanKind| {
        let found: Vec<SpanData> = spans
            .iter()
            .filter(|s| s.span_kind == kind)
            .cloned()
            .collect();
        assert_eq!(found.len(), 1, "one {kind:?} span: {spans:#?}");
        found.into_iter().next().unwrap()
    };
    let (orders_server, call) = (
        of(&upstream, SpanKind::Server),
        of(&upstream, SpanKind::Client),
    );
    let inventory_server = of(&downstream, SpanKind::Server);
    let trace = orders_server.span_context.trace_id();
    assert_eq!(call.span_context.trace_id(), trace);
    assert_eq!(call.parent_span_id, orders_server.span_context.span_id());
    assert_eq!(inventory_server.span_context.trace_id(), trace, "one trace");
    assert_eq!(
        inventory_server.parent_span_id,
        call.span_context.span_id(),
        "the next service's span is the child of the call"
    );
    assert_eq!(inventory_server.name, "GET /stock");
    for span in [&orders_server, &call, &inventory_server] {
        assert_eq!(
            attr(span, "tenant.id").as_deref(),
            Some("acme"),
            "{span:#?}"
        );
    }
    assert_eq!(
        attr(&orders_server, "tenant.source").as_deref(),
        Some("header")
    );
    assert_eq!(
        attr(&inventory_server, "tenant.source").as_deref(),
        Some("baggage")
    );
    assert_eq!(
        inventory
            .telemetry
            .registry()
            .request_stats("acme")
            .unwrap()
            .total,
        1
    );
    inventory.telemetry.shutdown().unwrap();
    orders.telemetry.shutdown().unwrap();
}

/// The same call into a service that faces the public: its layer believes no caller's trace
/// context, so the baggage cannot name the tenant, and without `x-tenant-id` the call is
/// refused. A header still works, and the caller's baggage claim is not believed over it.
#[tokio::test(flavor = "multi_thread")]
async fn a_public_service_never_takes_the_tenant_from_baggage() {
    let public = Service::new("public");
    let addr = serve(
        Router::new()
            .route(
                "/stock",
                get(|tenant: tenant_otel::Tenant| async move { tenant.id().to_string() }),
            )
            .layer(
                public
                    .telemetry
                    .layer_builder()
                    .edge(Edge::public())
                    .build(),
            ),
    )
    .await;
    let client = reqwest::Client::new();
    let res = client
        .get(format!("http://{addr}/stock"))
        .header("baggage", "tenant.id=acme")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(
        res.text().await.unwrap(),
        "missing tenant id: expected header `x-tenant-id`"
    );
    let res = client
        .get(format!("http://{addr}/stock"))
        .header("x-tenant-id", "globex")
        .header("baggage", "tenant.id=acme")
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "globex");
    // Nor does a layer that drops the callers' baggage take the tenant from it.
    let dropping = serve(
        Router::new()
            .route(
                "/stock",
                get(|tenant: tenant_otel::Tenant| async move { tenant.id().to_string() }),
            )
            .layer(
                public
                    .telemetry
                    .layer_builder()
                    .edge(Edge::internal().drop_inbound_baggage())
                    .build(),
            ),
    )
    .await;
    let res = client
        .get(format!("http://{dropping}/stock"))
        .header("baggage", "tenant.id=acme")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let spans = public
        .spans_when(|s| count_kind(s, SpanKind::Server) >= 3)
        .await;
    assert!(
        spans
            .iter()
            .all(|s| attr(s, "tenant.id").as_deref() != Some("acme")),
        "{spans:#?}"
    );
    public.telemetry.shutdown().unwrap();
}
