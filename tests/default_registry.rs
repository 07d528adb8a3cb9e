//! Layers built without a registry share the process-wide one: the cap on tenant labels bounds
//! the process, not each layer. In a binary of its own, since the registry is process-wide.

use std::convert::Infallible;

use http::{Request, Response, StatusCode};
use tenant_otel::{ClientLayer, TenantLayer, TenantRegistry};
use tower::{service_fn, Layer, ServiceExt};

async fn serve(layer: &TenantLayer, tenant: &str) -> StatusCode {
    let service = layer.layer(service_fn(|_req: Request<String>| async {
        Ok::<_, Infallible>(Response::new(String::new()))
    }));
    let req = Request::builder()
        .uri("/hello")
        .header("x-tenant-id", tenant)
        .body(String::new())
        .unwrap();
    service.oneshot(req).await.unwrap().status()
}

#[tokio::test]
async fn default_built_layers_share_one_cap() {
    let cap = TenantRegistry::DEFAULT_MAX_TENANTS;
    let (a, b) = (TenantLayer::new(), TenantLayer::builder().build());
    // 60% of the cap through each layer: 120% of it in the process.
    let each = cap * 6 / 10;
    for i in 0..each {
        assert_eq!(serve(&a, &format!("a-{i}")).await, StatusCode::OK);
        assert_eq!(serve(&b, &format!("b-{i}")).await, StatusCode::OK);
    }
    let (ra, rb) = (a.registry().view(), b.registry().view());
    let own = |v: &tenant_otel::view::PlatformView| v.platform.tenants;
    assert_eq!(own(&ra), cap, "one cap for both layers");
    assert_eq!(own(&rb), cap);
    let overflowed = a.registry().overflowed_requests();
    assert_eq!(overflowed, (2 * each - cap) as u64);
    assert_eq!(b.registry().overflowed_requests(), overflowed);
    // b's tenants are in a's view: one registry.
    assert!(a.registry().tenant_view("b-0").is_some());
    // The client layer records into it too.
    let _ = ClientLayer::new();
    assert_eq!(TenantRegistry::global().view().platform.tenants, cap);
}
