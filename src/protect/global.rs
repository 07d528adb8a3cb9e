//! Rates shared by every replica of a service, decided in Redis: one atomic script call per
//! request that the local limit let through.
//!
//! The algorithm is GCRA (the generic cell rate algorithm, what `redis-cell` and `redis_rate`
//! run): per tenant, Redis keeps one number, the theoretical arrival time of the next request,
//! and a request is let through when that time is at most a burst ahead of now. The time is
//! Redis's own (`TIME`), so the replicas' clocks never matter, and the key expires when the
//! tenant's bucket is full again: Redis holds only the tenants seen within their last burst.
//!
//! A decision waits at most a deadline. Past it, with Redis down, or before the first
//! connection, the request is decided by the local limit alone (it already passed it) or, when
//! asked, refused, and the fallback is counted: the service never waits on Redis for longer than
//! the deadline, and never fails because Redis did. After a failure Redis is left alone for a
//! short pause (one request at a time then probes it), so while it is down or stalled requests
//! fall back at once instead of each waiting out the deadline.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use redis::aio::ConnectionManager;

use super::limits::Rate;

/// The GCRA decision. KEYS[1]: the tenant's key. ARGV[1]: microseconds between two requests at
/// the rate; ARGV[2]: how far the theoretical arrival time may run ahead of now (the interval
/// times the burst). Returns `{1, 0}` when the request may pass, `{0, µs to wait}` when not.
/// Times are formatted as integers: Lua's default conversion keeps 14 digits only.
const GCRA: &str = r"
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
local next_tat = tat + interval
local wait = next_tat - tolerance - now
if wait > 0 then return {0, wait} end
redis.call('SET', KEYS[1], string.format('%.0f', next_tat), 'PX', math.floor((next_tat - now) / 1000) + 1)
return {1, 0}
";

/// What to do when Redis cannot decide in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OnFailure {
    /// Let the request through: it already passed the local limit (the default).
    #[default]
    Allow,
    /// Refuse the request, as over its rate.
    Refuse,
}

/// Why a decision did not come from Redis, as the `reason` of `tenant.limits.fallbacks`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Fallback {
    /// Redis did not answer within the deadline.
    Timeout,
    /// Not connected: Redis is down, unreachable, or the first connection is still being made.
    Unavailable,
    /// Redis answered with an error.
    Error,
}

impl Fallback {
    /// `timeout`, `unavailable` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            Fallback::Timeout => "timeout",
            Fallback::Unavailable => "unavailable",
            Fallback::Error => "error",
        }
    }

    fn index(self) -> usize {
        match self {
            Fallback::Timeout => 0,
            Fallback::Unavailable => 1,
            Fallback::Error => 2,
        }
    }
}

impl fmt::Display for Fallback {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A Redis URL that could not be used.
#[derive(Debug)]
#[non_exhaustive]
pub struct InvalidRedisUrl {
    source: redis::RedisError,
}

impl fmt::Display for InvalidRedisUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid Redis URL: {}", self.source)
    }
}

impl std::error::Error for InvalidRedisUrl {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Where and how the replicas share their tenants' rates: a Redis server, the longest a request
/// waits for a decision, and what happens when none comes.
///
/// ```
/// use std::time::{Duration, Instant};
/// use tenant_otel::protect::GlobalLimits;
///
/// let global = GlobalLimits::redis("redis://127.0.0.1:6379/")?
///     .deadline(Duration::from_millis(5))
///     .key_prefix("checkout:rate:");
/// # let _ = global;
/// # Ok::<(), tenant_otel::protect::InvalidRedisUrl>(())
/// ```
#[derive(Clone)]
#[must_use]
pub struct GlobalLimits {
    client: redis::Client,
    deadline: Duration,
    on_failure: OnFailure,
    key_prefix: Arc<str>,
}

impl GlobalLimits {
    /// The default deadline of a decision.
    pub const DEFAULT_DEADLINE: Duration = Duration::from_millis(5);

    /// Rates kept in the Redis server at `url` (`redis://host:port/db`, `rediss://` for TLS
    /// when the `redis` crate is built with it). Nothing connects yet: the first request does,
    /// in the background.
    pub fn redis(url: &str) -> Result<Self, InvalidRedisUrl> {
        let client = redis::Client::open(url).map_err(|source| InvalidRedisUrl { source })?;
        Ok(GlobalLimits {
            client,
            deadline: Self::DEFAULT_DEADLINE,
            on_failure: OnFailure::Allow,
            key_prefix: Arc::from("tenant-otel:rate:"),
        })
    }

    /// The longest a request waits for Redis's decision (default 5 ms; at least 100 µs).
    pub fn deadline(mut self, deadline: Duration) -> Self {
        self.deadline = deadline.max(Duration::from_micros(100));
        self
    }

    /// What happens when Redis cannot decide in time (default: [`OnFailure::Allow`]).
    pub fn on_failure(mut self, on_failure: OnFailure) -> Self {
        self.on_failure = on_failure;
        self
    }

    /// The prefix of the tenants' keys in Redis (default `tenant-otel:rate:`): services sharing
    /// one Redis and one prefix share their tenants' rates.
    pub fn key_prefix(mut self, prefix: &str) -> Self {
        self.key_prefix = Arc::from(prefix);
        self
    }
}

impl fmt::Debug for GlobalLimits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlobalLimits")
            .field("deadline", &self.deadline)
            .field("on_failure", &self.on_failure)
            .field("key_prefix", &self.key_prefix)
            .finish_non_exhaustive()
    }
}

/// Redis's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Under the tenant's global rate.
    Pass,
    /// Over it: try again after this long.
    Over(Duration),
    /// No answer in time; the request is decided by [`OnFailure`].
    Fallback(Fallback),
}

/// The connection and the counters behind one [`GlobalLimits`], shared by the layers built
/// with it.
pub(crate) struct Store {
    limits: GlobalLimits,
    script: redis::Script,
    connection: OnceLock<Option<ConnectionManager>>,
    calls: AtomicU64,
    fallbacks: [AtomicU64; 3],
    /// Microseconds after `epoch` before which Redis is not asked (0: ask).
    pause_until: AtomicU64,
    epoch: Instant,
}

/// How long Redis is left alone after a failure before one request probes it again.
const PAUSE_AFTER_FAILURE: Duration = Duration::from_millis(250);

impl Store {
    pub(crate) fn new(limits: GlobalLimits) -> Self {
        Store {
            limits,
            script: redis::Script::new(GCRA),
            connection: OnceLock::new(),
            calls: AtomicU64::new(0),
            fallbacks: Default::default(),
            pause_until: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    pub(crate) fn on_failure(&self) -> OnFailure {
        self.limits.on_failure
    }

    /// Decisions asked of Redis so far.
    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    /// Decisions that fell back, for `reason`.
    pub(crate) fn fallbacks(&self, reason: Fallback) -> u64 {
        self.fallbacks[reason.index()].load(Ordering::Relaxed)
    }

    /// Asks Redis whether one more request of `tenant` fits `rate` across all replicas, waiting
    /// at most the deadline.
    pub(crate) async fn check(&self, tenant: &str, rate: Rate) -> Verdict {
        let verdict = match self.manager() {
            Some(manager) if self.may_ask() => {
                let verdict = self.ask(manager.clone(), tenant, rate).await;
                if matches!(verdict, Verdict::Fallback(_)) {
                    self.pause(PAUSE_AFTER_FAILURE);
                } else if self.pause_until.load(Ordering::Relaxed) != 0 {
                    self.pause_until.store(0, Ordering::Relaxed);
                }
                verdict
            }
            _ => Verdict::Fallback(Fallback::Unavailable),
        };
        if let Verdict::Fallback(reason) = verdict {
            self.fallbacks[reason.index()].fetch_add(1, Ordering::Relaxed);
        }
        verdict
    }

    /// False while Redis is left alone after a failure; once the pause is over, true for one
    /// caller (the probe), whose answer ends the pause or starts another.
    fn may_ask(&self) -> bool {
        let until = self.pause_until.load(Ordering::Relaxed);
        if until == 0 {
            return true;
        }
        let now = self.micros();
        // The probe holds the way for one deadline; the others keep falling back meanwhile.
        let probe_until = now + self.limits.deadline.as_micros() as u64;
        now >= until
            && self
                .pause_until
                .compare_exchange(until, probe_until, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
    }

    fn pause(&self, pause: Duration) {
        let until = self.micros() + pause.as_micros() as u64;
        self.pause_until.store(until, Ordering::Relaxed);
    }

    fn micros(&self) -> u64 {
        // Never 0, which means "not paused".
        self.epoch.elapsed().as_micros() as u64 + 1
    }

    async fn ask(&self, mut connection: ConnectionManager, tenant: &str, rate: Rate) -> Verdict {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let (interval, tolerance) = gcra_params(rate);
        let mut invocation = self.script.key(Key(&self.limits.key_prefix, tenant));
        invocation.arg(interval).arg(tolerance);
        let call = invocation.invoke_async::<(i64, i64)>(&mut connection);
        match tokio::time::timeout(self.limits.deadline, call).await {
            Ok(Ok((1, _))) => Verdict::Pass,
            Ok(Ok((_, wait_micros))) => {
                Verdict::Over(Duration::from_micros(wait_micros.max(0).unsigned_abs()))
            }
            Ok(Err(e)) if e.is_timeout() => Verdict::Fallback(Fallback::Timeout),
            Ok(Err(e)) if is_connection_error(&e) => Verdict::Fallback(Fallback::Unavailable),
            Ok(Err(_)) => Verdict::Fallback(Fallback::Error),
            Err(_elapsed) => Verdict::Fallback(Fallback::Timeout),
        }
    }

    /// The connection manager, made on first use inside the runtime: it connects lazily and
    /// reconnects by itself after Redis comes back.
    fn manager(&self) -> Option<&ConnectionManager> {
        self.connection
            .get_or_init(|| {
                tokio::runtime::Handle::try_current().ok()?;
                let config = redis::aio::ConnectionManagerConfig::new()
                    .set_connection_timeout(Some(
                        self.limits.deadline.max(Duration::from_millis(50)),
                    ))
                    .set_response_timeout(Some(self.limits.deadline))
                    .set_number_of_retries(2)
                    .set_max_delay(Duration::from_secs(1));
                let manager =
                    ConnectionManager::new_lazy_with_config(self.limits.client.clone(), config)
                        .ok()?;
                // Connect and load the script now, off the request path, so the first decisions
                // do not pay for both within their deadline.
                let (mut warm, script) = (manager.clone(), self.script.clone());
                tokio::spawn(async move { script.load_async(&mut warm).await });
                Some(manager)
            })
            .as_ref()
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("limits", &self.limits)
            .field("calls", &self.calls())
            .finish_non_exhaustive()
    }
}

fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal()
}

/// The GCRA's two numbers for `rate`: microseconds between requests, and how far ahead of now
/// the next arrival may be (a burst's worth).
fn gcra_params(rate: Rate) -> (u64, u64) {
    let interval = (1_000_000 / u64::from(rate.per_second.get())).max(1);
    (interval, interval * u64::from(rate.burst.get()))
}

/// `prefix` + tenant id as one Redis key, written without an intermediate `String`.
struct Key<'a>(&'a str, &'a str);

impl redis::ToRedisArgs for Key<'_> {
    fn write_redis_args<W: ?Sized + redis::RedisWrite>(&self, out: &mut W) {
        let mut key = Vec::with_capacity(self.0.len() + self.1.len());
        key.extend_from_slice(self.0.as_bytes());
        key.extend_from_slice(self.1.as_bytes());
        out.write_arg(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_is_how_far_ahead_arrivals_may_run() {
        assert_eq!(gcra_params(Rate::per_second(100)), (10_000, 1_000_000));
        assert_eq!(
            gcra_params(Rate::per_second(10).burst(1)),
            (100_000, 100_000)
        );
        // A rate above a million a second still moves time forward.
        assert_eq!(gcra_params(Rate::per_second(u32::MAX).burst(2)), (1, 2));
    }

    #[test]
    fn a_bad_url_is_an_error_not_a_panic() {
        let err = GlobalLimits::redis("not a url").unwrap_err();
        assert!(err.to_string().starts_with("invalid Redis URL"), "{err}");
        assert!(GlobalLimits::redis("redis://127.0.0.1:1/").is_ok());
    }

    #[tokio::test]
    async fn with_nothing_listening_every_decision_falls_back_within_the_deadline() {
        // Port 1 on loopback: nothing listens, the connection is refused at once.
        let store = Store::new(
            GlobalLimits::redis("redis://127.0.0.1:1/")
                .unwrap()
                .deadline(Duration::from_millis(20)),
        );
        for _ in 0..5 {
            let started = std::time::Instant::now();
            let verdict = store.check("acme", Rate::per_second(10)).await;
            assert!(matches!(verdict, Verdict::Fallback(_)), "{verdict:?}");
            // A generous margin: the deadline bounds the wait, the machine may be loaded.
            assert!(started.elapsed() < Duration::from_secs(2));
        }
        let fell_back: u64 = [Fallback::Timeout, Fallback::Unavailable, Fallback::Error]
            .into_iter()
            .map(|r| store.fallbacks(r))
            .sum();
        assert_eq!(fell_back, 5);
    }
}
