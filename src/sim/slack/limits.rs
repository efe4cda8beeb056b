//! Slack's tier enforcement as the simulator applies it: at most the tier's allowance of calls per
//! (token, method) in any sliding 60-second window, else HTTP 429 with `Retry-After` = seconds
//! until the oldest call in the window leaves it.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::sources::slack::tier_of;

const WINDOW: Duration = Duration::from_secs(60);

pub struct Limits {
    scale: Option<f64>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    windows: HashMap<(String, String), VecDeque<Instant>>,
    calls: HashMap<String, u64>,
    rejected: u64,
}

impl Limits {
    pub fn new(scale: Option<f64>) -> Limits {
        Limits {
            scale,
            state: Mutex::new(State::default()),
        }
    }

    /// Counts the call; `Err(retry_after)` when it is over the limit.
    pub fn check(&self, token: &str, method: &str) -> Result<(), Duration> {
        let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *s.calls.entry(method.to_owned()).or_default() += 1;
        let Some(scale) = self.scale else {
            return Ok(());
        };
        let limit = (tier_of(method).per_minute() * scale).floor().max(1.0) as usize;
        let now = Instant::now();
        let window = s
            .windows
            .entry((token.to_owned(), method.to_owned()))
            .or_default();
        while window
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            window.pop_front();
        }
        if window.len() >= limit {
            let oldest = *window.front().unwrap_or(&now);
            let retry = WINDOW.saturating_sub(now.duration_since(oldest));
            s.rejected += 1;
            // Slack's Retry-After is whole seconds, rounded up.
            return Err(Duration::from_secs(
                retry.as_secs() + u64::from(retry.subsec_nanos() > 0),
            ));
        }
        window.push_back(now);
        Ok(())
    }

    pub fn calls(&self, method: &str) -> u64 {
        let s = self.state.lock().unwrap_or_else(|p| p.into_inner());
        s.calls.get(method).copied().unwrap_or(0)
    }

    pub fn rejected(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .rejected
    }
}
