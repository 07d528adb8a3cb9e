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

use std::borrow::Cow;

use http::StatusCode;

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

/// How a request ended, as far as the transport can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum End {
    /// The response ran to its end.
    Completed,
    /// The inner service or the body returned an error.
    Failed,
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
    /// A 5xx response: `error.type` is the status code.
    ServerStatus,
    /// Named by a gRPC status, [`FAILED`] or [`PANIC`]: static, so the set is finite.
    Named(&'static str),
    /// The client went away.
    Cancelled,
}

impl Failure {
    /// The one decision. The way a request ended speaks first, then a gRPC status the server is
    /// to blame for, then the HTTP status.
    pub(crate) fn classify(status: Option<StatusCode>, grpc_status: Option<u8>, end: End) -> Self {
        match end {
            End::Failed => return Failure::Named(FAILED),
            End::Panicked => return Failure::Named(PANIC),
            End::Cancelled => return Failure::Cancelled,
            End::Completed => {}
        }
        if let Some(name) = grpc_status.and_then(grpc_server_error) {
            return Failure::Named(name);
        }
        if status.is_some_and(|s| s.is_server_error()) {
            return Failure::ServerStatus;
        }
        Failure::None
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

/// Whether a gRPC call's status says a method of the application answered it, which is what
/// admits a method to the route table (and so to span names and `rpc.method`). Not the codes
/// that whatever stands in front of the methods answers for any path a client makes up:
/// `UNIMPLEMENTED` (the router), `UNAUTHENTICATED` and `PERMISSION_DENIED` (auth
/// interceptors), `RESOURCE_EXHAUSTED` (rate limits; tonic's load shedding), `CANCELLED`
/// (the client went away, or a timeout struck, before any answer); nor a code outside gRPC's
/// seventeen. The server's failures do admit (`UNAVAILABLE`, `INTERNAL`, ...): a method that
/// fails from its first call is the one an operator needs to see by name. The layer's own
/// refusals never admit, whatever their code.
pub(crate) fn answered_by_application(grpc_status: u8) -> bool {
    const CANCELLED: u8 = 1;
    const PERMISSION_DENIED: u8 = 7;
    const RESOURCE_EXHAUSTED: u8 = 8;
    const UNIMPLEMENTED: u8 = 12;
    const UNAUTHENTICATED: u8 = 16;
    grpc_status <= UNAUTHENTICATED
        && !matches!(
            grpc_status,
            CANCELLED | PERMISSION_DENIED | RESOURCE_EXHAUSTED | UNIMPLEMENTED | UNAUTHENTICATED
        )
}

/// The name of a gRPC status code that is the server's failure; `None` for success and for the
/// caller's errors.
fn grpc_server_error(code: u8) -> Option<&'static str> {
    Some(match code {
        2 => "UNKNOWN",
        4 => "DEADLINE_EXCEEDED",
        12 => "UNIMPLEMENTED",
        13 => "INTERNAL",
        14 => "UNAVAILABLE",
        15 => "DATA_LOSS",
        _ => return None,
    })
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
            Failure::classify(OK, Some(13), End::Completed),
            Failure::Named("INTERNAL")
        );
        assert_eq!(
            Failure::classify(OK, Some(3), End::Completed),
            Failure::None
        );
        assert_eq!(
            Failure::classify(OK, Some(0), End::Completed),
            Failure::None
        );
    }

    #[test]
    fn cancellation_fails_the_request_but_spends_no_budget() {
        let f = Failure::classify(OK, Some(13), End::Cancelled);
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
        let admitting: Vec<u8> = (0..=20).filter(|&c| answered_by_application(c)).collect();
        // Not CANCELLED (1), PERMISSION_DENIED (7), RESOURCE_EXHAUSTED (8), UNIMPLEMENTED (12),
        // UNAUTHENTICATED (16), nor past gRPC's codes.
        assert_eq!(admitting, [0, 2, 3, 4, 5, 6, 9, 10, 11, 13, 14, 15]);
    }
}
