//! Properties of tenant validation over arbitrary input: whatever a client sends as
//! `x-tenant-id` and `baggage`, the layer answers 200 with exactly that id or a clear 400, and
//! the registry never grows past its cap.

use std::cell::Cell;

use axum::body::Body;
use axum::routing::get;
use axum::Router;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::BodyExt;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};
use tenant_otel::{InvalidTenantId, Tenant, TenantId, TenantLayer, TenantRegistry, TenantSource};
use tower::ServiceExt;

const CASES: u32 = 256;
const CAP: usize = 8;

fn config() -> Config {
    Config {
        cases: CASES,
        // A failure prints its minimal input; the suite keeps no regression files.
        failure_persistence: None,
        ..Config::default()
    }
}

/// The documented rule, written independently of the crate: 1 to 64 bytes of `[A-Za-z0-9._-]`.
fn is_valid_id(bytes: &[u8]) -> bool {
    (1..=64).contains(&bytes.len())
        && bytes
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        // The crate's own labels are not for clients to claim.
        && bytes != b"__overflow__"
        && bytes != b"__unknown__"
}

/// Tenant header values: valid ids often enough to fill the cap, ids just around the length
/// limit, near-misses with one foreign byte, and arbitrary bytes (non-UTF-8 included).
fn tenant_value() -> impl Strategy<Value = Vec<u8>> {
    let valid = "[A-Za-z0-9._-]{1,64}".prop_map(String::into_bytes);
    let around_limit = "[A-Za-z0-9._-]{62,67}".prop_map(String::into_bytes);
    let near_miss =
        ("[A-Za-z0-9._-]{0,30}", any::<u8>(), "[A-Za-z0-9._-]{0,30}").prop_map(|(a, b, c)| {
            let mut v = a.into_bytes();
            v.push(b);
            v.extend(c.into_bytes());
            v
        });
    // Mostly bytes a header value may hold, so few cases are filtered out, with any byte now
    // and then.
    let byte =
        prop_oneof![8 => 0x20u8..0x7f, 3 => 0x80u8..=0xff, 1 => Just(b'\t'), 1 => any::<u8>()];
    let arbitrary = proptest::collection::vec(byte, 0..100);
    prop_oneof![
        3 => valid,
        1 => around_limit,
        2 => near_miss,
        2 => arbitrary,
    ]
}

/// Baggage headers: well-formed lists (some claiming another tenant) and arbitrary text.
fn baggage_value() -> impl Strategy<Value = String> {
    prop_oneof![
        "(tenant\\.id|[a-z]{1,6})=[!-~]{0,20}(;[a-z]=[a-z]{0,3})?(,[a-z]{1,6}=[a-z0-9%]{0,10}){0,4}",
        any::<String>(),
        "[ -~]{0,200}",
    ]
}

fn header(bytes: &[u8]) -> Option<HeaderValue> {
    HeaderValue::from_bytes(bytes).ok()
}

#[test]
fn any_tenant_header_gets_its_own_id_or_a_clear_400_and_the_cap_holds() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let registry = TenantRegistry::builder().max_tenants(CAP).build();
    let app = Router::new()
        .route(
            "/",
            get(|t: Tenant| async move {
                // The extension, the task-local current tenant and the overflow flag, so one
                // body shows all the handler saw.
                let current = tenant_otel::current_tenant()
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                format!("{}|{}|{}", t.id(), current, t.is_overflow())
            }),
        )
        // The header alone: this property is about the header (without one, the default chain
        // would take a trusted caller's baggage, which the baggage properties cover).
        .layer(
            TenantLayer::builder()
                .source(TenantSource::header("x-tenant-id"))
                .registry(registry.clone())
                .build(),
        );

    let strategy = (
        proptest::option::weighted(0.9, tenant_value()),
        proptest::option::of(baggage_value()),
    )
        .prop_filter_map("not a header value", |(tenant, baggage)| {
            let tenant = match tenant {
                Some(bytes) => Some((header(&bytes)?, bytes)),
                None => None,
            };
            let baggage = match baggage {
                Some(text) => Some(header(text.as_bytes())?),
                None => None,
            };
            Some((tenant, baggage))
        });

    let mut runner = TestRunner::new(config());
    let served = Cell::new(0usize);
    let overflowed = Cell::new(0usize);
    runner
        .run(&strategy, |(tenant, baggage)| {
            let mut req = Request::get("/").body(Body::empty()).unwrap();
            if let Some((value, _)) = &tenant {
                req.headers_mut().insert("x-tenant-id", value.clone());
            }
            if let Some(value) = &baggage {
                req.headers_mut().insert("baggage", value.clone());
            }
            let (status, body) = rt.block_on(async {
                let res = app.clone().oneshot(req).await.unwrap();
                let status = res.status();
                let bytes = res.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8_lossy(&bytes).into_owned())
            });

            match &tenant {
                Some((_, bytes)) if is_valid_id(bytes) => {
                    let id = std::str::from_utf8(bytes).unwrap();
                    prop_assert_eq!(status, StatusCode::OK, "{}", body);
                    let mut parts = body.split('|');
                    prop_assert_eq!(parts.next(), Some(id), "the Tenant extension");
                    prop_assert_eq!(parts.next(), Some(id), "current_tenant()");
                    if parts.next() == Some("true") {
                        overflowed.set(overflowed.get() + 1);
                    }
                    served.set(served.get() + 1);
                }
                Some(_) => {
                    prop_assert_eq!(status, StatusCode::BAD_REQUEST);
                    prop_assert!(body.starts_with("invalid tenant id"), "{:?}", body);
                }
                None => {
                    prop_assert_eq!(status, StatusCode::BAD_REQUEST);
                    prop_assert!(body.starts_with("missing tenant id"), "{:?}", body);
                }
            }
            if registry.len() > CAP {
                return Err(TestCaseError::fail(format!(
                    "{} tenants past a cap of {CAP}",
                    registry.len()
                )));
            }
            Ok(())
        })
        .unwrap();

    // Without these the cap and overflow branches above would have gone untested.
    let (served, overflowed) = (served.get(), overflowed.get());
    assert_eq!(
        registry.len(),
        CAP,
        "{served} valid requests filled the cap"
    );
    assert!(
        overflowed > 0,
        "no request went past the cap ({served} served)"
    );
    assert!(registry.overflowed_requests() >= overflowed as u64);
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn tenant_id_parse_accepts_exactly_the_documented_alphabet_and_length(
        s in prop_oneof![
            8 => "[A-Za-z0-9._-]{0,70}",
            8 => "[A-Za-z0-9._-]{0,40}[^A-Za-z0-9._-][A-Za-z0-9._-]{0,40}",
            8 => any::<String>(),
            1 => Just("__overflow__".to_owned()),
            1 => Just("__unknown__".to_owned()),
        ]
    ) {
        let bytes = s.as_bytes();
        match TenantId::parse(&s) {
            Ok(id) => {
                prop_assert!(is_valid_id(bytes), "accepted {:?}", s);
                prop_assert_eq!(id.as_str(), s.as_str());
            }
            Err(e) => {
                prop_assert!(!is_valid_id(bytes), "refused {:?}: {}", s, e);
                // The reason names the first rule broken, checked in the documented order.
                let expected = if bytes.is_empty() {
                    InvalidTenantId::Empty
                } else if bytes.len() > 64 {
                    InvalidTenantId::TooLong { len: bytes.len() }
                } else if bytes == b"__overflow__" || bytes == b"__unknown__" {
                    InvalidTenantId::Reserved
                } else {
                    let position = bytes.iter().position(|b| !is_valid_id(&[*b])).unwrap();
                    InvalidTenantId::InvalidByte { position }
                };
                prop_assert_eq!(e, expected);
            }
        }
    }
}

/// Whatever a client puts in the path, the host or the query string, and however malformed
/// its `traceparent`, the layer answers 200 with a valid id or a clear 400, and never panics.
#[test]
fn any_path_host_query_and_traceparent_gets_a_valid_id_or_a_clear_400() {
    use tenant_otel::TenantSource;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let registry = TenantRegistry::builder().max_tenants(CAP).build();
    let echo = || {
        tower::service_fn(|_req: Request<Body>| async {
            let id = Tenant::current()
                .map(|t| t.id().to_string())
                .unwrap_or_default();
            Ok::<_, std::convert::Infallible>(http::Response::new(Body::from(id)))
        })
    };
    let layers = [
        TenantSource::path_segment(1),
        TenantSource::subdomain_of("example.com"),
        TenantSource::query("tenant"),
    ]
    .map(|source| {
        tower::Layer::layer(
            &TenantLayer::builder()
                .registry(registry.clone())
                .source(source)
                .build(),
            echo(),
        )
    });
    let strategy = (
        0..3usize,
        "[ -~]{0,80}",
        prop_oneof![
            Just(String::new()),
            "[ -~]{0,70}",
            "00-[0-9a-f]{32}-[0-9a-f]{16}-0[0-3]"
        ],
    );
    let mut runner = TestRunner::new(config());
    runner
        .run(&strategy, |(which, text, traceparent)| {
            let uri = match which {
                0 => format!("/t/{text}/x"),
                1 => "/".to_owned(),
                _ => format!("/?tenant={text}"),
            };
            let Ok(mut req) = Request::get(uri).body(Body::empty()) else {
                return Ok(());
            };
            if which == 1 {
                match HeaderValue::from_str(&format!("{text}.example.com")) {
                    Ok(host) => req.headers_mut().insert("host", host),
                    Err(_) => return Ok(()),
                };
            }
            if let Ok(tp) = HeaderValue::from_str(&traceparent) {
                req.headers_mut().insert("traceparent", tp);
            }
            let (status, body) = rt.block_on(async {
                let res = layers[which].clone().oneshot(req).await.unwrap();
                let status = res.status();
                let bytes = res.into_body().collect().await.unwrap().to_bytes();
                (status, String::from_utf8_lossy(&bytes).into_owned())
            });
            match status {
                StatusCode::OK => prop_assert!(is_valid_id(body.as_bytes()), "{:?}", body),
                StatusCode::BAD_REQUEST => prop_assert!(
                    body.starts_with("missing tenant id")
                        || body.starts_with("invalid tenant id")
                        || body.starts_with("ambiguous tenant id"),
                    "{:?}",
                    body
                ),
                other => prop_assert!(false, "{other}: {body:?}"),
            }
            prop_assert!(registry.len() <= CAP);
            Ok(())
        })
        .unwrap();
}
