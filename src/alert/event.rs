//! What an alert says: which tenant, which rule, firing or resolved, and the figures behind it.

use std::fmt;
use std::time::Instant;

use crate::stats::{Sli, TraceRef};
use crate::tenant::TenantId;

/// The rule an alert comes from, as the `alert` attribute of `tenant.alerts` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum AlertKind {
    /// A fast error-budget burn over a long and a short window (the SRE workbook's page rule).
    Page,
    /// A slow error-budget burn (the workbook's ticket rule).
    Ticket,
    /// The success rate of the last minutes is under the threshold (95 % by default).
    SuccessRate,
    /// The p99 duration over the sliding window is over the threshold (5 s by default).
    Latency,
    /// A quota is nearly used up (over 90 % by default).
    Quota,
    /// The tenant holds more than its share (40 % by default) of the busy time of a loaded
    /// service, while other tenants have work: see [`AlertRules`](super::AlertRules).
    NoisyNeighbor,
}

impl AlertKind {
    /// The `alert` attribute value.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertKind::Page => "page",
            AlertKind::Ticket => "ticket",
            AlertKind::SuccessRate => "success_rate",
            AlertKind::Latency => "latency",
            AlertKind::Quota => "quota",
            AlertKind::NoisyNeighbor => "noisy_neighbor",
        }
    }

    /// How urgent the rule is: whether someone is woken up.
    pub fn severity(self) -> Severity {
        match self {
            AlertKind::Page | AlertKind::SuccessRate | AlertKind::Latency => Severity::Page,
            AlertKind::Ticket | AlertKind::Quota | AlertKind::NoisyNeighbor => Severity::Ticket,
        }
    }
}

impl fmt::Display for AlertKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How urgent an alert is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Severity {
    /// Someone should look now.
    Page,
    /// Someone should look during working hours.
    Ticket,
}

/// Whether an alert began or ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AlertState {
    /// The condition became true.
    Firing,
    /// The condition has been false for the rules' resolve time.
    Resolved,
}

impl AlertState {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Firing => "firing",
            AlertState::Resolved => "resolved",
        }
    }
}

/// What a [`Reading`] measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Measure {
    /// The rate the error budget burns at (`burn_rate`): 1 spends it exactly over the
    /// compliance window.
    BurnRate,
    /// The share of requests that succeeded (`success_rate`).
    SuccessRate,
    /// The 99th percentile duration, in seconds (`p99_seconds`).
    P99Seconds,
    /// The highest quota usage reported, in percent (`quota_percent`).
    QuotaPercent,
    /// The tenant's share of the service's busy time (`share`).
    Share,
    /// The service's requests in flight, on average over the window (`in_flight`).
    InFlight,
}

impl Measure {
    /// The name in logs and events: `burn_rate`, `success_rate`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Measure::BurnRate => "burn_rate",
            Measure::SuccessRate => "success_rate",
            Measure::P99Seconds => "p99_seconds",
            Measure::QuotaPercent => "quota_percent",
            Measure::Share => "share",
            Measure::InFlight => "in_flight",
        }
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Over which window a [`Reading`] was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Window {
    /// The last two minutes (`2m`), of the success-rate rule.
    TwoMinutes,
    /// `5m`, a burn-rate window.
    FiveMinutes,
    /// `30m`, a burn-rate window.
    ThirtyMinutes,
    /// `1h`, a burn-rate window.
    OneHour,
    /// `2h`, a burn-rate window.
    TwoHours,
    /// `6h`, a burn-rate window.
    SixHours,
    /// `1d`, a burn-rate window.
    OneDay,
    /// `3d`, a burn-rate window.
    ThreeDays,
    /// The in-process view's sliding window (`sliding`).
    Sliding,
    /// A gauge's last value (`now`).
    Now,
}

impl Window {
    /// The label in logs and events: `2m`, `5m`, ..., `3d`, `sliding`, `now`.
    pub fn as_str(self) -> &'static str {
        match self {
            Window::TwoMinutes => "2m",
            Window::FiveMinutes => "5m",
            Window::ThirtyMinutes => "30m",
            Window::OneHour => "1h",
            Window::TwoHours => "2h",
            Window::SixHours => "6h",
            Window::OneDay => "1d",
            Window::ThreeDays => "3d",
            Window::Sliding => "sliding",
            Window::Now => "now",
        }
    }

    /// The burn-rate window of this length, if it is one.
    pub(crate) fn burn(minutes: u64) -> Option<Window> {
        Some(match minutes {
            5 => Window::FiveMinutes,
            30 => Window::ThirtyMinutes,
            60 => Window::OneHour,
            120 => Window::TwoHours,
            360 => Window::SixHours,
            1440 => Window::OneDay,
            4320 => Window::ThreeDays,
            _ => return None,
        })
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One figure an alert was decided on: a burn rate over a window, a success rate, a p99, a
/// quota, a share; with the threshold it was held against.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Reading {
    /// What was measured.
    pub measure: Measure,
    /// Over which window.
    pub window: Window,
    /// The value.
    pub value: f64,
    /// The threshold it passed (or, once resolved, no longer passes).
    pub threshold: f64,
}

/// An alert firing or resolving, for one tenant.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct AlertEvent {
    /// The tenant.
    pub tenant: TenantId,
    /// Its tier (`unknown` when it has none).
    pub tier: String,
    /// The rule.
    pub kind: AlertKind,
    /// For SLO rules, which objective.
    pub slo: Option<Sli>,
    /// Firing or resolved.
    pub state: AlertState,
    /// The figures behind it, as last evaluated while the condition held.
    pub readings: Vec<Reading>,
    /// When the condition was first seen true, on the registry's clock.
    pub since: Instant,
    /// When this event was decided, on the registry's clock.
    pub at: Instant,
    /// The tenant's recent sampled traces worth a look: its last failed requests (newest
    /// first), then its slowest of the sliding window (slowest first); each with its link when
    /// a trace URL is configured
    /// ([`trace_url`](crate::TenantRegistryBuilder::trace_url)).
    pub traces: Vec<TraceRef>,
}

impl AlertEvent {
    /// How urgent the rule is.
    pub fn severity(&self) -> Severity {
        self.kind.severity()
    }
}

impl fmt::Display for AlertEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} for tenant {} ({})",
            self.kind,
            self.state.as_str(),
            self.tenant,
            self.tier
        )?;
        if let Some(slo) = self.slo {
            write!(f, " on {slo}")?;
        }
        for r in &self.readings {
            write!(
                f,
                "; {} over {} = {:.4} (threshold {})",
                r.measure, r.window, r.value, r.threshold
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::Window;
    use crate::stats::WINDOWS;

    #[test]
    fn every_burn_window_has_its_name() {
        for w in WINDOWS {
            assert_eq!(Window::burn(w.minutes).map(Window::as_str), Some(w.label));
        }
        assert_eq!(Window::burn(7), None);
    }
}
