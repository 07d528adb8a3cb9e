//! Whether a request failed, and whose fault it was: decided once, for HTTP and gRPC, and read
//! by the span, the metrics, the in-process view and the SLA alike.
//!
//! The rules, from the OpenTelemetry HTTP and RPC semantic conventions for server spans:
//! - a 5xx status is the server's failure; a 4xx is the client's and no failure of the server;
//! - a gRPC call fails with HTTP 200 and says so in `grpc-status`; the codes the server is to
//!   blame for (`UNKNOWN`, `DEADLINE_EXCEEDED`, `UNIMPLEMENTED`, `INTERNAL`, `UNAVAILABLE`,
//!   `DATA_LOSS`) are failures named by the code;
//! - an inner service or a response body that fails is a failure of type `_OTHER`, a handler
//!   that panics one of type `panic`;
//! - a client that goes away before the end of the body is `cancelled`: a failure of the
//!   request, but one that spends no error budget, since the client chose it.
//!
//! And for outgoing calls, from the client conventions: every unsuccessful answer is an error,
//! a 4xx included, and any gRPC code but `OK` (a call that ended without one is `UNKNOWN`).
//!
//! gRPC status codes have one type here, [`GrpcCode`]: read from `grpc-status`, named for
//! `rpc.response.status_code` and written on the layer's own refusals.

use std::borrow::Cow;

use http::{HeaderMap, StatusCode};

/// `error.type` when the client went away before the response body ended.
pub(crate) const CANCELLED: &str = "cancelled";

/// `error.type` of a request (or an outgoing call) whose inner service or response body
/// returned an error: the semantic conventions' `_OTHER`. The error's type is all that is
/// known of it, and its name from `std::any::type_name` is neither stable from one compiler
/// to the next nor short (generic names run to hundreds of characters): unfit for a metric
/// label.
pub(crate) const FAILED: &str = "_OTHER";

/// `error.type` of a request whose handler or response body panicked.
pub(crate) const PANIC: &str = "panic";

/// How a request (or an outgoing call) ended, as far as the transport can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The response ran to its end.
    Completed,
    /// The inner service or the body returned an error.
    Failed,
    /// An outgoing call's client failed with an error of this kind (`timeout`, a type name):
    /// static, so the set of `error.type` values stays finite.
    #[cfg_attr(not(feature = "reqwest"), allow(dead_code))]
    Transport(&'static str),
    /// The handler or the body panicked.
    Panicked,
    /// Dropped before the end: the client went away, or the server shut down.
    Cancelled,
}

/// The verdict on a finished request. Small and `Copy`: it is part of the key a request's
/// duration series is found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Failure {
    /// Not a failure of the server (a 4xx included).
    None,
    /// A 5xx response (for a client, a 4xx too): `error.type` is the status code.
    ServerStatus,
    /// Named by a gRPC status, [`FAILED`] or [`PANIC`]: static, so the set is finite.
    Named(&'static str),
    /// The client went away.
    Cancelled,
}

impl Failure {
    /// The one decision. The way a request ended speaks first, then a gRPC status the server is
    /// to blame for, then the HTTP status.
    pub(crate) fn classify(
        status: Option<StatusCode>,
        grpc_status: Option<GrpcCode>,
        end: End,
    ) -> Self {
        if let Some(failure) = Failure::of_end(end) {
            return failure;
        }
        if let Some(name) = grpc_status.and_then(GrpcCode::server_error) {
            return Failure::Named(name);
        }
        if status.is_some_and(|s| s.is_server_error()) {
            return Failure::ServerStatus;
        }
        Failure::None
    }

    /// The client's verdict on an outgoing call: the way it ended speaks first, then its
    /// answer, where anything but success is a failure.
    pub(crate) fn classify_call(answer: Answer, end: End) -> Self {
        if let Some(failure) = Failure::of_end(end) {
            return failure;
        }
        match answer {
            Answer::Grpc(Some(GrpcCode::OK)) => Failure::None,
            Answer::Grpc(code) => Failure::Named(code.unwrap_or(GrpcCode::UNKNOWN).name()),
            Answer::Http(Some(status)) if status.is_client_error() || status.is_server_error() => {
                Failure::ServerStatus
            }
            Answer::Http(_) => Failure::None,
        }
    }

    fn of_end(end: End) -> Option<Self> {
        match end {
            End::Completed => None,
            End::Failed => Some(Failure::Named(FAILED)),
            End::Transport(name) => Some(Failure::Named(name)),
            End::Panicked => Some(Failure::Named(PANIC)),
            End::Cancelled => Some(Failure::Cancelled),
        }
    }

    /// True for every failure: what the span's error status and the view's error count say.
    pub(crate) fn is_failure(self) -> bool {
        self != Failure::None
    }

    /// True when the server is to blame: what the SLA's error budget counts.
    pub(crate) fn spends_budget(self) -> bool {
        matches!(self, Failure::ServerStatus | Failure::Named(_))
    }

    /// The `error.type` attribute, if any.
    pub(crate) fn error_type(self, status: Option<StatusCode>) -> Option<Cow<'static, str>> {
        match self {
            Failure::None => None,
            Failure::ServerStatus => status.map(|s| Cow::Owned(s.as_str().to_owned())),
            Failure::Named(name) => Some(Cow::Borrowed(name)),
            Failure::Cancelled => Some(Cow::Borrowed(CANCELLED)),
        }
    }
}

/// What a client saw of an outgoing call's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    /// An HTTP call, with its status if a response came.
    Http(Option<StatusCode>),
    /// A gRPC call, with its `grpc-status` if one came.
    Grpc(Option<GrpcCode>),
}

/// A gRPC status code, `0` to `16` by the protocol; any other value a peer sends is kept and
/// named `UNKNOWN`, as the protocol says to read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct GrpcCode(u8);

impl GrpcCode {
    pub(crate) const OK: GrpcCode = GrpcCode(0);
    pub(crate) const CANCELLED: GrpcCode = GrpcCode(1);
    pub(crate) const UNKNOWN: GrpcCode = GrpcCode(2);
    pub(crate) const INVALID_ARGUMENT: GrpcCode = GrpcCode(3);
    pub(crate) const DEADLINE_EXCEEDED: GrpcCode = GrpcCode(4);
    pub(crate) const PERMISSION_DENIED: GrpcCode = GrpcCode(7);
    pub(crate) const RESOURCE_EXHAUSTED: GrpcCode = GrpcCode(8);
    pub(crate) const UNIMPLEMENTED: GrpcCode = GrpcCode(12);
    pub(crate) const INTERNAL: GrpcCode = GrpcCode(13);
    pub(crate) const UNAVAILABLE: GrpcCode = GrpcCode(14);
    pub(crate) const DATA_LOSS: GrpcCode = GrpcCode(15);
    pub(crate) const UNAUTHENTICATED: GrpcCode = GrpcCode(16);

    const NAMES: [&'static str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];

    /// The decimal forms `grpc-status` carries, so a refusal's header is a static string.
    const DIGITS: [&'static str; 17] = [
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "11", "12", "13", "14", "15", "16",
    ];

    /// The number.
    pub(crate) fn get(self) -> u8 {
        self.0
    }

    /// The `grpc-status` of a response's headers or trailers, if it has a readable one.
    pub(crate) fn of_headers(headers: &HeaderMap) -> Option<GrpcCode> {
        headers
            .get("grpc-status")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u8>().ok())
            .map(GrpcCode)
    }

    /// The name, as `rpc.response.status_code` and `error.type` carry it.
    pub(crate) fn name(self) -> &'static str {
        Self::NAMES
            .get(usize::from(self.0))
            .copied()
            .unwrap_or("UNKNOWN")
    }

    /// The value of a `grpc-status` header.
    pub(crate) fn header_value(self) -> &'static str {
        Self::DIGITS
            .get(usize::from(self.0))
            .copied()
            .unwrap_or("2")
    }

    /// Whether this status says a method of the application answered the call, which is what
    /// admits a method to the route table (and so to span names and `rpc.method`). Not the
    /// codes that whatever stands in front of the methods answers for any path a client makes
    /// up: `UNIMPLEMENTED` (the router), `UNAUTHENTICATED` and `PERMISSION_DENIED` (auth
    /// interceptors), `RESOURCE_EXHAUSTED` (rate limits; tonic's load shedding), `CANCELLED`
    /// (the client went away, or a timeout struck, before any answer); nor a code outside
    /// gRPC's seventeen. The server's failures do admit (`UNAVAILABLE`, `INTERNAL`, ...): a
    /// method that fails from its first call is the one an operator needs to see by name. The
    /// layer's own refusals never admit, whatever their code.
    pub(crate) fn answered_by_application(self) -> bool {
        self <= GrpcCode::UNAUTHENTICATED
            && !matches!(
                self,
                GrpcCode::CANCELLED
                    | GrpcCode::PERMISSION_DENIED
                    | GrpcCode::RESOURCE_EXHAUSTED
                    | GrpcCode::UNIMPLEMENTED
                    | GrpcCode::UNAUTHENTICATED
            )
    }

    /// The name of a code that is the server's failure; `None` for success and for the
    /// caller's errors.
    fn server_error(self) -> Option<&'static str> {
        matches!(
            self,
            GrpcCode::UNKNOWN
                | GrpcCode::DEADLINE_EXCEEDED
                | GrpcCode::UNIMPLEMENTED
                | GrpcCode::INTERNAL
                | GrpcCode::UNAVAILABLE
                | GrpcCode::DATA_LOSS
        )
        .then(|| self.name())
    }
}

impl PartialOrd for GrpcCode {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for GrpcCode {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.cmp(&other.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OK: Option<StatusCode> = Some(StatusCode::OK);

    #[test]
    fn http_statuses() {
        let c = |s: u16| Failure::classify(StatusCode::from_u16(s).ok(), None, End::Completed);
        assert_eq!(c(200), Failure::None);
        assert_eq!(c(404), Failure::None, "4xx is the client's");
        assert_eq!(c(503), Failure::ServerStatus);
        assert_eq!(
            c(503).error_type(Some(StatusCode::SERVICE_UNAVAILABLE)),
            Some("503".into())
        );
    }

    #[test]
    fn grpc_statuses_only_count_server_codes() {
        assert_eq!(
            Failure::classify(OK, Some(GrpcCode(13)), End::Completed),
            Failure::Named("INTERNAL")
        );
        assert_eq!(
            Failure::classify(OK, Some(GrpcCode(3)), End::Completed),
            Failure::None
        );
        assert_eq!(
            Failure::classify(OK, Some(GrpcCode(0)), End::Completed),
            Failure::None
        );
    }

    #[test]
    fn cancellation_fails_the_request_but_spends_no_budget() {
        let f = Failure::classify(OK, Some(GrpcCode(13)), End::Cancelled);
        assert_eq!(f, Failure::Cancelled);
        assert!(f.is_failure());
        assert!(!f.spends_budget());
        assert_eq!(f.error_type(OK), Some(CANCELLED.into()));
        let inner = Failure::classify(None, None, End::Failed);
        assert!(inner.spends_budget());
        assert_eq!(inner.error_type(None), Some("_OTHER".into()));
        let panicked = Failure::classify(OK, None, End::Panicked);
        assert!(panicked.spends_budget());
        assert_eq!(panicked.error_type(OK), Some("panic".into()));
    }

    #[test]
    fn only_what_a_method_answers_admits_it() {
        let admitting: Vec<u8> = (0..=20)
            .filter(|&c| GrpcCode(c).answered_by_application())
            .collect();
        // Not CANCELLED (1), PERMISSION_DENIED (7), RESOURCE_EXHAUSTED (8), UNIMPLEMENTED (12),
        // UNAUTHENTICATED (16), nor past gRPC's codes.
        assert_eq!(admitting, [0, 2, 3, 4, 5, 6, 9, 10, 11, 13, 14, 15]);
    }

    #[test]
    fn a_client_fails_on_every_unsuccessful_answer() {
        let http = |s: u16| {
            let status = StatusCode::from_u16(s).ok();
            let f = Failure::classify_call(Answer::Http(status), End::Completed);
            f.error_type(status)
        };
        assert_eq!(http(200), None);
        assert_eq!(
            http(404),
            Some("404".into()),
            "a 4xx is the caller's failure"
        );
        assert_eq!(http(503), Some("503".into()));
        let grpc = |c: Option<u8>| {
            Failure::classify_call(Answer::Grpc(c.map(GrpcCode)), End::Completed).error_type(OK)
        };
        assert_eq!(grpc(Some(0)), None);
        assert_eq!(grpc(Some(3)), Some("INVALID_ARGUMENT".into()));
        assert_eq!(
            grpc(Some(99)),
            Some("UNKNOWN".into()),
            "outside gRPC's codes"
        );
        assert_eq!(grpc(None), Some("UNKNOWN".into()), "ended without a status");
        let timeout = Failure::classify_call(Answer::Http(OK), End::Transport("timeout"));
        assert_eq!(timeout.error_type(OK), Some("timeout".into()));
        let gone = Failure::classify_call(Answer::Grpc(Some(GrpcCode::OK)), End::Cancelled);
        assert_eq!(gone.error_type(OK), Some(CANCELLED.into()));
    }

    #[test]
    fn grpc_codes_have_one_name_and_one_header_value() {
        assert_eq!(GrpcCode::INVALID_ARGUMENT.header_value(), "3");
        assert_eq!(GrpcCode::RESOURCE_EXHAUSTED.header_value(), "8");
        assert_eq!(GrpcCode::RESOURCE_EXHAUSTED.name(), "RESOURCE_EXHAUSTED");
        for c in 0..=16 {
            let mut headers = HeaderMap::new();
            let value = GrpcCode(c).header_value();
            headers.insert("grpc-status", value.parse().unwrap());
            assert_eq!(GrpcCode::of_headers(&headers), Some(GrpcCode(c)));
        }
        assert_eq!(GrpcCode(17).name(), "UNKNOWN");
        let mut headers = HeaderMap::new();
        headers.insert("grpc-status", "nine".parse().unwrap());
        assert_eq!(GrpcCode::of_headers(&headers), None);
    }
}
