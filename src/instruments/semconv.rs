//! Attribute keys (the OpenTelemetry HTTP and RPC semantic conventions', and this crate's own
//! `tenant.*` ones) and the normalisation of values a client controls.

use http::Method;
use opentelemetry::Key;
use std::borrow::Cow;

pub(crate) const HTTP_REQUEST_METHOD: Key = Key::from_static_str("http.request.method");
pub(crate) const HTTP_REQUEST_METHOD_ORIGINAL: Key =
    Key::from_static_str("http.request.method_original");
pub(crate) const HTTP_ROUTE: Key = Key::from_static_str("http.route");
pub(crate) const HTTP_RESPONSE_STATUS_CODE: Key = Key::from_static_str("http.response.status_code");
pub(crate) const ERROR_TYPE: Key = Key::from_static_str("error.type");
pub(crate) const URL_PATH: Key = Key::from_static_str("url.path");
pub(crate) const URL_SCHEME: Key = Key::from_static_str("url.scheme");
pub(crate) const NETWORK_PROTOCOL_VERSION: Key = Key::from_static_str("network.protocol.version");
pub(crate) const TENANT_ID: Key = Key::from_static_str(crate::tenant::TENANT_ID_KEY);
pub(crate) const TENANT_BAGGAGE_MISMATCH: Key = Key::from_static_str("tenant.baggage_mismatch");
pub(crate) const TENANT_BAGGAGE_CLAIMED: Key = Key::from_static_str("tenant.baggage_claimed");
/// Which source decided the tenant: `header`, `baggage`, `path`, `host`, `query`, `fn`.
pub(crate) const TENANT_SOURCE: Key = Key::from_static_str("tenant.source");
pub(crate) const TENANT_TIER: Key = Key::from_static_str("tenant.tier");
pub(crate) const TENANT_REGION: Key = Key::from_static_str("tenant.region");
pub(crate) const TENANT_NAME: Key = Key::from_static_str("tenant.name");
/// `success` or `error`, on the `rag.*` instruments.
pub(crate) const STATUS: Key = Key::from_static_str("status");
pub(crate) const RESOURCE_TYPE: Key = Key::from_static_str("resource_type");
/// Why a request was shed (`concurrency`, `rate`, `fair_share`), on its span.
pub(crate) const TENANT_SHED: Key = Key::from_static_str("tenant.shed");
/// Why, on `tenant.requests.shed`.
pub(crate) const REASON: Key = Key::from_static_str("reason");
/// The rule of `tenant.alerts`.
pub(crate) const ALERT: Key = Key::from_static_str("alert");
/// Which objective an SLA gauge or alert is about (`availability`, `latency`).
pub(crate) const SLO: Key = Key::from_static_str("slo");
/// The burn rate's window (`5m`, `30m`, `1h`, `2h`, `6h`, `1d`, `3d`).
pub(crate) const WINDOW: Key = Key::from_static_str("window");
/// What `tenant.resource.share` is a share of (`inflight`, `busy_time`).
pub(crate) const RESOURCE: Key = Key::from_static_str("resource");

pub(crate) const RPC_SYSTEM_NAME: Key = Key::from_static_str("rpc.system.name");
pub(crate) const RPC_METHOD: Key = Key::from_static_str("rpc.method");
pub(crate) const RPC_RESPONSE_STATUS_CODE: Key = Key::from_static_str("rpc.response.status_code");
pub(crate) const URL_FULL: Key = Key::from_static_str("url.full");
pub(crate) const SERVER_ADDRESS: Key = Key::from_static_str("server.address");
pub(crate) const SERVER_PORT: Key = Key::from_static_str("server.port");

/// `rpc.method` and span name of a gRPC method this service does not implement (or past the
/// method table's bound).
pub(crate) const OTHER: &str = "_OTHER";

/// The method slot of gRPC calls in the route table: their span name is the method itself.
pub(crate) const RPC_SLOT: usize = METHOD_SLOTS;

/// The `package.Service/Method` of a gRPC request path, if it has that shape.
pub(crate) fn grpc_method(path: &str) -> Option<&str> {
    let method = path.strip_prefix('/')?;
    let (service, name) = method.split_once('/')?;
    let plausible = !service.is_empty()
        && !name.is_empty()
        && !name.contains('/')
        && method.len() <= 256
        && method
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'));
    plausible.then_some(method)
}

/// The methods the conventions name; anything else is reported as `_OTHER`, so a client cannot
/// create new series or span names by inventing methods.
const KNOWN_METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

/// [`method_index`] of `HEAD`.
pub(crate) const HEAD: usize = 1;

/// Number of distinct values [`method_index`] returns.
pub(crate) const METHOD_SLOTS: usize = KNOWN_METHODS.len() + 1;

/// Index of the normalised method in `0..METHOD_SLOTS` (the last one is `_OTHER`).
pub(crate) fn method_index(method: &Method) -> usize {
    let s = method.as_str();
    KNOWN_METHODS
        .iter()
        .position(|m| *m == s)
        .unwrap_or(KNOWN_METHODS.len())
}

/// The normalised method name for an index from [`method_index`].
pub(crate) fn method_name(index: usize) -> &'static str {
    KNOWN_METHODS.get(index).copied().unwrap_or("_OTHER")
}

/// The name of an HTTP server span: `{method} {route}`, or the method alone without a route;
/// a method outside the known set is `HTTP`, not `_OTHER`.
pub(crate) fn server_span_name(method: usize, route: Option<&str>) -> Cow<'static, str> {
    if method == RPC_SLOT {
        // gRPC: the span is named by the fully-qualified method.
        return Cow::Owned(route.unwrap_or(OTHER).to_owned());
    }
    let verb = if method == METHOD_SLOTS - 1 {
        "HTTP"
    } else {
        method_name(method)
    };
    match route {
        Some(route) => Cow::Owned(format!("{verb} {route}")),
        None => Cow::Borrowed(verb),
    }
}

/// `network.protocol.version` for an HTTP version.
pub(crate) fn protocol_version(version: http::Version) -> Option<&'static str> {
    Some(match version {
        http::Version::HTTP_09 => "0.9",
        http::Version::HTTP_10 => "1.0",
        http::Version::HTTP_11 => "1.1",
        http::Version::HTTP_2 => "2",
        http::Version::HTTP_3 => "3",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_methods_become_other() {
        assert_eq!(method_name(method_index(&Method::GET)), "GET");
        assert_eq!(method_name(method_index(&Method::PATCH)), "PATCH");
        assert_eq!(method_index(&Method::HEAD), HEAD);
        let odd = Method::from_bytes(b"BREW").unwrap();
        assert_eq!(method_name(method_index(&odd)), "_OTHER");
        assert!(method_index(&odd) < METHOD_SLOTS);
    }
}
