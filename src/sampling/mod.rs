//! Trace sampling that is fair to small tenants.
//!
//! A ratio sampler keeps 1% of each tenant's traces: thousands from the biggest tenant, none
//! from a small one that is failing. [`TenantSampler`] keeps, for each tenant, every root trace
//! up to a **floor** per interval, samples beyond it at a **ratio** (per tier, per tenant), and
//! stops at a **cap**, so one flooding tenant cannot fill the trace pipeline. Child spans follow
//! their parent's decision. Metrics are never sampled: the layer counts every request whatever
//! the sampler decides.
//!
//! - `budget`: each tenant's traces kept in the current interval, one atomic word.
//! - `tenants`: which tenants have a budget of their own (the registry's, when it follows one).

mod budget;
mod tenants;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use opentelemetry::baggage::BaggageExt;
use opentelemetry::trace::{Link, SpanKind, TraceContextExt, TraceId, TraceState};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::trace::{SamplingDecision, SamplingResult, ShouldSample};

use crate::instruments::semconv;
use crate::registry::TenantRegistry;
use crate::stats::Clock;
use crate::tenant::{valid_in_baggage, validate_client_id};
use budget::{Allowance, Budget};
use tenants::{Budgets, Tenants};

/// A sampler ([`ShouldSample`]) that is fair to small tenants: per tenant and interval (a
/// minute by default), the first `floor` root traces are kept, the rest at the tenant's ratio,
/// and never more than `cap`.
///
/// The tenant comes from the span's `tenant.id` attribute (the layer sets it before the span
/// starts), else from the parent context's baggage. A span with a parent follows the parent's
/// decision. State is one atomic word per tenant; deciding takes no lock, and allocates nothing
/// for a known tenant.
///
/// Which tenants have a budget of their own is the registry's call: under
/// [`init`](fn@crate::init), or wired with [`TenantSamplerBuilder::registry`], exactly the
/// tenants the registry admits (its cap, its allowlist) have one, a tenant it reclaims gives its
/// budget back, and the rest (past the cap, `__overflow__` in metrics) share one budget.
/// Without a registry, at most [`max_tenants`](TenantSamplerBuilder::max_tenants) have one.
///
/// ```
/// use opentelemetry_sdk::trace::SdkTracerProvider;
/// use tenant_otel::sampling::TenantSampler;
///
/// let sampler = TenantSampler::builder()
///     .floor(5)              // at least 5 traces a minute from every tenant
///     .ratio(0.01)           // 1% beyond that
///     .tier_ratio("premium", 0.1)
///     .cap(600)              // at most 600 a minute from any one tenant
///     .build();
/// let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
/// # let _ = provider;
/// ```
///
/// [`TelemetryBuilder::sampler`](crate::TelemetryBuilder::sampler) sets it up under `init()`,
/// following the tenant registry `init()` builds.
#[derive(Clone)]
pub struct TenantSampler {
    inner: Arc<Inner>,
    /// Whose tenants these are, and their tiers.
    tenants: Tenants,
}

struct Inner {
    floor: u32,
    cap: u32,
    interval: Duration,
    ratio: f64,
    tier_ratios: HashMap<String, f64>,
    tenant_ratios: HashMap<String, f64>,
    budgets: Budgets,
    /// Shared by the tenants without a budget of their own and the spans without a tenant.
    shared: Budget,
    clock: Clock,
    epoch: Instant,
}

impl std::fmt::Debug for TenantSampler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let i = &self.inner;
        f.debug_struct("TenantSampler")
            .field("floor", &i.floor)
            .field("ratio", &i.ratio)
            .field("cap", &i.cap)
            .field("interval", &i.interval)
            .field("tier_ratios", &i.tier_ratios)
            .field("tenant_ratios", &i.tenant_ratios)
            .finish_non_exhaustive()
    }
}

impl TenantSampler {
    /// A builder with the defaults: floor 5, ratio 1.0 (keep all between floor and cap), cap
    /// 600, per minute, no registry (1000 tenants).
    pub fn builder() -> TenantSamplerBuilder {
        TenantSamplerBuilder::default()
    }

    /// Follows the registry `init()` puts in `registry` once it is built: its tenants, their
    /// tiers.
    pub(crate) fn following(mut self, registry: Arc<OnceLock<TenantRegistry>>) -> Self {
        self.tenants = Tenants::Later(registry);
        self
    }

    fn decide_root(&self, tenant: Option<&str>, trace_id: TraceId) -> bool {
        let inner = &*self.inner;
        let elapsed = inner.clock.now().saturating_duration_since(inner.epoch);
        let interval = (elapsed.as_nanos() / inner.interval.as_nanos().max(1)) as u32;
        let guard = inner.budgets.guard();
        let registry = self.tenants.registry();
        let own =
            tenant.and_then(|id| Some((id, inner.budgets.of(id, registry, interval, &guard)?)));
        // The shared budget caches one ratio for all who share it: the default one, not that of
        // whichever tenant happened to come first.
        let (tenant, budget) = match own {
            Some((id, budget)) => (Some(id), budget),
            None => (None, &inner.shared),
        };
        match budget.allowance(interval, inner.floor, inner.cap) {
            Allowance::Floor => budget.keep(interval, inner.cap),
            Allowance::Capped => false,
            Allowance::Ratio => {
                let ratio = budget.ratio(interval, || self.ratio_of(tenant));
                by_trace_id(ratio, trace_id) && budget.keep(interval, inner.cap)
            }
        }
    }
}

impl TenantSampler {
    fn ratio_of(&self, tenant: Option<&str>) -> f64 {
        let inner = &*self.inner;
        let Some(id) = tenant else {
            return inner.ratio;
        };
        if let Some(r) = inner.tenant_ratios.get(id) {
            return *r;
        }
        self.tenants
            .registry()
            .and_then(|registry| registry.tier_of(id))
            .and_then(|tier| inner.tier_ratios.get(&tier).copied())
            .unwrap_or(inner.ratio)
    }
}

/// The same test as the SDK's ratio sampler: the trace id's low 63 bits against the ratio, so
/// every service sampling a trace at one ratio decides alike.
fn by_trace_id(ratio: f64, trace_id: TraceId) -> bool {
    if ratio >= 1.0 {
        return true;
    }
    let bound = (ratio.max(0.0) * (1u64 << 63) as f64) as u64;
    let bytes = trace_id.to_bytes();
    let low = u64::from_be_bytes([
        bytes[8], bytes[9], bytes[10], bytes[11], bytes[12], bytes[13], bytes[14], bytes[15],
    ]);
    (low >> 1) < bound
}

impl ShouldSample for TenantSampler {
    fn should_sample(
        &self,
        parent_context: Option<&Context>,
        trace_id: TraceId,
        _name: &str,
        _span_kind: &SpanKind,
        attributes: &[KeyValue],
        _links: &[Link],
    ) -> SamplingResult {
        let parent = parent_context.filter(|cx| cx.has_active_span());
        let (sampled, trace_state) = match parent {
            // A child follows its parent (local, or a remote caller the layer trusts).
            Some(cx) => {
                let span = cx.span();
                let sc = span.span_context();
                (sc.is_sampled(), sc.trace_state().clone())
            }
            None => {
                // Borrowed all the way: deciding allocates nothing.
                let tenant = match attributes.iter().find(|kv| kv.key == semconv::TENANT_ID) {
                    Some(kv) => {
                        let id = kv.value.as_str();
                        validate_client_id(id.as_bytes()).is_ok().then_some(id)
                    }
                    None => parent_context
                        .and_then(|cx| valid_in_baggage(cx.baggage()))
                        .map(|v| Cow::Borrowed(v.as_str())),
                };
                (
                    self.decide_root(tenant.as_deref(), trace_id),
                    TraceState::NONE,
                )
            }
        };
        SamplingResult {
            decision: if sampled {
                SamplingDecision::RecordAndSample
            } else {
                SamplingDecision::Drop
            },
            attributes: Vec::new(),
            trace_state,
        }
    }
}

/// Builds a [`TenantSampler`].
#[derive(Debug, Clone)]
#[must_use]
pub struct TenantSamplerBuilder {
    floor: u32,
    cap: u32,
    interval: Duration,
    ratio: f64,
    tier_ratios: HashMap<String, f64>,
    tenant_ratios: HashMap<String, f64>,
    max_tenants: usize,
    registry: Option<TenantRegistry>,
    clock: Clock,
}

impl Default for TenantSamplerBuilder {
    fn default() -> Self {
        TenantSamplerBuilder {
            floor: 5,
            cap: 600,
            interval: Duration::from_secs(60),
            ratio: 1.0,
            tier_ratios: HashMap::new(),
            tenant_ratios: HashMap::new(),
            max_tenants: crate::registry::DEFAULT_MAX_TENANTS,
            registry: None,
            clock: Clock::system(),
        }
    }
}

impl TenantSamplerBuilder {
    /// Root traces every tenant keeps per interval, whatever the ratio (default 5).
    pub fn floor(mut self, traces: u32) -> Self {
        self.floor = traces;
        self
    }

    /// Root traces any one tenant keeps per interval at most (default 600). Never below the
    /// floor.
    pub fn cap(mut self, traces: u32) -> Self {
        self.cap = traces;
        self
    }

    /// The ratio beyond the floor for tenants without one of their own (default 1.0). Clamped
    /// to `0..=1`; NaN counts as 0.
    pub fn ratio(mut self, ratio: f64) -> Self {
        self.ratio = clamp(ratio);
        self
    }

    /// The ratio of a tier's tenants (the tier they were registered with, in the registry the
    /// sampler follows).
    pub fn tier_ratio(mut self, tier: &str, ratio: f64) -> Self {
        self.tier_ratios.insert(tier.to_owned(), clamp(ratio));
        self
    }

    /// The ratio of one tenant, over its tier's (while it has a budget of its own; tenants that
    /// share one share the default ratio).
    pub fn tenant_ratio(mut self, tenant: &str, ratio: f64) -> Self {
        self.tenant_ratios.insert(tenant.to_owned(), clamp(ratio));
        self
    }

    /// The interval floor and cap count over (default a minute; at least a millisecond).
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval.max(Duration::from_millis(1));
        self
    }

    /// Tenants with a budget of their own when the sampler follows no registry (default 1000);
    /// the rest share one. A budget that has kept nothing in the current interval holds no
    /// state, so once an interval a newcomer past the limit takes the place of such a tenant.
    /// A sampler that follows a registry ([`registry`](Self::registry), or under
    /// [`init`](fn@crate::init)) ignores this: the registry's cap and reclaim decide.
    pub fn max_tenants(mut self, max: usize) -> Self {
        self.max_tenants = max;
        self
    }

    /// Follows `registry`: exactly the tenants it admits have a budget of their own (one it
    /// reclaims gives its budget back), and tier ratios read the tiers registered there. Use the
    /// registry the [`TenantLayer`](crate::TenantLayer) resolves tenants with. Under
    /// [`init`](fn@crate::init), the sampler follows the registry `init()` builds instead.
    ///
    /// ```
    /// use opentelemetry_sdk::trace::SdkTracerProvider;
    /// use tenant_otel::{TenantLayer, TenantRegistry};
    /// use tenant_otel::sampling::TenantSampler;
    ///
    /// let registry = TenantRegistry::builder().max_tenants(5000).build();
    /// let sampler = TenantSampler::builder().floor(5).ratio(0.01).registry(&registry).build();
    /// let provider = SdkTracerProvider::builder().with_sampler(sampler).build();
    /// let layer = TenantLayer::builder()
    ///     .registry(registry)
    ///     .tracer_provider(&provider)
    ///     .build();
    /// # let _ = layer;
    /// ```
    pub fn registry(mut self, registry: &TenantRegistry) -> Self {
        self.registry = Some(registry.clone());
        self
    }

    /// The clock intervals are read from (a manual one in simulations).
    pub fn clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Builds the sampler.
    pub fn build(self) -> TenantSampler {
        let epoch = self.clock.now();
        TenantSampler {
            inner: Arc::new(Inner {
                floor: self.floor,
                cap: self.cap.max(self.floor),
                interval: self.interval,
                ratio: self.ratio,
                tier_ratios: self.tier_ratios,
                tenant_ratios: self.tenant_ratios,
                budgets: Budgets::new(self.max_tenants),
                shared: Budget::default(),
                clock: self.clock,
                epoch,
            }),
            tenants: match self.registry {
                Some(registry) => Tenants::Registry(registry),
                None => Tenants::Own,
            },
        }
    }
}

fn clamp(ratio: f64) -> f64 {
    if ratio.is_nan() {
        0.0
    } else {
        ratio.clamp(0.0, 1.0)
    }
}
