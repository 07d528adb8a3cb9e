//! [`ClientLayer`](super::ClientLayer) as a `reqwest-middleware` middleware (feature `reqwest`).

use http::Extensions;
use opentelemetry::context::FutureExt as _;
use reqwest_middleware::{Middleware, Next};

use super::call::Call;
use super::ClientLayer;
use crate::classify::End;

/// `reqwest` has no tower interface; `reqwest-middleware` is its middleware chain. The span
/// ends when the response head arrives: the body is read by the caller, after the middleware
/// has returned.
///
/// ```
/// use tenant_otel::ClientLayer;
///
/// let client = reqwest_middleware::ClientBuilder::new(reqwest::Client::new())
///     .with(ClientLayer::new())
///     .build();
/// # let _ = client;
/// ```
#[async_trait::async_trait]
impl Middleware for ClientLayer {
    async fn handle(
        &self,
        mut req: reqwest::Request,
        extensions: &mut Extensions,
        next: Next<'_>,
    ) -> reqwest_middleware::Result<reqwest::Response> {
        let uri: http::Uri = req.url().as_str().parse().unwrap_or_default();
        let method = req.method().clone();
        let mut call = Call::start(&self.config, &method, &uri, req.headers_mut());
        let cx = call.context().clone();
        let result = next.run(req, extensions).with_context(cx).await;
        match &result {
            Ok(res) => {
                call.response(res.status(), res.headers());
                call.finish(End::Completed);
            }
            Err(e) if e.is_timeout() => call.finish(End::Transport("timeout")),
            Err(_) => call.finish(End::Transport("reqwest_middleware::Error")),
        }
        result
    }
}
