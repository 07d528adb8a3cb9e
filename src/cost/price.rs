//! What tokens cost: a price per model (input, output and cached-input tokens), in the format
//! users already keep — LiteLLM's `model_prices_and_context_window.json`, the de-facto public
//! price table — or built in code; replaceable at run time.

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use arc_swap::ArcSwap;

use super::money::{parse_decimal, Currency, Money};

/// The price of one model's tokens, exact to 10⁻¹² of the currency per token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ModelPrice {
    input: u64,
    output: u64,
    cached_input: Option<u64>,
}

impl ModelPrice {
    /// Prices per million tokens as decimals, the way providers list them (`"2.50"`, `"10"`).
    pub fn per_million(input: &str, output: &str) -> Result<ModelPrice, InvalidPrice> {
        Ok(ModelPrice {
            input: per_token(input)?,
            output: per_token(output)?,
            cached_input: None,
        })
    }

    /// The price per million cached input tokens (prompt-cache reads), when it differs from
    /// the input price.
    pub fn cached_input_per_million(mut self, price: &str) -> Result<ModelPrice, InvalidPrice> {
        self.cached_input = Some(per_token(price)?);
        Ok(self)
    }

    /// What `usage` costs at these prices, in picos of the table's currency.
    pub(crate) fn picos(&self, usage: TokenUsage) -> u128 {
        let cached = usage.cached_input.min(usage.input);
        let fresh = usage.input - cached;
        u128::from(fresh) * u128::from(self.input)
            + u128::from(cached) * u128::from(self.cached_input.unwrap_or(self.input))
            + u128::from(usage.output) * u128::from(self.output)
    }
}

/// Picos per token from a price per million tokens: `$2.50` a million is 2,500,000 picos a token.
fn per_token(per_million: &str) -> Result<u64, InvalidPrice> {
    parse_decimal(per_million, 6)
        .and_then(|v| u64::try_from(v).ok())
        .ok_or_else(|| InvalidPrice(per_million.chars().take(32).collect()))
}

/// Picos per token from a price per token as a float (LiteLLM's `input_cost_per_token`).
#[cfg(feature = "cost")]
fn per_token_f64(price: f64) -> Option<u64> {
    let picos = (price * super::money::PICOS_PER_UNIT as f64).round();
    (price.is_finite() && price >= 0.0 && picos < u64::MAX as f64).then_some(picos as u64)
}

/// A price that is not a non-negative decimal with at most 6 decimals per million tokens.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvalidPrice(String);

impl fmt::Display for InvalidPrice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid price {:?}: expected a non-negative decimal per million tokens, at most 6 decimals",
            self.0
        )
    }
}

impl std::error::Error for InvalidPrice {}

/// Tokens one call used. Cached input tokens are a part of the input tokens (as providers
/// report them), priced at the cached-input price when the table has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenUsage {
    /// Input (prompt) tokens, cached ones included.
    pub input: u64,
    /// Output (completion) tokens.
    pub output: u64,
    /// Of the input tokens, those read from the provider's prompt cache.
    pub cached_input: u64,
}

impl TokenUsage {
    /// `input` and `output` tokens, none cached.
    pub fn new(input: u64, output: u64) -> TokenUsage {
        TokenUsage {
            input,
            output,
            cached_input: 0,
        }
    }
}

/// Prices per model, in one currency.
///
/// ```
/// use tenant_otel::cost::{Currency, ModelPrice, PriceTable, TokenUsage};
///
/// let prices = PriceTable::new(Currency::USD)
///     .model("gpt-4o-mini", ModelPrice::per_million("0.15", "0.60")?);
/// let cost = prices.cost("gpt-4o-mini", TokenUsage::new(1_000_000, 500_000)).unwrap();
/// assert_eq!(cost.to_string(), "0.45 USD");
/// assert!(prices.cost("unlisted-model", TokenUsage::new(10, 10)).is_none());
/// # Ok::<(), tenant_otel::cost::InvalidPrice>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[must_use]
pub struct PriceTable {
    currency: Currency,
    models: HashMap<Box<str>, ModelPrice>,
}

impl PriceTable {
    /// An empty table in `currency`.
    pub fn new(currency: Currency) -> PriceTable {
        PriceTable {
            currency,
            models: HashMap::new(),
        }
    }

    /// The table with `model` at `price`.
    pub fn model(mut self, model: &str, price: ModelPrice) -> PriceTable {
        self.models.insert(model.into(), price);
        self
    }

    /// The table's currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// How many models it prices.
    pub fn len(&self) -> usize {
        self.models.len()
    }

    /// True when it prices no model.
    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    /// The price of `model`, if the table has it.
    pub fn price(&self, model: &str) -> Option<&ModelPrice> {
        self.models.get(model)
    }

    /// What `usage` of `model` costs; `None` for a model the table does not price.
    pub fn cost(&self, model: &str, usage: TokenUsage) -> Option<Money> {
        self.price(model)
            .map(|p| Money::from_picos(p.picos(usage), self.currency))
    }

    /// A table from LiteLLM's `model_prices_and_context_window.json` (prices in US dollars per
    /// token: `input_cost_per_token`, `output_cost_per_token`, `cache_read_input_token_cost`).
    /// Entries without both an input and an output price (images, audio, the `sample_spec`
    /// documentation entry) are skipped; a file that is not such a JSON object is an error.
    #[cfg(feature = "cost")]
    pub fn from_litellm_json(json: &str) -> Result<PriceTable, PriceFileError> {
        let doc: serde_json::Value =
            serde_json::from_str(json).map_err(|e| PriceFileError::Parse(e.to_string()))?;
        let entries = doc.as_object().ok_or(PriceFileError::NotAnObject)?;
        let mut table = PriceTable::new(Currency::USD);
        for (model, entry) in entries {
            let number = |key: &str| entry.get(key).and_then(serde_json::Value::as_f64);
            let (Some(input), Some(output)) = (
                number("input_cost_per_token").and_then(per_token_f64),
                number("output_cost_per_token").and_then(per_token_f64),
            ) else {
                continue;
            };
            let cached_input = number("cache_read_input_token_cost").and_then(per_token_f64);
            table.models.insert(
                model.as_str().into(),
                ModelPrice {
                    input,
                    output,
                    cached_input,
                },
            );
        }
        if table.is_empty() {
            return Err(PriceFileError::NoPrices);
        }
        Ok(table)
    }

    /// [`PriceTable::from_litellm_json`] from a file.
    #[cfg(feature = "cost")]
    pub fn load(path: impl AsRef<std::path::Path>) -> Result<PriceTable, PriceFileError> {
        let text = std::fs::read_to_string(path.as_ref())
            .map_err(|e| PriceFileError::Read(format!("{}: {e}", path.as_ref().display())))?;
        Self::from_litellm_json(&text)
    }
}

/// A price file that could not be used.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PriceFileError {
    /// It could not be read.
    Read(String),
    /// It is not JSON.
    Parse(String),
    /// It is JSON, but not an object of models.
    NotAnObject,
    /// It prices no model (no entry has both `input_cost_per_token` and
    /// `output_cost_per_token`).
    NoPrices,
}

impl fmt::Display for PriceFileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriceFileError::Read(e) => write!(f, "cannot read the price file: {e}"),
            PriceFileError::Parse(e) => write!(f, "the price file is not JSON: {e}"),
            PriceFileError::NotAnObject => {
                f.write_str("the price file is not a JSON object of models")
            }
            PriceFileError::NoPrices => f.write_str(
                "the price file prices no model (no input_cost_per_token and output_cost_per_token)",
            ),
        }
    }
}

impl std::error::Error for PriceFileError {}

/// The price table in use, shared by everything that prices calls, and replaceable while the
/// service runs: a replacement applies from the next call on, and a call never waits for it.
#[derive(Debug, Clone)]
pub struct Prices {
    table: Arc<ArcSwap<PriceTable>>,
}

impl Prices {
    /// `table`, until replaced.
    pub fn new(table: PriceTable) -> Prices {
        Prices {
            table: Arc::new(ArcSwap::from_pointee(table)),
        }
    }

    /// Replaces the table: from the next call on, calls are priced by `table`. Costs recorded
    /// before keep the price they had.
    pub fn replace(&self, table: PriceTable) {
        self.table.store(Arc::new(table));
    }

    /// The table in use now.
    pub fn current(&self) -> Arc<PriceTable> {
        self.table.load_full()
    }

    /// The table in use now, without taking a lock or allocating.
    pub(crate) fn load(&self) -> arc_swap::Guard<Arc<PriceTable>> {
        self.table.load()
    }

    /// What `usage` of `model` costs at today's prices, without taking a lock or allocating.
    pub fn cost(&self, model: &str, usage: TokenUsage) -> Option<Money> {
        self.table.load().cost(model, usage)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_times_prices_to_the_pico() {
        let price = ModelPrice::per_million("2.50", "10.00")
            .unwrap()
            .cached_input_per_million("1.25")
            .unwrap();
        let usage = TokenUsage {
            input: 1_200,
            output: 350,
            cached_input: 200,
        };
        // 1,000 fresh at $2.50/M + 200 cached at $1.25/M + 350 out at $10/M = $0.00625.
        assert_eq!(price.picos(usage), 6_250_000_000);
        // Cached tokens never count more than the input tokens.
        let odd = TokenUsage {
            input: 10,
            output: 0,
            cached_input: 50,
        };
        assert_eq!(price.picos(odd), 10 * 1_250_000);
        assert!(ModelPrice::per_million("-1", "1").is_err());
        assert!(ModelPrice::per_million("0.0000001", "1").is_err());
    }

    #[cfg(feature = "cost")]
    #[test]
    fn litellm_tables_load_and_skip_what_they_cannot_price() {
        let json = r#"{
            "sample_spec": {"input_cost_per_token": "per token", "mode": "chat"},
            "gpt-4o": {"input_cost_per_token": 2.5e-06, "output_cost_per_token": 1e-05,
                       "cache_read_input_token_cost": 1.25e-06, "litellm_provider": "openai",
                       "mode": "chat"},
            "claude-3-5-haiku-20241022": {"input_cost_per_token": 8e-07,
                       "output_cost_per_token": 4e-06, "litellm_provider": "anthropic"},
            "gemini-tiny": {"input_cost_per_token": 3.75e-08, "output_cost_per_token": 1.5e-07},
            "dall-e-3": {"output_cost_per_image": 0.04}
        }"#;
        let table = PriceTable::from_litellm_json(json).unwrap();
        assert_eq!(table.len(), 3);
        let usage = TokenUsage::new(1_000_000, 1_000_000);
        assert_eq!(
            table.cost("gpt-4o", usage).unwrap().to_string(),
            "12.50 USD"
        );
        assert_eq!(
            table
                .cost("claude-3-5-haiku-20241022", usage)
                .unwrap()
                .minor_units(),
            480
        );
        // $0.0375 and $0.15 a million: picos exactly, no float left over.
        assert_eq!(
            table.cost("gemini-tiny", usage).unwrap().picos(),
            187_500_000_000
        );
        assert!(table.cost("dall-e-3", usage).is_none());

        for (bad, err) in [
            ("[1, 2]", PriceFileError::NotAnObject),
            ("{}", PriceFileError::NoPrices),
            (
                r#"{"m": {"input_cost_per_token": -1, "output_cost_per_token": 1}}"#,
                PriceFileError::NoPrices,
            ),
        ] {
            assert_eq!(
                PriceTable::from_litellm_json(bad).unwrap_err(),
                err,
                "{bad}"
            );
        }
        assert!(matches!(
            PriceTable::from_litellm_json("{not json"),
            Err(PriceFileError::Parse(_))
        ));
    }

    #[test]
    fn a_replaced_table_prices_the_next_call() {
        let prices = Prices::new(
            PriceTable::new(Currency::USD).model("m", ModelPrice::per_million("1", "1").unwrap()),
        );
        let usage = TokenUsage::new(1_000_000, 0);
        assert_eq!(prices.cost("m", usage).unwrap().minor_units(), 100);
        let clone = prices.clone();
        clone.replace(
            PriceTable::new(Currency::USD).model("m", ModelPrice::per_million("2", "1").unwrap()),
        );
        assert_eq!(prices.cost("m", usage).unwrap().minor_units(), 200);
    }
}
