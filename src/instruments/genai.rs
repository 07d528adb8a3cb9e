//! The GenAI client instruments (`gen_ai.client.*`, `tenant.cost`), the process-wide table of
//! models that get a label of their own, and one tenant's series and cost per model.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use opentelemetry::metrics::{BoundCounter, BoundHistogram, Counter, Histogram, Meter};
use opentelemetry::{Key, KeyValue, Value};

pub use super::spend::CostSource;
use super::spend::{ModelTotals, Period, Sums, Within};
use super::{names, semconv};
use crate::cost::{Currency, TokenUsage};

/// At most this many models get their own `gen_ai.request.model` label in this process; the
/// rest record as `_OTHER`. Together with the price table (unpriced models are `_OTHER` too) it
/// bounds the series at tenants × (this + 1).
pub const MAX_MODELS: usize = 32;

pub(crate) const GEN_AI_OPERATION_NAME: Key = Key::from_static_str("gen_ai.operation.name");
pub(crate) const GEN_AI_PROVIDER_NAME: Key = Key::from_static_str("gen_ai.provider.name");
pub(crate) const GEN_AI_REQUEST_MODEL: Key = Key::from_static_str("gen_ai.request.model");
pub(crate) const GEN_AI_TOKEN_TYPE: Key = Key::from_static_str("gen_ai.token.type");
pub(crate) const GEN_AI_USAGE_INPUT_TOKENS: Key = Key::from_static_str("gen_ai.usage.input_tokens");
pub(crate) const GEN_AI_USAGE_OUTPUT_TOKENS: Key =
    Key::from_static_str("gen_ai.usage.output_tokens");
pub(crate) const GEN_AI_USAGE_COST_AMOUNT: Key = Key::from_static_str("gen_ai.usage.cost.amount");
pub(crate) const GEN_AI_USAGE_COST_CURRENCY: Key =
    Key::from_static_str("gen_ai.usage.cost.currency");
pub(crate) const GEN_AI_USAGE_COST_SOURCE: Key = Key::from_static_str("gen_ai.usage.cost.source");
pub(crate) const COST_SOURCE: Key = Key::from_static_str("cost.source");

/// Bucket boundaries the GenAI conventions advise for `gen_ai.client.token.usage`.
const TOKEN_BUCKETS: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];
/// Bucket boundaries the GenAI conventions advise for `gen_ai.client.operation.duration`.
const DURATION_BUCKETS: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// What a GenAI call did, as `gen_ai.operation.name` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Operation {
    /// `chat`: a chat completion (the default).
    #[default]
    Chat,
    /// `text_completion`: a plain completion.
    TextCompletion,
    /// `embeddings`: embeddings of the input.
    Embeddings,
    /// `generate_content`: multimodal content generation.
    GenerateContent,
    /// `execute_tool`: a tool call.
    ExecuteTool,
    /// `create_agent`: an agent created.
    CreateAgent,
    /// `invoke_agent`: an agent invoked.
    InvokeAgent,
}

impl Operation {
    const COUNT: usize = 7;

    /// The `gen_ai.operation.name` value.
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Chat => "chat",
            Operation::TextCompletion => "text_completion",
            Operation::Embeddings => "embeddings",
            Operation::GenerateContent => "generate_content",
            Operation::ExecuteTool => "execute_tool",
            Operation::CreateAgent => "create_agent",
            Operation::InvokeAgent => "invoke_agent",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A model with a label of its own, and its span names, made once per process.
struct Model {
    name: Box<str>,
    span_names: [OnceLock<Box<str>>; Operation::COUNT],
}

/// The models with a label of their own, in the order first seen. A static, so their names
/// are `&'static str` and a call's span name and attributes borrow them without allocating.
static MODELS: [OnceLock<Model>; MAX_MODELS] = [const { OnceLock::new() }; MAX_MODELS];

/// The slot of `model` in the process's model table, taking a free one if it has none; `None`
/// past [`MAX_MODELS`] models.
pub(crate) fn model_slot(model: &str) -> Option<usize> {
    for (i, slot) in MODELS.iter().enumerate() {
        let taken = slot.get_or_init(|| Model {
            name: model.into(),
            span_names: [const { OnceLock::new() }; Operation::COUNT],
        });
        if &*taken.name == model {
            return Some(i);
        }
    }
    None
}

/// The name of the model in slot `slot`.
pub(crate) fn model_name(slot: usize) -> &'static str {
    MODELS
        .get(slot)
        .and_then(OnceLock::get)
        .map_or(semconv::OTHER, |m| &m.name)
}

/// `{gen_ai.operation.name} {gen_ai.request.model}` for the model in slot `slot`, made once.
pub(crate) fn span_name(slot: usize, operation: Operation) -> Option<&'static str> {
    let model = MODELS.get(slot)?.get()?;
    Some(
        model.span_names[operation.index()]
            .get_or_init(|| format!("{} {}", operation.as_str(), model.name).into_boxed_str()),
    )
}

/// The token instruments: the released names, or the newest under
/// `OTEL_SEMCONV_STABILITY_OPT_IN=gen_ai_latest_experimental`.
#[derive(Debug, Clone)]
enum Tokens {
    /// `gen_ai.client.token.usage`, by `gen_ai.token.type`.
    Histogram(Histogram<u64>),
    /// `gen_ai.client.inference.usage.input_tokens` and `.output_tokens`.
    Counters(Counter<u64>, Counter<u64>),
}

/// The GenAI instruments and `tenant.cost`, created once per registry.
#[derive(Debug, Clone)]
pub(crate) struct GenAiInstruments {
    tokens: Tokens,
    duration: Histogram<f64>,
    cost: Counter<u64>,
    /// The currency costs are accumulated and exported in.
    pub(crate) currency: Currency,
}

/// True when `OTEL_SEMCONV_STABILITY_OPT_IN` (a comma-separated list) asks for the newest
/// GenAI names.
pub(crate) fn latest_from_env() -> bool {
    std::env::var("OTEL_SEMCONV_STABILITY_OPT_IN").is_ok_and(|v| {
        v.split(',')
            .any(|s| s.trim() == "gen_ai_latest_experimental")
    })
}

impl GenAiInstruments {
    pub(crate) fn new(meter: &Meter, currency: Currency, latest: bool) -> Self {
        let tokens = if latest {
            let counter = |name: &'static str, what: &str| {
                meter
                    .u64_counter(name)
                    .with_unit("{token}")
                    .with_description(format!("{what} tokens used by GenAI calls."))
                    .build()
            };
            Tokens::Counters(
                counter(names::GEN_AI_INFERENCE_INPUT_TOKENS, "Input"),
                counter(names::GEN_AI_INFERENCE_OUTPUT_TOKENS, "Output"),
            )
        } else {
            Tokens::Histogram(
                meter
                    .u64_histogram(names::GEN_AI_CLIENT_TOKEN_USAGE)
                    .with_unit("{token}")
                    .with_description("Tokens used per GenAI call, input and output.")
                    .with_boundaries(TOKEN_BUCKETS.to_vec())
                    .build(),
            )
        };
        let minor = match currency.decimals() {
            0 => format!("{{{}}}", currency.code()),
            2 => format!("{{{}_cent}}", currency.code()),
            d => format!("{{{}_1e-{d}}}", currency.code()),
        };
        GenAiInstruments {
            tokens,
            duration: meter
                .f64_histogram(names::GEN_AI_CLIENT_OPERATION_DURATION)
                .with_unit("s")
                .with_description("Duration of GenAI calls.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            cost: meter
                .u64_counter(names::TENANT_COST)
                .with_unit(minor)
                .with_description("What tenants cost, in whole minor units of the currency.")
                .build(),
            currency,
        }
    }
}

/// One call, as the per-tenant series record it.
pub(crate) struct Recorded<'a> {
    /// The model's slot, `None` for `_OTHER`.
    pub(crate) model: Option<usize>,
    pub(crate) operation: Operation,
    pub(crate) provider: &'a str,
    pub(crate) usage: TokenUsage,
    pub(crate) duration: Option<Duration>,
    /// Picos in the instruments' currency, and where they came from.
    pub(crate) cost: Option<(u64, CostSource)>,
    /// The UTC day and month of the call, numbered from 1 (see [`crate::cost`]'s calendar).
    pub(crate) day: u64,
    pub(crate) month: u64,
}

/// One tenant's series of one operation of one model, bound on first use.
#[derive(Debug)]
struct OpSeries {
    input: Bound,
    output: Bound,
    /// Bound on the first call with a duration: a bound series is exported, empty if never
    /// recorded.
    duration: OnceLock<BoundHistogram<f64>>,
    attributes: [KeyValue; 4],
}

#[derive(Debug)]
enum Bound {
    Histogram(BoundHistogram<u64>),
    Counter(BoundCounter<u64>),
}

impl Bound {
    fn record(&self, value: u64) {
        match self {
            Bound::Histogram(h) => h.record(value),
            Bound::Counter(c) => c.add(value),
        }
    }
}

/// One tenant's series and cost of one model.
#[derive(Debug)]
struct ModelSeries {
    attributes: [KeyValue; 4],
    ops: [OnceLock<OpSeries>; Operation::COUNT],
    /// `tenant.cost` with `cost.source=tokens` for this model.
    /// Bound when the first whole minor unit accrues: a series that never costs anything
    /// (`_OTHER` without provider costs) is not exported as a zero.
    cost: OnceLock<BoundCounter<u64>>,
    /// Picos not yet exported: below one minor unit once a call's addition settles.
    pending: AtomicU64,
    /// Since start.
    total: Sums,
    /// In the current UTC day and month.
    day: Period,
    month: Period,
}

/// One tenant's GenAI series and costs, by model: the table's models in their process slot,
/// `_OTHER` in the last. A model's series are made on its first call of this tenant.
pub(crate) struct GenAiPart {
    models: [OnceLock<Box<ModelSeries>>; MAX_MODELS + 1],
}

impl Default for GenAiPart {
    fn default() -> Self {
        GenAiPart {
            models: [const { OnceLock::new() }; MAX_MODELS + 1],
        }
    }
}

impl fmt::Debug for GenAiPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GenAiPart")
            .field(
                "models",
                &self.models.iter().flat_map(OnceLock::get).count(),
            )
            .finish()
    }
}

impl GenAiPart {
    /// Records `call`: its tokens and duration, and its cost, whole minor units to
    /// `tenant.cost` as they accrue.
    pub(crate) fn record(
        &self,
        instruments: &GenAiInstruments,
        tenant: &KeyValue,
        call: &Recorded<'_>,
    ) {
        let slot = call.model.unwrap_or(MAX_MODELS);
        let series = self.models[slot].get_or_init(|| {
            let (model, provider) = match call.model {
                Some(slot) => (
                    Value::from(model_name(slot)),
                    Value::from(call.provider.to_owned()),
                ),
                None => (Value::from(semconv::OTHER), Value::from(semconv::OTHER)),
            };
            let attributes = [
                tenant.clone(),
                KeyValue::new(GEN_AI_REQUEST_MODEL, model),
                KeyValue::new(GEN_AI_PROVIDER_NAME, provider),
                KeyValue::new(COST_SOURCE, "tokens"),
            ];
            Box::new(ModelSeries {
                cost: OnceLock::new(),
                attributes,
                ops: [const { OnceLock::new() }; Operation::COUNT],
                pending: AtomicU64::new(0),
                total: Sums::default(),
                day: Period::default(),
                month: Period::default(),
            })
        });
        let op = series.ops[call.operation.index()].get_or_init(|| {
            let base = [
                series.attributes[0].clone(),
                series.attributes[1].clone(),
                series.attributes[2].clone(),
                KeyValue::new(GEN_AI_OPERATION_NAME, call.operation.as_str()),
            ];
            let with_type = |kind: &'static str| {
                let mut a = base.to_vec();
                a.push(KeyValue::new(GEN_AI_TOKEN_TYPE, kind));
                a
            };
            let (input, output) = match &instruments.tokens {
                Tokens::Histogram(h) => (
                    Bound::Histogram(h.bind(&with_type("input"))),
                    Bound::Histogram(h.bind(&with_type("output"))),
                ),
                Tokens::Counters(i, o) => {
                    (Bound::Counter(i.bind(&base)), Bound::Counter(o.bind(&base)))
                }
            };
            OpSeries {
                input,
                output,
                duration: OnceLock::new(),
                attributes: base,
            }
        });
        op.input.record(call.usage.input);
        op.output.record(call.usage.output);
        if let Some(duration) = call.duration {
            op.duration
                .get_or_init(|| instruments.duration.bind(&op.attributes))
                .record(duration.as_secs_f64());
        }
        let (input, output) = (call.usage.input, call.usage.output);
        series.total.add(input, output, call.cost);
        series.day.add(call.day, input, output, call.cost);
        series.month.add(call.month, input, output, call.cost);
        if let Some((picos, _)) = call.cost {
            series.accrue(picos, instruments);
        }
    }

    /// Totals by model name (`_OTHER` for the rest) of the models with calls `within` a
    /// period, for the in-process view.
    pub(crate) fn totals(
        &self,
        within: Within,
    ) -> impl Iterator<Item = (&'static str, ModelTotals)> + '_ {
        self.models.iter().enumerate().filter_map(move |(slot, s)| {
            let s = s.get()?;
            let name = if slot == MAX_MODELS {
                semconv::OTHER
            } else {
                model_name(slot)
            };
            let totals = match within {
                Within::Start => s.total.get(),
                Within::Day(id) => s.day.get(id),
                Within::Month(id) => s.month.get(id),
            };
            (totals.calls > 0).then_some((name, totals))
        })
    }
}

impl ModelSeries {
    /// Adds `picos` to what is pending and exports the whole minor units in it; the remainder
    /// stays for the next call, so the exported total never drifts from the exact one by a
    /// minor unit or more.
    fn accrue(&self, picos: u64, instruments: &GenAiInstruments) {
        let per_minor = instruments.currency.picos_per_minor_u64();
        let mut pending = self
            .pending
            .fetch_add(picos, Ordering::AcqRel)
            .saturating_add(picos);
        loop {
            let whole = pending / per_minor;
            if whole == 0 {
                return;
            }
            match self.pending.compare_exchange_weak(
                pending,
                pending - whole * per_minor,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    let a = &self.attributes;
                    self.cost
                        .get_or_init(|| {
                            instruments
                                .cost
                                .bind(&[a[0].clone(), a[3].clone(), a[1].clone()])
                        })
                        .add(whole);
                    return;
                }
                Err(now) => pending = now,
            }
        }
    }
}
