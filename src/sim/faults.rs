//! Fault injection and request budgets shared by the Jira and Gmail simulators.

use std::time::{Duration, Instant};

/// Faults a test switches on for one simulated account. Counted faults apply to the next calls,
/// in this order: rate limit, failure, garbage.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// The credential is revoked: every call is refused as the real service refuses it.
    pub revoked: bool,
    /// The next N calls answer 429 with `Retry-After: retry_after_secs`.
    pub rate_limit_next: u32,
    pub retry_after_secs: u64,
    /// The next N calls answer HTTP 500.
    pub fail_next: u32,
    /// The next N calls answer 200 with a body that is not JSON.
    pub malformed_next: u32,
}

/// What one call meets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    RateLimited { retry_after_secs: u64 },
    Fail,
    Malformed,
}

impl Faults {
    /// The fault the next call meets, if any (revocation is checked by the caller, which knows
    /// how its service words it).
    pub fn take(&mut self) -> Option<Fault> {
        if self.rate_limit_next > 0 {
            self.rate_limit_next -= 1;
            return Some(Fault::RateLimited {
                retry_after_secs: self.retry_after_secs.max(1),
            });
        }
        if self.fail_next > 0 {
            self.fail_next -= 1;
            return Some(Fault::Fail);
        }
        if self.malformed_next > 0 {
            self.malformed_next -= 1;
            return Some(Fault::Malformed);
        }
        None
    }
}

/// A fixed-window request budget: `limit` calls per `window`, then 429 until the window turns.
#[derive(Debug)]
pub struct Budget {
    limit: u32,
    window: Duration,
    started: Instant,
    used: u32,
}

impl Budget {
    pub fn new(limit: u32, window: Duration) -> Budget {
        Budget {
            limit,
            window,
            started: Instant::now(),
            used: 0,
        }
    }

    /// `Err(seconds to wait)` when the window's calls are spent.
    pub fn spend(&mut self) -> Result<(), u64> {
        let now = Instant::now();
        if now.duration_since(self.started) >= self.window {
            self.started = now;
            self.used = 0;
        }
        if self.used >= self.limit {
            let left = self.window.saturating_sub(now.duration_since(self.started));
            return Err(left.as_secs().max(1));
        }
        self.used += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_faults_run_out_in_order() {
        let mut f = Faults {
            rate_limit_next: 1,
            retry_after_secs: 3,
            fail_next: 1,
            malformed_next: 1,
            ..Faults::default()
        };
        assert_eq!(
            f.take(),
            Some(Fault::RateLimited {
                retry_after_secs: 3
            })
        );
        assert_eq!(f.take(), Some(Fault::Fail));
        assert_eq!(f.take(), Some(Fault::Malformed));
        assert_eq!(f.take(), None);
    }

    #[test]
    fn a_spent_budget_says_how_long_to_wait() {
        let mut b = Budget::new(2, Duration::from_secs(60));
        assert!(b.spend().is_ok());
        assert!(b.spend().is_ok());
        let wait = b.spend().expect_err("spent");
        assert!((1..=60).contains(&wait));
    }
}
