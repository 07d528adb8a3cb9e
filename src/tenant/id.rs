//! The tenant id: what a valid one looks like, and the ids the crate reserves.

use std::fmt;
use std::sync::Arc;

use opentelemetry::{Key, KeyValue, StringValue, Value};

/// The attribute key that carries the tenant on spans, metrics, log records and baggage.
pub const TENANT_ID_KEY: &str = "tenant.id";

/// The metric label used once the cardinality cap is reached (spans keep the real id).
pub const OVERFLOW_TENANT: &str = "__overflow__";

/// The id given to requests without a usable tenant when the layer lets them through.
pub const UNKNOWN_TENANT: &str = "__unknown__";

/// The longest tenant id accepted, in bytes.
pub const MAX_TENANT_ID_LEN: usize = 64;

/// A tenant id that passed validation: 1 to 64 characters of `[A-Za-z0-9._-]`.
///
/// Cloning is a reference-count increment: the id is stored once per tenant and shared by every
/// span, metric attribute and baggage entry that carries it.
///
/// ```
/// use tenant_otel::TenantId;
///
/// let id = TenantId::parse("finance").unwrap();
/// assert_eq!(id.as_str(), "finance");
/// assert!(TenantId::parse("../etc/passwd").is_err());
/// assert!(TenantId::parse(&"a".repeat(65)).is_err());
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TenantId(Arc<str>);

impl TenantId {
    /// Validates `raw` and returns it as a tenant id.
    ///
    /// The reserved labels `__overflow__` and `__unknown__` are refused: a client must not be able
    /// to claim the shared series (or, under the reject policy, pass as a request without tenant).
    pub fn parse(raw: &str) -> Result<Self, InvalidTenantId> {
        validate_client_id(raw.as_bytes()).map(|s| TenantId(Arc::from(s)))
    }

    /// The id as a string slice.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The id as an OpenTelemetry attribute value, sharing the same allocation.
    pub fn to_value(&self) -> Value {
        Value::String(StringValue::from(Arc::clone(&self.0)))
    }

    /// The `tenant.id` attribute for this id.
    pub fn to_key_value(&self) -> KeyValue {
        KeyValue::new(Key::from_static_str(TENANT_ID_KEY), self.to_value())
    }

    /// Wraps an id the caller has already validated (a reserved one included: the registry's
    /// shared entries are named so).
    pub(crate) fn from_validated(id: &str) -> Self {
        TenantId(Arc::from(id))
    }

    pub(crate) fn shared(&self) -> &Arc<str> {
        &self.0
    }
}

impl fmt::Debug for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for TenantId {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl std::borrow::Borrow<str> for TenantId {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::str::FromStr for TenantId {
    type Err = InvalidTenantId;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        TenantId::parse(s)
    }
}

/// Why a raw value is not a tenant id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InvalidTenantId {
    /// The value was empty.
    Empty,
    /// The value was longer than [`MAX_TENANT_ID_LEN`] bytes.
    TooLong {
        /// The length that was seen, in bytes.
        len: usize,
    },
    /// The value holds a byte outside `[A-Za-z0-9._-]` (non-UTF-8 bytes included).
    InvalidByte {
        /// Where the first offending byte is.
        position: usize,
    },
    /// The value is one of the labels the crate reserves (`__overflow__`, `__unknown__`).
    Reserved,
}

impl fmt::Display for InvalidTenantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InvalidTenantId::Empty => f.write_str("tenant id is empty"),
            InvalidTenantId::TooLong { len } => write!(
                f,
                "tenant id is {len} bytes long; at most {MAX_TENANT_ID_LEN} are allowed"
            ),
            InvalidTenantId::InvalidByte { position } => write!(
                f,
                "tenant id has a character outside [A-Za-z0-9._-] at byte {position}"
            ),
            InvalidTenantId::Reserved => {
                write!(f, "`{OVERFLOW_TENANT}` and `{UNKNOWN_TENANT}` are reserved")
            }
        }
    }
}

impl std::error::Error for InvalidTenantId {}

/// [`validate`], and not one of the reserved labels: for ids that come from clients.
pub(crate) fn validate_client_id(raw: &[u8]) -> Result<&str, InvalidTenantId> {
    let id = validate(raw)?;
    if is_reserved(id) {
        return Err(InvalidTenantId::Reserved);
    }
    Ok(id)
}

/// The one rule for the labels the crate keeps for itself: no caller, client or API user, may
/// claim them as a tenant of its own.
pub(crate) fn is_reserved(id: &str) -> bool {
    id == OVERFLOW_TENANT || id == UNKNOWN_TENANT
}

/// Checks raw bytes (a header value may not be UTF-8) against the id rules without allocating.
pub(crate) fn validate(raw: &[u8]) -> Result<&str, InvalidTenantId> {
    if raw.is_empty() {
        return Err(InvalidTenantId::Empty);
    }
    // Length first, so a 10 KB value is refused without being scanned.
    if raw.len() > MAX_TENANT_ID_LEN {
        return Err(InvalidTenantId::TooLong { len: raw.len() });
    }
    if let Some(position) = raw
        .iter()
        .position(|b| !(b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')))
    {
        return Err(InvalidTenantId::InvalidByte { position });
    }
    // Every byte is ASCII, so this cannot fail.
    std::str::from_utf8(raw).map_err(|_| InvalidTenantId::InvalidByte { position: 0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_alphabet() {
        assert_eq!(validate(b"Acme-01.eu_west"), Ok("Acme-01.eu_west"));
        assert_eq!(validate(&[b'a'; 64]).map(str::len), Ok(64));
    }

    #[test]
    fn refuses_bad_ids_with_a_reason() {
        assert_eq!(validate(b""), Err(InvalidTenantId::Empty));
        assert_eq!(
            validate(&[b'a'; 65]),
            Err(InvalidTenantId::TooLong { len: 65 })
        );
        assert_eq!(
            validate(b"ab cd"),
            Err(InvalidTenantId::InvalidByte { position: 2 })
        );
        assert_eq!(
            validate(&[b'a', 0xff, 0xfe]),
            Err(InvalidTenantId::InvalidByte { position: 1 })
        );
        assert_eq!(
            validate("caf\u{e9}".as_bytes()),
            Err(InvalidTenantId::InvalidByte { position: 3 })
        );
    }
}
