//! What the observable instruments read at each collection: in-flight counts, `tenant.info`,
//! resource shares and the SLA gauges, from the registry's live entries.

use opentelemetry::{KeyValue, StringValue};

use super::entry::TenantEntry;
use super::Inner;
use crate::instruments::semconv;
use crate::instruments::{Observe, Report};
use crate::stats::{shares, Objective, Sli, SloWindows, WINDOWS};

/// One SLI of one tenant, as the SLA gauges read it.
struct SliSource<'a> {
    windows: &'a SloWindows,
    sli: Sli,
    objective: Objective,
    /// `tenant.id`, `tenant.tier` and `slo`.
    attributes: &'a [KeyValue; 3],
}

impl Inner {
    /// Each SLI of each tenant, with the attributes its gauges carry.
    fn for_each_sli(&self, mut report: impl FnMut(&SliSource<'_>)) {
        self.for_each_entry(|e: &TenantEntry| {
            let slo = e.slo();
            let tier = StringValue::from(e.tier().unwrap_or_else(|| "unknown".to_owned()));
            let slis = [
                Some((Sli::Availability, slo.availability_objective())),
                slo.latency().map(|l| (Sli::Latency, l.target())),
            ];
            for (sli, objective) in slis.into_iter().flatten() {
                let attributes = [
                    e.key_value().clone(),
                    KeyValue::new(semconv::TENANT_TIER, tier.clone()),
                    KeyValue::new(semconv::SLO, sli.as_str()),
                ];
                report(&SliSource {
                    windows: &e.stats.slo,
                    sli,
                    objective,
                    attributes: &attributes,
                });
            }
        });
    }
}

impl Observe for Inner {
    fn active_requests(&self, report: Report<'_, i64>) {
        // Called once per collection: the export interval it closes is over.
        self.collected();
        self.for_each_entry(|e| e.server.observe_active(e.key_value(), &mut *report));
    }

    fn active_queries(&self, report: Report<'_, i64>) {
        self.for_each_entry(|e| {
            // Only tenants that have run a query have `rag.*` series.
            if e.queries.series_if_made().is_some() {
                report(
                    e.stats.queries.active(),
                    std::slice::from_ref(e.key_value()),
                );
            }
        });
    }

    fn tenant_info(&self, report: Report<'_, u64>) {
        for entry in self.tenants.pin().values() {
            entry.info.observe(&mut *report);
        }
    }

    fn resource_share(&self, report: Report<'_, f64>) {
        let now = self.shared.now();
        let mut loads = Vec::new();
        self.for_each_entry(|e| loads.push((e.key_value().clone(), e.stats.load(now))));
        shares(&loads, |tenant, resource, share| {
            report(
                share,
                &[tenant.clone(), KeyValue::new(semconv::RESOURCE, resource)],
            );
        });
    }

    fn sla_burn_rate(&self, report: Report<'_, f64>) {
        let secs = self.shared.secs(self.shared.now());
        self.for_each_sli(|s| {
            for window in WINDOWS {
                if let Some(burn) = s.windows.burn(secs, window, s.sli, s.objective) {
                    let mut attributes = s.attributes.to_vec();
                    attributes.push(KeyValue::new(semconv::WINDOW, window.label));
                    report(burn.rate, &attributes);
                }
            }
        });
    }

    fn sla_error_budget_remaining(&self, report: Report<'_, f64>) {
        let secs = self.shared.secs(self.shared.now());
        let days = self.shared.compliance_days();
        self.for_each_sli(|s| {
            if let Some(left) = s.windows.budget_remaining(secs, days, s.sli, s.objective) {
                report(left, s.attributes);
            }
        });
    }
}
