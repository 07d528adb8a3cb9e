//! The tenant in a context's baggage: for code far below the handler, and the one place that
//! reads the `tenant.id` baggage entry.

use opentelemetry::baggage::{Baggage, BaggageExt};
use opentelemetry::{Context, StringValue};

use super::id::{validate, TenantId, TENANT_ID_KEY};

/// The tenant of the request being served on this thread, from the baggage of the current
/// OpenTelemetry context; `None` outside a request.
///
/// Inside a request served through [`TenantLayer`](crate::TenantLayer) the layer attaches the
/// context on every poll, so this works in the handler and in anything it awaits. Work moved to
/// another task with `tokio::spawn` must carry the context along
/// (`opentelemetry::context::FutureExt::with_current_context`).
///
/// ```
/// use opentelemetry::{baggage::BaggageExt, Context, KeyValue};
///
/// let cx = Context::current().with_baggage([KeyValue::new("tenant.id", "acme")]);
/// let _guard = cx.attach();
/// assert_eq!(tenant_otel::current_tenant().unwrap().as_str(), "acme");
/// ```
pub fn current_tenant() -> Option<TenantId> {
    Context::map_current(tenant_of)
}

/// The tenant in a given context's baggage, if it holds a valid one (`__unknown__` included,
/// for requests the layer let through without a tenant).
///
/// ```
/// use opentelemetry::{baggage::BaggageExt, Context, KeyValue};
///
/// let cx = Context::new().with_baggage([KeyValue::new("tenant.id", "acme")]);
/// assert_eq!(tenant_otel::tenant::tenant_of(&cx).unwrap().as_str(), "acme");
/// let forged = Context::new().with_baggage([KeyValue::new("tenant.id", "a b")]);
/// assert!(tenant_otel::tenant::tenant_of(&forged).is_none());
/// ```
pub fn tenant_of(cx: &Context) -> Option<TenantId> {
    valid_in_baggage(cx.baggage()).map(|v| TenantId::from_validated(v.as_str()))
}

/// The raw `tenant.id` entry of `baggage`, as the caller sent it: for a source that validates
/// it itself, and for recording what a caller claimed.
pub(crate) fn claimed_in_baggage(baggage: &Baggage) -> Option<&StringValue> {
    baggage.get(TENANT_ID_KEY)
}

/// The `tenant.id` entry of `baggage` if it is a well-formed id. Outside the layer's own
/// contexts, baggage is whatever a caller sent (up to 8 KB of it), so nothing is copied onto
/// spans or logs unchecked.
pub(crate) fn valid_in_baggage(baggage: &Baggage) -> Option<&StringValue> {
    claimed_in_baggage(baggage).filter(|v| validate(v.as_str().as_bytes()).is_ok())
}
