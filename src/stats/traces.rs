//! A tenant's recent trace references: the last failed requests and the slowest of the window,
//! so an alert or the view can point at a trace to look at.
//!
//! Fixed slots, each an `ArcSwapOption`: written without a lock and read whole (no torn record),
//! and however many requests fail, a tenant keeps at most [`TRACE_REFS`] of each kind. A fast,
//! successful request only compares its duration with one atomic: nothing is recorded,
//! allocated or locked for it.

use std::borrow::Cow;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwapOption;
use opentelemetry::trace::TraceId;

/// Trace references kept per tenant and kind (failed, slowest).
pub(crate) const TRACE_REFS: usize = 8;

/// One request whose trace is worth a look.
#[derive(Debug, Clone, PartialEq)]
#[cfg_attr(feature = "axum", derive(serde::Serialize))]
#[non_exhaustive]
pub struct TraceRef {
    /// The W3C trace id, 32 lowercase hex digits.
    pub trace_id: String,
    /// How long the request took, in milliseconds.
    pub duration_ms: f64,
    /// Its HTTP status, if a response was sent.
    pub status: Option<u16>,
    /// `error.type` as on its span, for a failed request.
    pub error_type: Option<String>,
    /// When it ended, in milliseconds since the Unix epoch.
    pub at_unix_ms: u64,
    /// A link to the trace, when a trace URL is configured.
    pub url: Option<String>,
}

/// A finished request as the part keeps it.
struct Record {
    trace_id: TraceId,
    micros: u64,
    status: Option<u16>,
    error_type: Option<Cow<'static, str>>,
    /// Milliseconds from the registry's epoch.
    at_ms: u64,
}

/// A finished request, as the layer hands it over.
pub(crate) struct Finished {
    /// The trace id, only for a sampled trace (one the sampler dropped never reaches a backend).
    pub(crate) trace_id: Option<TraceId>,
    pub(crate) duration: Duration,
    pub(crate) status: Option<u16>,
    /// `error.type` of a failed request; `None` for a success.
    pub(crate) error_type: Option<Cow<'static, str>>,
    /// Milliseconds from the registry's epoch.
    pub(crate) at_ms: u64,
}

/// The trace references part of a tenant's entry.
pub(crate) struct RecentTraces {
    failed: [ArcSwapOption<Record>; TRACE_REFS],
    /// The next failed slot to overwrite (a ring).
    next_failed: AtomicUsize,
    slowest: [ArcSwapOption<Record>; TRACE_REFS],
    /// The configured floor (µs): a successful request at most this slow is never kept.
    floor_micros: u64,
    /// A successful request at most this slow (µs) is not among the slowest: the configured
    /// floor, or once every slot is taken the fastest kept. Read on every request.
    slow_floor_micros: AtomicU64,
    /// When (ms from the epoch) the oldest slowest record leaves the window: from then the floor
    /// is stale, and the next request recomputes it.
    floor_until_ms: AtomicU64,
    /// Records written, for the view's tests and the operator's curiosity.
    recorded: AtomicU64,
}

impl RecentTraces {
    /// An empty part: a successful request must be slower than `floor` to be kept.
    pub(crate) fn new(floor: Duration) -> Self {
        let floor = u64::try_from(floor.as_micros()).unwrap_or(u64::MAX);
        RecentTraces {
            failed: Default::default(),
            next_failed: AtomicUsize::new(0),
            slowest: Default::default(),
            floor_micros: floor,
            slow_floor_micros: AtomicU64::new(floor),
            floor_until_ms: AtomicU64::new(u64::MAX),
            recorded: AtomicU64::new(0),
        }
    }

    /// Whether a request that ended `at_ms` after `duration` may be kept: the whole cost of a
    /// fast, successful request, two atomic loads. Only then is [`finished`](Self::finished)
    /// called, and its record prepared.
    #[inline]
    pub(crate) fn may_keep(&self, duration: Duration, failed: bool, at_ms: u64) -> bool {
        failed
            || micros(duration) > self.slow_floor_micros.load(Ordering::Relaxed)
            || at_ms >= self.floor_until_ms.load(Ordering::Relaxed)
    }

    /// Records a finished request if it failed, or is among the slowest of the last `window_ms`.
    #[inline(never)]
    pub(crate) fn finished(&self, f: Finished, window_ms: u64) {
        let micros = micros(f.duration);
        let failed = f.error_type.is_some();
        let floor = self.floor_micros;
        let Some(trace_id) = f.trace_id.filter(|_| failed || micros > floor) else {
            // The floor went stale (a record left the window), or an unsampled slow request.
            self.refresh_floor(floor, f.at_ms, window_ms);
            return;
        };
        let record = Arc::new(Record {
            trace_id,
            micros,
            status: f.status,
            error_type: f.error_type,
            at_ms: f.at_ms,
        });
        if failed {
            let i = self.next_failed.fetch_add(1, Ordering::Relaxed) % TRACE_REFS;
            self.failed[i].store(Some(Arc::clone(&record)));
            self.recorded.fetch_add(1, Ordering::Relaxed);
        }
        if micros > floor {
            self.offer_slow(record, f.at_ms, window_ms);
        }
        self.refresh_floor(floor, f.at_ms, window_ms);
    }

    /// Puts `record` in place of the fastest (or an expired) slowest record, if it is slower.
    fn offer_slow(&self, record: Arc<Record>, now_ms: u64, window_ms: u64) {
        // A few tries: a concurrent writer may take the slot first; giving up is fine.
        for _ in 0..3 {
            let mut weakest: Option<(usize, u64)> = None;
            for (i, slot) in self.slowest.iter().enumerate() {
                let held = slot.load();
                let micros = match held.as_deref() {
                    Some(r) if now_ms.saturating_sub(r.at_ms) <= window_ms => r.micros,
                    _ => 0,
                };
                if weakest.is_none_or(|(_, m)| micros < m) {
                    weakest = Some((i, micros));
                }
            }
            let Some((i, micros)) = weakest else { return };
            if micros >= record.micros {
                return;
            }
            let current = self.slowest[i].load();
            let still = current.as_deref().map_or(0, |r| {
                if now_ms.saturating_sub(r.at_ms) <= window_ms {
                    r.micros
                } else {
                    0
                }
            });
            if still != micros {
                continue;
            }
            let prev = self.slowest[i].compare_and_swap(&current, Some(Arc::clone(&record)));
            if same(&prev, &current) {
                self.recorded.fetch_add(1, Ordering::Relaxed);
                return;
            }
        }
    }

    /// Recomputes the floor and when it goes stale, from the records in the window.
    fn refresh_floor(&self, floor: u64, now_ms: u64, window_ms: u64) {
        let mut fastest = u64::MAX;
        let mut until = u64::MAX;
        for slot in &self.slowest {
            match slot.load().as_deref() {
                Some(r) if now_ms.saturating_sub(r.at_ms) <= window_ms => {
                    fastest = fastest.min(r.micros);
                    until = until.min(r.at_ms.saturating_add(window_ms).saturating_add(1));
                }
                _ => fastest = 0,
            }
        }
        self.slow_floor_micros
            .store(floor.max(fastest), Ordering::Relaxed);
        self.floor_until_ms.store(until, Ordering::Relaxed);
    }

    /// Records written since start (failed and slowest).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn recorded(&self) -> u64 {
        self.recorded.load(Ordering::Relaxed)
    }

    /// The failed requests kept, newest first.
    pub(crate) fn failed(&self, at: &RefTime, url: Option<&TraceUrl>) -> Vec<TraceRef> {
        let mut out: Vec<Arc<Record>> = self.failed.iter().filter_map(|s| s.load_full()).collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.at_ms));
        out.iter().map(|r| r.to_ref(at, url)).collect()
    }

    /// The slowest requests of the last `window_ms`, slowest first.
    pub(crate) fn slowest(&self, at: &RefTime, url: Option<&TraceUrl>) -> Vec<TraceRef> {
        let mut out: Vec<Arc<Record>> = self
            .slowest
            .iter()
            .filter_map(|s| s.load_full())
            .filter(|r| at.now_ms.saturating_sub(r.at_ms) <= at.window_ms)
            .collect();
        out.sort_by_key(|r| std::cmp::Reverse(r.micros));
        out.iter().map(|r| r.to_ref(at, url)).collect()
    }
}

fn same(
    a: &arc_swap::Guard<Option<Arc<Record>>>,
    b: &arc_swap::Guard<Option<Arc<Record>>>,
) -> bool {
    match (a.as_ref(), b.as_ref()) {
        (Some(a), Some(b)) => Arc::ptr_eq(a, b),
        (None, None) => true,
        _ => false,
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// What turns the registry's times into wall-clock times, read once per view.
pub(crate) struct RefTime {
    /// Now, in milliseconds from the registry's epoch.
    pub(crate) now_ms: u64,
    /// The statistics' window.
    pub(crate) window_ms: u64,
    /// The wall clock now.
    pub(crate) wall: SystemTime,
}

impl Record {
    fn to_ref(&self, at: &RefTime, url: Option<&TraceUrl>) -> TraceRef {
        let ago = Duration::from_millis(at.now_ms.saturating_sub(self.at_ms));
        let at_unix_ms = at
            .wall
            .checked_sub(ago)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let trace_id = self.trace_id.to_string();
        TraceRef {
            url: url.map(|u| u.link(&trace_id)),
            trace_id,
            duration_ms: self.micros as f64 / 1000.0,
            status: self.status,
            error_type: self.error_type.as_ref().map(|e| e.to_string()),
            at_unix_ms,
        }
    }
}

/// Where a trace is shown: a URL with `{trace_id}` in it, or a Jaeger UI base URL (then
/// `{base}/trace/{trace_id}`).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct TraceUrl(String);

/// The placeholder a trace URL template carries.
pub(crate) const TRACE_ID_PLACEHOLDER: &str = "{trace_id}";

impl TraceUrl {
    /// A template or base URL; `None` for an empty one.
    pub(crate) fn new(template: &str) -> Option<Self> {
        let t = template.trim();
        if t.is_empty() {
            return None;
        }
        Some(if t.contains(TRACE_ID_PLACEHOLDER) {
            TraceUrl(t.to_owned())
        } else {
            TraceUrl(format!(
                "{}/trace/{TRACE_ID_PLACEHOLDER}",
                t.trim_end_matches('/')
            ))
        })
    }

    /// The link to `trace_id`.
    pub(crate) fn link(&self, trace_id: &str) -> String {
        self.0.replace(TRACE_ID_PLACEHOLDER, trace_id)
    }
}

impl fmt::Debug for TraceUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: u64 = 60_000;
    const FLOOR: Duration = Duration::from_millis(100);

    /// As the entry records a request: `may_keep` first, then the record.
    fn record(part: &RecentTraces, f: Finished) {
        if part.may_keep(f.duration, f.error_type.is_some(), f.at_ms) {
            part.finished(f, WINDOW);
        }
    }

    fn id(n: u128) -> Option<TraceId> {
        Some(TraceId::from(n + 1))
    }

    fn ok(n: u128, ms: u64, at_ms: u64) -> Finished {
        Finished {
            trace_id: id(n),
            duration: Duration::from_millis(ms),
            status: Some(200),
            error_type: None,
            at_ms,
        }
    }

    fn time(now_ms: u64) -> RefTime {
        RefTime {
            now_ms,
            window_ms: WINDOW,
            wall: SystemTime::now(),
        }
    }

    #[test]
    fn a_flood_of_failures_keeps_at_most_the_last_few() {
        let part = RecentTraces::new(FLOOR);
        for n in 0..10_000u128 {
            record(
                &part,
                Finished {
                    trace_id: id(n),
                    duration: Duration::from_millis(5),
                    status: Some(503),
                    error_type: Some(Cow::Borrowed("503")),
                    at_ms: u64::try_from(n).unwrap(),
                },
            );
        }
        let failed = part.failed(&time(10_000), None);
        assert_eq!(failed.len(), TRACE_REFS);
        // The newest, newest first.
        assert_eq!(failed[0].trace_id, TraceId::from(10_000u128).to_string());
        assert_eq!(
            failed[TRACE_REFS - 1].trace_id,
            TraceId::from(9_993u128).to_string()
        );
        assert!(failed
            .iter()
            .all(|r| r.error_type.as_deref() == Some("503")));
        // Fast failures are not among the slowest.
        assert!(part.slowest(&time(10_000), None).is_empty());
        assert_eq!(part.recorded(), 10_000);
    }

    /// Threads failing and crawling at once: every slot holds a whole record, and no more than
    /// the bound is kept.
    #[test]
    fn concurrent_floods_stay_bounded() {
        let part = RecentTraces::new(FLOOR);
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let part = &part;
                s.spawn(move || {
                    for n in 0..5_000u64 {
                        let k = u128::from(t * 100_000 + n);
                        let mut f = ok(k, 101 + (n * 7919 + t) % 5_000, n);
                        if n % 2 == 0 {
                            f.error_type = Some(Cow::Borrowed("500"));
                            f.status = Some(500);
                        }
                        record(part, f);
                    }
                });
            }
        });
        let failed = part.failed(&time(5_000), None);
        let slowest = part.slowest(&time(5_000), None);
        assert_eq!(failed.len(), TRACE_REFS);
        assert_eq!(slowest.len(), TRACE_REFS);
        assert!(failed.iter().all(|r| r.status == Some(500)));
        // The slowest kept are all from the top of the 101..5100 ms range.
        let least = slowest.last().unwrap().duration_ms;
        assert!((4_000.0..=5_100.0).contains(&least), "{least}");
        assert!(part.recorded() <= 20_000, "{}", part.recorded());
    }

    #[test]
    fn fast_successes_record_nothing() {
        let part = RecentTraces::new(FLOOR);
        for n in 0..1000 {
            record(&part, ok(n, 99, 10));
        }
        assert_eq!(part.recorded(), 0);
        assert!(part.slowest(&time(10), None).is_empty());
        assert!(part.failed(&time(10), None).is_empty());
        record(&part, ok(5000, 101, 10));
        assert_eq!(part.recorded(), 1);
    }

    #[test]
    fn the_slowest_are_kept() {
        let part = RecentTraces::new(FLOOR);
        // 1000 slow requests, durations shuffled: 101 ms ... 1100 ms.
        for n in 0..1000u64 {
            let ms = 101 + (n * 389) % 1000;
            record(&part, ok(u128::from(ms), ms, 100 + n));
        }
        let slowest = part.slowest(&time(1100), None);
        let got: Vec<f64> = slowest.iter().map(|r| r.duration_ms).collect();
        let want: Vec<f64> = (0..8).map(|i| (1100 - i) as f64).collect();
        assert_eq!(got, want);
        // Once every slot is taken, a request faster than the fastest kept is not recorded.
        let before = part.recorded();
        assert!((8..1000).contains(&before), "recorded {before}");
        record(&part, ok(9999, 500, 1200));
        assert_eq!(part.recorded(), before);
    }

    #[test]
    fn the_slowest_leave_with_the_window() {
        let part = RecentTraces::new(FLOOR);
        record(&part, ok(1, 900, 0));
        assert_eq!(part.slowest(&time(WINDOW), None).len(), 1);
        assert!(part.slowest(&time(WINDOW + 1), None).is_empty());
        // A later, less slow request now gets in.
        record(&part, ok(2, 200, WINDOW + 5));
        let slowest = part.slowest(&time(WINDOW + 5), None);
        assert_eq!(slowest.len(), 1);
        assert_eq!(slowest[0].trace_id, TraceId::from(3u128).to_string());
    }

    #[test]
    fn unsampled_requests_are_not_kept() {
        let part = RecentTraces::new(FLOOR);
        let mut f = ok(1, 900, 0);
        f.trace_id = None;
        record(&part, f);
        assert_eq!(part.recorded(), 0);
    }

    #[test]
    fn links_follow_the_template() {
        let jaeger = TraceUrl::new("http://jaeger:16686/").unwrap();
        assert_eq!(jaeger.link("ab"), "http://jaeger:16686/trace/ab");
        let tempo = TraceUrl::new("http://grafana/explore?traceId={trace_id}&x=1").unwrap();
        assert_eq!(tempo.link("ab"), "http://grafana/explore?traceId=ab&x=1");
        assert!(TraceUrl::new("  ").is_none());
    }
}
