//! Outgoing calls through `ClientLayer`: one trace from an HTTP server span through a CLIENT
//! span (hyper, reqwest) to the server span of a second service, and from a tonic client to a
//! tonic server; `tenant.id` on each, parents right, client durations labelled by tenant.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::routing::get;
use axum::Router;
use http_body_util::{BodyExt, Empty};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::context::FutureExt as _;
use opentelemetry::trace::SpanKind;
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::trace::SpanData;
use tenant_otel::{ClientLayer, TenantLayer, TenantSource};
use tower::Layer;

mod common;
use common::{count_kind, pipeline, serve, span_attr as attr, spans_when, Pipeline};

impl Pipeline {
    fn server_layer(&self, source: TenantSource) -> TenantLayer {
        TenantLayer::builder()
            .tracer_provider(&self.tracer)
            .registry(self.registry.clone())
            .source(source)
            .build()
    }

    fn client_layer(&self) -> ClientLayer {
        ClientLayer::builder()
            .tracer_provider(&self.tracer)
            .registry(self.registry.clone())
            .build()
    }

    /// Data points of a histogram: attributes (sorted) to count.
    fn histogram(&self, name: &str) -> Vec<(BTreeMap<String, String>, u64)> {
        self.meter.force_flush().unwrap();
        let mut points = Vec::new();
        // Cumulative: the last export holds everything.
        let exports = self.metrics.get_finished_metrics().unwrap();
        for rm in exports.iter().rev().take(1) {
            for sm in rm.scope_metrics() {
                for m in sm.metrics().filter(|m| m.name() == name) {
                    assert_eq!(m.unit(), "s");
                    let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() else {
                        panic!("{name} is not a histogram");
                    };
                    for dp in h.data_points() {
                        let attrs = dp
                            .attributes()
                            .map(|kv| (kv.key.to_string(), kv.value.to_string()))
                            .collect();
                        points.push((attrs, dp.count()));
                    }
                }
            }
        }
        points
    }
}

type Hyper = tenant_otel::client::ClientService<
    hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Empty<bytes::Bytes>,
    >,
>;

#[derive(Clone)]
struct Downstream {
    url: String,
    hyper: Hyper,
    reqwest: reqwest_middleware::ClientWithMiddleware,
}

/// Service A's handler: calls B once with hyper and once with reqwest.
async fn call_b(State(down): State<Downstream>) -> String {
    use tower::ServiceExt;
    let req = http::Request::get(format!("{}/b", down.url))
        .body(Empty::new())
        .unwrap();
    let res = down.hyper.clone().oneshot(req).await.unwrap();
    let hyper_body = res.into_body().collect().await.unwrap().to_bytes();
    let res = down
        .reqwest
        .get(format!("{}/b?token=secret", down.url))
        .send()
        .await
        .unwrap();
    let reqwest_body = res.text().await.unwrap();
    format!("{}+{}", String::from_utf8_lossy(&hyper_body), reqwest_body)
}

#[tokio::test(flavor = "multi_thread")]
async fn http_server_to_client_span_to_the_next_service() {
    let p = pipeline();
    // B trusts its callers' baggage for the tenant: it is an internal service.
    let b = serve(
        Router::new()
            .route(
                "/b",
                get(|| async { tenant_otel::current_tenant().unwrap().to_string() }),
            )
            .layer(p.server_layer(TenantSource::baggage())),
    )
    .await;
    let client_layer = p.client_layer();
    let down = Downstream {
        url: format!("http://{b}"),
        hyper: client_layer.layer(
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http(),
        ),
        reqwest: reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
            .with(client_layer.clone())
            .build(),
    };
    let a = serve(
        Router::new()
            .route("/a", get(call_b))
            .with_state(down)
            .layer(p.server_layer(TenantSource::header("x-tenant-id"))),
    )
    .await;

    let res = reqwest::Client::new()
        .get(format!("http://{a}/a"))
        .header("x-tenant-id", "acme")
        .send()
        .await
        .unwrap();
    assert_eq!(res.text().await.unwrap(), "acme+acme");
    // A's server span, two CLIENT spans, B's two server spans.
    let spans = spans_when(
        &p.spans,
        || {},
        |s| count_kind(s, SpanKind::Server) >= 3 && count_kind(s, SpanKind::Client) >= 2,
    )
    .await;
    let a_server = spans
        .iter()
        .find(|s| s.span_kind == SpanKind::Server && s.name == "GET /a")
        .expect("A's server span");
    let clients: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .collect();
    assert_eq!(clients.len(), 2, "{spans:#?}");
    for client in &clients {
        assert_eq!(client.name, "GET");
        assert_eq!(client.parent_span_id, a_server.span_context.span_id());
        assert_eq!(
            client.span_context.trace_id(),
            a_server.span_context.trace_id()
        );
        assert_eq!(attr(client, "tenant.id").as_deref(), Some("acme"));
        assert_eq!(attr(client, "http.request.method").as_deref(), Some("GET"));
        assert_eq!(
            attr(client, "http.response.status_code").as_deref(),
            Some("200")
        );
        assert_eq!(attr(client, "server.address").as_deref(), Some("127.0.0.1"));
        assert_eq!(attr(client, "server.port"), Some(b.port().to_string()));
        // Never the query: it carries tokens.
        assert_eq!(
            attr(client, "url.full"),
            Some(format!("http://127.0.0.1:{}/b", b.port()))
        );
        assert_eq!(attr(client, "error.type"), None);
        // B's server span is the child of this client span.
        let b_server = spans
            .iter()
            .find(|s| {
                s.span_kind == SpanKind::Server && s.parent_span_id == client.span_context.span_id()
            })
            .unwrap_or_else(|| panic!("no server span under {client:#?}"));
        assert_eq!(b_server.name, "GET /b");
        assert_eq!(attr(b_server, "tenant.id").as_deref(), Some("acme"));
        assert_eq!(attr(b_server, "tenant.source").as_deref(), Some("baggage"));
    }

    let points = p.histogram("http.client.request.duration");
    assert_eq!(points.len(), 1, "{points:#?}");
    let (attrs, count) = &points[0];
    assert_eq!(*count, 2);
    assert_eq!(attrs["tenant.id"], "acme");
    assert_eq!(attrs["http.request.method"], "GET");
    assert_eq!(attrs["http.response.status_code"], "200");
    assert_eq!(attrs["server.address"], "127.0.0.1");
    assert!(!attrs.contains_key("url.full"), "no URL on metrics");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failing_call_is_an_error_on_the_client_span() {
    let p = pipeline();
    let b = serve(Router::new().route(
        "/missing-tenant",
        get(|| async { (http::StatusCode::NOT_FOUND, "no") }),
    ))
    .await;
    let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
        .with(p.client_layer())
        .build();
    let cx = Context::new().with_baggage([KeyValue::new("tenant.id", "globex")]);
    let status = async {
        client
            .get(format!("http://{b}/missing-tenant"))
            .send()
            .await
            .unwrap()
            .status()
    }
    .with_context(cx.clone())
    .await;
    assert_eq!(status, 404);
    // Nothing listens on port 9: a transport error.
    let refused = async { client.get("http://127.0.0.1:9/").send().await }
        .with_context(cx)
        .await;
    assert!(refused.is_err());

    let spans = p.spans.get_finished_spans().unwrap();
    let errors: Vec<_> = spans
        .iter()
        .map(|s| (attr(s, "error.type"), attr(s, "tenant.id")))
        .collect();
    assert_eq!(
        errors,
        [
            (Some("404".to_owned()), Some("globex".to_owned())),
            (
                Some("reqwest_middleware::Error".to_owned()),
                Some("globex".to_owned())
            ),
        ]
    );
    let points = p.histogram("http.client.request.duration");
    assert!(points
        .iter()
        .all(|(attrs, _)| attrs["tenant.id"] == "globex" && attrs.contains_key("error.type")));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_tonic_client_span_is_the_parent_of_the_server_span() {
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;

    let p = pipeline();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<tonic_health::pb::health_server::HealthServer<
            tonic_health::server::HealthService,
        >>()
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(p.server_layer(TenantSource::baggage()))
            .add_service(health)
            .serve_with_incoming(incoming),
    );
    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(p.client_layer().layer(channel));

    // As inside a request served for tenant `finance`.
    let cx = Context::new().with_baggage([KeyValue::new("tenant.id", "finance")]);
    let check = |service: &str| {
        tonic::Request::new(HealthCheckRequest {
            service: service.to_owned(),
        })
    };
    async { client.check(check("")).await }
        .with_context(cx.clone())
        .await
        .expect("SERVING");
    let err = async { client.check(check("nope")).await }
        .with_context(cx)
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::NotFound);
    let spans = spans_when(
        &p.spans,
        || {},
        |s| count_kind(s, SpanKind::Server) >= 2 && count_kind(s, SpanKind::Client) >= 2,
    )
    .await;
    let clients: Vec<&SpanData> = spans
        .iter()
        .filter(|s| s.span_kind == SpanKind::Client)
        .collect();
    assert_eq!(clients.len(), 2, "{spans:#?}");
    let mut codes = Vec::new();
    for client in &clients {
        assert_eq!(client.name, "grpc.health.v1.Health/Check");
        assert_eq!(attr(client, "rpc.system.name").as_deref(), Some("grpc"));
        assert_eq!(
            attr(client, "rpc.method").as_deref(),
            Some("grpc.health.v1.Health/Check")
        );
        assert_eq!(attr(client, "tenant.id").as_deref(), Some("finance"));
        codes.push(attr(client, "rpc.response.status_code").unwrap());
        let server = spans
            .iter()
            .find(|s| {
                s.span_kind == SpanKind::Server && s.parent_span_id == client.span_context.span_id()
            })
            .unwrap_or_else(|| panic!("no server span under {client:#?}"));
        assert_eq!(server.name, "grpc.health.v1.Health/Check");
        assert_eq!(attr(server, "tenant.id").as_deref(), Some("finance"));
    }
    codes.sort();
    assert_eq!(codes, ["NOT_FOUND", "OK"]);

    let mut points: Vec<_> = p
        .histogram("rpc.client.call.duration")
        .into_iter()
        .map(|(a, n)| {
            (
                a["tenant.id"].clone(),
                a["rpc.response.status_code"].clone(),
                n,
            )
        })
        .collect();
    points.sort();
    assert_eq!(
        points,
        [
            ("finance".to_owned(), "NOT_FOUND".to_owned(), 1),
            ("finance".to_owned(), "OK".to_owned(), 1)
        ]
    );
    let server_points = p.histogram("rpc.server.call.duration");
    assert_eq!(server_points.len(), 2, "{server_points:#?}");
}
