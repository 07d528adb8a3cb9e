//! What a tenant is besides its id: the metadata exported as `tenant.info`, and the bounds on
//! every piece of free text that reaches a label or an attribute.

/// The longest `tenant.name` exported, in bytes; longer names are cut at a character boundary.
pub const MAX_TENANT_NAME_LEN: usize = 128;

/// The longest `tenant.tier` and `tenant.region` exported, in bytes; longer values are cut at a
/// character boundary.
pub const MAX_TENANT_LABEL_LEN: usize = 64;

/// Tenant metadata exported as `tenant.info` (value 1, with `tenant.name`, `tenant.tier` and
/// `tenant.region`), for joining onto the per-tenant series in queries and dashboards. The tier
/// also picks the tenant's SLA objective.
///
/// ```
/// use tenant_otel::TenantInfo;
///
/// let info = TenantInfo::new("Finance", "premium", "eu-west-1");
/// assert_eq!(info.tier, "premium");
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
pub struct TenantInfo {
    /// Display name; cut to [`MAX_TENANT_NAME_LEN`] bytes.
    pub name: String,
    /// Tier, e.g. `free`, `standard`, `premium`; cut to [`MAX_TENANT_LABEL_LEN`] bytes.
    pub tier: String,
    /// Region; cut to [`MAX_TENANT_LABEL_LEN`] bytes.
    pub region: String,
}

impl TenantInfo {
    /// Metadata with these values.
    pub fn new(
        name: impl Into<String>,
        tier: impl Into<String>,
        region: impl Into<String>,
    ) -> Self {
        TenantInfo {
            name: name.into(),
            tier: tier.into(),
            region: region.into(),
        }
    }

    /// The same metadata cut to the exported bounds.
    pub(crate) fn bounded(mut self) -> Self {
        for (field, max) in [
            (&mut self.name, MAX_TENANT_NAME_LEN),
            (&mut self.tier, MAX_TENANT_LABEL_LEN),
            (&mut self.region, MAX_TENANT_LABEL_LEN),
        ] {
            let kept = truncate(field, max).len();
            field.truncate(kept);
        }
        self
    }
}

/// `s` cut to at most `max` bytes at a character boundary: the one rule for text a client or a
/// caller controls before it becomes an attribute or a label.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_respects_char_boundaries() {
        let s = "é".repeat(100);
        assert_eq!(truncate(&s, 7), "ééé");
        assert_eq!(truncate("short", 64), "short");
        let info = TenantInfo::new("x".repeat(500), "t".repeat(100), "eu").bounded();
        assert_eq!(info.name.len(), MAX_TENANT_NAME_LEN);
        assert_eq!(info.tier.len(), MAX_TENANT_LABEL_LEN);
        assert_eq!(info.region, "eu");
    }
}
