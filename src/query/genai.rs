//! LLM calls of a tenant, on the OpenTelemetry GenAI conventions: a CLIENT span, the
//! `gen_ai.client.*` metrics, and what the call cost.

use std::borrow::Cow;
use std::time::{Duration, SystemTime};

use opentelemetry::trace::{Span, SpanKind, Tracer, TracerProvider};
use opentelemetry::{Context, KeyValue};

use super::QueryTenant;
use crate::cost::{Calendar, Money, Prices, TokenUsage};
use crate::instruments::genai::{
    model_slot, span_name, CostSource, Recorded, GEN_AI_OPERATION_NAME, GEN_AI_PROVIDER_NAME,
    GEN_AI_REQUEST_MODEL, GEN_AI_USAGE_COST_AMOUNT, GEN_AI_USAGE_COST_CURRENCY,
    GEN_AI_USAGE_COST_SOURCE, GEN_AI_USAGE_INPUT_TOKENS, GEN_AI_USAGE_OUTPUT_TOKENS,
};
use crate::instruments::spend::Within;
use crate::instruments::{scope, semconv};
use crate::registry::TenantRegistry;
use crate::tenant::InvalidTenantId;

pub use crate::instruments::genai::{CostSource as LlmCostSource, Operation, MAX_MODELS};

/// One LLM call of a tenant, to record with [`TenantRegistry::record_llm_call`].
///
/// ```
/// use std::time::Duration;
/// use tenant_otel::TenantRegistry;
/// use tenant_otel::cost::{Currency, ModelPrice, PriceTable, Prices, TokenUsage};
/// use tenant_otel::query::LlmCall;
///
/// let prices = Prices::new(
///     PriceTable::new(Currency::USD).model("gpt-4o-mini", ModelPrice::per_million("0.15", "0.60")?),
/// );
/// let registry = TenantRegistry::builder().prices(prices).build();
/// let call = LlmCall::new("openai", "gpt-4o-mini", TokenUsage::new(1_000_000, 500_000))
///     .duration(Duration::from_millis(900));
/// let cost = registry.record_llm_call("finance-team", &call).unwrap().unwrap();
/// assert_eq!(cost.amount.to_string(), "0.45 USD");
/// # Ok::<(), tenant_otel::cost::InvalidPrice>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LlmCall<'a> {
    provider: &'a str,
    model: &'a str,
    operation: Operation,
    usage: TokenUsage,
    duration: Option<Duration>,
    cost: Option<Money>,
}

impl<'a> LlmCall<'a> {
    /// A `chat` call of `model` at `provider` (`gen_ai.provider.name`: `openai`,
    /// `anthropic`, `aws.bedrock`, ...) that used `usage`.
    pub fn new(provider: &'a str, model: &'a str, usage: TokenUsage) -> Self {
        LlmCall {
            provider,
            model,
            operation: Operation::Chat,
            usage,
            duration: None,
            cost: None,
        }
    }

    /// What the call did, when not `chat`.
    pub fn operation(mut self, operation: Operation) -> Self {
        self.operation = operation;
        self
    }

    /// How long the call took: the span ends when it is recorded and starts this long before,
    /// and `gen_ai.client.operation.duration` records it.
    pub fn duration(mut self, duration: Duration) -> Self {
        self.duration = Some(duration);
        self
    }

    /// The cost the provider reported for the call: it wins over the price table.
    pub fn provider_cost(mut self, cost: Money) -> Self {
        self.cost = Some(cost);
        self
    }
}

/// What a call cost, and where that figure came from.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct LlmCost {
    /// The amount.
    pub amount: Money,
    /// `Provider` when the application passed the provider's figure, `Local` from the prices.
    pub source: LlmCostSource,
}

impl TenantRegistry {
    /// The model prices LLM calls are costed at (replace the table through it at run time).
    pub fn prices(&self) -> &Prices {
        &self.shared().prices
    }

    /// Records one LLM call of `tenant`: a CLIENT span `{operation} {model}` (a child of the
    /// current span, through the global tracer provider as it is at the registry's first
    /// call) with the `gen_ai.*` attributes, the call's cost and `tenant.id`;
    /// `gen_ai.client.token.usage` and `gen_ai.client.operation.duration` (or the newest
    /// names under `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`) labelled by
    /// tenant under the cap and by model (`_OTHER` outside the price table or past
    /// [`MAX_MODELS`]); and its cost, added to the tenant's and to `tenant.cost`.
    ///
    /// The provider's cost wins; else the price table's; `None` when neither knows it. A
    /// provider cost in another currency than the table's is shown on the span but not added
    /// to the tenant's cost (costs are kept in one currency).
    pub fn record_llm_call(
        &self,
        tenant: impl QueryTenant,
        call: &LlmCall<'_>,
    ) -> Result<Option<LlmCost>, InvalidTenantId> {
        let tenant = tenant.resolve_in(self)?;
        let entry = tenant.entry();
        let shared = entry.shared();
        let table = shared.prices.load();
        let priced = table.cost(call.model, call.usage);
        let cost = match (call.cost, priced) {
            (Some(amount), _) => Some(LlmCost {
                amount,
                source: CostSource::Provider,
            }),
            (None, Some(amount)) => Some(LlmCost {
                amount,
                source: CostSource::Local,
            }),
            (None, None) => None,
        };
        let model = if priced.is_some() {
            model_slot(call.model)
        } else {
            None
        };
        let kept = cost
            .filter(|c| c.amount.currency() == shared.genai.currency)
            .map(|c| {
                // A single call's cost past 2⁶³ picos ($9 million) is an input error; it is
                // capped rather than let wrap the pending sum.
                let picos = u64::try_from(c.amount.picos()).unwrap_or(u64::MAX / 2);
                (picos.min(u64::MAX / 2), c.source)
            });
        let calendar = Calendar::at(shared.clock.wall());
        entry.genai.record(
            &shared.genai,
            entry.key_value(),
            &Recorded {
                model,
                operation: call.operation,
                provider: call.provider,
                usage: call.usage,
                duration: call.duration,
                cost: kept,
                day: calendar.day,
                month: calendar.month,
            },
        );
        entry.touch();
        span(&tenant, call, model, cost);
        Ok(cost)
    }
}

/// A tenant's LLM calls of one model since the process started, and what they cost.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct ModelCost {
    /// `gen_ai.request.model`, or `_OTHER` for the models outside the price table.
    pub model: &'static str,
    /// Calls recorded.
    pub calls: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost the provider reported, exact.
    pub provider: Money,
    /// Cost worked out from the price table, exact.
    pub local: Money,
}

impl ModelCost {
    /// Provider and local cost together.
    pub fn total(&self) -> Money {
        Money::from_picos(
            self.provider.picos().saturating_add(self.local.picos()),
            self.provider.currency(),
        )
    }
}

impl TenantRegistry {
    /// What the tenant labelled `tenant` (`__overflow__` for those past the cap) cost so far,
    /// by model, exact to the pico, in the price table's currency; empty for a tenant without
    /// LLM calls or not in the registry.
    ///
    /// ```
    /// use tenant_otel::TenantRegistry;
    /// use tenant_otel::cost::{Currency, Money, TokenUsage};
    /// use tenant_otel::query::LlmCall;
    ///
    /// let registry = TenantRegistry::builder().build();
    /// let call = LlmCall::new("openai", "gpt-x", TokenUsage::new(10, 5))
    ///     .provider_cost(Money::from_minor(3, Currency::USD));
    /// registry.record_llm_call("acme", &call).unwrap();
    /// let costs = registry.llm_costs("acme");
    /// assert_eq!((costs[0].model, costs[0].calls), ("_OTHER", 1));
    /// assert_eq!(costs[0].total().minor_units(), 3);
    /// ```
    pub fn llm_costs(&self, tenant: &str) -> Vec<ModelCost> {
        let Some(entry) = self.entry_for_label(tenant) else {
            return Vec::new();
        };
        let currency = entry.shared().genai.currency;
        entry
            .genai
            .totals(Within::Start)
            .map(|(model, t)| ModelCost {
                model,
                calls: t.calls,
                input_tokens: t.input_tokens,
                output_tokens: t.output_tokens,
                provider: Money::from_picos(t.provider_picos, currency),
                local: Money::from_picos(t.local_picos, currency),
            })
            .collect()
    }
}

/// The call's CLIENT span, through the global tracer provider, a child of the current span.
fn span(
    tenant: &crate::registry::Tenant,
    call: &LlmCall<'_>,
    model: Option<usize>,
    cost: Option<LlmCost>,
) {
    let name = match model.and_then(|slot| span_name(slot, call.operation)) {
        Some(name) => Cow::Borrowed(name),
        None => Cow::Owned(format!("{} {}", call.operation.as_str(), call.model)),
    };
    let end = SystemTime::now();
    let start = end
        .checked_sub(call.duration.unwrap_or_default())
        .unwrap_or(end);
    let tracer = tenant
        .entry()
        .shared()
        .tracer
        .get_or_init(|| opentelemetry::global::tracer_provider().tracer_with_scope(scope()));
    let parent = Context::current();
    let mut span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Client)
        .with_start_time(start)
        .start_with_context(tracer, &parent);
    // Attributes only for a span that records: a sampled-out or no-op span costs no strings.
    if span.is_recording() {
        attributes(&mut span, tenant, call, model, cost);
    }
    span.end_with_timestamp(end);
}

fn attributes(
    span: &mut impl Span,
    tenant: &crate::registry::Tenant,
    call: &LlmCall<'_>,
    model: Option<usize>,
    cost: Option<LlmCost>,
) {
    let model_value = match model {
        Some(slot) => crate::instruments::genai::model_name(slot).into(),
        None => opentelemetry::Value::from(call.model.to_owned()),
    };
    span.set_attributes([
        KeyValue::new(GEN_AI_OPERATION_NAME, call.operation.as_str()),
        KeyValue::new(GEN_AI_PROVIDER_NAME, call.provider.to_owned()),
        KeyValue::new(GEN_AI_REQUEST_MODEL, model_value),
        KeyValue::new(GEN_AI_USAGE_INPUT_TOKENS, clamp(call.usage.input)),
        KeyValue::new(GEN_AI_USAGE_OUTPUT_TOKENS, clamp(call.usage.output)),
        KeyValue::new(semconv::TENANT_ID, tenant.id().to_value()),
    ]);
    if let Some(cost) = cost {
        span.set_attributes([
            KeyValue::new(GEN_AI_USAGE_COST_AMOUNT, cost.amount.as_f64()),
            KeyValue::new(
                GEN_AI_USAGE_COST_CURRENCY,
                cost.amount.currency().code().to_owned(),
            ),
            KeyValue::new(GEN_AI_USAGE_COST_SOURCE, cost.source.as_str()),
        ]);
    }
}

/// Token counts as the `i64` span attributes take them.
fn clamp(tokens: u64) -> i64 {
    i64::try_from(tokens).unwrap_or(i64::MAX)
}
