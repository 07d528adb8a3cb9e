//! Resource share, for noisy-neighbour detection: each tenant's fraction of the work in flight
//! and of the time spent serving over the sliding window.

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

#[cfg(test)]
mod tests {
    use super::*;

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
