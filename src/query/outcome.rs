//! How a query ended: [`QueryStatus`] and [`QueryOutcome`].

use std::fmt;
use std::str::FromStr;

use crate::instruments::QueryEnd;

/// How a query ended.
///
/// ```
/// use tenant_otel::query::QueryStatus;
///
/// assert_eq!("success".parse::<QueryStatus>(), Ok(QueryStatus::Success));
/// assert_eq!(QueryStatus::Error.as_str(), "error");
/// assert!("maybe".parse::<QueryStatus>().is_err());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[cfg_attr(feature = "axum", serde(rename_all = "lowercase"))]
#[non_exhaustive]
pub enum QueryStatus {
    /// The query answered.
    Success,
    /// The query failed.
    Error,
}

impl QueryStatus {
    /// The `status` attribute value: `success` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            QueryStatus::Success => "success",
            QueryStatus::Error => "error",
        }
    }

    pub(super) fn is_error(self) -> bool {
        self == QueryStatus::Error
    }

    /// How the query's series tell it.
    pub(super) fn end(self) -> QueryEnd {
        match self {
            QueryStatus::Success => QueryEnd::Success,
            QueryStatus::Error => QueryEnd::Error,
        }
    }
}

impl fmt::Display for QueryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status string other than `success` or `error`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidQueryStatus;

impl fmt::Display for InvalidQueryStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("query status must be `success` or `error`")
    }
}

impl std::error::Error for InvalidQueryStatus {}

impl FromStr for QueryStatus {
    type Err = InvalidQueryStatus;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "success" => Ok(QueryStatus::Success),
            "error" => Ok(QueryStatus::Error),
            _ => Err(InvalidQueryStatus),
        }
    }
}

/// What [`QueryGuard::end`](crate::query::QueryGuard::end) records: the status, and optionally the documents retrieved and
/// the LLM tokens used.
///
/// ```
/// use tenant_otel::query::{QueryOutcome, QueryStatus};
///
/// let outcome = QueryOutcome::success().docs_retrieved(5).llm_tokens(1200);
/// assert_eq!(outcome.status(), QueryStatus::Success);
/// assert_eq!(QueryOutcome::error().status(), QueryStatus::Error);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct QueryOutcome {
    pub(super) status: QueryStatus,
    pub(super) docs: Option<u64>,
    pub(super) tokens: u64,
}

impl QueryOutcome {
    /// An outcome with this status, no documents and no tokens.
    pub fn new(status: QueryStatus) -> Self {
        QueryOutcome {
            status,
            docs: None,
            tokens: 0,
        }
    }

    /// A successful query.
    pub fn success() -> Self {
        QueryOutcome::new(QueryStatus::Success)
    }

    /// A failed query.
    pub fn error() -> Self {
        QueryOutcome::new(QueryStatus::Error)
    }

    /// Documents the retrieval step returned, recorded in `rag.docs_retrieved`. Left unset,
    /// nothing is recorded there (so queries that never reached retrieval do not drag the
    /// distribution towards zero).
    pub fn docs_retrieved(mut self, docs: u64) -> Self {
        self.docs = Some(docs);
        self
    }

    /// LLM tokens the query used, added to `rag.llm.tokens`.
    pub fn llm_tokens(mut self, tokens: u64) -> Self {
        self.tokens = tokens;
        self
    }

    /// The status.
    pub fn status(&self) -> QueryStatus {
        self.status
    }
}
