//! The HTTP and gRPC instruments, server and client side.

use opentelemetry::metrics::{Counter, Histogram, Meter};

use super::{names, DURATION_BUCKETS};

/// The HTTP and gRPC instruments recorded on the request path, created once per registry.
#[derive(Clone, Debug)]
pub(crate) struct HttpInstruments {
    pub(crate) duration: Histogram<f64>,
    pub(crate) rpc_duration: Histogram<f64>,
    pub(crate) client_duration: Histogram<f64>,
    pub(crate) rpc_client_duration: Histogram<f64>,
    pub(crate) overflow: Counter<u64>,
}

impl HttpInstruments {
    pub(crate) fn new(meter: &Meter) -> Self {
        HttpInstruments {
            duration: meter
                .f64_histogram(names::HTTP_SERVER_REQUEST_DURATION)
                .with_unit("s")
                .with_description("Duration of HTTP server requests, to the end of the response body.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            rpc_duration: meter
                .f64_histogram(names::RPC_SERVER_CALL_DURATION)
                .with_unit("s")
                .with_description("Duration of gRPC server calls, to the end of the response.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            client_duration: meter
                .f64_histogram(names::HTTP_CLIENT_REQUEST_DURATION)
                .with_unit("s")
                .with_description("Duration of outgoing HTTP requests, to the end of the response body.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            rpc_client_duration: meter
                .f64_histogram(names::RPC_CLIENT_CALL_DURATION)
                .with_unit("s")
                .with_description("Duration of outgoing gRPC calls, to the end of the response.")
                .with_boundaries(DURATION_BUCKETS.to_vec())
                .build(),
            overflow: meter
                .u64_counter(names::TENANT_CARDINALITY_OVERFLOW)
                .with_unit("{request}")
                .with_description(
                    "HTTP requests whose tenant was past the cardinality cap and was labelled __overflow__.",
                )
                .build(),
        }
    }
}
