//! `tenant.resource.share`: how much of the service each tenant holds, for noisy-neighbour
//! detection.

use opentelemetry::metrics::{AsyncInstrument, Meter, ObservableGauge};
use opentelemetry::{Key, KeyValue};

use crate::entry::TenantEntry;
use crate::metrics::names;

const RESOURCE: Key = Key::from_static_str("resource");

/// One tenant's load, read at collection time from the in-process statistics: nothing is added
/// to the request path.
pub(crate) struct Load {
    pub(crate) inflight: u64,
    pub(crate) busy_micros: u64,
}

impl Load {
    pub(crate) fn of(entry: &TenantEntry) -> Load {
        let active = entry.requests.active().max(0) + entry.queries.active().max(0);
        Load {
            inflight: u64::try_from(active).unwrap_or(0),
            busy_micros: entry
                .requests
                .window_busy_micros()
                .saturating_add(entry.queries.window_busy_micros()),
        }
    }
}

/// Each tenant's share of the requests and queries in flight (`resource=inflight`) and of the
/// time spent serving them over the sliding window (`resource=busy_time`). Only tenants with a
/// share above zero are reported, so a quiet platform exports nothing.
pub(crate) fn observe(loads: &[(KeyValue, Load)], observe: &mut dyn FnMut(f64, &[KeyValue])) {
    let inflight: u64 = loads.iter().map(|(_, l)| l.inflight).sum();
    let busy: u64 = loads.iter().map(|(_, l)| l.busy_micros).sum();
    for (tenant, load) in loads {
        if inflight > 0 && load.inflight > 0 {
            observe(
                load.inflight as f64 / inflight as f64,
                &[tenant.clone(), KeyValue::new(RESOURCE, "inflight")],
            );
        }
        if busy > 0 && load.busy_micros > 0 {
            observe(
                load.busy_micros as f64 / busy as f64,
                &[tenant.clone(), KeyValue::new(RESOURCE, "busy_time")],
            );
        }
    }
}

pub(crate) fn gauge(
    meter: &Meter,
    loads: impl Fn() -> Vec<(KeyValue, Load)> + Send + Sync + 'static,
) -> ObservableGauge<f64> {
    meter
        .f64_observable_gauge(names::TENANT_RESOURCE_SHARE)
        .with_unit("1")
        .with_description(
            "Each tenant's fraction of the work in flight (resource=inflight) and of the busy time over the sliding window (resource=busy_time).",
        )
        .with_callback(move |observer: &dyn AsyncInstrument<f64>| {
            observe(&loads(), &mut |value, attributes| {
                observer.observe(value, attributes)
            });
        })
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shares_add_up_and_skip_idle_tenants() {
        let loads = [
            (
                KeyValue::new("tenant.id", "a"),
                Load {
                    inflight: 3,
                    busy_micros: 9_000,
                },
            ),
            (
                KeyValue::new("tenant.id", "b"),
                Load {
                    inflight: 1,
                    busy_micros: 1_000,
                },
            ),
            (
                KeyValue::new("tenant.id", "c"),
                Load {
                    inflight: 0,
                    busy_micros: 0,
                },
            ),
        ];
        let mut seen = Vec::new();
        observe(&loads, &mut |v, attrs| {
            seen.push((attrs[0].value.to_string(), attrs[1].value.to_string(), v))
        });
        assert_eq!(
            seen,
            [
                ("a".into(), "inflight".into(), 0.75),
                ("a".into(), "busy_time".into(), 0.9),
                ("b".into(), "inflight".into(), 0.25),
                ("b".into(), "busy_time".into(), 0.1),
            ]
        );
    }
}
