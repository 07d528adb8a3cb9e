#![no_main]
//! Arbitrary bytes as `x-tenant-id`, once or twice.

use libfuzzer_sys::fuzz_target;
use tenant_otel::TenantSource;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&twice, value)) = data.split_first() else {
        return;
    };
    let Ok(value) = http::HeaderValue::from_bytes(value) else {
        return;
    };
    let mut req = http::Request::new(());
    req.headers_mut().append("x-tenant-id", value.clone());
    if twice % 2 == 1 {
        req.headers_mut().append("x-tenant-id", value);
    }
    common::serve(common::registry(), TenantSource::header("x-tenant-id"), req);
});
