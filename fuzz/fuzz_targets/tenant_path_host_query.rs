#![no_main]
//! Arbitrary text as a path segment, a subdomain and a query parameter.

use libfuzzer_sys::fuzz_target;
use tenant_otel::TenantSource;

#[path = "common/mod.rs"]
mod common;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(req) = http::Request::get(format!("/t/{text}/x")).body(()) {
        common::serve(common::registry(), TenantSource::path_segment(1), req);
    }
    if let Ok(req) = http::Request::get(format!("/?tenant={text}&x={text}")).body(()) {
        common::serve(common::registry(), TenantSource::query("tenant"), req);
    }
    if let Ok(host) = http::HeaderValue::from_str(&format!("{text}.example.com")) {
        let mut req = http::Request::new(());
        req.headers_mut().insert("host", host);
        common::serve(common::registry(), TenantSource::subdomain_of("example.com"), req);
    }
});
