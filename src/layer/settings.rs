//! The layer's settings grouped by concern, each one value given to the builder, as tower-http
//! groups its hooks: [`Edge`], what the layer takes from the public.

use std::fmt;
use std::sync::Arc;

use super::edge::Trust;
use crate::tenant::RequestHead;

/// What the layer takes from the public: whose trace context and baggage it believes, which
/// headers it copies onto the server span, and the scheme the service is reached by. Given to
/// [`TenantLayerBuilder::edge`](crate::TenantLayerBuilder::edge); the default,
/// [`Edge::internal`], suits a service only other services call.
///
/// ```
/// use tenant_otel::layer::Edge;
/// use tenant_otel::{TenantLayer, TenantSource};
///
/// // A service facing the public behind a TLS-terminating proxy.
/// let layer = TenantLayer::builder()
///     .source(TenantSource::header("x-tenant-id"))
///     .edge(
///         Edge::public()
///             .https()
///             .capture_request_headers(["x-request-id"])
///             .sensitive_headers(["x-api-key"]),
///     )
///     .build();
/// # let _ = layer;
/// ```
#[derive(Clone, Default)]
#[must_use]
pub struct Edge {
    pub(super) trust: Option<Trust>,
    pub(super) drop_inbound_baggage: bool,
    pub(super) https: bool,
    pub(super) capture_request: Option<Vec<String>>,
    pub(super) capture_response: Option<Vec<String>>,
    pub(super) sensitive: Vec<String>,
}

impl Edge {
    /// Every caller is trusted: its `traceparent` continues the trace and its baggage reaches
    /// the handler and downstream calls. The default, for internal services.
    ///
    /// ```
    /// use tenant_otel::layer::Edge;
    ///
    /// let layer = tenant_otel::TenantLayer::builder().edge(Edge::internal()).build();
    /// # let _ = layer;
    /// ```
    pub fn internal() -> Self {
        Edge::default()
    }

    /// A public endpoint: no caller's trace context is believed. A `traceparent` from the
    /// caller starts a new trace whose server span links to the caller's span (so the two can
    /// still be found together) instead of becoming its child; its sampled flag is ignored;
    /// its `baggage` is dropped before the handler and downstream calls see it (only the
    /// validated tenant is put in), and no default source reads the tenant from it.
    ///
    /// ```
    /// use tenant_otel::layer::Edge;
    ///
    /// let layer = tenant_otel::TenantLayer::builder().edge(Edge::public()).build();
    /// # let _ = layer;
    /// ```
    pub fn public() -> Self {
        Edge {
            trust: Some(Trust::None),
            ..Edge::default()
        }
    }

    /// Believes the trace context of the callers `trusted` accepts (say, requests from inside
    /// the network, or carrying a gateway's header), and treats the others as
    /// [`public`](Self::public) does.
    ///
    /// ```
    /// use tenant_otel::layer::Edge;
    ///
    /// let edge = Edge::trust_if(|head| head.headers.contains_key("x-internal-gateway"));
    /// let layer = tenant_otel::TenantLayer::builder().edge(edge).build();
    /// # let _ = layer;
    /// ```
    pub fn trust_if<F>(trusted: F) -> Self
    where
        F: for<'a> Fn(&RequestHead<'a>) -> bool + Send + Sync + 'static,
    {
        Edge {
            trust: Some(Trust::If(Arc::new(trusted))),
            ..Edge::default()
        }
    }

    /// Don't pass the caller's other baggage entries on to the handler and downstream calls;
    /// only `tenant.id` is kept, and no default source reads the tenant from baggage.
    ///
    /// ```
    /// use tenant_otel::layer::Edge;
    ///
    /// let edge = Edge::internal().drop_inbound_baggage();
    /// # let _ = edge;
    /// ```
    pub fn drop_inbound_baggage(mut self) -> Self {
        self.drop_inbound_baggage = true;
        self
    }

    /// The service is reached over HTTPS (through a TLS-terminating proxy, say): server spans
    /// say `url.scheme=https` where the request does not name its scheme. Default `http`.
    ///
    /// ```
    /// let edge = tenant_otel::layer::Edge::internal().https();
    /// # let _ = edge;
    /// ```
    pub fn https(mut self) -> Self {
        self.https = true;
        self
    }

    /// Request headers to put on the server span as `http.request.header.<name>` (default:
    /// `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_REQUEST`, comma-separated).
    /// `authorization`, `cookie`, `set-cookie`, `proxy-authorization` and the
    /// [`sensitive_headers`](Self::sensitive_headers) are never captured.
    ///
    /// ```
    /// let edge = tenant_otel::layer::Edge::internal().capture_request_headers(["x-request-id"]);
    /// # let _ = edge;
    /// ```
    pub fn capture_request_headers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.capture_request = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Response headers to put on the server span as `http.response.header.<name>` (default:
    /// `OTEL_INSTRUMENTATION_HTTP_CAPTURE_HEADERS_SERVER_RESPONSE`), with the same exclusions.
    ///
    /// ```
    /// let edge = tenant_otel::layer::Edge::internal().capture_response_headers(["x-cache"]);
    /// # let _ = edge;
    /// ```
    pub fn capture_response_headers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.capture_response = Some(names.into_iter().map(Into::into).collect());
        self
    }

    /// Headers never to capture, whatever the lists say (besides the credentials, which never
    /// are): API keys, session tokens of your own. Names are read as the capture lists read
    /// them, trimmed and in any case: `" X-Api-Key "` here keeps `x-api-key` off the span.
    ///
    /// ```
    /// let edge = tenant_otel::layer::Edge::internal()
    ///     .capture_request_headers(["x-request-id", "x-api-key"])
    ///     .sensitive_headers(["x-api-key"]);
    /// # let _ = edge;
    /// ```
    pub fn sensitive_headers<I, S>(mut self, names: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.sensitive.extend(names.into_iter().map(Into::into));
        self
    }
}

impl fmt::Debug for Edge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let trust = match &self.trust {
            None | Some(Trust::All) => "every caller",
            Some(Trust::None) => "no caller",
            Some(Trust::If(_)) => "callers a predicate accepts",
        };
        f.debug_struct("Edge")
            .field("trust", &trust)
            .field("drop_inbound_baggage", &self.drop_inbound_baggage)
            .field("https", &self.https)
            .field("capture_request", &self.capture_request)
            .field("capture_response", &self.capture_response)
            .field("sensitive", &self.sensitive)
            .finish()
    }
}
