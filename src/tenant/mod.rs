//! Who a request is for: the tenant id and its rules, where a request's id comes from, the
//! tenant's metadata, and the tenant of the current context.
//!
//! This is the bottom of the crate: it needs no registry, instrument or layer.
//!
//! - [`TenantId`]: 1 to 64 bytes of `[A-Za-z0-9._-]`, never one of the reserved labels
//!   ([`OVERFLOW_TENANT`], [`UNKNOWN_TENANT`]); [`InvalidTenantId`] says why a value is refused.
//! - [`TenantSource`]: a header, the W3C baggage, a path segment, a subdomain, a query
//!   parameter or a function of yours, looked at through a [`RequestHead`].
//! - [`TenantInfo`]: name, tier and region, exported as `tenant.info`.
//! - [`current_tenant`] and [`tenant_of`]: the tenant in a context's baggage.

pub(crate) mod context;
pub(crate) mod id;
pub(crate) mod info;
pub(crate) mod source;

pub use context::tenant_of;
pub use id::{InvalidTenantId, MAX_TENANT_ID_LEN, OVERFLOW_TENANT, TENANT_ID_KEY, UNKNOWN_TENANT};
pub use info::{MAX_TENANT_LABEL_LEN, MAX_TENANT_NAME_LEN};
pub use source::RequestHead;

// At the crate root for users; here for the crate's own paths.
pub(crate) use context::current_tenant;
pub(crate) use id::TenantId;
pub(crate) use info::TenantInfo;
pub(crate) use source::TenantSource;

pub(crate) use context::{claimed_in_baggage, valid_in_baggage};
pub(crate) use id::{is_reserved, validate, validate_client_id};
pub(crate) use info::truncate;
pub(crate) use source::Ambiguous;
