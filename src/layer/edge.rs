//! What the layer takes from the public: whether an incoming trace context is believed, and
//! which headers may be copied onto the span.

use std::sync::Arc;

use http::HeaderName;
use opentelemetry::{Array, Key, KeyValue, StringValue, Value};

use crate::tenant::{truncate, RequestHead};

/// Decides which callers' `traceparent` and `baggage` are believed.
#[derive(Clone)]
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

/// A header name as every list of them is read, the capture lists and the sensitive one alike:
/// trimmed, in any case (a `HeaderName` is lower case). Read two ways, `" X-Token "` in the
/// sensitive list would not match `x-token` in a capture list, and the header would be captured.
/// `None` for what cannot be a header name (so no header of that name can be captured either).
fn header_name(raw: &str) -> Option<HeaderName> {
    HeaderName::try_from(raw.trim()).ok()
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
    let sensitive: Vec<HeaderName> = sensitive.iter().filter_map(|s| header_name(s)).collect();
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
        let Some(name) = header_name(name) else {
            continue;
        };
        let refused = NEVER.contains(&name.as_str()) || sensitive.contains(&name);
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

    #[test]
    fn both_lists_read_a_name_the_same_way() {
        let list: Vec<String> = [" X-Secret-Token", "x-trace-note\t", "X-Other "]
            .map(String::from)
            .to_vec();
        let sensitive = [" x-secret-TOKEN ", "\tX-OTHER"].map(String::from);
        let found = captured(Some(&list), "UNUSED", "p.", &sensitive).unwrap();
        let keys: Vec<&str> = found.iter().map(|c| c.key.as_str()).collect();
        assert_eq!(keys, ["p.x-trace-note"]);
    }
}
