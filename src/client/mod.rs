//! Outgoing calls: a CLIENT span per request, child of the current span, with `tenant.id`;
//! `traceparent` and `baggage` injected from that span; `http.client.request.duration` or
//! `rpc.client.call.duration` labelled by tenant.
//!
//! - [`ClientLayer`] wraps any tower HTTP client: a hyper client, a `tower::ServiceBuilder`
//!   stack, a tonic `Channel` (gRPC calls get the RPC conventions).
//! - With the `reqwest` feature, [`ClientLayer`] is also a `reqwest-middleware` middleware.
//!
//! [`PropagateLayer`](crate::propagation::PropagateLayer) only injects the headers, for callers that want no
//! client span.

mod body;
mod call;
mod config;
pub(crate) mod layer;
#[cfg(feature = "reqwest")]
mod reqwest;

pub use body::{ClientBody, ClientFuture};
pub use layer::{ClientLayerBuilder, ClientService};

// At the crate root for users; here for the crate's own paths.
pub(crate) use layer::ClientLayer;
