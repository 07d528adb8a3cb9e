//! The layer around a tonic gRPC server: the tenant comes from request metadata (a header), and
//! a call without one gets `INVALID_ARGUMENT` the way gRPC clients expect.

use std::time::Duration;

use tenant_otel::{TenantLayer, TenantRegistry, TenantSource};
use tonic::transport::{Channel, Server};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

mod common;
#[path = "grpc/method_table.rs"]
mod method_table;

#[tokio::test]
async fn a_tonic_server_gets_tenants_and_grpc_errors() {
    let registry = TenantRegistry::builder().build();
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<tonic_health::pb::health_server::HealthServer<
            tonic_health::server::HealthService,
        >>()
        .await;

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let layer = TenantLayer::builder()
        .registry(registry.clone())
        .source(TenantSource::grpc_metadata("x-tenant-id"))
        .build();
    tokio::spawn(
        Server::builder()
            .layer(layer)
            .add_service(health)
            .serve_with_incoming(tokio_stream_from(listener)),
    );

    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .connect()
        .await
        .unwrap();
    let mut client = HealthClient::new(channel);

    let mut req = tonic::Request::new(HealthCheckRequest {
        service: String::new(),
    });
    req.metadata_mut()
        .insert("x-tenant-id", "finance".parse().unwrap());
    let res = client.check(req).await.expect("served for a tenant");
    assert_eq!(res.into_inner().status, 1, "SERVING");

    let err = client
        .check(tonic::Request::new(HealthCheckRequest {
            service: String::new(),
        }))
        .await
        .expect_err("no tenant");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(
        err.message(),
        "missing tenant id: expected gRPC metadata `x-tenant-id`"
    );

    let finance = registry.request_stats("finance").unwrap();
    assert_eq!((finance.total, finance.errors, finance.active), (1, 0, 0));
}

fn tokio_stream_from(
    listener: tokio::net::TcpListener,
) -> impl futures_util::Stream<Item = std::io::Result<tokio::net::TcpStream>> {
    futures_util::stream::unfold(listener, |listener| async move {
        let accepted = listener.accept().await.map(|(s, _)| s);
        Some((accepted, listener))
    })
}

/// A gRPC call fails with HTTP 200: the status is in `grpc-status`, in the response head
/// (trailers-only) or in the trailers after the messages.
#[tokio::test]
async fn grpc_failures_are_read_from_grpc_status() {
    use bytes::Bytes;
    use http_body::Frame;
    use http_body_util::{BodyExt, StreamBody};
    use tower::{Layer, ServiceExt};

    type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

    fn trailers(code: &'static str) -> Body {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static(code));
        let frames = futures_util::stream::iter([
            Ok(Frame::data(Bytes::from_static(b"\0\0\0\0\0"))),
            Ok(Frame::trailers(trailers)),
        ]);
        StreamBody::new(frames).boxed_unsync()
    }

    let registry = TenantRegistry::builder().build();
    let layer = TenantLayer::builder().registry(registry.clone()).build();
    let service = layer.layer(tower::service_fn(|req: http::Request<()>| async move {
        let path = req.uri().path().to_owned();
        let mut res = http::Response::new(match path.as_str() {
            "/pkg.Svc/Trailers" => trailers("14"),
            "/pkg.Svc/NotFound" => trailers("5"),
            "/pkg.Svc/Ok" => trailers("0"),
            _ => http_body_util::Empty::new().boxed_unsync(),
        });
        res.headers_mut().insert(
            "content-type",
            http::HeaderValue::from_static("application/grpc"),
        );
        if path == "/pkg.Svc/HeadersOnly" {
            res.headers_mut()
                .insert("grpc-status", http::HeaderValue::from_static("13"));
        }
        Ok::<_, std::convert::Infallible>(res)
    }));

    for method in ["HeadersOnly", "Trailers", "NotFound", "Ok"] {
        let req = http::Request::post(format!("/pkg.Svc/{method}"))
            .header("content-type", "application/grpc")
            .header("x-tenant-id", "rpc-user")
            .body(())
            .unwrap();
        let res = service.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), http::StatusCode::OK);
        res.into_body().collect().await.unwrap();
    }
    let stats = registry.request_stats("rpc-user").unwrap();
    // INTERNAL and UNAVAILABLE are the server's failures; NOT_FOUND is the caller's.
    assert_eq!((stats.total, stats.errors, stats.active), (4, 2, 0));
}

mod conventions {
    //! The RPC semantic conventions on the server span and the `rpc.server.call.duration`
    //! histogram, over a real tonic server on loopback and over a bare gRPC-shaped service.

    use std::collections::BTreeSet;
    use std::time::Duration;

    use bytes::Bytes;
    use http_body_util::BodyExt;
    use opentelemetry::trace::SpanKind;
    use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
    use opentelemetry_sdk::trace::SpanData;
    use tenant_otel::TenantLayer;
    use tonic::transport::{Channel, Server};
    use tonic_health::pb::health_client::HealthClient;
    use tonic_health::pb::HealthCheckRequest;
    use tower::{Layer, ServiceExt};

    use super::common::{pipeline, span_attr as attr, Pipeline};

    impl Pipeline {
        pub(crate) fn layer(&self) -> TenantLayer {
            TenantLayer::builder()
                .tracer_provider(&self.tracer)
                .registry(self.registry.clone())
                .build()
        }

        /// Every `rpc.server.call.duration` series: (tenant, method, status code, error type).
        fn rpc_series(&self) -> BTreeSet<(String, String, String, String)> {
            self.meter.force_flush().unwrap();
            let mut series = BTreeSet::new();
            for rm in self.metrics.get_finished_metrics().unwrap() {
                for sm in rm.scope_metrics() {
                    for m in sm.metrics() {
                        if m.name() != "rpc.server.call.duration" {
                            continue;
                        }
                        assert_eq!(m.unit(), "s");
                        let AggregatedMetrics::F64(MetricData::Histogram(h)) = m.data() else {
                            panic!("not a histogram");
                        };
                        for dp in h.data_points() {
                            let get = |k: &str| {
                                dp.attributes()
                                    .find(|kv| kv.key.as_str() == k)
                                    .map(|kv| kv.value.to_string())
                                    .unwrap_or_default()
                            };
                            assert_eq!(get("rpc.system.name"), "grpc");
                            assert_eq!(get("http.route"), "", "http.route does not apply");
                            series.insert((
                                get("tenant.id"),
                                get("rpc.method"),
                                get("rpc.response.status_code"),
                                get("error.type"),
                            ));
                        }
                    }
                }
            }
            series
        }
    }

    fn series(t: &str, m: &str, code: &str, error: &str) -> (String, String, String, String) {
        (t.into(), m.into(), code.into(), error.into())
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn a_tonic_server_span_is_named_by_its_method_with_the_rpc_attributes() {
        let p = pipeline();
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter
            .set_serving::<tonic_health::pb::health_server::HealthServer<
                tonic_health::server::HealthService,
            >>()
            .await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(
            Server::builder()
                .layer(p.layer())
                .add_service(health)
                .serve_with_incoming(super::tokio_stream_from(listener)),
        );
        let channel = Channel::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect_timeout(Duration::from_secs(5))
            .connect()
            .await
            .unwrap();
        let mut client = HealthClient::new(channel);
        let check = |service: &str| {
            let mut req = tonic::Request::new(HealthCheckRequest {
                service: service.to_owned(),
            });
            req.metadata_mut()
                .insert("x-tenant-id", "finance".parse().unwrap());
            req
        };
        client.check(check("")).await.expect("OK");
        let err = client.check(check("no.such.Service")).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::NotFound);
        client.check(check("")).await.expect("OK");

        let spans = p.spans.get_finished_spans().unwrap();
        let server: Vec<&SpanData> = spans
            .iter()
            .filter(|s| s.span_kind == SpanKind::Server)
            .collect();
        assert_eq!(server.len(), 3, "{spans:#?}");
        // The first call of a method is named once the server has answered it.
        for span in &server {
            assert_eq!(span.name, "grpc.health.v1.Health/Check");
            assert_eq!(attr(span, "rpc.system.name").as_deref(), Some("grpc"));
            assert_eq!(
                attr(span, "rpc.method").as_deref(),
                Some("grpc.health.v1.Health/Check")
            );
            assert_eq!(attr(span, "tenant.id").as_deref(), Some("finance"));
            assert_eq!(attr(span, "http.route"), None);
            assert_eq!(attr(span, "server.address").as_deref(), Some("127.0.0.1"));
            assert_eq!(attr(span, "server.port"), Some(addr.port().to_string()));
        }
        let codes: Vec<_> = server
            .iter()
            .map(|s| attr(s, "rpc.response.status_code").unwrap())
            .collect();
        assert_eq!(codes, ["OK", "NOT_FOUND", "OK"]);
        // NOT_FOUND is the caller's error: no error.type, no error status.
        assert_eq!(attr(server[1], "error.type"), None);

        assert_eq!(
            p.rpc_series(),
            BTreeSet::from([
                series("finance", "grpc.health.v1.Health/Check", "OK", ""),
                series("finance", "grpc.health.v1.Health/Check", "NOT_FOUND", ""),
            ])
        );
        // gRPC calls go to the RPC histogram only.
        let stats = p.registry.request_stats("finance").unwrap();
        assert_eq!((stats.total, stats.errors), (3, 0));
    }

    type Body = http_body_util::combinators::UnsyncBoxBody<Bytes, std::convert::Infallible>;

    /// A gRPC-shaped service: `/pkg.Svc/Ok`, `/pkg.Svc/Down` (UNAVAILABLE), `/pkg.Svc/Slow`
    /// (never answers), anything else UNIMPLEMENTED, as tonic answers unknown methods.
    fn service(
        layer: &TenantLayer,
    ) -> impl tower::Service<
        http::Request<()>,
        Response = http::Response<tenant_otel::layer::TenantBody<Body>>,
        Error = std::convert::Infallible,
        Future = impl Send,
    > + Clone {
        layer.layer(tower::service_fn(|req: http::Request<()>| async move {
            let code = match req.uri().path() {
                "/pkg.Svc/Ok" => "0",
                "/pkg.Svc/Down" => "14",
                "/pkg.Svc/Slow" => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    "0"
                }
                _ => "12",
            };
            let mut res = http::Response::new(http_body_util::Empty::new().boxed_unsync());
            let headers = res.headers_mut();
            headers.insert(
                "content-type",
                http::HeaderValue::from_static("application/grpc"),
            );
            headers.insert("grpc-status", http::HeaderValue::from_static(code));
            Ok::<_, std::convert::Infallible>(res)
        }))
    }

    fn call(path: &str) -> http::Request<()> {
        http::Request::post(path)
            .header("content-type", "application/grpc")
            .header("x-tenant-id", "rpc-user")
            .body(())
            .unwrap()
    }

    #[tokio::test]
    async fn server_faults_cancellations_and_unknown_methods() {
        let p = pipeline();
        let layer = p.layer();
        for path in ["/pkg.Svc/Ok", "/pkg.Svc/Down", "/pkg.Svc/Nope"] {
            let res = service(&layer).oneshot(call(path)).await.unwrap();
            res.into_body().collect().await.unwrap();
        }
        // A call the client gives up on.
        let slow = tokio::time::timeout(
            Duration::from_millis(50),
            service(&layer).oneshot(call("/pkg.Svc/Slow")),
        )
        .await;
        assert!(slow.is_err());

        let spans = p.spans.get_finished_spans().unwrap();
        let find = |name: &str, code: &str| {
            spans
                .iter()
                .find(|s| {
                    s.name == name && attr(s, "rpc.response.status_code").as_deref() == Some(code)
                })
                .unwrap_or_else(|| panic!("no {name} {code} in {spans:#?}"))
        };
        let down = find("pkg.Svc/Down", "UNAVAILABLE");
        assert_eq!(attr(down, "error.type").as_deref(), Some("UNAVAILABLE"));
        assert!(matches!(
            down.status,
            opentelemetry::trace::Status::Error { .. }
        ));
        assert_eq!(attr(find("pkg.Svc/Ok", "OK"), "error.type"), None);
        // An unimplemented method never names a span or a series.
        let unknown = find("_OTHER", "UNIMPLEMENTED");
        assert_eq!(attr(unknown, "rpc.method").as_deref(), Some("_OTHER"));
        // The cancelled call had not been answered: its method is not known yet either.
        let cancelled = find("_OTHER", "CANCELLED");
        assert_eq!(attr(cancelled, "error.type").as_deref(), Some("cancelled"));

        assert_eq!(
            p.rpc_series(),
            BTreeSet::from([
                series("rpc-user", "pkg.Svc/Ok", "OK", ""),
                series("rpc-user", "pkg.Svc/Down", "UNAVAILABLE", "UNAVAILABLE"),
                series("rpc-user", "_OTHER", "UNIMPLEMENTED", "UNIMPLEMENTED"),
                series("rpc-user", "_OTHER", "CANCELLED", "cancelled"),
            ])
        );
    }

    #[tokio::test]
    async fn ten_thousand_made_up_methods_add_no_series_and_no_span_name() {
        let p = pipeline();
        let layer = p.layer();
        for i in 0..10_000 {
            let res = service(&layer)
                .oneshot(call(&format!("/scan.Svc{i}/Probe{i}")))
                .await
                .unwrap();
            res.into_body().collect().await.unwrap();
        }
        let res = service(&layer).oneshot(call("/pkg.Svc/Ok")).await.unwrap();
        res.into_body().collect().await.unwrap();

        assert_eq!(
            p.rpc_series(),
            BTreeSet::from([
                series("rpc-user", "_OTHER", "UNIMPLEMENTED", "UNIMPLEMENTED"),
                series("rpc-user", "pkg.Svc/Ok", "OK", ""),
            ])
        );
        let names: BTreeSet<String> = p
            .spans
            .get_finished_spans()
            .unwrap()
            .iter()
            .map(|s| s.name.to_string())
            .collect();
        assert_eq!(
            names,
            BTreeSet::from(["_OTHER".to_owned(), "pkg.Svc/Ok".to_owned()])
        );
    }
}
