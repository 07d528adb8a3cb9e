//! Monthly budgets: how much of the month's budget a tenant has spent, where a straight line
//! through the month so far ends, and which thresholds that passes. The same arithmetic as the
//! shipped PromQL rules (`predict_linear` over the month to date).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::money::Money;

/// The calendar month (UTC) that `at` falls in: its start and its length.
fn month_of(at: SystemTime) -> (SystemTime, Duration) {
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    let days = secs / 86_400;
    let (year, month, day) = civil_from_days(days as i64);
    let start_days = days - (day - 1);
    let next = if month == 12 {
        days_from_civil(year + 1, 1, 1)
    } else {
        days_from_civil(year, month + 1, 1)
    };
    let length_days = next as u64 - start_days;
    (
        UNIX_EPOCH + Duration::from_secs(start_days * 86_400),
        Duration::from_secs(length_days * 86_400),
    )
}

/// Where a wall-clock time falls in the UTC calendar: its day and month numbered from 1 (day 1
/// is 1970-01-01, month 1 is January 1970), for sums kept per day and per month.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Calendar {
    pub(crate) day: u64,
    pub(crate) month: u64,
    /// `2026-12-02`.
    pub(crate) date: (i64, u64, u64),
}

impl Calendar {
    pub(crate) fn at(at: SystemTime) -> Calendar {
        let days = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() / 86_400;
        let date = civil_from_days(days as i64);
        let month = (date.0 - 1970).max(0) as u64 * 12 + date.1;
        Calendar {
            day: days + 1,
            month,
            date,
        }
    }
}

/// Year, month (1–12) and day (1–31) of a count of days since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u64, u64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097) as u64;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe as i64 + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Days since 1970-01-01 of a date (`days_from_civil`).
fn days_from_civil(year: i64, month: u64, day: u64) -> i64 {
    let year = year - i64::from(month <= 2);
    let era = year.div_euclid(400);
    let yoe = year.rem_euclid(400) as u64;
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe as i64 - 719_468
}

/// Where a tenant's spending stands against its monthly budget.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub struct BudgetStatus {
    /// Spent so far this month.
    pub spent: Money,
    /// The month's budget.
    pub budget: Money,
    /// `spent / budget` (0 with no budget).
    pub used: f64,
    /// Month-end spend on a straight line through the month so far.
    pub forecast: Money,
}

impl BudgetStatus {
    /// The status at `now` (a wall-clock time) of a tenant that has spent `spent` since the
    /// start of the calendar month (UTC) against a monthly `budget`.
    pub fn at(spent: Money, budget: Money, now: SystemTime) -> Self {
        let (start, month) = month_of(now);
        let elapsed = now.duration_since(start).unwrap_or_default();
        Self::new(spent, budget, elapsed, month)
    }

    /// The status `elapsed` into a month of length `month`, worked out in integers.
    pub fn new(spent: Money, budget: Money, elapsed: Duration, month: Duration) -> Self {
        // Spending of less than an hour says too little about the month: no projection yet.
        let elapsed_ms = elapsed.as_millis().max(3_600_000);
        let forecast_picos = spent
            .picos()
            .saturating_mul(month.as_millis())
            .checked_div(elapsed_ms)
            .unwrap_or(0)
            .max(spent.picos());
        let used = if budget.picos() == 0 {
            0.0
        } else {
            spent.picos() as f64 / budget.picos() as f64
        };
        BudgetStatus {
            spent,
            budget,
            used,
            forecast: Money::from_picos(forecast_picos, spent.currency()),
        }
    }

    /// The highest of the warning thresholds (0.8, 1.0) spending has reached, if any.
    pub fn threshold_reached(&self) -> Option<f64> {
        [1.0, 0.8].into_iter().find(|t| self.used >= *t)
    }

    /// True when the month-end forecast passes the budget while spending has not yet.
    pub fn forecast_over(&self) -> bool {
        self.budget.picos() > 0 && self.forecast > self.budget && self.spent < self.budget
    }
}

#[cfg(test)]
mod tests {
    use super::super::money::Currency;
    use super::*;

    fn at(days: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(days * 86_400 + 3_600)
    }

    #[test]
    fn months_have_their_calendar_length() {
        // 2026-12-02 and 2028-02-10 (a leap year) and 1970-01-01.
        let (start, len) = month_of(at(20_789));
        assert_eq!(start, UNIX_EPOCH + Duration::from_secs(20_788 * 86_400));
        assert_eq!(len, Duration::from_secs(31 * 86_400));
        assert_eq!(
            month_of(at(days_from_civil(2028, 2, 10) as u64))
                .1
                .as_secs(),
            29 * 86_400
        );
        assert_eq!(
            month_of(at(days_from_civil(2027, 2, 10) as u64))
                .1
                .as_secs(),
            28 * 86_400
        );
        assert_eq!(
            month_of(at(0)),
            (UNIX_EPOCH, Duration::from_secs(31 * 86_400))
        );
        for days in [0, 59, 789, 10_956, 20_789, 40_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn calendar_days_and_months_number_from_one() {
        assert_eq!(
            Calendar::at(UNIX_EPOCH),
            Calendar {
                day: 1,
                month: 1,
                date: (1970, 1, 1)
            }
        );
        let c = Calendar::at(at(20_789));
        assert_eq!((c.date, c.day), ((2026, 12, 2), 20_790));
        assert_eq!(c.month, 56 * 12 + 12);
        assert_eq!(Calendar::at(at(20_788)).month, c.month);
        assert_eq!(Calendar::at(at(20_787)).month, c.month - 1);
    }

    #[test]
    fn a_tenant_spending_fast_is_forecast_over_before_it_is_over() {
        let usd = |cents| Money::from_minor(cents, Currency::USD);
        let month = Duration::from_secs(30 * 86_400);
        // $400 of $1,000 ten days in: on course for $1,200.
        let fast = BudgetStatus::new(usd(40_000), usd(100_000), month / 3, month);
        assert_eq!(fast.forecast.minor_units(), 120_000);
        assert!(fast.forecast_over());
        assert_eq!(fast.threshold_reached(), None);
        // $300 ten days in: on course for $900, no alarm.
        let calm = BudgetStatus::new(usd(30_000), usd(100_000), month / 3, month);
        assert!(!calm.forecast_over());
        // Past 80 %, then past the budget: thresholds, and no forecast alert once spent.
        let late = BudgetStatus::new(usd(85_000), usd(100_000), month / 2, month);
        assert_eq!(late.threshold_reached(), Some(0.8));
        let over = BudgetStatus::new(usd(100_001), usd(100_000), month / 2, month);
        assert_eq!(over.threshold_reached(), Some(1.0));
        assert!(!over.forecast_over());
        // On the calendar: $500 of $1,000 at noon on 16 December (15.5 of 31 days): $1,000 by
        // the end, not over.
        let mid = UNIX_EPOCH
            + Duration::from_secs(days_from_civil(2026, 12, 16) as u64 * 86_400 + 12 * 3_600);
        let status = BudgetStatus::at(usd(50_000), usd(100_000), mid);
        assert_eq!(status.forecast.minor_units(), 100_000);
        assert!(!status.forecast_over());
        // The first minutes of a month project nothing wild.
        let early = BudgetStatus::new(usd(100), usd(100_000), Duration::from_secs(1), month);
        assert_eq!(early.forecast.minor_units(), 100 * 720);
    }
}
