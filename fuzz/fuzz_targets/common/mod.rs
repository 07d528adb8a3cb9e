//! One request through `TenantLayer`: whatever the input, the answer is 200 with a valid tenant
//! or 400, never a panic, and the registry stays within its cap.

use std::sync::OnceLock;

use http::{Request, StatusCode};
use http_body_util::BodyExt;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tenant_otel::{Tenant, TenantLayer, TenantRegistry, TenantSource};
use tower::{Layer, ServiceExt};

pub const CAP: usize = 16;

fn provider() -> &'static SdkTracerProvider {
    static PROVIDER: OnceLock<SdkTracerProvider> = OnceLock::new();
    PROVIDER.get_or_init(SdkTracerProvider::default)
}

pub fn serve(registry: &TenantRegistry, source: TenantSource, req: Request<()>) {
    let service = TenantLayer::builder()
        .registry(registry.clone())
        .tracer_provider(provider())
        .source(source)
        .build()
        .layer(tower::service_fn(|_req: Request<()>| async {
            let id = Tenant::current().map(|t| t.id().to_string()).unwrap_or_default();
            Ok::<_, std::convert::Infallible>(http::Response::new(id))
        }));
    let (status, body) = futures_executor::block_on(async {
        let res = service.oneshot(req).await.unwrap();
        let status = res.status();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        (status, body)
    });
    match status {
        StatusCode::OK => assert!(tenant_otel::TenantId::parse(std::str::from_utf8(&body).unwrap()).is_ok()),
        StatusCode::BAD_REQUEST => {}
        other => panic!("unexpected status {other}"),
    }
    assert!(registry.len() <= CAP);
}

pub fn registry() -> &'static TenantRegistry {
    static REGISTRY: OnceLock<TenantRegistry> = OnceLock::new();
    REGISTRY.get_or_init(|| TenantRegistry::builder().max_tenants(CAP).build())
}
