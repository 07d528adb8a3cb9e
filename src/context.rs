//! The tenant of the current OpenTelemetry context, for code far below the handler.

use opentelemetry::baggage::BaggageExt;
use opentelemetry::Context;

use crate::tenant::{TenantId, TENANT_ID_KEY};

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
pub fn tenant_of(cx: &Context) -> Option<TenantId> {
    cx.baggage().get(TENANT_ID_KEY).and_then(|v| {
        crate::tenant::validate(v.as_str().as_bytes())
            .ok()
            .map(TenantId::from_validated)
    })
}
