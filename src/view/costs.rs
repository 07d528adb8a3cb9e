//! Chargeback: what each tenant's LLM calls cost in the current UTC day and month, worst first,
//! as a [`CostsView`] and as CSV.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::time::SystemTime;

use crate::cost::{Calendar, Currency, Money};
use crate::instruments::spend::{ModelTotals, Within};
use crate::registry::TenantRegistry;

/// Every tenant's LLM calls and their cost in the current UTC day and month, from
/// [`TenantRegistry::costs`]. Amounts are whole minor units of `currency` (cents for USD),
/// each rounded half up from the exact sum.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[non_exhaustive]
pub struct CostsView {
    /// The price table's currency, e.g. `USD`.
    pub currency: String,
    /// Decimals of its minor unit (2 for cents).
    pub minor_unit_decimals: u8,
    /// The day, `2026-12-02` (UTC).
    pub day: String,
    /// The month, `2026-12` (UTC).
    pub month: String,
    /// Tenants with calls this month, worst first: highest cost this month, then today.
    pub tenants: Vec<TenantCosts>,
}

/// One tenant's row of [`CostsView`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[non_exhaustive]
pub struct TenantCosts {
    /// The tenant's label (`__overflow__` for those past the cap).
    pub tenant: String,
    /// Today.
    pub day: PeriodCosts,
    /// This month.
    pub month: PeriodCosts,
}

/// A tenant's calls and cost in one period.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[non_exhaustive]
pub struct PeriodCosts {
    /// LLM calls recorded.
    pub requests: u64,
    /// Cost, in minor units.
    pub cost: Cost,
    /// By model (`_OTHER` for those outside the price table).
    pub models: Vec<ModelUsage>,
}

/// One model's share of [`PeriodCosts`].
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[non_exhaustive]
pub struct ModelUsage {
    /// `gen_ai.request.model`, or `_OTHER`.
    pub model: String,
    /// LLM calls.
    pub requests: u64,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Cost, in minor units.
    pub cost: Cost,
}

/// A cost by source, in whole minor units, each rounded half up from the exact sum (so
/// `provider + local` may differ from `total` by one).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[non_exhaustive]
pub struct Cost {
    /// Reported by the providers.
    pub provider: u64,
    /// Worked out from the price table.
    pub local: u64,
    /// Both.
    pub total: u64,
    /// The exact total, in picos, to order by.
    #[cfg_attr(feature = "axum", serde(skip))]
    picos: u128,
}

impl Cost {
    fn of(t: &ModelTotals, currency: Currency) -> Cost {
        let minor = |picos: u128| {
            u64::try_from(Money::from_picos(picos, currency).minor_units()).unwrap_or(u64::MAX)
        };
        let picos = t.provider_picos.saturating_add(t.local_picos);
        Cost {
            provider: minor(t.provider_picos),
            local: minor(t.local_picos),
            total: minor(picos),
            picos,
        }
    }
}

impl PeriodCosts {
    fn of<'a>(
        models: impl Iterator<Item = (&'static str, ModelTotals)> + 'a,
        currency: Currency,
    ) -> PeriodCosts {
        let mut sum = ModelTotals::default();
        let models = models
            .map(|(model, t)| {
                sum.calls += t.calls;
                sum.provider_picos = sum.provider_picos.saturating_add(t.provider_picos);
                sum.local_picos = sum.local_picos.saturating_add(t.local_picos);
                ModelUsage {
                    model: model.to_owned(),
                    requests: t.calls,
                    input_tokens: t.input_tokens,
                    output_tokens: t.output_tokens,
                    cost: Cost::of(&t, currency),
                }
            })
            .collect();
        PeriodCosts {
            requests: sum.calls,
            cost: Cost::of(&sum, currency),
            models,
        }
    }
}

impl TenantRegistry {
    /// What each tenant's LLM calls ([`record_llm_call`](TenantRegistry::record_llm_call))
    /// cost today and this month (UTC), worst first: the chargeback table.
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
    /// let costs = registry.costs();
    /// assert_eq!(costs.tenants[0].tenant, "acme");
    /// assert_eq!(costs.tenants[0].month.cost.total, 3);
    /// ```
    pub fn costs(&self) -> CostsView {
        self.costs_at(self.shared().clock.wall())
    }

    pub(crate) fn costs_at(&self, at: SystemTime) -> CostsView {
        let calendar = Calendar::at(at);
        let currency = self.shared().genai.currency;
        let mut tenants = Vec::new();
        self.for_each_entry(|entry| {
            let month =
                PeriodCosts::of(entry.genai.totals(Within::Month(calendar.month)), currency);
            if month.requests == 0 {
                return;
            }
            tenants.push(TenantCosts {
                tenant: entry.id().as_str().to_owned(),
                day: PeriodCosts::of(entry.genai.totals(Within::Day(calendar.day)), currency),
                month,
            });
        });
        tenants.sort_by(|a, b| {
            (b.month.cost.picos, b.day.cost.picos, &a.tenant).cmp(&(
                a.month.cost.picos,
                a.day.cost.picos,
                &b.tenant,
            ))
        });
        let (year, month, day) = calendar.date;
        CostsView {
            currency: currency.code().to_owned(),
            minor_unit_decimals: currency.decimals(),
            day: format!("{year:04}-{month:02}-{day:02}"),
            month: format!("{year:04}-{month:02}"),
            tenants,
        }
    }
}

impl CostsView {
    /// The table as CSV (RFC 4180, with a header): one row per tenant, period and model,
    /// tenants worst first, amounts in currency units (`8.51`).
    ///
    /// Tenant ids are validated (`[A-Za-z0-9._-]`), so they never hold a comma, quote or line
    /// break; model names come from the price table and may. Every field is quoted when it
    /// holds one of those, and a field a spreadsheet would take for a formula (starting with
    /// `=`, `+`, `-` or `@`, as a tenant id may start with `-`) is prefixed with `'`.
    pub fn to_csv(&self) -> String {
        let mut out = String::from(
            "period,date,tenant,model,requests,input_tokens,output_tokens,provider_cost,local_cost,total_cost,currency\r\n",
        );
        let decimals = u32::from(self.minor_unit_decimals);
        for t in &self.tenants {
            for (period, date, costs) in
                [("day", &self.day, &t.day), ("month", &self.month, &t.month)]
            {
                for m in &costs.models {
                    let _ = write!(
                        out,
                        "{period},{date},{},{},{},{},{},{},{},{},{}\r\n",
                        csv_field(&t.tenant),
                        csv_field(&m.model),
                        m.requests,
                        m.input_tokens,
                        m.output_tokens,
                        decimal(m.cost.provider, decimals),
                        decimal(m.cost.local, decimals),
                        decimal(m.cost.total, decimals),
                        self.currency,
                    );
                }
            }
        }
        out
    }
}

/// `minor` minor units as a decimal in currency units: `851` with 2 decimals is `8.51`.
fn decimal(minor: u64, decimals: u32) -> String {
    if decimals == 0 {
        return minor.to_string();
    }
    let scale = 10u64.pow(decimals);
    format!(
        "{}.{:0width$}",
        minor / scale,
        minor % scale,
        width = decimals as usize
    )
}

/// One CSV field: quoted when it holds a separator, quote or line break (quotes doubled), and
/// prefixed with `'` when a spreadsheet would read it as a formula.
fn csv_field(field: &str) -> Cow<'_, str> {
    let formula = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
    if !formula && !field.contains([',', '"', '\r', '\n']) {
        return Cow::Borrowed(field);
    }
    let prefix = if formula { "'" } else { "" };
    Cow::Owned(format!("\"{prefix}{}\"", field.replace('"', "\"\"")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_quoted_and_defused() {
        assert_eq!(csv_field("acme"), "acme");
        assert_eq!(csv_field("-team"), "\"'-team\"");
        assert_eq!(csv_field("=1+1"), "\"'=1+1\"");
        assert_eq!(csv_field("a,\"b\"\n"), "\"a,\"\"b\"\"\n\"");
        assert_eq!(decimal(851, 2), "8.51");
        assert_eq!(decimal(5, 3), "0.005");
        assert_eq!(decimal(42, 0), "42");
    }
}
