#![no_main]
//! Arbitrary bytes as `traceparent` and `tracestate`, through the layer with server spans on.

use libfuzzer_sys::fuzz_target;
use tenant_otel::TenantSource;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let (traceparent, tracestate) = data.split_at(split);
    let mut req = http::Request::new(());
    req.headers_mut()
        .insert("x-tenant-id", http::HeaderValue::from_static("fuzz"));
    if let Ok(v) = http::HeaderValue::from_bytes(traceparent) {
        req.headers_mut().insert("traceparent", v);
    }
    if let Ok(v) = http::HeaderValue::from_bytes(tracestate.get(1..).unwrap_or_default()) {
        req.headers_mut().insert("tracestate", v);
    }
    common::serve(common::registry(), TenantSource::header("x-tenant-id"), req);
});
