//! Diagnostics a client can trigger, printed at most once a minute each: a caller sending an
//! oversized `baggage` header on every request must not flood the console with one warning per
//! request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use tracing::callsite::Identifier;
use tracing::subscriber::Interest;
use tracing::Metadata;
use tracing_subscriber::layer::{Context, Filter};

/// How often one diagnostic of the OpenTelemetry crates may print.
const EVERY: Duration = Duration::from_secs(60);

/// A per-layer filter that lets each event of the OpenTelemetry crates through at most once a
/// minute, and everything else always. Bounded: one entry per call site in the code, whatever
/// the traffic.
#[derive(Debug, Default)]
pub(super) struct OncePerMinute {
    last: Mutex<HashMap<Identifier, Instant>>,
}

fn throttled(meta: &Metadata<'_>) -> bool {
    meta.is_event() && meta.target().starts_with("opentelemetry")
}

impl<S> Filter<S> for OncePerMinute {
    fn enabled(&self, meta: &Metadata<'_>, _: &Context<'_, S>) -> bool {
        if !throttled(meta) {
            return true;
        }
        let now = Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        match last.get(&meta.callsite()) {
            Some(at) if now.saturating_duration_since(*at) < EVERY => false,
            _ => {
                last.insert(meta.callsite(), now);
                true
            }
        }
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        // Decided per event for the throttled call sites, so the answer must not be cached.
        if throttled(meta) {
            Interest::sometimes()
        } else {
            Interest::always()
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    use super::OncePerMinute;

    #[test]
    fn the_sdks_diagnostics_print_once_a_minute_and_the_rest_always() {
        let out = Arc::new(Mutex::new(Vec::<u8>::new()));
        let writer = Arc::clone(&out);
        let console = tracing_subscriber::fmt::layer()
            .with_writer(move || Writer(Arc::clone(&writer)))
            .with_ansi(false)
            .with_filter(OncePerMinute::default());
        tracing::subscriber::with_default(tracing_subscriber::registry().with(console), || {
            for _ in 0..1000 {
                tracing::warn!(target: "opentelemetry_sdk", "BaggagePropagator.Extract.HeaderTooLarge");
            }
            for _ in 0..3 {
                tracing::warn!(target: "my_app", "the app's own warning");
            }
        });
        let text = String::from_utf8(out.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("HeaderTooLarge").count(), 1, "{text}");
        assert_eq!(text.matches("the app's own warning").count(), 3, "{text}");
    }

    struct Writer(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Writer {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
}
