//! Where a request's tenant id comes from.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, HeaderName, Method, Uri};
use opentelemetry::baggage::Baggage;

use super::context::claimed_in_baggage;
use super::id::TENANT_ID_KEY;

/// The parts of a request a [`TenantSource`] may look at.
#[derive(Debug)]
#[non_exhaustive]
pub struct RequestHead<'a> {
    /// The request method.
    pub method: &'a Method,
    /// The request URI.
    pub uri: &'a Uri,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The baggage that arrived with the request (empty when none did, or when it was refused
    /// for being over the W3C limits).
    pub baggage: &'a Baggage,
}

type CustomFn = dyn for<'a> Fn(&RequestHead<'a>) -> Option<Cow<'a, str>> + Send + Sync;

/// One place a tenant id can be found. Sources are tried in order and the first one that finds a
/// value decides: a value that is present but invalid is refused, not skipped, so a less trusted
/// source further down the chain cannot stand in for it.
///
/// ```
/// use tenant_otel::TenantSource;
///
/// let sources = [
///     TenantSource::header("x-tenant-id"),
///     TenantSource::path_segment(1), // `/tenants/{id}/...`
///     TenantSource::subdomain_of("example.com"),
///     TenantSource::query("tenant"),
///     TenantSource::from_fn(|head| head.headers.get("x-org").and_then(|v| v.to_str().ok()).map(Into::into)),
/// ];
/// # let _ = sources;
/// ```
#[derive(Clone)]
pub struct TenantSource(Kind);

#[derive(Clone)]
enum Kind {
    Header(HeaderName),
    /// gRPC metadata: a header by another name, described as metadata to gRPC clients.
    Metadata(HeaderName),
    Baggage,
    PathSegment(usize),
    Subdomain(Arc<str>),
    Query(Arc<str>),
    Custom(Arc<CustomFn>),
}

impl TenantSource {
    /// A request header, e.g. `x-tenant-id` (the default source).
    ///
    /// # Panics
    /// When `name` is not a valid header name; this is a configuration mistake found at start-up.
    pub fn header(name: &str) -> Self {
        TenantSource(Kind::Header(
            HeaderName::try_from(name).expect("TenantSource::header: invalid header name"),
        ))
    }

    /// A gRPC metadata key, e.g. `x-tenant-id` (ASCII metadata travels as HTTP/2 headers):
    /// the same lookup as [`TenantSource::header`], named as metadata in refusals
    /// (`INVALID_ARGUMENT`, "missing tenant id: expected gRPC metadata `x-tenant-id`").
    ///
    /// ```
    /// use tenant_otel::{TenantLayer, TenantSource};
    ///
    /// let layer = TenantLayer::builder()
    ///     .source(TenantSource::grpc_metadata("x-tenant-id"))
    ///     .build();
    /// # let _ = layer;
    /// ```
    ///
    /// # Panics
    /// When `key` is not a valid metadata key (lowercase ASCII, no `-bin` binary keys).
    pub fn grpc_metadata(key: &str) -> Self {
        let name = HeaderName::try_from(key)
            .ok()
            .filter(|n| !n.as_str().ends_with("-bin"))
            .expect("TenantSource::grpc_metadata: invalid ASCII metadata key");
        TenantSource(Kind::Metadata(name))
    }

    /// The `tenant.id` entry of the incoming W3C `baggage` header.
    ///
    /// Baggage is set by the caller: use it only where callers are trusted (service-to-service
    /// traffic behind a gateway that sets it), never as the only source of a public endpoint.
    /// A layer that does not trust a caller's trace context
    /// ([`Edge::public`](crate::layer::Edge::public), or a
    /// caller [`Edge::trust_if`](crate::layer::Edge::trust_if)
    /// turns down) drops the caller's baggage first, so this source finds nothing there.
    pub fn baggage() -> Self {
        TenantSource(Kind::Baggage)
    }

    /// The chain of a layer given no source: header `x-tenant-id`, then, where the layer
    /// passes callers' baggage on, the `tenant.id` baggage entry, which is what
    /// [`ClientLayer`](crate::ClientLayer) and [`PropagateLayer`](crate::propagation::PropagateLayer) send.
    /// So a service called by another one through them sees the caller's tenant with the
    /// defaults on both sides. Baggage is believed no more than the header (a client can send
    /// either), it comes second (the header decides when both are there), and a caller whose
    /// trace context the layer does not trust has its baggage dropped before any source runs.
    pub(crate) fn default_chain(with_baggage: bool) -> Vec<TenantSource> {
        let mut chain = vec![TenantSource::header("x-tenant-id")];
        if with_baggage {
            chain.push(TenantSource::baggage());
        }
        chain
    }

    /// The path segment at `index`, counting from 0 and skipping empty segments (`//`):
    /// `path_segment(1)` reads `acme` from `/tenants/acme/orders`.
    pub fn path_segment(index: usize) -> Self {
        TenantSource(Kind::PathSegment(index))
    }

    /// The leftmost label of a host under `domain`: `subdomain_of("example.com")` reads `acme`
    /// from `acme.example.com:8443`. Hosts outside `domain` and the bare domain find nothing.
    pub fn subdomain_of(domain: &str) -> Self {
        TenantSource(Kind::Subdomain(Arc::from(
            domain.trim_start_matches('.').to_ascii_lowercase(),
        )))
    }

    /// A query parameter, e.g. `query("tenant")` reads `acme` from `?tenant=acme`.
    pub fn query(name: &str) -> Self {
        TenantSource(Kind::Query(Arc::from(name)))
    }

    /// The user's own function. It may borrow from the request (return `Cow::Borrowed`) to avoid
    /// an allocation per request.
    pub fn from_fn<F>(f: F) -> Self
    where
        F: for<'a> Fn(&RequestHead<'a>) -> Option<Cow<'a, str>> + Send + Sync + 'static,
    {
        TenantSource(Kind::Custom(Arc::new(f)))
    }

    /// The `tenant.source` attribute value: `header`, `metadata`, `baggage`, `path`, `host`,
    /// `query`, `fn`.
    pub(crate) fn kind_name(&self) -> &'static str {
        match &self.0 {
            Kind::Header(_) => "header",
            Kind::Metadata(_) => "metadata",
            Kind::Baggage => "baggage",
            Kind::PathSegment(_) => "path",
            Kind::Subdomain(_) => "host",
            Kind::Query(_) => "query",
            Kind::Custom(_) => "fn",
        }
    }

    pub(crate) fn is_baggage(&self) -> bool {
        matches!(self.0, Kind::Baggage)
    }

    /// Finds the raw value (bytes: a header need not be UTF-8) without validating it. More than
    /// one value (a header sent twice, a query parameter repeated) is refused: a proxy that
    /// appends instead of replacing must not let a client's own value through beside its own.
    pub(crate) fn find<'a>(
        &self,
        head: &RequestHead<'a>,
    ) -> Result<Option<Cow<'a, [u8]>>, Ambiguous> {
        Ok(match &self.0 {
            Kind::Header(name) | Kind::Metadata(name) => {
                let mut values = head.headers.get_all(name).iter();
                let first = values.next();
                if values.next().is_some() {
                    return Err(Ambiguous);
                }
                first.map(|v| Cow::Borrowed(v.as_bytes()))
            }
            Kind::Baggage => {
                claimed_in_baggage(head.baggage).map(|v| Cow::Owned(v.as_str().as_bytes().to_vec()))
            }
            // Empty segments are skipped, as routers collapse `//`: `//t/acme` must not shift
            // the index and read `t` where `/t/acme` reads `acme`.
            Kind::PathSegment(index) => head
                .uri
                .path()
                .split('/')
                .filter(|s| !s.is_empty())
                .nth(*index)
                .map(|s| Cow::Borrowed(s.as_bytes())),
            Kind::Subdomain(domain) => host(head).and_then(|host| {
                let (label, rest) = host.split_once('.')?;
                if !rest.eq_ignore_ascii_case(domain) {
                    return None;
                }
                // Host names are case-insensitive: `Acme.example.com` is `acme`.
                Some(if label.bytes().any(|b| b.is_ascii_uppercase()) {
                    Cow::Owned(label.to_ascii_lowercase().into_bytes())
                } else {
                    Cow::Borrowed(label.as_bytes())
                })
            }),
            Kind::Query(name) => {
                let mut values = head.uri.query().into_iter().flat_map(|q| {
                    q.split('&').filter_map(|pair| {
                        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                        (k == &**name).then_some(v)
                    })
                });
                let first = values.next();
                if values.next().is_some() {
                    return Err(Ambiguous);
                }
                first.map(|v| Cow::Borrowed(v.as_bytes()))
            }
            Kind::Custom(f) => f(head).map(|s| match s {
                Cow::Borrowed(s) => Cow::Borrowed(s.as_bytes()),
                Cow::Owned(s) => Cow::Owned(s.into_bytes()),
            }),
        })
    }

    /// How the source reads in an error message, e.g. ``header `x-tenant-id` ``.
    pub(crate) fn describe(&self) -> String {
        match &self.0 {
            Kind::Header(name) => format!("header `{name}`"),
            Kind::Metadata(name) => format!("gRPC metadata `{name}`"),
            Kind::Baggage => format!("baggage entry `{TENANT_ID_KEY}`"),
            Kind::PathSegment(i) => format!("path segment {i}"),
            Kind::Subdomain(d) => format!("subdomain of `{d}`"),
            Kind::Query(q) => format!("query parameter `{q}`"),
            Kind::Custom(_) => "custom source".to_owned(),
        }
    }
}

impl fmt::Debug for TenantSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// The host without port and without the trailing dot of a fully qualified name: the URI
/// authority (HTTP/2 `:authority`), else the `Host` header.
fn host<'a>(head: &RequestHead<'a>) -> Option<&'a str> {
    let raw = match head.uri.host() {
        Some(h) => h,
        None => head.headers.get(http::header::HOST)?.to_str().ok()?,
    };
    let host = raw.rsplit_once(':').map_or(raw, |(h, _)| h);
    Some(host.strip_suffix('.').unwrap_or(host))
}

/// More than one value where one tenant id was expected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ambiguous;

#[cfg(test)]
mod tests {
    use super::*;

    fn find(source: &TenantSource, uri: &str, headers: &[(&str, &str)]) -> Option<Vec<u8>> {
        let uri: Uri = uri.parse().unwrap();
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(HeaderName::try_from(*k).unwrap(), v.parse().unwrap());
        }
        let baggage = Baggage::new();
        let head = RequestHead {
            method: &Method::GET,
            uri: &uri,
            headers: &map,
            baggage: &baggage,
        };
        source.find(&head).unwrap().map(|c| c.into_owned())
    }

    #[test]
    fn each_source_finds_its_value() {
        assert_eq!(
            find(
                &TenantSource::header("x-tenant-id"),
                "/",
                &[("x-tenant-id", "acme")]
            ),
            Some(b"acme".to_vec())
        );
        assert_eq!(
            find(&TenantSource::path_segment(1), "/tenants/acme/orders", &[]),
            Some(b"acme".to_vec())
        );
        assert_eq!(
            find(&TenantSource::path_segment(3), "/tenants/acme", &[]),
            None
        );
        assert_eq!(
            find(&TenantSource::path_segment(1), "//t/acme/hello", &[]),
            Some(b"acme".to_vec())
        );
        assert_eq!(
            find(
                &TenantSource::subdomain_of("example.com"),
                "/",
                &[("host", "acme.Example.com:8443")]
            ),
            Some(b"acme".to_vec())
        );
        assert_eq!(
            find(
                &TenantSource::subdomain_of("example.com"),
                "/",
                &[("host", "example.com")]
            ),
            None
        );
        assert_eq!(
            find(
                &TenantSource::subdomain_of("example.com"),
                "/",
                &[("host", "a.evil.com")]
            ),
            None
        );
        assert_eq!(
            find(&TenantSource::query("tenant"), "/x?a=1&tenant=acme&b", &[]),
            Some(b"acme".to_vec())
        );
        assert_eq!(
            find(
                &TenantSource::subdomain_of("example.com"),
                "/",
                &[("host", "Acme.EXAMPLE.com.:8443")]
            ),
            Some(b"acme".to_vec()),
            "host names are case-insensitive; a trailing dot is the same name"
        );
        let custom = TenantSource::from_fn(|head| {
            head.headers
                .get("x-org")
                .and_then(|v| v.to_str().ok())
                .map(Cow::Borrowed)
        });
        assert_eq!(
            find(&custom, "/", &[("x-org", "org-7")]),
            Some(b"org-7".to_vec())
        );
    }
}
