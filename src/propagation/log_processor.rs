//! Puts the tenant on log records emitted inside a request, and the time the event happened on
//! every record.

use std::time::SystemTime;

use opentelemetry::baggage::BaggageExt;
use opentelemetry::logs::{AnyValue, LogRecord as _};
use opentelemetry::{Context, InstrumentationScope, Key};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::logs::{LogProcessor, SdkLogRecord};

use crate::tenant::{valid_in_baggage, TENANT_ID_KEY};

/// A [`LogProcessor`] that adds `tenant.id` to every log record emitted while a context with a
/// `tenant.id` baggage entry is attached (inside a request served through
/// [`TenantLayer`](crate::TenantLayer)).
///
/// Log records are where high-cardinality data (user ids, query ids) belongs: they carry the
/// tenant and the trace and span ids, and never become metric series.
///
/// It also gives a record without an event time the time the SDK observed it: the `tracing`
/// bridge (`opentelemetry-appender-tracing` 0.33) sets only the observed time, and a collector
/// then shows `Timestamp: 0` (1970) for every record. The bridge hands each event to the SDK as
/// it happens, so the observed time is the event's time.
///
/// Register it on the logger provider before the exporting processor. [`init`](fn@crate::init) does
/// this.
///
/// ```
/// use opentelemetry_sdk::logs::SdkLoggerProvider;
/// use tenant_otel::propagation::TenantLogProcessor;
///
/// let provider = SdkLoggerProvider::builder()
///     .with_log_processor(TenantLogProcessor::new())
///     .build();
/// # let _ = provider;
/// ```
#[derive(Debug, Default, Clone, Copy)]
pub struct TenantLogProcessor {
    _private: (),
}

impl TenantLogProcessor {
    /// A processor copying the baggage entry `tenant.id`.
    pub fn new() -> Self {
        TenantLogProcessor { _private: () }
    }
}

impl LogProcessor for TenantLogProcessor {
    fn emit(&self, record: &mut SdkLogRecord, _scope: &InstrumentationScope) {
        if record.timestamp().is_none() {
            record.set_timestamp(record.observed_timestamp().unwrap_or_else(SystemTime::now));
        }
        Context::map_current(|cx| {
            let tenant = valid_in_baggage(cx.baggage());
            let already = record
                .attributes_iter()
                .any(|(k, _)| k.as_str() == TENANT_ID_KEY);
            if let (Some(tenant), false) = (tenant, already) {
                record.add_attribute(
                    Key::from_static_str(TENANT_ID_KEY),
                    AnyValue::String(tenant.clone()),
                );
            }
        });
    }

    fn force_flush(&self) -> OTelSdkResult {
        Ok(())
    }

    fn shutdown_with_timeout(&self, _timeout: std::time::Duration) -> OTelSdkResult {
        Ok(())
    }
}

#[cfg(all(test, feature = "tracing-bridge"))]
mod tests {
    use std::time::{Duration, SystemTime};

    use opentelemetry::logs::{LogRecord as _, Logger as _, LoggerProvider as _};
    use opentelemetry_appender_tracing::layer::OpenTelemetryTracingBridge;
    use opentelemetry_sdk::logs::{InMemoryLogExporter, SdkLoggerProvider};
    use tracing_subscriber::layer::SubscriberExt;

    use super::TenantLogProcessor;

    /// A `tracing` event through the bridge, as `init()` wires it: the exported record has the
    /// event's time, not 0, and the bridge's integer fields stay integers.
    #[test]
    fn records_from_tracing_carry_the_time_of_the_event() {
        let exporter = InMemoryLogExporter::default();
        let provider = SdkLoggerProvider::builder()
            .with_log_processor(TenantLogProcessor::new())
            .with_simple_exporter(exporter.clone())
            .build();
        let subscriber =
            tracing_subscriber::registry().with(OpenTelemetryTracingBridge::new(&provider));
        let before = SystemTime::now();
        tracing::subscriber::with_default(subscriber, || {
            tracing::info!(rag.documents = 4u64, "query answered");
        });
        let after = SystemTime::now();
        let logs = exporter.get_emitted_logs().unwrap();
        assert_eq!(logs.len(), 1);
        let record = &logs[0].record;
        let at = record.timestamp().expect("an event time");
        assert!(
            at >= before && at <= after,
            "{at:?} outside [{before:?}, {after:?}]"
        );
        let documents = record
            .attributes_iter()
            .find(|(k, _)| k.as_str() == "rag.documents")
            .map(|(_, v)| v.clone());
        assert_eq!(documents, Some(opentelemetry::logs::AnyValue::Int(4)));
        // An event time given by the emitter is kept.
        let given = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let logger = provider.logger("test");
        let mut record = logger.create_log_record();
        record.set_timestamp(given);
        logger.emit(record);
        let logs = exporter.get_emitted_logs().unwrap();
        assert_eq!(logs.len(), 2);
        assert_eq!(logs[1].record.timestamp(), Some(given));
    }
}
