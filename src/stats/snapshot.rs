//! What the in-process view reads of one tenant's requests or queries.

/// A point-in-time reading of one tenant's requests or queries, from the in-process view.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[non_exhaustive]
pub struct StatsSnapshot {
    /// Operations finished since start.
    pub total: u64,
    /// Of which succeeded.
    pub success: u64,
    /// Of which failed.
    pub errors: u64,
    /// `success / total`, or 1 when nothing finished yet.
    pub success_rate: f64,
    /// Operations in flight now.
    pub active: i64,
    /// Mean duration since start, in milliseconds.
    pub avg_ms: f64,
    /// Duration percentiles since start, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile since start, in milliseconds.
    pub p95_ms: f64,
    /// 99th percentile since start, in milliseconds.
    pub p99_ms: f64,
    /// The same over the recent sliding window.
    pub window: WindowSnapshot,
}

/// Statistics over the sliding window.
#[derive(Debug, Clone, Default, PartialEq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[non_exhaustive]
pub struct WindowSnapshot {
    /// Operations finished in the window.
    pub total: u64,
    /// Of which failed.
    pub errors: u64,
    /// `1 - errors / total`, or 1 when nothing finished in the window.
    pub success_rate: f64,
    /// Mean duration in the window, in milliseconds.
    pub avg_ms: f64,
    /// Median in the window, in milliseconds.
    pub p50_ms: f64,
    /// 95th percentile in the window, in milliseconds.
    pub p95_ms: f64,
    /// 99th percentile in the window, in milliseconds.
    pub p99_ms: f64,
}
