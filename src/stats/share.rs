//! Resource share, for noisy-neighbour detection: each tenant's fraction of the work in flight
//! and of the time spent serving over the sliding window, and the rule that names a tenant a
//! noisy neighbour.

use std::time::Duration;

/// One tenant's load, read at collection time from the in-process statistics: nothing is added
/// to the request path.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Load {
    /// Requests and queries in flight.
    pub(crate) inflight: u64,
    /// Time spent serving what finished within the sliding window, in microseconds.
    pub(crate) busy_micros: u64,
}

/// The resources a share is reported for, as the `resource` attribute names them.
pub(crate) const INFLIGHT: &str = "inflight";
/// See [`INFLIGHT`].
pub(crate) const BUSY_TIME: &str = "busy_time";

/// Calls `report(tenant, resource, share)` for each tenant with a share above zero of each
/// resource, so a quiet platform reports nothing.
pub(crate) fn shares<T>(loads: &[(T, Load)], mut report: impl FnMut(&T, &'static str, f64)) {
    let inflight: u64 = loads.iter().map(|(_, l)| l.inflight).sum();
    let busy: u64 = loads.iter().map(|(_, l)| l.busy_micros).sum();
    for (tenant, load) in loads {
        if load.inflight > 0 {
            report(tenant, INFLIGHT, load.inflight as f64 / inflight as f64);
        }
        if load.busy_micros > 0 {
            report(tenant, BUSY_TIME, load.busy_micros as f64 / busy as f64);
        }
    }
}

/// Busy time over the span of time it was gathered in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Busy {
    /// Time spent serving what finished within the span, in microseconds.
    pub(crate) micros: u64,
    /// How long the span is.
    pub(crate) span: Duration,
}

impl Busy {
    /// Requests in flight on average over the span: busy time divided by the span (Little's
    /// law). A request counts when it ends, with its whole duration.
    pub(crate) fn in_flight(self) -> f64 {
        let span = self.span.as_secs_f64();
        if span > 0.0 {
            self.micros as f64 / 1e6 / span
        } else {
            0.0
        }
    }
}

/// When a tenant is a noisy neighbour: it holds more than `share` of the service's busy time
/// while the service averages at least `min_in_flight` requests in flight (it is loaded: others
/// wait) and at least `min_tenants` tenants have work.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct NoisyRule {
    pub(crate) share: f64,
    pub(crate) min_tenants: usize,
    pub(crate) min_in_flight: f64,
}

/// Calls `report(tenant, share, in_flight)` for each noisy neighbour among `tenants`, given
/// each tenant's requests in flight on average over the window (see [`Busy::in_flight`]):
/// `share` is its part of them, `in_flight` the whole service's.
pub(crate) fn noisy_neighbors<T>(
    tenants: &[(T, f64)],
    rule: NoisyRule,
    mut report: impl FnMut(&T, f64, f64),
) {
    // Negative or NaN figures cannot come from durations; skip them rather than let them
    // pull the sum down.
    let valid = |v: f64| v.is_finite() && v > 0.0;
    let in_flight: f64 = tenants.iter().map(|(_, v)| *v).filter(|v| valid(*v)).sum();
    let active = tenants.iter().filter(|(_, v)| valid(*v)).count();
    // A tenant alone, or a service nobody waits on, has no noisy neighbour.
    if active < rule.min_tenants.max(2) || in_flight <= 0.0 || in_flight < rule.min_in_flight {
        return;
    }
    for (tenant, v) in tenants.iter().filter(|(_, v)| valid(*v)) {
        let share = v / in_flight;
        if share > rule.share {
            report(tenant, share, in_flight);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULE: NoisyRule = NoisyRule {
        share: 0.4,
        min_tenants: 3,
        min_in_flight: 32.0,
    };

    fn named(tenants: &[(&'static str, f64)], rule: NoisyRule) -> Vec<(&'static str, f64, f64)> {
        let mut seen = Vec::new();
        noisy_neighbors(tenants, rule, |t, share, all| seen.push((*t, share, all)));
        seen
    }

    #[test]
    fn in_flight_is_busy_time_over_the_span() {
        let busy = Busy {
            micros: 90_000_000,
            span: Duration::from_secs(60),
        };
        assert_eq!(busy.in_flight(), 1.5);
        assert_eq!(Busy::default().in_flight(), 0.0);
    }

    #[test]
    fn a_noisy_neighbour_needs_a_share_a_loaded_service_and_neighbours() {
        let saturated = [("hog", 40.0), ("a", 5.0), ("b", 5.0), ("c", 5.0)];
        let seen = named(&saturated, RULE);
        assert_eq!(seen.len(), 1, "{seen:?}");
        let (tenant, share, all) = seen[0];
        assert_eq!((tenant, all), ("hog", 55.0));
        assert!((share - 40.0 / 55.0).abs() < 1e-12, "{share}");
        // The same shares on a service far from loaded: nobody waits.
        let light = saturated.map(|(t, v)| (t, v / 10.0));
        assert!(named(&light, RULE).is_empty());
        // Loaded, but alone or with one neighbour.
        assert!(named(&[("hog", 40.0)], RULE).is_empty());
        assert!(named(&[("hog", 40.0), ("a", 5.0), ("b", 0.0)], RULE).is_empty());
        // Exactly at the threshold is not over it.
        let edge = [("edge", 20.0), ("a", 15.0), ("b", 15.0)];
        assert!(named(&edge, RULE).is_empty());
        // Nonsense figures are ignored, never a panic.
        let odd = [
            ("hog", 40.0),
            ("a", f64::NAN),
            ("b", -3.0),
            ("c", 5.0),
            ("d", 5.0),
        ];
        assert_eq!(named(&odd, RULE).len(), 1);
    }

    #[test]
    fn shares_add_up_and_skip_idle_tenants() {
        let load = |inflight, busy_micros| Load {
            inflight,
            busy_micros,
        };
        let loads = [
            ("a", load(3, 9_000)),
            ("b", load(1, 1_000)),
            ("c", load(0, 0)),
        ];
        let mut seen = Vec::new();
        shares(&loads, |t, resource, v| seen.push((*t, resource, v)));
        assert_eq!(
            seen,
            [
                ("a", INFLIGHT, 0.75),
                ("a", BUSY_TIME, 0.9),
                ("b", INFLIGHT, 0.25),
                ("b", BUSY_TIME, 0.1),
            ]
        );
    }
}
