//! Alerts, in process: the rules are evaluated against each tenant's SLO windows, statistics,
//! quotas and share of the service, and each alert fires once, stays firing while its condition
//! holds, and resolves once it has stopped holding for a while.
//!
//! - [`AlertRules`]: the SRE workbook's multi-window burn-rate rules, the original design's plain
//!   thresholds (success rate, p99, quota), noisy neighbours, and their thresholds.
//! - [`AlertEngine`]: evaluates them on the registry's clock and delivers [`AlertEvent`]s to
//!   subscribers ([`AlertSubscription`]), callbacks, a `tracing` event with the tenant, tier,
//!   rule, windows and rates, and the `tenant.alerts` counter.
//! - [`AlertTask`]: the same every interval on a thread of its own; [`init`](fn@crate::init)
//!   starts one.
//! - [`AlertmanagerSink`] (feature `alertmanager`): the alerts posted to Alertmanager with the
//!   same labels from every replica, so many replicas make one notification.

#[cfg(feature = "alertmanager")]
mod alertmanager;
mod deliver;
mod event;
mod rules;
mod task;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[cfg(feature = "alertmanager")]
pub use alertmanager::{AlertmanagerSink, AlertmanagerTask};
pub use deliver::AlertSubscription;
pub use event::{AlertEvent, AlertKind, AlertState, Measure, Reading, Severity, Window};
pub use rules::AlertRules;
pub use task::AlertTask;

use crate::registry::TenantRegistry;
use crate::tenant::TenantId;

/// The default time between two evaluations of [`AlertTask`].
pub const DEFAULT_EVALUATION_INTERVAL: Duration = Duration::from_secs(10);

/// The in-process alerts [`init`](fn@crate::init) sets up: the rules, and how often a
/// background task judges them. Given to
/// [`TelemetryBuilder::alerts`](crate::TelemetryBuilder::alerts).
///
/// ```
/// use std::time::Duration;
/// use tenant_otel::alert::{AlertRules, Alerts};
///
/// let builder = tenant_otel::Telemetry::builder().alerts(
///     Alerts::new(AlertRules::default().p99_above(Duration::from_secs(2)))
///         .every(Duration::from_secs(5)),
/// );
/// # let _ = builder;
/// ```
#[derive(Debug, Clone)]
#[must_use]
pub struct Alerts {
    pub(crate) rules: AlertRules,
    /// `None`: no background task.
    pub(crate) every: Option<Duration>,
}

impl Default for Alerts {
    /// [`AlertRules::default`], judged every [`DEFAULT_EVALUATION_INTERVAL`].
    fn default() -> Self {
        Alerts::new(AlertRules::default())
    }
}

impl Alerts {
    /// These rules, judged every [`DEFAULT_EVALUATION_INTERVAL`] (10 s).
    pub fn new(rules: AlertRules) -> Self {
        Alerts {
            rules,
            every: Some(DEFAULT_EVALUATION_INTERVAL),
        }
    }

    /// Judge the rules this often in the background.
    ///
    /// ```
    /// use std::time::Duration;
    ///
    /// let alerts = tenant_otel::alert::Alerts::default().every(Duration::from_secs(1));
    /// # let _ = alerts;
    /// ```
    pub fn every(mut self, every: Duration) -> Self {
        self.every = Some(every);
        self
    }

    /// No background task: call [`AlertEngine::evaluate`] yourself (on a simulated clock, say).
    ///
    /// ```
    /// let alerts = tenant_otel::alert::Alerts::default().manual();
    /// # let _ = alerts;
    /// ```
    pub fn manual(mut self) -> Self {
        self.every = None;
        self
    }
}

/// Evaluates [`AlertRules`] against a registry's tenants and delivers the events.
///
/// ```
/// use std::time::Duration;
/// use tenant_otel::{Clock, TenantRegistry};
/// use tenant_otel::alert::{AlertEngine, AlertKind, AlertRules};
///
/// let clock = Clock::manual();
/// let registry = TenantRegistry::builder().clock(clock.clone()).build();
/// let alerts = AlertEngine::new(&registry, AlertRules::default());
/// let events = alerts.subscribe();
///
/// registry.update_quota_usage("acme", "tokens", 95.0)?;
/// alerts.evaluate();
/// let fired = events.drain();
/// assert_eq!(fired.len(), 1);
/// assert_eq!((fired[0].tenant.as_str(), fired[0].kind), ("acme", AlertKind::Quota));
///
/// registry.update_quota_usage("acme", "tokens", 40.0)?;
/// clock.advance(Duration::from_secs(61));
/// alerts.evaluate();
/// assert_eq!(events.drain().len(), 1, "resolved once false for a minute");
/// # Ok::<(), tenant_otel::query::QuotaError>(())
/// ```
#[derive(Clone)]
pub struct AlertEngine {
    inner: Arc<Engine>,
}

struct Engine {
    registry: TenantRegistry,
    rules: AlertRules,
    active: Mutex<HashMap<Key, Active>>,
    sinks: deliver::Sinks,
}

/// One alert: tenant, rule, and for SLO rules the objective.
type Key = (TenantId, AlertKind, Option<crate::stats::Sli>);

/// A firing alert.
struct Active {
    tier: String,
    since: Instant,
    last_true: Instant,
    readings: Vec<event::Reading>,
}

impl AlertEngine {
    /// An engine for `registry`'s tenants, with these rules.
    pub fn new(registry: &TenantRegistry, rules: AlertRules) -> Self {
        AlertEngine {
            inner: Arc::new(Engine {
                registry: registry.clone(),
                rules,
                active: Mutex::new(HashMap::new()),
                sinks: deliver::Sinks::default(),
            }),
        }
    }

    /// Evaluates every rule now (on the registry's clock), delivers the events that result, and
    /// returns them: an alert whose condition became true fires, one whose condition has been
    /// false for the resolve time resolves.
    pub fn evaluate(&self) -> Vec<AlertEvent> {
        let engine = &*self.inner;
        let now = engine.registry.now();
        let holding = engine.rules.evaluate(&engine.registry, now);
        let mut events = Vec::new();
        {
            let mut active = lock(&engine.active);
            let mut seen = Vec::with_capacity(holding.len());
            for c in holding {
                let key = (c.tenant, c.kind, c.slo);
                seen.push(key.clone());
                match active.get_mut(&key) {
                    Some(a) => {
                        a.last_true = now;
                        a.readings = c.readings;
                        a.tier = c.tier;
                    }
                    None => {
                        let a = Active {
                            tier: c.tier,
                            since: now,
                            last_true: now,
                            readings: c.readings,
                        };
                        events.push(event(&key, &a, AlertState::Firing, now));
                        active.insert(key, a);
                    }
                }
            }
            let hold = engine.rules.resolve_after;
            active.retain(|key, a| {
                let resolved =
                    !seen.contains(key) && now.saturating_duration_since(a.last_true) >= hold;
                if resolved {
                    events.push(event(key, a, AlertState::Resolved, now));
                }
                !resolved
            });
        }
        add_traces(&engine.registry, &mut events);
        let counter = &engine.registry.shared().operator.alerts;
        for e in &events {
            engine.sinks.deliver(e, counter);
        }
        events
    }

    /// The alerts firing now, as their firing events (with the latest readings).
    pub fn firing(&self) -> Vec<AlertEvent> {
        let now = self.inner.registry.now();
        let mut out: Vec<AlertEvent> = lock(&self.inner.active)
            .iter()
            .map(|(key, a)| event(key, a, AlertState::Firing, now))
            .collect();
        add_traces(&self.inner.registry, &mut out);
        out.sort_by(|a, b| (&a.tenant, a.kind).cmp(&(&b.tenant, b.kind)));
        out
    }

    /// The alerts firing now for one tenant.
    pub fn firing_for(&self, tenant: &str) -> Vec<AlertEvent> {
        let mut out = self.firing();
        out.retain(|e| e.tenant.as_str() == tenant);
        out
    }

    /// A stream of every event from now on.
    pub fn subscribe(&self) -> AlertSubscription {
        self.inner.sinks.subscribe()
    }

    /// Calls `f` with every event from now on, on the evaluating thread.
    pub fn on_event(&self, f: impl Fn(&AlertEvent) + Send + Sync + 'static) {
        self.inner.sinks.on_event(Arc::new(f));
    }

    /// Evaluates every `every` on a thread of its own until the returned task is dropped.
    pub fn spawn(&self, every: Duration) -> std::io::Result<AlertTask> {
        AlertTask::spawn(self.clone(), every)
    }

    /// The rules.
    pub fn rules(&self) -> &AlertRules {
        &self.inner.rules
    }

    /// Now, on the registry's clock (the clock of every event's times).
    #[cfg_attr(not(feature = "alertmanager"), allow(dead_code))]
    pub(crate) fn registry_now(&self) -> Instant {
        self.inner.registry.now()
    }
}

fn event(key: &Key, a: &Active, state: AlertState, at: Instant) -> AlertEvent {
    AlertEvent {
        tenant: key.0.clone(),
        tier: a.tier.clone(),
        kind: key.1,
        slo: key.2,
        state,
        readings: a.readings.clone(),
        since: a.since,
        at,
        traces: Vec::new(),
    }
}

/// Gives each event its tenant's recent trace references: failed requests first, then the
/// slowest. Read outside the engine's lock.
fn add_traces(registry: &TenantRegistry, events: &mut [AlertEvent]) {
    for e in events {
        if let Some(entry) = registry.entry_for_label(e.tenant.as_str()) {
            let (mut failed, slowest) = entry.trace_refs();
            failed.extend(slowest);
            e.traces = failed;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl std::fmt::Debug for AlertEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AlertEngine")
            .field("rules", &self.inner.rules)
            .field("firing", &lock(&self.inner.active).len())
            .finish()
    }
}
