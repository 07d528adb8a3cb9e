#![no_main]
//! Arbitrary bytes as the W3C `baggage` header, with the tenant taken from baggage.

use libfuzzer_sys::fuzz_target;
use tenant_otel::TenantSource;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(value) = http::HeaderValue::from_bytes(data) else {
        return;
    };
    let mut req = http::Request::new(());
    req.headers_mut().insert("baggage", value);
    common::serve(common::registry(), TenantSource::baggage(), req);
});
