//! Where alert events go: subscribers' channels, callbacks, a `tracing` event (and through it the
//! OpenTelemetry log pipeline), and the `tenant.alerts` counter.

use std::fmt::Write as _;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry::metrics::Counter;
use opentelemetry::KeyValue;

use super::event::{AlertEvent, AlertState};
use crate::instruments::semconv;

/// Events a subscriber may leave unread before new ones are dropped for it: evaluation never
/// waits for a slow subscriber.
const SUBSCRIPTION_CAPACITY: usize = 1024;

type Callback = Arc<dyn Fn(&AlertEvent) + Send + Sync>;

/// The subscribers and callbacks of one engine.
#[derive(Default)]
pub(super) struct Sinks {
    subscribers: Mutex<Vec<SyncSender<AlertEvent>>>,
    callbacks: Mutex<Vec<Callback>>,
}

impl Sinks {
    pub(super) fn subscribe(&self) -> AlertSubscription {
        let (tx, rx) = std::sync::mpsc::sync_channel(SUBSCRIPTION_CAPACITY);
        lock(&self.subscribers).push(tx);
        AlertSubscription { rx }
    }

    pub(super) fn on_event(&self, f: Callback) {
        lock(&self.callbacks).push(f);
    }

    /// Sends `event` everywhere it goes.
    pub(super) fn deliver(&self, event: &AlertEvent, counter: &Counter<u64>) {
        if event.state == AlertState::Firing {
            counter.add(
                1,
                &[
                    KeyValue::new(semconv::TENANT_ID, event.tenant.to_value()),
                    KeyValue::new(semconv::TENANT_TIER, event.tier.clone()),
                    KeyValue::new(semconv::ALERT, event.kind.as_str()),
                ],
            );
        }
        trace(event);
        // A receiver that is gone is forgotten; a full one misses this event.
        lock(&self.subscribers).retain(|tx| match tx.try_send(event.clone()) {
            Ok(()) | Err(TrySendError::Full(_)) => true,
            Err(TrySendError::Disconnected(_)) => false,
        });
        let callbacks = lock(&self.callbacks).clone();
        for f in callbacks {
            f(event);
        }
    }
}

/// The `tracing` event of an alert: a warning when it fires, information when it resolves.
fn trace(event: &AlertEvent) {
    let mut readings = String::new();
    for r in &event.readings {
        let _ = write!(
            readings,
            "{}{}[{}]={:.4}>{}",
            if readings.is_empty() { "" } else { " " },
            r.measure,
            r.window,
            r.value,
            r.threshold
        );
    }
    let windows: Vec<&str> = event.readings.iter().map(|r| r.window.as_str()).collect();
    let windows = windows.join(",");
    let (tenant, tier, alert, slo) = (
        event.tenant.as_str(),
        event.tier.as_str(),
        event.kind.as_str(),
        event.slo.map_or("", |s| s.as_str()),
    );
    let state = event.state.as_str();
    // The level of a `tracing` event is fixed where it is written: one arm per level.
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: "tenant_otel::alert",
                $level,
                state,
                alert,
                slo,
                tenant.id = %tenant,
                tenant.tier = %tier,
                windows = windows.as_str(),
                readings = readings.as_str(),
                "alert {alert} {state} for tenant {tenant}"
            )
        };
    }
    match event.state {
        AlertState::Firing => emit!(tracing::Level::WARN),
        AlertState::Resolved => emit!(tracing::Level::INFO),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A stream of alert events, from
/// [`AlertEngine::subscribe`](crate::alert::AlertEngine::subscribe). Holds up to 1024 unread
/// events; past that, new ones are dropped for this subscriber (evaluation never waits).
#[derive(Debug)]
pub struct AlertSubscription {
    rx: Receiver<AlertEvent>,
}

impl AlertSubscription {
    /// The next event, waiting at most `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Option<AlertEvent> {
        self.rx.recv_timeout(timeout).ok()
    }

    /// Every event already delivered, without waiting.
    pub fn drain(&self) -> Vec<AlertEvent> {
        self.rx.try_iter().collect()
    }
}
