//! Why setting telemetry up or shutting it down failed.

use std::error::Error;
use std::fmt;

use opentelemetry_sdk::error::OTelSdkError;

use super::protocol::Protocol;

/// One of the three OpenTelemetry signals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Signal {
    /// Spans.
    Traces,
    /// Metrics.
    Metrics,
    /// Log records.
    Logs,
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Signal::Traces => "traces",
            Signal::Metrics => "metrics",
            Signal::Logs => "logs",
        })
    }
}

/// Why [`init`](fn@crate::init) failed: a bad setting, or an exporter that could not be built.
#[derive(Debug)]
#[non_exhaustive]
pub enum InitError {
    /// `OTEL_EXPORTER_OTLP_PROTOCOL` names a protocol other than `grpc` and `http/protobuf`.
    UnsupportedProtocol(String),
    /// An OTLP endpoint is set, but this build lacks the crate feature its protocol needs.
    MissingFeature {
        /// The protocol asked for.
        protocol: Protocol,
        /// The crate feature that brings it.
        feature: &'static str,
    },
    /// The gRPC exporter's runtime could not be started.
    ExportRuntime(std::io::Error),
    /// The alert evaluation thread could not be started.
    AlertTask(std::io::Error),
    /// Settings that cannot hold together, e.g. idle-tenant reclaim with a Prometheus pull
    /// endpoint: a cumulative reader never forgets a tenant's series, so reclaiming slots would
    /// let its output grow without bound.
    Conflict(&'static str),
    /// An exporter could not be built (a malformed endpoint, say).
    Exporter {
        /// The signal whose exporter failed.
        signal: Signal,
        /// What the exporter said.
        source: Box<dyn Error + Send + Sync>,
    },
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::UnsupportedProtocol(value) => write!(
                f,
                "OTEL_EXPORTER_OTLP_PROTOCOL={value:?} is not supported: use `grpc` or `http/protobuf`"
            ),
            InitError::MissingFeature { protocol, feature } => write!(
                f,
                "OTLP protocol {protocol:?} needs the crate feature `{feature}`"
            ),
            InitError::ExportRuntime(_) => f.write_str("the export runtime could not start"),
            InitError::AlertTask(_) => f.write_str("the alert evaluation thread could not start"),
            InitError::Conflict(why) => f.write_str(why),
            InitError::Exporter { signal, .. } => {
                write!(f, "the {signal} exporter could not be built")
            }
        }
    }
}

impl Error for InitError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            InitError::ExportRuntime(e) | InitError::AlertTask(e) => Some(e),
            InitError::Exporter { source, .. } => Some(&**source),
            InitError::UnsupportedProtocol(_)
            | InitError::MissingFeature { .. }
            | InitError::Conflict(_) => None,
        }
    }
}

/// Why [`Telemetry::shutdown`](crate::Telemetry::shutdown) could not deliver everything: the
/// signals whose provider failed to flush or stop, each with the SDK's reason. The others were
/// shut down all the same.
#[derive(Debug)]
pub struct ShutdownError {
    failures: Vec<(Signal, OTelSdkError)>,
}

impl ShutdownError {
    /// Collects the failures; `None` when there were none.
    pub(super) fn of(failures: Vec<(Signal, OTelSdkError)>) -> Option<Self> {
        (!failures.is_empty()).then_some(ShutdownError { failures })
    }

    /// Each signal that failed, with the SDK's reason.
    pub fn failures(&self) -> impl Iterator<Item = (Signal, &OTelSdkError)> {
        self.failures.iter().map(|(s, e)| (*s, e))
    }
}

impl fmt::Display for ShutdownError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("telemetry shutdown failed for ")?;
        for (i, (signal, e)) in self.failures.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{signal}: {e}")?;
        }
        Ok(())
    }
}

impl Error for ShutdownError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        self.failures
            .first()
            .map(|(_, e)| e as &(dyn Error + 'static))
    }
}
