//! One tenant's registered metadata (name, tier, region) and the `tenant.info` attributes made
//! from it once.

use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use opentelemetry::KeyValue;

use super::semconv;
use crate::tenant::TenantInfo;

/// A tenant's metadata, if it was registered with some. Read without a lock (the tier decides
/// objectives and limits), replaced whole when the tenant is registered again.
#[derive(Default)]
pub(crate) struct InfoPart {
    registered: ArcSwapOption<Registered>,
}

/// The metadata and its prepared `tenant.info` attributes.
struct Registered {
    info: TenantInfo,
    attributes: [KeyValue; 4],
}

impl InfoPart {
    /// Replaces the metadata of the tenant labelled `tenant`.
    pub(crate) fn set(&self, tenant: &KeyValue, info: TenantInfo) {
        let info = info.bounded();
        let attributes = [
            tenant.clone(),
            KeyValue::new(semconv::TENANT_TIER, info.tier.clone()),
            KeyValue::new(semconv::TENANT_REGION, info.region.clone()),
            KeyValue::new(semconv::TENANT_NAME, info.name.clone()),
        ];
        self.registered
            .store(Some(Arc::new(Registered { info, attributes })));
    }

    /// The tier given at registration, if any.
    pub(crate) fn tier(&self) -> Option<String> {
        self.registered.load().as_ref().map(|r| r.info.tier.clone())
    }

    /// The metadata given at registration, if any.
    pub(crate) fn info(&self) -> Option<TenantInfo> {
        self.registered.load().as_ref().map(|r| r.info.clone())
    }

    /// Reports `tenant.info`, if there is metadata.
    pub(crate) fn observe(&self, observe: &mut dyn FnMut(u64, &[KeyValue])) {
        if let Some(registered) = self.registered.load_full() {
            observe(1, &registered.attributes[..]);
        }
    }
}

impl fmt::Debug for InfoPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InfoPart")
            .field("info", &self.info())
            .finish()
    }
}
