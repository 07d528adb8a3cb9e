//! A tonic gRPC server and a tonic client, both instrumented per tenant.
//!
//! The server (the standard health service) runs behind `TenantLayer`, which takes the tenant
//! from the `x-tenant-id` metadata key and names its spans by method
//! (`grpc.health.v1.Health/Check`). The client calls it through `ClientLayer` on its channel,
//! inside a context that holds each tenant, as a handler serving that tenant would: its CLIENT
//! spans are the parents of the server's spans, and both sides time the calls per tenant
//! (`rpc.client.call.duration`, `rpc.server.call.duration`).
//!
//! ```sh
//! cargo run --example grpc_service
//! ```
//!
//! With `OTEL_EXPORTER_OTLP_ENDPOINT` set, the spans and metrics go to that collector too.

use opentelemetry::baggage::BaggageExt;
use opentelemetry::context::FutureExt as _;
use opentelemetry::{Context, KeyValue};
use tenant_otel::{Telemetry, TenantSource};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;
use tower::Layer;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let telemetry = Telemetry::builder()
        .service_name("grpc-example")
        // A demo of ten calls: the in-process alerts would only judge its tiny numbers.
        .alerts(tenant_otel::alert::Alerts::default().manual())
        .init()?;

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<tonic_health::pb::health_server::HealthServer<
            tonic_health::server::HealthService,
        >>()
        .await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let incoming = futures_util::stream::unfold(listener, |l| async move {
        Some((l.accept().await.map(|(s, _)| s), l))
    });
    let server_layer = telemetry
        .layer_builder()
        .source(TenantSource::grpc_metadata("x-tenant-id"))
        .build();
    tokio::spawn(
        tonic::transport::Server::builder()
            .layer(server_layer)
            .add_service(health)
            .serve_with_incoming(incoming),
    );

    let channel = tonic::transport::Channel::from_shared(format!("http://{addr}"))?
        .connect()
        .await?;
    let mut client = HealthClient::new(telemetry.client_layer().layer(channel));

    for (tenant, service, calls) in [("acme", "", 5), ("globex", "", 3), ("initech", "nope", 2)] {
        // As inside a request served for `tenant`: the client span and the metric label come
        // from this context, the server's tenant from the metadata.
        let cx = Context::new().with_baggage([KeyValue::new("tenant.id", tenant)]);
        for _ in 0..calls {
            let mut req = tonic::Request::new(HealthCheckRequest {
                service: service.to_owned(),
            });
            req.metadata_mut().insert("x-tenant-id", tenant.parse()?);
            let answer = client.check(req).with_context(cx.clone()).await;
            if let Err(status) = answer {
                println!("{tenant}: {:?} {}", status.code(), status.message());
            }
        }
    }

    println!("\nper tenant, as the server saw it:");
    for tenant in ["acme", "globex", "initech"] {
        let stats = telemetry.registry().request_stats(tenant).expect("served");
        println!(
            "  {tenant:8} calls {:2}  server errors {}",
            stats.total, stats.errors
        );
    }
    telemetry.shutdown()?;
    Ok(())
}
