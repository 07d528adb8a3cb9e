//! What the layer takes from the public: whether an incoming trace context is believed, and
//! which headers may be copied onto the span.

use std::sync::Arc;

use http::HeaderName;
use opentelemetry::{Array, Key, KeyValue, StringValue, Value};

use crate::tenant::{truncate, RequestHead};

/// Decides which callers' `traceparent` and `baggage` are believed.
pub(super) enum Trust {
    /// Every caller (internal services): the default.
    All,
    /// No caller: a public endpoint.
    None,
    /// Callers this predicate trusts.
    If(Arc<TrustFn>),
}

pub(super) type TrustFn = dyn for<'a> Fn(&RequestHead<'a>) -> bool + Send + Sync;

impl Trust {
    pub(super) fn trusts(&self, head: &RequestHead<'_>) -> bool {
        match self {
            Trust::All => true,
            Trust::None => false,
            Trust::If(f) => f(head),
        }
    }
}

/// Headers never copied onto a span, whatever a list says: they carry credentials.
const NEVER: [&str; 4] = [
    "authorization",
    "cookie",
    "set-cookie",
    "proxy-authorization",
];

/// A header to copy onto the span, with its attribute key made once.
#[derive(Debug, Clone)]
pub(super) struct Captured {
    name: HeaderName,
    key: Key,
}

/// The request or response headers to capture: from the builder, else from
/// `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_{REQUEST,RESPONSE}` (comma-separated),
/// without the sensitive ones. `None` when there are none, so the common case costs nothing.
pub(super) fn captured(
    given: Option<&[String]>,
    env: &str,
    prefix: &str,
    sensitive: &[String],
) -> Option<Arc<[Captured]>> {
    let from_env;
    let names: Vec<&str> = match given {
        Some(names) => names.iter().map(String::as_str).collect(),
        None => {
            from_env = std::env::var(env).unwrap_or_default();
            from_env.split(',').collect()
        }
    };
    let mut out: Vec<Captured> = Vec::new();
    for name in names {
        let Ok(name) = HeaderName::try_from(name.trim()) else {
            continue;
        };
        let refused = NEVER.contains(&name.as_str())
            || sensitive
                .iter()
                .any(|s| s.eq_ignore_ascii_case(name.as_str()));
        if refused || out.iter().any(|c| c.name == name) {
            continue;
        }
        let key = Key::from(format!("{prefix}{}", name.as_str()));
        out.push(Captured { name, key });
    }
    (!out.is_empty()).then(|| out.into())
}

/// `http.{request,response}.header.<name>` attributes: each a string array (a header may
/// repeat), values cut at 256 bytes, non-UTF-8 values left out.
pub(super) fn header_attributes(
    captured: &[Captured],
    headers: &http::HeaderMap,
    mut push: impl FnMut(KeyValue),
) {
    for c in captured {
        let values: Vec<StringValue> = headers
            .get_all(&c.name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .take(16)
            .map(|v| StringValue::from(truncate(v, 256).to_owned()))
            .collect();
        if !values.is_empty() {
            push(KeyValue::new(
                c.key.clone(),
                Value::Array(Array::String(values)),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_never_captured_whatever_the_list_says() {
        let list: Vec<String> = [
            "X-Request-Id",
            "Authorization",
            "cookie",
            "x-api-key",
            "bad header",
            "x-request-id",
        ]
        .map(String::from)
        .to_vec();
        let found = captured(
            Some(&list),
            "UNUSED",
            "http.request.header.",
            &["X-API-KEY".to_owned()],
        )
        .unwrap();
        let keys: Vec<&str> = found.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["http.request.header.x-request-id"]);
        assert!(captured(Some(&[]), "UNUSED", "p.", &[]).is_none());
    }
}
