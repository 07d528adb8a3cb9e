//! The layer around a tonic gRPC server: the tenant comes from request metadata (a header), and
//! a call without one gets `INVALID_ARGUMENT` the way gRPC clients expect.

use std::time::Duration;

use tenant_otel::{TenantLayer, TenantRegistry};
use tonic::transport::{Channel, Server};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

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
    let layer = TenantLayer::builder().registry(registry.clone()).build();
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
        "missing tenant id: expected header `x-tenant-id`"
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
