//! Money as integers: amounts in picos (10⁻¹² of the currency unit), so a month of sub-cent
//! additions never drifts, and currencies with their ISO 4217 minor unit.

use std::fmt;

/// Picos (10⁻¹² of a currency unit) in one unit.
pub(crate) const PICOS_PER_UNIT: u128 = 1_000_000_000_000;

/// A currency: its ISO 4217 code and how many decimals its minor unit has (2 for `USD` and
/// `EUR`, 0 for `JPY`, 3 for `KWD`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Currency {
    code: [u8; 3],
    decimals: u8,
}

impl Currency {
    /// US dollars, the currency of the public model price tables.
    pub const USD: Currency = Currency {
        code: *b"USD",
        decimals: 2,
    };

    /// The currency with this ISO 4217 code (three ASCII letters, any case), with the minor
    /// unit ISO gives it (2 decimals unless the code is one of the few with 0 or 3).
    pub fn new(code: &str) -> Result<Currency, InvalidCurrency> {
        let bytes = code.as_bytes();
        let [a, b, c] = bytes else {
            return Err(InvalidCurrency);
        };
        let code = [
            a.to_ascii_uppercase(),
            b.to_ascii_uppercase(),
            c.to_ascii_uppercase(),
        ];
        if !code.iter().all(u8::is_ascii_uppercase) {
            return Err(InvalidCurrency);
        }
        let decimals = match &code {
            b"JPY" | b"KRW" | b"CLP" | b"ISK" | b"VND" | b"XAF" | b"XOF" | b"UGX" | b"PYG" => 0,
            b"KWD" | b"BHD" | b"OMR" | b"JOD" | b"TND" | b"LYD" | b"IQD" => 3,
            _ => 2,
        };
        Ok(Currency { code, decimals })
    }

    /// The ISO 4217 code, e.g. `USD`.
    pub fn code(&self) -> &str {
        // Built from ASCII letters only.
        std::str::from_utf8(&self.code).unwrap_or("XXX")
    }

    /// Decimals of the minor unit (2 for cents).
    pub fn decimals(&self) -> u8 {
        self.decimals
    }

    /// Picos in one minor unit.
    pub(crate) fn picos_per_minor(&self) -> u128 {
        PICOS_PER_UNIT / 10u128.pow(u32::from(self.decimals))
    }

    /// Picos in one minor unit, as a `u64` (at most 10¹², with no decimals).
    pub(crate) fn picos_per_minor_u64(&self) -> u64 {
        // At most 10¹²: fits.
        u64::try_from(self.picos_per_minor()).unwrap_or(u64::MAX)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A currency code that is not three ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct InvalidCurrency;

impl fmt::Display for InvalidCurrency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a currency is an ISO 4217 code of three letters, such as USD")
    }
}

impl std::error::Error for InvalidCurrency {}

/// An amount of money: exact to 10⁻¹² of the currency unit, however many small amounts were
/// added to make it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    picos: u128,
    currency: Currency,
}

impl Money {
    /// Nothing, in `currency`.
    pub fn zero(currency: Currency) -> Money {
        Money { picos: 0, currency }
    }

    /// `minor` minor units (cents for USD) of `currency`.
    pub fn from_minor(minor: u64, currency: Currency) -> Money {
        Money {
            picos: u128::from(minor) * currency.picos_per_minor(),
            currency,
        }
    }

    pub(crate) fn from_picos(picos: u128, currency: Currency) -> Money {
        Money { picos, currency }
    }

    /// The currency.
    pub fn currency(&self) -> Currency {
        self.currency
    }

    /// The exact amount, in picos (10⁻¹² of the currency unit).
    pub fn picos(&self) -> u128 {
        self.picos
    }

    /// The amount in whole minor units (cents), rounded half up: what an invoice shows.
    pub fn minor_units(&self) -> u128 {
        let per = self.currency.picos_per_minor();
        (self.picos + per / 2) / per
    }

    /// The amount in currency units, as a float: for display and gauges only.
    pub fn as_f64(&self) -> f64 {
        self.picos as f64 / PICOS_PER_UNIT as f64
    }

    /// The sum, or `None` for amounts in different currencies.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        (self.currency == other.currency).then(|| Money {
            picos: self.picos.saturating_add(other.picos),
            currency: self.currency,
        })
    }
}

/// Amounts compare within one currency; amounts in two currencies are not ordered.
impl PartialOrd for Money {
    fn partial_cmp(&self, other: &Money) -> Option<std::cmp::Ordering> {
        (self.currency == other.currency).then(|| self.picos.cmp(&other.picos))
    }
}

impl fmt::Display for Money {
    /// `12.34 USD`: the amount rounded to the minor unit.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let decimals = u32::from(self.currency.decimals);
        let minor = self.minor_units();
        let scale = 10u128.pow(decimals);
        if decimals == 0 {
            write!(f, "{minor} {}", self.currency)
        } else {
            write!(
                f,
                "{}.{:0width$} {}",
                minor / scale,
                minor % scale,
                self.currency,
                width = decimals as usize
            )
        }
    }
}

/// Parses a non-negative decimal such as `2.50` or `0.0375` into an integer count of
/// `10^-scale` units, exactly; `None` when it is not such a number, has more than `scale`
/// decimals, or does not fit.
pub(crate) fn parse_decimal(text: &str, scale: u32) -> Option<u128> {
    let text = text.trim();
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() && fraction.is_empty()
        || fraction.len() > scale as usize
        || !whole
            .bytes()
            .chain(fraction.bytes())
            .all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let whole: u128 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let fraction_value: u128 = if fraction.is_empty() {
        0
    } else {
        fraction.parse().ok()?
    };
    let pad = 10u128.pow(scale - fraction.len() as u32);
    whole
        .checked_mul(10u128.pow(scale))?
        .checked_add(fraction_value * pad)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currencies_know_their_minor_unit() {
        assert_eq!(Currency::new("usd").unwrap(), Currency::USD);
        assert_eq!(Currency::new("JPY").unwrap().decimals(), 0);
        assert_eq!(Currency::new("KWD").unwrap().decimals(), 3);
        assert_eq!(Currency::new("EUR").unwrap().code(), "EUR");
        for bad in ["", "US", "USDX", "U$D", "ÜSD", "12 "] {
            assert_eq!(Currency::new(bad), Err(InvalidCurrency), "{bad:?}");
        }
    }

    #[test]
    fn a_million_tiny_amounts_add_up_exactly() {
        // 75 micro-dollars (500 tokens at $0.15 a million), a million times: exactly $75.
        let one = Money::from_picos(75_000_000, Currency::USD);
        let mut sum = Money::zero(Currency::USD);
        for _ in 0..1_000_000 {
            sum = sum.checked_add(one).unwrap();
        }
        assert_eq!(sum.minor_units(), 7_500);
        assert_eq!(sum.to_string(), "75.00 USD");
        // The same in floats drifts.
        let float: f64 = (0..1_000_000).map(|_| 0.000075).sum();
        assert_ne!(float, 75.0);
    }

    #[test]
    fn minor_units_round_half_up() {
        let usd = |picos| Money::from_picos(picos, Currency::USD);
        assert_eq!(usd(4_999_999_999).minor_units(), 0);
        assert_eq!(usd(5_000_000_000).minor_units(), 1);
        assert_eq!(usd(1_234_000_000_000).to_string(), "1.23 USD");
        assert_eq!(
            Money::from_minor(1234, Currency::new("JPY").unwrap()).to_string(),
            "1234 JPY"
        );
        assert_eq!(
            Money::from_minor(1234, Currency::new("KWD").unwrap()).to_string(),
            "1.234 KWD"
        );
        assert_eq!(
            usd(1).checked_add(Money::zero(Currency::new("EUR").unwrap())),
            None
        );
    }

    #[test]
    fn decimals_parse_exactly_or_not_at_all() {
        assert_eq!(parse_decimal("2.50", 6), Some(2_500_000));
        assert_eq!(parse_decimal("0.0375", 6), Some(37_500));
        assert_eq!(parse_decimal(".5", 6), Some(500_000));
        assert_eq!(parse_decimal("15", 6), Some(15_000_000));
        for bad in ["", ".", "-1", "1e-6", "1.2.3", "0.0000001", "abc", "1,5"] {
            assert_eq!(parse_decimal(bad, 6), None, "{bad:?}");
        }
        assert_eq!(parse_decimal(&"9".repeat(60), 6), None);
    }
}
