//! Who is paying: money, model prices and monthly budgets, for per-tenant cost attribution.
//!
//! - [`Money`] and [`Currency`]: amounts in integers exact to 10⁻¹² of the currency unit, so a
//!   month of sub-cent additions never drifts; shown in the currency's minor unit.
//! - [`PriceTable`] and [`ModelPrice`]: a price per model for input, output and cached-input
//!   tokens, built in code or loaded from LiteLLM's public price file (feature `cost`);
//!   [`Prices`] holds the one in use and replaces it at run time without a lock on the way.
//! - [`BudgetStatus`]: a tenant's spending against its monthly budget, the 80 % and 100 %
//!   thresholds, and the month-end forecast on a straight line through the month so far.

mod budget;
mod money;
mod price;

pub use budget::BudgetStatus;
pub(crate) use budget::Calendar;
pub use money::{Currency, InvalidCurrency, Money};
pub use price::{InvalidPrice, ModelPrice, PriceFileError, PriceTable, Prices, TokenUsage};
