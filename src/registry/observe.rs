//! What the observable instruments read at each collection: in-flight counts, `tenant.info`,
//! resource shares and the SLA gauges, from the registry's live entries.

use std::time::Instant;

use opentelemetry::{KeyValue, StringValue};

use super::Inner;
use crate::instruments::semconv;
use crate::instruments::{Observe, Report};
use crate::stats::{read_sla, shares, Load, SlaReading};

impl Inner {
    /// Each tenant with an SLA reading now, with its `tenant.id` and `tenant.tier` attributes.
    fn sla_readings(&self, mut report: impl FnMut(&SlaReading, &[KeyValue])) {
        let minute = self.minute(Instant::now());
        self.for_each_entry(|e| {
            let tier = e.tier();
            let objective = self.objectives.of(tier.as_deref());
            if let Some(reading) = read_sla(&e.sla, minute, objective) {
                let tier = StringValue::from(tier.unwrap_or_else(|| "unknown".to_owned()));
                report(
                    &reading,
                    &[
                        e.key_value().clone(),
                        KeyValue::new(semconv::TENANT_TIER, tier),
                    ],
                );
            }
        });
    }
}

impl Observe for Inner {
    fn active_requests(&self, report: Report<'_, i64>) {
        self.for_each_entry(|e| e.observe_active_requests(&mut *report));
    }

    fn active_queries(&self, report: Report<'_, i64>) {
        self.for_each_entry(|e| {
            // Only tenants that have run a query have `rag.*` series.
            if e.query_series.get().is_some() {
                report(e.queries.active(), std::slice::from_ref(e.key_value()));
            }
        });
    }

    fn tenant_info(&self, report: Report<'_, u64>) {
        for entry in self.tenants.pin().values() {
            entry.observe_info(&mut *report);
        }
    }

    fn resource_share(&self, report: Report<'_, f64>) {
        let now = Instant::now();
        let mut loads = Vec::new();
        self.for_each_entry(|e| {
            let active = e.requests.active().max(0) + e.queries.active().max(0);
            let load = Load {
                inflight: u64::try_from(active).unwrap_or(0),
                busy_micros: e
                    .requests
                    .window_busy_micros(now)
                    .saturating_add(e.queries.window_busy_micros(now)),
            };
            loads.push((e.key_value().clone(), load));
        });
        shares(&loads, |tenant, resource, share| {
            report(
                share,
                &[tenant.clone(), KeyValue::new(semconv::RESOURCE, resource)],
            );
        });
    }

    fn sla_burn_rate(&self, report: Report<'_, f64>) {
        self.sla_readings(|reading, attributes| {
            for (label, rate) in &reading.burn_rates {
                let mut attributes = attributes.to_vec();
                attributes.push(KeyValue::new(semconv::WINDOW, *label));
                report(*rate, &attributes);
            }
        });
    }

    fn sla_error_budget_remaining(&self, report: Report<'_, f64>) {
        self.sla_readings(|reading, attributes| report(reading.budget_remaining, attributes));
    }
}
