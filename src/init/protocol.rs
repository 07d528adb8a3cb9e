//! The OTLP transport, named on its own so the settings and the errors that mention it both
//! read it from below.

/// The OTLP transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Protocol {
    /// OTLP over gRPC (port 4317 by convention).
    Grpc,
    /// OTLP over HTTP with protobuf bodies (port 4318 by convention).
    HttpProtobuf,
}

impl Protocol {
    /// The crate feature that brings this protocol.
    pub(super) fn feature(self) -> &'static str {
        match self {
            Protocol::Grpc => "otlp-grpc",
            Protocol::HttpProtobuf => "otlp-http",
        }
    }
}
