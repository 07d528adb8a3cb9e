//! What every call through one client layer shares: its tracer and its registry.

use opentelemetry::global::BoxedTracer;

use crate::registry::TenantRegistry;

pub(crate) struct Config {
    pub(crate) tracer: Tracer,
    pub(crate) registry: TenantRegistry,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("registry", &self.registry)
            .finish_non_exhaustive()
    }
}

/// The SDK's tracer when a provider was given (no dynamic dispatch, no box per span), else the
/// global one.
pub(crate) enum Tracer {
    Sdk(opentelemetry_sdk::trace::SdkTracer),
    Global(BoxedTracer),
}
