//! Tenant metadata: registering a tenant with its name, tier and region (`tenant.info`).

use crate::registry::{RegisterError, Tenant, TenantRegistry};
use crate::tenant::TenantInfo;

impl TenantRegistry {
    /// Admits `id` to the registry for good (it gets its own `tenant.id` label even in
    /// allowlist mode, and is never reclaimed) and exports its metadata as `tenant.info`. The
    /// tier picks its SLA objective. Registering again replaces the metadata.
    ///
    /// ```
    /// use tenant_otel::{RegisterError, TenantInfo, TenantRegistry};
    /// use tenant_otel::tenant::InvalidTenantId;
    ///
    /// let registry = TenantRegistry::builder().max_tenants(1).build();
    /// let finance = registry
    ///     .register_tenant("finance-team", TenantInfo::new("Finance", "premium", "eu-west-1"))
    ///     .unwrap();
    /// assert_eq!(finance.metric_label(), "finance-team");
    /// assert_eq!(
    ///     registry.register_tenant("other", TenantInfo::default()).unwrap_err(),
    ///     RegisterError::CapReached
    /// );
    /// assert_eq!(
    ///     registry.register_tenant("__overflow__", TenantInfo::default()).unwrap_err(),
    ///     RegisterError::Invalid(InvalidTenantId::Reserved)
    /// );
    /// ```
    pub fn register_tenant(&self, id: &str, info: TenantInfo) -> Result<Tenant, RegisterError> {
        let tenant = self.register(id)?;
        let entry = tenant.entry();
        entry.info.set(entry.key_value(), info);
        // The tier may have changed, and with it the limits and the objectives.
        entry.guard.invalidate();
        entry.stats.apply_slo(entry.slo());
        Ok(tenant)
    }
}
