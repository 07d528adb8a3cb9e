//! [`AlertmanagerSink`]: the in-process alerts posted to Alertmanager, so replicas' alerts
//! become one notification.

use std::fmt;
use std::sync::mpsc::{channel, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime};

use super::event::{AlertEvent, AlertKind, AlertState, Severity};
use super::AlertEngine;

/// Posts an [`AlertEngine`]'s alerts to Alertmanager's v2 API (`POST /api/v2/alerts`), from a
/// thread of its own, until dropped.
///
/// Every replica of a service runs its own engine and sink. Each alert carries the same labels on
/// every replica — `alertname` (the name of the matching PromQL alert in
/// `collector-config/prometheus/rules/`), `tenant_id`, `tier`, `severity`, `objective` and
/// `service` — so Alertmanager sees one alert however many replicas send it, groups and routes it
/// with the shipped configuration, and notifies once.
///
/// A firing alert is posted at once and then again every [renewal](Self::renew_every), each time
/// with `endsAt` three renewals ahead: a lease. A replica whose condition cleared, or that died,
/// stops renewing; the alert stays firing in Alertmanager while any replica still renews it and
/// resolves when the last lease runs out, at most three renewals after the last replica cleared.
/// (An explicit resolve from one replica would end the alert for all of them while the others
/// still see it.) Posting never blocks evaluation: a slow or absent Alertmanager costs this
/// thread only, and a failed post is retried at the next renewal.
///
/// ```no_run
/// use std::time::Duration;
/// use tenant_otel::alert::{AlertEngine, AlertRules, AlertmanagerSink};
/// use tenant_otel::TenantRegistry;
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// let registry = TenantRegistry::builder().build();
/// let engine = AlertEngine::new(&registry, AlertRules::default());
/// let _evaluation = engine.spawn(Duration::from_secs(5))?;
/// let _sink = AlertmanagerSink::new("http://alertmanager:9093", "checkout")
///     .renew_every(Duration::from_secs(30))
///     .start(&engine)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct AlertmanagerSink {
    url: String,
    service: String,
    renew: Duration,
    generator_url: Option<String>,
}

impl AlertmanagerSink {
    /// The default interval between two posts of a firing alert.
    pub const DEFAULT_RENEWAL: Duration = Duration::from_secs(30);

    /// Posts to the Alertmanager at `base_url` (e.g. `http://alertmanager:9093`), labelling
    /// alerts with `service` (say, `service.name`).
    pub fn new(base_url: &str, service: &str) -> Self {
        AlertmanagerSink {
            url: format!("{}/api/v2/alerts", base_url.trim_end_matches('/')),
            service: service.to_owned(),
            renew: Self::DEFAULT_RENEWAL,
            generator_url: None,
        }
    }

    /// How often a firing alert is posted again (default 30 s; at least 100 ms). Alertmanager
    /// resolves an alert at most three renewals after the last replica stopped seeing it.
    pub fn renew_every(mut self, renew: Duration) -> Self {
        self.renew = renew.max(Duration::from_millis(100));
        self
    }

    /// The `generatorURL` of every alert: where a responder sees the alert's source (say, the
    /// service's `/tenants` view).
    pub fn generator_url(mut self, url: &str) -> Self {
        self.generator_url = Some(url.to_owned());
        self
    }

    /// Starts posting `engine`'s alerts, until the returned task is dropped.
    pub fn start(self, engine: &AlertEngine) -> std::io::Result<AlertmanagerTask> {
        let events = engine.subscribe();
        let engine = engine.clone();
        let (stop, stopped) = channel::<()>();
        let thread = std::thread::Builder::new()
            .name("tenant-otel-alertmanager".into())
            .spawn(move || {
                let client = reqwest::blocking::Client::builder()
                    .timeout(self.renew.min(Duration::from_secs(10)))
                    .build();
                let Ok(client) = client else { return };
                let mut next_renewal = Instant::now();
                loop {
                    // A new alert is posted at once; the firing ones at every renewal.
                    // Short waits, so a stop is seen within a fifth of a second.
                    let wait = next_renewal
                        .saturating_duration_since(Instant::now())
                        .min(Duration::from_millis(200));
                    if let Some(event) = events.recv_timeout(wait) {
                        if event.state == AlertState::Firing {
                            self.post(&client, &[event], &engine);
                        }
                    } else if Instant::now() >= next_renewal {
                        self.post(&client, &engine.firing(), &engine);
                        next_renewal = Instant::now() + self.renew;
                    }
                    match stopped.try_recv() {
                        Err(std::sync::mpsc::TryRecvError::Empty) => {}
                        _ => return,
                    }
                }
            })?;
        Ok(AlertmanagerTask {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    fn post(
        &self,
        client: &reqwest::blocking::Client,
        alerts: &[AlertEvent],
        engine: &AlertEngine,
    ) {
        if alerts.is_empty() {
            return;
        }
        let now = SystemTime::now();
        let clock_now = engine.registry_now();
        let body: Vec<serde_json::Value> = alerts
            .iter()
            .map(|e| self.alert(e, now, clock_now))
            .collect();
        let sent = client
            .post(&self.url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(serde_json::Value::Array(body).to_string())
            .send();
        if let Err(e) = sent.and_then(|r| r.error_for_status()) {
            tracing::debug!(target: "tenant_otel::alert", error = %e, "Alertmanager post failed; retried at the next renewal");
        }
    }

    /// One alert in Alertmanager's v2 form. `now` and `clock_now` are the same instant on the
    /// wall clock and on the registry's clock.
    fn alert(&self, e: &AlertEvent, now: SystemTime, clock_now: Instant) -> serde_json::Value {
        let since = now
            .checked_sub(clock_now.saturating_duration_since(e.since))
            .unwrap_or(now);
        let ends = now + self.renew * 3;
        let mut alert = serde_json::json!({
            "labels": {
                "alertname": alert_name(e.kind),
                "tenant_id": e.tenant.as_str(),
                "tier": e.tier,
                "severity": match e.severity() {
                    Severity::Page => "page",
                    _ => "ticket",
                },
                "objective": objective(e),
                "service": self.service,
            },
            "annotations": {
                "summary": format!("{} for tenant {} ({})", e.kind, e.tenant, e.tier),
                "description": e.to_string(),
            },
            "startsAt": humantime::format_rfc3339_millis(since).to_string(),
            "endsAt": humantime::format_rfc3339_millis(ends).to_string(),
        });
        if let Some(url) = &self.generator_url {
            alert["generatorURL"] = serde_json::Value::String(url.clone());
        }
        add_trace_annotations(&mut alert["annotations"], e);
        alert
    }
}

/// The name of the PromQL alert that watches the same condition, so Alertmanager routes and
/// inhibits both alike.
fn alert_name(kind: AlertKind) -> &'static str {
    match kind {
        AlertKind::Page => "TenantErrorBudgetBurnPage",
        AlertKind::Ticket => "TenantErrorBudgetBurnTicket",
        AlertKind::SuccessRate => "TenantSuccessRateLow",
        AlertKind::Latency => "TenantLatencyP99High",
        AlertKind::Quota => "TenantQuotaNearlyExhausted",
        AlertKind::NoisyNeighbor => "TenantMonopolizingInflight",
    }
}

/// The tenant's recent traces as annotations (strings, as Alertmanager wants them):
/// `trace_ids` and, when a trace URL is configured, `trace_urls` (one a line) and the first
/// link alone as `trace_url`, for templates and receivers that show one.
fn add_trace_annotations(annotations: &mut serde_json::Value, e: &AlertEvent) {
    if e.traces.is_empty() {
        return;
    }
    let ids: Vec<&str> = e.traces.iter().map(|t| t.trace_id.as_str()).collect();
    annotations["trace_ids"] = ids.join("\n").into();
    let urls: Vec<&str> = e.traces.iter().filter_map(|t| t.url.as_deref()).collect();
    if let Some(first) = urls.first() {
        annotations["trace_url"] = (*first).into();
        annotations["trace_urls"] = urls.join("\n").into();
    }
}

/// The `objective` label, as the PromQL alerts set it.
fn objective(e: &AlertEvent) -> &'static str {
    match e.kind {
        AlertKind::Page | AlertKind::Ticket => e.slo.map_or("availability", |s| s.as_str()),
        AlertKind::SuccessRate => "availability",
        AlertKind::Latency => "latency",
        AlertKind::Quota => "quota",
        AlertKind::NoisyNeighbor => "fairness",
    }
}

/// Posts alerts to Alertmanager on a thread of its own, from [`AlertmanagerSink::start`]. Stops
/// when dropped.
#[must_use = "dropping the task stops posting"]
pub struct AlertmanagerTask {
    stop: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AlertmanagerTask {
    /// Stops posting and waits for the thread to end (at most one renewal, or one post).
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for AlertmanagerTask {
    fn drop(&mut self) {
        self.shut();
    }
}

impl fmt::Debug for AlertmanagerTask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AlertmanagerTask").finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Instant, SystemTime};

    use super::{AlertEvent, AlertmanagerSink};
    use crate::alert::{AlertKind, AlertState};
    use crate::stats::TraceRef;
    use crate::tenant::TenantId;

    fn event(traces: Vec<TraceRef>) -> AlertEvent {
        let now = Instant::now();
        AlertEvent {
            tenant: TenantId::parse("acme").unwrap(),
            tier: "premium".into(),
            kind: AlertKind::SuccessRate,
            slo: None,
            state: AlertState::Firing,
            readings: Vec::new(),
            since: now,
            at: now,
            traces,
        }
    }

    fn trace(id: &str, url: Option<&str>) -> TraceRef {
        TraceRef {
            trace_id: id.into(),
            duration_ms: 12.0,
            status: Some(503),
            error_type: Some("503".into()),
            at_unix_ms: 1,
            url: url.map(Into::into),
        }
    }

    #[test]
    fn trace_annotations_follow_the_events_traces() {
        let sink = AlertmanagerSink::new("http://am", "svc");
        let alert = |e: &AlertEvent| sink.alert(e, SystemTime::now(), Instant::now());
        let none = alert(&event(Vec::new()));
        assert!(none["annotations"].get("trace_ids").is_none(), "{none}");
        assert!(none["annotations"].get("trace_url").is_none(), "{none}");

        let ids_only = alert(&event(vec![trace("aa", None), trace("bb", None)]));
        assert_eq!(ids_only["annotations"]["trace_ids"], "aa\nbb");
        assert!(ids_only["annotations"].get("trace_urls").is_none());

        let linked = alert(&event(vec![
            trace("aa", Some("http://j/trace/aa")),
            trace("bb", Some("http://j/trace/bb")),
        ]));
        assert_eq!(linked["annotations"]["trace_url"], "http://j/trace/aa");
        assert_eq!(
            linked["annotations"]["trace_urls"],
            "http://j/trace/aa\nhttp://j/trace/bb"
        );
    }
}
