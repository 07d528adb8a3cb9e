//! One outgoing call in flight: its CLIENT span and its duration, ended exactly once however the
//! call ends.

use std::borrow::Cow;
use std::time::Instant;

use http::{HeaderMap, Method, Uri};
use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{SpanBuilder, SpanKind, Status, TraceContextExt, Tracer as _};
use opentelemetry::{Context, KeyValue, Value};

use super::config::{Config, Tracer};
use crate::classify::{Answer, End, Failure, GrpcCode};
use crate::instruments::semconv;
use crate::propagation::inject_w3c;
use crate::tenant::truncate;

/// What kind of call, for its span name, attributes and histogram.
enum Kind {
    Http {
        method: &'static str,
    },
    /// gRPC: the fully-qualified method the program calls (chosen by its code, not by a peer).
    Grpc {
        method: Value,
    },
}

/// An outgoing call between its start and its end.
pub(crate) struct Call {
    cx: Context,
    start: Instant,
    config: std::sync::Arc<Config>,
    kind: Kind,
    tenant: Option<KeyValue>,
    server: Option<(Value, Option<i64>)>,
    status: Option<http::StatusCode>,
    grpc_status: Option<GrpcCode>,
    done: bool,
}

impl Call {
    /// Starts the CLIENT span as a child of the current context and injects `traceparent` and
    /// `baggage` from it into `headers`.
    pub(crate) fn start(
        config: &std::sync::Arc<Config>,
        method: &Method,
        uri: &Uri,
        headers: &mut HeaderMap,
    ) -> Call {
        let parent = Context::current();
        let grpc = headers
            .get(http::header::CONTENT_TYPE)
            .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
        let kind = match grpc.then(|| semconv::grpc_method(uri.path())).flatten() {
            Some(m) => Kind::Grpc {
                method: Value::from(m.to_owned()),
            },
            None if grpc => Kind::Grpc {
                method: Value::from(semconv::OTHER),
            },
            None => Kind::Http {
                method: semconv::method_name(semconv::method_index(method)),
            },
        };
        let server = uri.host().map(|host| {
            let port = uri.port_u16().or(match uri.scheme_str() {
                Some("https") => Some(443),
                Some("http") => Some(80),
                _ => None,
            });
            (
                Value::from(truncate(host, 255).to_owned()),
                port.map(i64::from),
            )
        });
        // The tenant the server layer put in the context, else one a caller passed in baggage.
        let in_context = crate::registry::Tenant::of_context(&parent);
        let tenant = match &in_context {
            Some(t) => Some(t.entry().key_value().clone()),
            None => config.registry.baggage_metric_attribute(&parent),
        };

        let mut attributes = Vec::with_capacity(8);
        let name: Cow<'static, str> = match &kind {
            Kind::Http { method } => {
                attributes.push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, *method));
                attributes.push(KeyValue::new(semconv::URL_FULL, url_full(uri)));
                Cow::Borrowed(if *method == semconv::OTHER {
                    "HTTP"
                } else {
                    method
                })
            }
            Kind::Grpc { method } => {
                attributes.push(KeyValue::new(semconv::RPC_SYSTEM_NAME, "grpc"));
                attributes.push(KeyValue::new(semconv::RPC_METHOD, method.clone()));
                Cow::Owned(method.as_str().into_owned())
            }
        };
        if let Some((address, port)) = &server {
            attributes.push(KeyValue::new(semconv::SERVER_ADDRESS, address.clone()));
            if let Some(port) = port {
                attributes.push(KeyValue::new(semconv::SERVER_PORT, *port));
            }
        }
        // The tenant of the request this call is made for, as the span processor would set it.
        let id = match &in_context {
            Some(t) => Some(t.id().to_value()),
            None => crate::tenant::current_tenant().map(|id| id.to_value()),
        };
        if let Some(id) = id {
            attributes.push(KeyValue::new(semconv::TENANT_ID, id));
        }
        let builder = SpanBuilder::from_name(name)
            .with_kind(SpanKind::Client)
            .with_attributes(attributes);
        let cx = crate::propagation::setting_tenant_itself(|| match &config.tracer {
            Tracer::Sdk(t) => parent.with_span(t.build_with_context(builder, &parent)),
            Tracer::Global(t) => parent.with_span(t.build_with_context(builder, &parent)),
        });
        // The tenant's prepared `baggage` header, when the baggage holds the tenant alone.
        let prepared = in_context
            .as_ref()
            .filter(|t| {
                let baggage = cx.baggage();
                baggage.len() == 1
                    && t.prepared_context().is_some()
                    && baggage
                        .get(crate::tenant::TENANT_ID_KEY)
                        .map(|v| v.as_str())
                        == Some(t.id().as_str())
            })
            .and_then(|t| t.entry().baggage_header());
        inject_w3c(&cx, headers, prepared);
        Call {
            cx,
            start: Instant::now(),
            config: std::sync::Arc::clone(config),
            kind,
            tenant,
            server,
            status: None,
            grpc_status: None,
            done: false,
        }
    }

    /// The call's context (its CLIENT span), current while the inner client runs.
    pub(crate) fn context(&self) -> &Context {
        &self.cx
    }

    /// Records the response head: the HTTP status, and `grpc-status` of a trailers-only gRPC
    /// response.
    pub(crate) fn response(&mut self, status: http::StatusCode, headers: &HeaderMap) {
        self.status = Some(status);
        if let Kind::Http { .. } = self.kind {
            self.cx.span().set_attribute(KeyValue::new(
                semconv::HTTP_RESPONSE_STATUS_CODE,
                i64::from(status.as_u16()),
            ));
        }
        self.observe_grpc_status(headers);
    }

    /// Reads `grpc-status` from the response head or trailers.
    pub(crate) fn observe_grpc_status(&mut self, headers: &HeaderMap) {
        if let Some(code) = GrpcCode::of_headers(headers) {
            self.grpc_status = Some(code);
        }
    }

    /// Ends the call.
    pub(crate) fn finish(mut self, end: End) {
        self.end(end);
    }

    fn end(&mut self, end: End) {
        if self.done {
            return;
        }
        self.done = true;
        let seconds = self.start.elapsed().as_secs_f64();
        let span = self.cx.span();
        let instruments = self.config.registry.http_instruments();
        let mut attributes = Vec::with_capacity(7);
        attributes.extend(self.tenant.clone());
        if let Some((address, port)) = &self.server {
            attributes.push(KeyValue::new(semconv::SERVER_ADDRESS, address.clone()));
            if let Some(port) = port {
                attributes.push(KeyValue::new(semconv::SERVER_PORT, *port));
            }
        }
        let answer = match self.kind {
            Kind::Grpc { .. } => Answer::Grpc(self.grpc_status),
            Kind::Http { .. } => Answer::Http(self.status),
        };
        let error = Failure::classify_call(answer, end).error_type(self.status);
        let histogram = match &self.kind {
            Kind::Http { method } => {
                attributes.push(KeyValue::new(semconv::HTTP_REQUEST_METHOD, *method));
                if let Some(status) = self.status {
                    attributes.push(KeyValue::new(
                        semconv::HTTP_RESPONSE_STATUS_CODE,
                        i64::from(status.as_u16()),
                    ));
                }
                &instruments.client_duration
            }
            Kind::Grpc { method } => {
                let code = match (self.grpc_status, end) {
                    (Some(code), _) => code,
                    (None, End::Cancelled) => GrpcCode::CANCELLED,
                    (None, _) => GrpcCode::UNKNOWN,
                };
                let code = KeyValue::new(semconv::RPC_RESPONSE_STATUS_CODE, code.name());
                span.set_attribute(code.clone());
                attributes.push(KeyValue::new(semconv::RPC_SYSTEM_NAME, "grpc"));
                attributes.push(KeyValue::new(semconv::RPC_METHOD, method.clone()));
                attributes.push(code);
                &instruments.rpc_client_duration
            }
        };
        if let Some(error) = error {
            span.set_attribute(KeyValue::new(semconv::ERROR_TYPE, error.clone()));
            span.set_status(Status::error(error.clone()));
            attributes.push(KeyValue::new(semconv::ERROR_TYPE, error));
        }
        histogram.record(seconds, &attributes);
        span.end();
    }
}

impl Drop for Call {
    fn drop(&mut self) {
        self.end(End::Cancelled);
    }
}

/// `url.full` without what must not reach telemetry: the user info (credentials) and the query
/// (tokens, personal data).
fn url_full(uri: &Uri) -> String {
    let mut url = String::with_capacity(64);
    if let Some(scheme) = uri.scheme_str() {
        url.push_str(scheme);
        url.push_str("://");
    }
    if let Some(host) = uri.host() {
        url.push_str(host);
    }
    if let Some(port) = uri.port_u16() {
        url.push(':');
        url.push_str(&port.to_string());
    }
    url.push_str(truncate(uri.path(), 1024));
    url
}

#[cfg(test)]
mod tests {
    use super::url_full;

    #[test]
    fn url_full_leaves_out_credentials_and_the_query() {
        let uri: http::Uri = "https://user:secret@api.example.com:8443/v1/search?q=x&token=t"
            .parse()
            .unwrap();
        assert_eq!(url_full(&uri), "https://api.example.com:8443/v1/search");
        let uri: http::Uri = "/relative/only?x=1".parse().unwrap();
        assert_eq!(url_full(&uri), "/relative/only");
    }
}
