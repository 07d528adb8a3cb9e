//! The server span and the context the handler runs in.

use std::borrow::Cow;
use std::sync::Arc;

use http::Request;
use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::trace::{SpanBuilder, SpanKind, TraceContextExt};
use opentelemetry::{Context, KeyValue, StringValue};

use super::builder::Config;
use super::edge::header_attributes;
use crate::instruments::semconv;
use crate::registry::Tenant;
use crate::tenant::{claimed_in_baggage, truncate, TenantSource, TENANT_ID_KEY};

/// The server span: named `{method} {route}` (prepared by the route table), with the HTTP
/// semantic conventions' attributes and `tenant.id` (the real id, also past the cardinality
/// cap).
pub(super) fn server_span<B>(
    config: &Config,
    req: &Request<B>,
    name: Cow<'static, str>,
    method: usize,
    route: Option<&Arc<str>>,
    tenant: TenantAttributes<'_>,
) -> SpanBuilder {
    let mut attributes = Vec::with_capacity(8);
    attributes.push(KeyValue::new(
        semconv::HTTP_REQUEST_METHOD,
        semconv::method_name(method),
    ));
    if method == semconv::METHOD_SLOTS - 1 {
        attributes.push(KeyValue::new(
            semconv::HTTP_REQUEST_METHOD_ORIGINAL,
            truncate(req.method().as_str(), 64).to_owned(),
        ));
    }
    attributes.push(KeyValue::new(
        semconv::URL_PATH,
        req.uri().path().to_owned(),
    ));
    // HTTP/1.1 requests carry no scheme: the one the service is reached by is configuration.
    let scheme = match req.uri().scheme_str() {
        Some("https") => "https",
        Some("http") => "http",
        _ => config.url_scheme,
    };
    attributes.push(KeyValue::new(semconv::URL_SCHEME, scheme));
    if let Some(version) = semconv::protocol_version(req.version()) {
        attributes.push(KeyValue::new(semconv::NETWORK_PROTOCOL_VERSION, version));
    }
    if let Some(route) = route {
        attributes.push(KeyValue::new(
            semconv::HTTP_ROUTE,
            StringValue::from(Arc::clone(route)),
        ));
    }
    tenant.add_to(&mut attributes);
    if let Some(captured) = &config.capture_request {
        header_attributes(captured, req.headers(), |kv| attributes.push(kv));
    }
    SpanBuilder::from_name(name)
        .with_kind(SpanKind::Server)
        .with_attributes(attributes)
}

/// What the server span says about the tenant, for HTTP and gRPC alike.
pub(super) struct TenantAttributes<'a> {
    pub(super) tenant: &'a Tenant,
    pub(super) inbound: &'a Baggage,
    pub(super) decided_by: Option<&'a TenantSource>,
}

impl TenantAttributes<'_> {
    /// `tenant.id` (the real id, also past the cardinality cap), `tenant.source`, and a baggage
    /// claim that disagrees with a trusted source.
    fn add_to(&self, attributes: &mut Vec<KeyValue>) {
        let tenant = self.tenant;
        attributes.push(KeyValue::new(semconv::TENANT_ID, tenant.id().to_value()));
        if let Some(source) = self.decided_by {
            attributes.push(KeyValue::new(semconv::TENANT_SOURCE, source.kind_name()));
        }
        // Only where a trusted source found a tenant is a different one in baggage a mismatch.
        let trusted = self.decided_by.filter(|s| !s.is_baggage());
        if let (Some(_), Some(claimed)) = (trusted, claimed_in_baggage(self.inbound)) {
            if claimed.as_str() != tenant.id().as_str() {
                // A caller claimed another tenant in baggage than the trusted source found:
                // recorded for audit, never believed.
                attributes.push(KeyValue::new(semconv::TENANT_BAGGAGE_MISMATCH, true));
                attributes.push(KeyValue::new(
                    semconv::TENANT_BAGGAGE_CLAIMED,
                    truncate(claimed.as_str(), 64).to_owned(),
                ));
            }
        }
    }
}

/// The server span of a gRPC call (the RPC semantic conventions): named by its fully-qualified
/// method, or `_OTHER` until the server has answered that method once. `rpc.method` and
/// `rpc.response.status_code` are set when the call ends; `http.*` attributes do not apply.
pub(super) fn grpc_span<B>(
    req: &Request<B>,
    name: Cow<'static, str>,
    tenant: TenantAttributes<'_>,
) -> SpanBuilder {
    let mut attributes = Vec::with_capacity(6);
    attributes.push(KeyValue::new(semconv::RPC_SYSTEM_NAME, "grpc"));
    if let Some(host) = req.uri().host() {
        attributes.push(KeyValue::new(
            semconv::SERVER_ADDRESS,
            truncate(host, 255).to_owned(),
        ));
        if let Some(port) = req.uri().port_u16() {
            attributes.push(KeyValue::new(semconv::SERVER_PORT, i64::from(port)));
        }
    }
    tenant.add_to(&mut attributes);
    SpanBuilder::from_name(name)
        .with_kind(SpanKind::Server)
        .with_attributes(attributes)
}

/// The context the handler runs in, before the server span is added: baggage holding the
/// validated tenant, and the tenant itself for [`Tenant::current`]. In the common case (standard
/// propagation, no other baggage from the caller) it is the tenant's context, prepared once and
/// borrowed here.
pub(super) fn handler_context<'t>(
    config: &Config,
    inbound: &Baggage,
    tenant: &'t Tenant,
) -> Cow<'t, Context> {
    if config.standard_propagation && (inbound.is_empty() || !config.propagate_inbound_baggage) {
        if let Some(prepared) = tenant.prepared_context() {
            return Cow::Borrowed(prepared);
        }
    }
    Cow::Owned(
        Context::new()
            .with_baggage(handler_baggage(config, inbound, tenant))
            .with_value(tenant.in_context()),
    )
}

/// The handler's context without a server span of this service: the caller's span stays the
/// current one, so calls made downstream still join the caller's trace.
pub(super) fn without_server_span(handler: Cow<'_, Context>, parent: &Context) -> Context {
    if parent.has_active_span() {
        handler.with_remote_span_context(parent.span().span_context().clone())
    } else {
        handler.into_owned()
    }
}

/// The baggage the handler sees and passes downstream: the caller's entries (unless dropped) with
/// `tenant.id` set to the validated tenant, whatever the caller claimed.
fn handler_baggage(config: &Config, inbound: &Baggage, tenant: &Tenant) -> Baggage {
    // The tenant goes in first, into an empty baggage, where it always fits: inserting it last
    // can fail against the W3C limits (64 entries, 8192 bytes) that a caller filled on purpose,
    // and would leave the caller's own `tenant.id` in place.
    let mut baggage = Baggage::new();
    let _ = baggage.insert(
        TENANT_ID_KEY,
        StringValue::from(Arc::clone(tenant.id().shared())),
    );
    if config.propagate_inbound_baggage {
        for (key, (value, metadata)) in inbound {
            if key.as_str() != TENANT_ID_KEY {
                // Past the limits the caller's extra entries are dropped, never the tenant.
                let _ = baggage.insert_with_metadata(key.clone(), value.clone(), metadata.clone());
            }
        }
    }
    baggage
}
