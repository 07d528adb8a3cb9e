//! Where telemetry goes: the OTLP target read from the settings and the standard variables, the
//! exporters built for it, and the runtime the gRPC exporter runs on.

use std::time::Duration;

use opentelemetry_sdk::logs::LoggerProviderBuilder;
use opentelemetry_sdk::metrics::{MeterProviderBuilder, Temporality};
use opentelemetry_sdk::trace::{BatchSpanProcessor, TracerProviderBuilder};

use super::error::InitError;
#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
use super::error::Signal;
use super::protocol::Protocol;

/// `OTEL_EXPORTER_OTLP_PROTOCOL`, if set.
fn protocol_from_env() -> Result<Option<Protocol>, InitError> {
    match std::env::var("OTEL_EXPORTER_OTLP_PROTOCOL") {
        Err(_) => Ok(None),
        Ok(v) => match v.trim() {
            "grpc" => Ok(Some(Protocol::Grpc)),
            "http/protobuf" => Ok(Some(Protocol::HttpProtobuf)),
            other => Err(InitError::UnsupportedProtocol(other.to_owned())),
        },
    }
}

/// The builders of the three providers, which the exporters are attached to.
pub(super) struct Pipelines {
    pub(super) tracer: TracerProviderBuilder,
    /// The exporting span processor, which the tenant processor wraps: one processor per
    /// provider spares the SDK a copy of every span.
    pub(super) spans: Option<BatchSpanProcessor>,
    /// Spans handed to that processor and reaching its exporter, to tell its drops.
    pub(super) span_counts: std::sync::Arc<super::drops::SpanCounts>,
    pub(super) logger: LoggerProviderBuilder,
    pub(super) meter: MeterProviderBuilder,
}

/// The gRPC exporter's runtime. Dropping a Tokio runtime blocks, which panics inside another
/// runtime (where `init` is usually called, and where an early `?` drops it): this one is let go
/// in the background instead, without waiting for idle connections to close.
#[derive(Default)]
pub(super) struct ExportRuntime(#[cfg(feature = "otlp-grpc")] Option<tokio::runtime::Runtime>);

#[cfg(feature = "otlp-grpc")]
impl Drop for ExportRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// What to export, where and how.
#[cfg_attr(
    not(any(feature = "otlp-grpc", feature = "otlp-http")),
    allow(dead_code)
)]
pub(super) struct ExportTarget {
    traces: bool,
    metrics: bool,
    logs: bool,
    endpoint: Option<String>,
    timeout: Option<Duration>,
    protocol: Protocol,
}

impl ExportTarget {
    /// The target the settings and the standard variables describe; `None` when no endpoint is
    /// set for any signal, and nothing is to leave the process.
    pub(super) fn from_env(
        endpoint: Option<&str>,
        protocol: Option<Protocol>,
        timeout: Option<Duration>,
    ) -> Result<Option<Self>, InitError> {
        let env_protocol = protocol_from_env()?;
        let set = |var: &str| std::env::var(var).is_ok_and(|s| !s.trim().is_empty());
        // One endpoint for all signals, or one per signal: only the signals given an endpoint
        // are exported, so setting the traces endpoint alone does not send metrics and logs to
        // a default address.
        let all = endpoint.is_some() || set("OTEL_EXPORTER_OTLP_ENDPOINT");
        let traces = all || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT");
        let metrics = all || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT");
        let logs = all || set("OTEL_EXPORTER_OTLP_LOGS_ENDPOINT");
        if !(traces || metrics || logs) {
            return Ok(None);
        }
        Ok(Some(ExportTarget {
            traces,
            metrics,
            logs,
            endpoint: endpoint.map(str::to_owned),
            timeout,
            protocol: protocol.or(env_protocol).unwrap_or(Protocol::HttpProtobuf),
        }))
    }

    /// A configuration that cannot work although nothing refuses it: the conventional port of
    /// one OTLP protocol with the other protocol, which delivers nothing, silently.
    pub(super) fn mismatch(&self) -> Option<String> {
        let endpoint = self
            .endpoint
            .clone()
            .or_else(|| std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").ok())?;
        let port = endpoint.parse::<http::Uri>().ok()?.port_u16()?;
        let (expected, other, port_of_other) = match (self.protocol, port) {
            (Protocol::HttpProtobuf, 4317) => ("http/protobuf", "grpc", 4318),
            (Protocol::Grpc, 4318) => ("grpc", "http/protobuf", 4317),
            _ => return None,
        };
        Some(format!(
            "OTLP endpoint {endpoint} is the conventional {other} port, but the protocol is {expected}: \
             nothing will arrive. Set OTEL_EXPORTER_OTLP_PROTOCOL={other}, or use port {port_of_other}"
        ))
    }

    /// Attaches an exporter for each signal the target names. The gRPC exporter's connection
    /// tasks live on the runtime current when it is built: on the application's runtime they
    /// would stall whenever that runtime's thread blocks on shutdown (always, on a
    /// current-thread runtime) and fail outside any runtime, so they get a one-thread runtime of
    /// their own, returned to be kept until shutdown.
    #[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
    pub(super) fn attach(
        &self,
        mut p: Pipelines,
        temporality: Option<Temporality>,
        interval: Option<Duration>,
    ) -> Result<(Pipelines, ExportRuntime), InitError> {
        let runtime = self.runtime()?;
        {
            #[cfg(feature = "otlp-grpc")]
            let _entered = runtime.0.as_ref().map(|rt| rt.enter());
            if self.traces {
                let exporter = super::drops::CountingExporter {
                    inner: self.spans()?,
                    counts: std::sync::Arc::clone(&p.span_counts),
                };
                p.spans = Some(BatchSpanProcessor::builder(exporter).build());
            }
            if self.logs {
                p.logger = p.logger.with_batch_exporter(self.logs()?);
            }
            if self.metrics {
                let exporter = self.metrics(temporality)?;
                let mut reader = opentelemetry_sdk::metrics::PeriodicReader::builder(exporter);
                if let Some(interval) = interval {
                    reader = reader.with_interval(interval);
                }
                p.meter = p.meter.with_reader(reader.build());
            }
        }
        Ok((p, runtime))
    }

    /// Without an OTLP feature, a configured endpoint is a mistake to report, not to ignore.
    #[cfg(not(any(feature = "otlp-grpc", feature = "otlp-http")))]
    pub(super) fn attach(
        &self,
        _: Pipelines,
        _: Option<Temporality>,
        _: Option<Duration>,
    ) -> Result<(Pipelines, ExportRuntime), InitError> {
        Err(self.missing_feature())
    }

    #[cfg_attr(all(feature = "otlp-grpc", feature = "otlp-http"), allow(dead_code))]
    fn missing_feature(&self) -> InitError {
        InitError::MissingFeature {
            protocol: self.protocol,
            feature: self.protocol.feature(),
        }
    }
}

#[cfg(any(feature = "otlp-grpc", feature = "otlp-http"))]
mod otlp {
    use opentelemetry_otlp::{LogExporter, MetricExporter, SpanExporter, WithExportConfig};

    use super::*;

    /// One signal's exporter over the target's protocol.
    macro_rules! exporter {
        ($target:ident, $builder:expr, $signal:expr, $path:literal) => {{
            let built = match $target.protocol {
                #[cfg(feature = "otlp-grpc")]
                Protocol::Grpc => $target.configure($builder.with_tonic(), $path).build(),
                #[cfg(feature = "otlp-http")]
                Protocol::HttpProtobuf => $target.configure($builder.with_http(), $path).build(),
                #[allow(unreachable_patterns)]
                _ => return Err($target.missing_feature()),
            };
            built.map_err(|e| InitError::Exporter {
                signal: $signal,
                source: Box::new(e),
            })
        }};
    }

    impl ExportTarget {
        pub(super) fn runtime(&self) -> Result<ExportRuntime, InitError> {
            #[cfg(feature = "otlp-grpc")]
            if self.protocol == Protocol::Grpc {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("tenant-otel-export")
                    .enable_all()
                    .build()
                    .map_err(InitError::ExportRuntime)?;
                return Ok(ExportRuntime(Some(rt)));
            }
            Ok(ExportRuntime::default())
        }

        /// The endpoint and timeout, on any signal's exporter builder. gRPC takes the base URL,
        /// HTTP wants the signal's path.
        fn configure<B: WithExportConfig>(&self, mut builder: B, path: &str) -> B {
            if let Some(base) = &self.endpoint {
                builder = builder.with_endpoint(match self.protocol {
                    Protocol::Grpc => base.clone(),
                    Protocol::HttpProtobuf => {
                        format!("{}/v1/{path}", base.trim_end_matches('/'))
                    }
                });
            }
            if let Some(timeout) = self.timeout {
                builder = builder.with_timeout(timeout);
            }
            builder
        }

        pub(super) fn spans(&self) -> Result<SpanExporter, InitError> {
            exporter!(self, SpanExporter::builder(), Signal::Traces, "traces")
        }

        pub(super) fn logs(&self) -> Result<LogExporter, InitError> {
            exporter!(self, LogExporter::builder(), Signal::Logs, "logs")
        }

        pub(super) fn metrics(
            &self,
            temporality: Option<Temporality>,
        ) -> Result<MetricExporter, InitError> {
            let builder = match temporality {
                Some(t) => MetricExporter::builder().with_temporality(t),
                None => MetricExporter::builder(),
            };
            exporter!(self, builder, Signal::Metrics, "metrics")
        }
    }
}
