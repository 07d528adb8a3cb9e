//! Service level objectives: what share of a tenant's requests must succeed (availability) and
//! be fast (latency), per tier, with per-tenant overrides, over a compliance window.

use std::fmt;
use std::time::Duration;

/// An SLA objective: the share of a tenant's requests that must succeed, strictly between 0
/// and 1.
///
/// ```
/// use tenant_otel::slo::Objective;
///
/// let three_nines = Objective::new(0.999).unwrap();
/// assert_eq!(three_nines.get(), 0.999);
/// assert!(Objective::new(f64::NAN).is_err());
/// assert!(Objective::new(1.0).is_err(), "no error budget at all: every burn rate is infinite");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Objective(f64);

impl Objective {
    /// The objective `value`, if it is a number strictly between 0 and 1.
    pub fn new(value: f64) -> Result<Self, InvalidObjective> {
        // NaN fails both comparisons, so it is refused here too.
        if value > 0.0 && value < 1.0 {
            Ok(Objective(value))
        } else {
            Err(InvalidObjective { value })
        }
    }

    /// The share of requests that must succeed.
    pub fn get(self) -> f64 {
        self.0
    }

    /// The share allowed to fail.
    pub(crate) fn budget(self) -> f64 {
        1.0 - self.0
    }
}

impl TryFrom<f64> for Objective {
    type Error = InvalidObjective;

    fn try_from(value: f64) -> Result<Self, Self::Error> {
        Objective::new(value)
    }
}

/// An objective that is not a number strictly between 0 and 1 (NaN included).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InvalidObjective {
    value: f64,
}

impl fmt::Display for InvalidObjective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "an SLA objective must lie strictly between 0 and 1, not {}",
            self.value
        )
    }
}

impl std::error::Error for InvalidObjective {}

/// A latency objective: a share of requests ([`target`](Self::target)) that must be faster than
/// a threshold.
///
/// ```
/// use std::time::Duration;
/// use tenant_otel::slo::{LatencyObjective, Objective};
///
/// let fast = LatencyObjective::new(Duration::from_secs(1), Objective::new(0.99)?);
/// assert_eq!(fast.threshold(), Duration::from_secs(1));
/// # Ok::<(), tenant_otel::slo::InvalidObjective>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyObjective {
    threshold: Duration,
    target: Objective,
}

impl LatencyObjective {
    /// `target` of the requests must take less than `threshold` (to the end of the response).
    pub fn new(threshold: Duration, target: Objective) -> Self {
        LatencyObjective { threshold, target }
    }

    /// The duration a good request stays under.
    pub fn threshold(self) -> Duration {
        self.threshold
    }

    /// The share of requests that must stay under it.
    pub fn target(self) -> Objective {
        self.target
    }
}

/// The objectives of a tier or of one tenant: availability (the share of requests that do not
/// fail on the server's side) and, optionally, latency.
///
/// ```
/// use std::time::Duration;
/// use tenant_otel::slo::{Objective, Slo};
///
/// let premium = Slo::availability(Objective::new(0.999)?)
///     .with_latency(Duration::from_secs(1), Objective::new(0.99)?);
/// assert_eq!(premium.latency().unwrap().threshold(), Duration::from_secs(1));
/// # Ok::<(), tenant_otel::slo::InvalidObjective>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[must_use]
pub struct Slo {
    availability: Objective,
    latency: Option<LatencyObjective>,
}

impl Slo {
    /// An availability objective alone.
    pub fn availability(objective: Objective) -> Self {
        Slo {
            availability: objective,
            latency: None,
        }
    }

    /// Adds a latency objective: `target` of the requests faster than `threshold`.
    pub fn with_latency(mut self, threshold: Duration, target: Objective) -> Self {
        self.latency = Some(LatencyObjective::new(threshold, target));
        self
    }

    /// The availability objective.
    pub fn availability_objective(&self) -> Objective {
        self.availability
    }

    /// The latency objective, if any.
    pub fn latency(&self) -> Option<LatencyObjective> {
        self.latency
    }

    /// The same, with another availability objective.
    pub(crate) fn with_availability(mut self, objective: Objective) -> Self {
        self.availability = objective;
        self
    }
}

/// The objectives of every tier, and the compliance window.
#[derive(Debug, Clone)]
pub(crate) struct SloPolicy {
    tiers: Vec<(String, Slo)>,
    default: Slo,
    /// The compliance window, in days.
    pub(crate) compliance_days: u32,
}

/// The default compliance window.
pub(crate) const DEFAULT_COMPLIANCE_DAYS: u32 = 30;

/// The longest compliance window the day buckets hold.
pub const MAX_COMPLIANCE_DAYS: u32 = 31;

impl Default for SloPolicy {
    /// The tiers of the Prometheus rules: free 99 %, standard 99.5 %, premium 99.9 % available,
    /// over 30 days; a tenant with no (or another) tier is held to the standard objective.
    fn default() -> Self {
        let slo = |o| Slo::availability(Objective(o));
        SloPolicy {
            tiers: vec![
                ("free".into(), slo(0.99)),
                ("standard".into(), slo(0.995)),
                ("premium".into(), slo(0.999)),
            ],
            default: slo(0.995),
            compliance_days: DEFAULT_COMPLIANCE_DAYS,
        }
    }
}

impl SloPolicy {
    pub(crate) fn set(&mut self, tier: &str, slo: Slo) {
        match self.tiers.iter_mut().find(|(t, _)| t == tier) {
            Some(slot) => slot.1 = slo,
            None => self.tiers.push((tier.to_owned(), slo)),
        }
    }

    /// Changes only the availability objective of `tier`.
    pub(crate) fn set_availability(&mut self, tier: &str, objective: Objective) {
        let slo = self.of(Some(tier)).with_availability(objective);
        self.set(tier, slo);
    }

    pub(crate) fn of(&self, tier: Option<&str>) -> Slo {
        tier.and_then(|tier| self.tiers.iter().find(|(t, _)| t == tier))
            .map_or(self.default, |(_, o)| *o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objectives_by_tier() {
        let mut p = SloPolicy::default();
        assert_eq!(p.of(Some("premium")).availability.get(), 0.999);
        assert_eq!(p.of(None).availability.get(), 0.995);
        p.set_availability("gold", Objective::new(0.9999).unwrap());
        assert_eq!(p.of(Some("gold")).availability.get(), 0.9999);
        let fast = Slo::availability(Objective(0.99))
            .with_latency(Duration::from_millis(300), Objective(0.95));
        p.set("free", fast);
        assert_eq!(p.of(Some("free")), fast);
        for bad in [f64::NAN, 0.0, 1.0, -0.5, 2.0, f64::INFINITY] {
            assert!(Objective::new(bad).is_err(), "{bad}");
        }
    }
}
