//! [`Tenant`]: a resolved tenant, the handle requests and queries record through.

use std::fmt;
use std::sync::Arc;

use opentelemetry::Context;

use super::entry::{InContext, TenantEntry};
use crate::tenant::{TenantId, OVERFLOW_TENANT, UNKNOWN_TENANT};

/// A tenant resolved by the registry: its own id, and the entry its metrics go to (its own, or
/// the shared `__overflow__` one past the cardinality cap).
///
/// [`TenantLayer`](crate::TenantLayer) puts it in the context each request is handled in:
/// handlers get it with [`Tenant::current`] (any tower, hyper or tonic service) or, with the
/// `axum` feature, as an extractor. The context was prepared once per tenant, so this costs no
/// allocation per request. (`TenantLayerBuilder::tenant_in_extensions` also puts it in the
/// request extensions, at the cost of two allocations per request.)
///
/// ```
/// use tenant_otel::Tenant;
///
/// async fn handler(_req: http::Request<()>) -> String {
///     match Tenant::current() {
///         Some(tenant) => format!("hello, {}", tenant.id()),
///         None => "no tenant".to_owned(),
///     }
/// }
/// # let _ = handler;
/// ```
#[derive(Clone)]
pub struct Tenant {
    id: TenantId,
    entry: Arc<TenantEntry>,
}

impl Tenant {
    /// The tenant whose metrics go to `entry` under its own label.
    pub(super) fn of(entry: &Arc<TenantEntry>) -> Self {
        Tenant {
            id: entry.id().clone(),
            entry: Arc::clone(entry),
        }
    }

    /// A tenant past the cap, recorded under the shared `entry` but keeping its own `id`.
    pub(super) fn sharing(id: TenantId, entry: &Arc<TenantEntry>) -> Self {
        Tenant {
            id,
            entry: Arc::clone(entry),
        }
    }

    /// The tenant of the request being handled: set by [`TenantLayer`](crate::TenantLayer) in
    /// the context the inner service and the response body run in. `None` outside a request
    /// (or in a task spawned without the request's context: carry it with
    /// `opentelemetry::context::FutureExt::with_current_context`).
    pub fn current() -> Option<Tenant> {
        Context::map_current(Tenant::of_context)
    }

    /// The tenant [`TenantLayer`](crate::TenantLayer) put in `cx`.
    pub fn of_context(cx: &Context) -> Option<Tenant> {
        match cx.get::<InContext>()? {
            InContext::Prepared(entry) => entry.upgrade().map(|entry| Tenant::of(&entry)),
            InContext::Handle(id, entry) => Some(Tenant::sharing(id.clone(), entry)),
        }
    }

    /// This handle as a context value, for a context that was not prepared with the entry
    /// (a tenant past the cap, a caller's extra baggage kept).
    pub(crate) fn in_context(&self) -> InContext {
        InContext::Handle(self.id.clone(), Arc::clone(&self.entry))
    }

    /// The tenant's own id (for a tenant past the cardinality cap too: only metrics see
    /// `__overflow__`).
    pub fn id(&self) -> &TenantId {
        &self.id
    }

    /// The value this tenant's metrics carry in `tenant.id`: its id, or `__overflow__` past the
    /// cardinality cap.
    pub fn metric_label(&self) -> &str {
        self.entry.id().as_str()
    }

    /// True when no tenant could be found and the layer let the request through as
    /// `__unknown__`.
    pub fn is_unknown(&self) -> bool {
        self.id.as_str() == UNKNOWN_TENANT
    }

    /// True when this tenant is past the cardinality cap and shares the `__overflow__` series.
    pub fn is_overflow(&self) -> bool {
        self.entry.id().as_str() == OVERFLOW_TENANT
    }

    pub(crate) fn entry(&self) -> &Arc<TenantEntry> {
        &self.entry
    }

    /// The entry's prepared context (baggage `tenant.id`), when it names this very tenant: not
    /// for a tenant past the cap, whose real id differs from the shared `__overflow__` entry's.
    pub(crate) fn prepared_context(&self) -> Option<&opentelemetry::Context> {
        Arc::ptr_eq(self.id.shared(), self.entry.id().shared()).then(|| self.entry.context())
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tenant")
            .field("id", &self.id)
            .field("metric_label", &self.metric_label())
            .finish()
    }
}
