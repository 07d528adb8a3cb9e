//! The one clock every window, alert and limiter reads: the system's, or a manual one that tests
//! (and simulations) move forward by hand.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

/// Where the crate reads the time from.
///
/// [`Clock::system`] (the default) is [`Instant::now`] and, for the calendar (the day and month
/// costs are summed in), [`SystemTime::now`]. [`Clock::manual`] starts at the moment it is made
/// and moves only when [`advance`](Clock::advance) is called, so burn rates, alerts, rate limits
/// and a month of spending can be tested over simulated time in microseconds:
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use tenant_otel::Clock;
///
/// let clock = Clock::manual();
/// let start = clock.now();
/// clock.advance(Duration::from_secs(3600));
/// assert_eq!(clock.now() - start, Duration::from_secs(3600));
///
/// // 2026-12-01T00:00:00Z, then a day later.
/// let december = Clock::manual_at(UNIX_EPOCH + Duration::from_secs(1_796_083_200));
/// december.advance(Duration::from_secs(86_400));
/// assert_eq!(december.wall(), UNIX_EPOCH + Duration::from_secs(1_796_169_600));
/// ```
#[derive(Clone, Default)]
pub struct Clock(Option<Arc<Manual>>);

struct Manual {
    base: Instant,
    /// The wall-clock time at `base`.
    wall: SystemTime,
    /// Nanoseconds since `base`.
    offset: AtomicU64,
}

impl Clock {
    /// The system's monotonic clock.
    pub fn system() -> Self {
        Clock(None)
    }

    /// A clock that stands still until [`advance`](Clock::advance) moves it. Clones share it.
    pub fn manual() -> Self {
        Self::manual_at(SystemTime::now())
    }

    /// A manual clock whose wall-clock time starts at `wall`: for simulating days and months
    /// of spending against a calendar.
    pub fn manual_at(wall: SystemTime) -> Self {
        Clock(Some(Arc::new(Manual {
            base: Instant::now(),
            wall,
            offset: AtomicU64::new(0),
        })))
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        match &self.0 {
            None => Instant::now(),
            Some(m) => m.base + Duration::from_nanos(m.offset.load(Ordering::Acquire)),
        }
    }

    /// The current wall-clock time, for the calendar: [`SystemTime::now`], or a manual clock's
    /// start plus how far it has been moved.
    pub fn wall(&self) -> SystemTime {
        match &self.0 {
            None => SystemTime::now(),
            Some(m) => m.wall + Duration::from_nanos(m.offset.load(Ordering::Acquire)),
        }
    }

    /// Moves a manual clock forward by `by`; does nothing to the system clock.
    pub fn advance(&self, by: Duration) {
        if let Some(m) = &self.0 {
            let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
            m.offset.fetch_add(nanos, Ordering::AcqRel);
        }
    }

    /// True for a clock moved by hand.
    pub fn is_manual(&self) -> bool {
        self.0.is_some()
    }
}

impl fmt::Debug for Clock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.0 {
            None => f.write_str("Clock::system"),
            Some(m) => write!(
                f,
                "Clock::manual(+{:?})",
                Duration::from_nanos(m.offset.load(Ordering::Acquire))
            ),
        }
    }
}
