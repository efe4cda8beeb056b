//! Keeps Chex inside Slack's rate limits, per (workspace token, method).
//!
//! Slack publishes a per-minute allowance per method ("tiers") and answers HTTP 429 with
//! `Retry-After` past it. The governor spaces calls with a token bucket that refills at 90% of the
//! published rate and holds at most a tenth of a minute's allowance, so in any 60-second window
//! it issues at most `0.1 + 0.9` of the allowance: steady polling never sees a 429. When one comes
//! anyway (another app sharing the workspace's budget), that method is blocked for the
//! `Retry-After` and no other method is touched. Consecutive failures (5xx, timeouts) back off
//! exponentially with jitter.
//!
//! Polling and on-demand calls share one governor, so neither can spend the other's budget.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

use crate::metrics::METRICS;

/// Slack's published tiers, in calls per minute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tier {
    /// 1+ per minute.
    T1,
    /// 20+ per minute.
    T2,
    /// 50+ per minute.
    T3,
    /// 100+ per minute.
    T4,
}

impl Tier {
    pub fn per_minute(self) -> f64 {
        match self {
            Tier::T1 => 1.0,
            Tier::T2 => 20.0,
            Tier::T3 => 50.0,
            Tier::T4 => 100.0,
        }
    }
}

/// The tier of each method Chex calls, from Slack's method reference pages.
pub fn tier_of(method: &str) -> Tier {
    match method {
        "users.list" | "dnd.teamInfo" => Tier::T2,
        "users.getPresence" | "team.info" | "dnd.info" => Tier::T3,
        // auth.test is "special" (thousands per hour); Tier 4 is a safe floor.
        "users.info" | "users.profile.get" | "auth.test" => Tier::T4,
        _ => Tier::T3,
    }
}

/// Fraction of the published rate the bucket refills at.
const RATE_MARGIN: f64 = 0.9;
/// Fraction of a minute's allowance the bucket may hold (the burst).
const BURST_FRACTION: f64 = 0.1;
const BACKOFF_BASE: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(60);

struct Bucket {
    tokens: f64,
    capacity: f64,
    per_sec: f64,
    refilled: Instant,
    /// No call before this instant: a 429's Retry-After or a failure backoff.
    blocked_until: Option<Instant>,
    failures: u32,
}

impl Bucket {
    fn new(per_minute: f64, now: Instant) -> Bucket {
        let capacity = (per_minute * BURST_FRACTION).floor().max(1.0);
        Bucket {
            tokens: capacity,
            capacity,
            per_sec: per_minute * RATE_MARGIN / 60.0,
            refilled: now,
            blocked_until: None,
            failures: 0,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + dt * self.per_sec).min(self.capacity);
        self.refilled = now;
    }

    /// Takes a token now, or says how long to wait.
    fn try_take(&mut self, now: Instant) -> Result<(), Duration> {
        if let Some(until) = self.blocked_until {
            if until > now {
                return Err(until - now);
            }
            self.blocked_until = None;
        }
        self.refill(now);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.per_sec))
        }
    }
}

/// Rate-limit state for every (workspace, method) pair. Share one per process.
pub struct Governor {
    scale: f64,
    /// A std mutex: it is held for a few arithmetic operations and never across an await.
    buckets: Mutex<HashMap<(String, &'static str), Bucket>>,
}

impl Governor {
    /// `scale` multiplies every published rate (1 for real Slack).
    pub fn new(scale: f64) -> Governor {
        Governor {
            scale,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn with_bucket<R>(
        &self,
        key: &str,
        method: &'static str,
        f: impl FnOnce(&mut Bucket, Instant) -> R,
    ) -> R {
        let now = Instant::now();
        let mut map = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let bucket = map
            .entry((key.to_owned(), method))
            .or_insert_with(|| Bucket::new(tier_of(method).per_minute() * self.scale, now));
        f(bucket, now)
    }

    /// Waits until `method` may be called for workspace `key`, and takes the slot.
    pub async fn acquire(&self, key: &str, method: &'static str) {
        let started = Instant::now();
        loop {
            match self.with_bucket(key, method, |b, now| b.try_take(now)) {
                Ok(()) => break,
                Err(wait) => tokio::time::sleep(wait).await,
            }
        }
        METRICS
            .slack_wait_micros
            .add(started.elapsed().as_micros() as u64);
    }

    /// How long a call would wait right now (0 if it could go), without taking a slot.
    pub fn delay(&self, key: &str, method: &'static str) -> Duration {
        self.with_bucket(key, method, |b, now| {
            if let Some(until) = b.blocked_until.filter(|u| *u > now) {
                return until - now;
            }
            b.refill(now);
            if b.tokens >= 1.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64((1.0 - b.tokens) / b.per_sec)
            }
        })
    }

    /// Slack said 429: no call of `method` for `key` before `retry_after` passes.
    pub fn rate_limited(&self, key: &str, method: &'static str, retry_after: Duration) {
        METRICS.slack_429.inc();
        self.with_bucket(key, method, |b, now| {
            let until = now + retry_after;
            b.blocked_until = Some(b.blocked_until.map_or(until, |u| u.max(until)));
            b.tokens = 0.0;
        });
    }

    /// A transient failure: the next call of `method` waits a jittered, doubling backoff.
    pub fn failed(&self, key: &str, method: &'static str) -> Duration {
        self.with_bucket(key, method, |b, now| {
            b.failures = b.failures.saturating_add(1);
            let exp = BACKOFF_BASE
                .saturating_mul(1u32 << b.failures.min(7))
                .min(BACKOFF_MAX);
            // Full jitter in [exp/2, exp): spreads retries of many workspaces apart.
            let wait = exp.mul_f64(0.5 + rand::random::<f64>() * 0.5);
            b.blocked_until = Some(now + wait);
            wait
        })
    }

    pub fn succeeded(&self, key: &str, method: &'static str) {
        self.with_bucket(key, method, |b, _| b.failures = 0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_429_blocks_that_method_for_retry_after_and_no_other() {
        let g = Governor::new(1.0);
        g.rate_limited("W", "users.list", Duration::from_secs(2));
        let t0 = Instant::now();
        g.acquire("W", "users.info").await;
        assert!(
            t0.elapsed() < Duration::from_millis(10),
            "other method unaffected"
        );
        g.acquire("W", "users.list").await;
        assert!(
            t0.elapsed() >= Duration::from_secs(2),
            "waited {:?}",
            t0.elapsed()
        );
        let t1 = Instant::now();
        g.acquire("X", "users.list").await;
        assert!(
            t1.elapsed() < Duration::from_millis(10),
            "other workspace unaffected"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_minute_of_calls_stays_within_the_published_tier() {
        let g = Governor::new(1.0);
        let t0 = Instant::now();
        let mut calls = 0;
        while t0.elapsed() < Duration::from_secs(60) {
            g.acquire("W", "users.list").await;
            if t0.elapsed() < Duration::from_secs(60) {
                calls += 1;
            }
        }
        assert!(calls <= 20, "{calls} calls of a Tier 2 method in a minute");
        assert!(
            calls >= 18,
            "{calls}: the governor should not starve polling"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn failures_back_off_exponentially_and_success_resets() {
        let g = Governor::new(1.0);
        let a = g.failed("W", "users.info");
        let b = g.failed("W", "users.info");
        let c = g.failed("W", "users.info");
        assert!(a < c && b <= c * 2, "{a:?} {b:?} {c:?}");
        assert!(c >= Duration::from_secs(2));
        g.succeeded("W", "users.info");
        let d = g.failed("W", "users.info");
        assert!(d < Duration::from_secs(1), "{d:?}");
    }
}
