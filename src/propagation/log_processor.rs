//! Puts the tenant on log records emitted inside a request.

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
/// Register it on the logger provider before the exporting processor. [`init`](fn@crate::init) does
/// this.
///
/// ```
/// use opentelemetry_sdk::logs::SdkLoggerProvider;
/// use tenant_otel::TenantLogProcessor;
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
