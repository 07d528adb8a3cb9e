//! [`Tenant`]: a resolved tenant, the handle requests and queries record through.

use std::fmt;
use std::sync::Arc;

use super::entry::TenantEntry;
use crate::tenant::{TenantId, UNKNOWN_TENANT};

/// A tenant resolved by the registry: its own id, and the entry its metrics go to (its own, or
/// the shared `__overflow__` one past the cardinality cap).
///
/// [`TenantLayer`](crate::TenantLayer) puts it in each request's extensions; handlers read it
/// from there (or, with the `axum` feature, as an extractor). Code far below the handler can
/// use [`current_tenant`](crate::current_tenant) instead.
///
/// ```
/// use tenant_otel::Tenant;
///
/// fn handler(req: http::Request<()>) -> String {
///     match req.extensions().get::<Tenant>() {
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
        self.entry.is_shared() && !self.is_unknown()
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
