//! Quota usage: `rag.quota.usage` per tenant and resource type.

use std::fmt;

use crate::instruments::query::MAX_QUOTA_RESOURCES;
use crate::instruments::TooManyResources;
use crate::registry::{Count, TenantRegistry};
use crate::tenant::{validate, validate_client_id, InvalidTenantId};

/// The longest `resource_type` accepted, in bytes.
pub const MAX_RESOURCE_TYPE_LEN: usize = 32;

/// Why [`TenantRegistry::update_quota_usage`] recorded nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum QuotaError {
    /// The tenant id is not valid (reserved ids included).
    InvalidTenant(InvalidTenantId),
    /// `resource_type` is empty, longer than [`MAX_RESOURCE_TYPE_LEN`], or has a character
    /// outside `[A-Za-z0-9._-]`.
    InvalidResourceType,
    /// The tenant already reports [`MAX_QUOTA_RESOURCES`] other resource types.
    TooManyResources,
    /// The percentage was NaN or infinite.
    NotFinite,
}

impl fmt::Display for QuotaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            QuotaError::InvalidTenant(e) => e.fmt(f),
            QuotaError::InvalidResourceType => write!(
                f,
                "resource_type must be 1 to {MAX_RESOURCE_TYPE_LEN} characters of [A-Za-z0-9._-]"
            ),
            QuotaError::TooManyResources => write!(
                f,
                "a tenant reports at most {MAX_QUOTA_RESOURCES} quota resource types"
            ),
            QuotaError::NotFinite => f.write_str("quota usage must be a finite number"),
        }
    }
}

impl std::error::Error for QuotaError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            QuotaError::InvalidTenant(e) => Some(e),
            _ => None,
        }
    }
}

impl TenantRegistry {
    /// Sets `rag.quota.usage` (percent) of `tenant` for `resource_type` (e.g. `queries`,
    /// `tokens`).
    ///
    /// Negative values are clamped to 0; values above 100 are kept (a tenant over its quota is
    /// worth seeing); NaN and infinities are refused, and so are ids the layer would refuse.
    /// Each tenant may report up to [`MAX_QUOTA_RESOURCES`] resource types. A tenant past the
    /// cardinality cap records under `__overflow__`, where the last update of any overflowed
    /// tenant wins.
    ///
    /// ```
    /// use tenant_otel::TenantRegistry;
    /// use tenant_otel::query::QuotaError;
    ///
    /// let registry = TenantRegistry::builder().build();
    /// registry.update_quota_usage("finance-team", "queries", 75.0)?;
    /// registry.update_quota_usage("finance-team", "tokens", -3.0)?;
    /// assert_eq!(
    ///     registry.update_quota_usage("finance-team", "tokens", f64::NAN),
    ///     Err(QuotaError::NotFinite)
    /// );
    /// let view = registry.tenant_view("finance-team").unwrap();
    /// assert_eq!(view.quota.get("queries"), Some(&75.0));
    /// assert_eq!(view.quota.get("tokens"), Some(&0.0));
    /// # Ok::<(), QuotaError>(())
    /// ```
    pub fn update_quota_usage(
        &self,
        tenant: &str,
        resource_type: &str,
        percent: f64,
    ) -> Result<(), QuotaError> {
        if !percent.is_finite() {
            return Err(QuotaError::NotFinite);
        }
        // Same alphabet as a tenant id, shorter.
        if resource_type.len() > MAX_RESOURCE_TYPE_LEN
            || validate(resource_type.as_bytes()).is_err()
        {
            return Err(QuotaError::InvalidResourceType);
        }
        let id = validate_client_id(tenant.as_bytes()).map_err(QuotaError::InvalidTenant)?;
        let tenant = self.lookup(id, Count::Other);
        let entry = tenant.entry();
        entry
            .queries
            .set_quota(
                &entry.shared().query,
                entry.key_value(),
                resource_type,
                percent.max(0.0),
            )
            .map_err(|TooManyResources| QuotaError::TooManyResources)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_resources_are_capped_per_tenant() {
        let registry = TenantRegistry::builder().build();
        for i in 0..MAX_QUOTA_RESOURCES {
            registry
                .update_quota_usage("t", &format!("r{i}"), 1.0)
                .unwrap();
        }
        assert_eq!(
            registry.update_quota_usage("t", "one-more", 1.0),
            Err(QuotaError::TooManyResources)
        );
        // Known resources still update.
        registry.update_quota_usage("t", "r0", 42.0).unwrap();
        assert_eq!(
            registry.update_quota_usage("t", "bad resource", 1.0),
            Err(QuotaError::InvalidResourceType)
        );
        assert!(matches!(
            registry.update_quota_usage("t t", "r0", 1.0),
            Err(QuotaError::InvalidTenant(_))
        ));
    }
}
