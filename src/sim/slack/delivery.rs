//! Delivery of Events API callbacks the way Slack does it, failures included.
//!
//! Slack counts an attempt failed when the app does not answer 2xx within three seconds, refuses
//! the connection, redirects more than twice or answers anything else, and then delivers the
//! same event again: at once, a minute later and five minutes later. Each retry is the same body
//! (same `event_id`, same `event_time`) under a new request timestamp and signature, and says
//! which retry it is and why (`X-Slack-Retry-Num`, `X-Slack-Retry-Reason`). An app that wants no
//! more retries of a refused event answers `X-Slack-No-Retry: 1`.
//!
//! Chex meets the retries in two ways: a retry is the only way Slack recovers an event Chex could
//! not take (database down, restart), and a retry can arrive minutes after newer events about the
//! same person (`sources::slack::events::happened_by`).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::world::{Push, now_unix};
use crate::sources::slack::events::sign;

/// Slack's waits before the three redeliveries of a failed callback.
pub const SLACK_RETRY_DELAYS: [Duration; 3] = [
    Duration::ZERO,
    Duration::from_secs(60),
    Duration::from_secs(300),
];

/// How long Slack waits for an answer before it counts the attempt failed.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(3);

/// What came of one attempt.
enum Attempt {
    Delivered,
    /// Failed, for the reason Slack would give in the next attempt's `X-Slack-Retry-Reason`.
    Failed(&'static str),
    /// Refused with `X-Slack-No-Retry: 1`: Slack gives the event up.
    NoRetry,
}

/// The client Slack delivers with: its timeout and its redirect limit.
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(ANSWER_WITHIN)
        .redirect(reqwest::redirect::Policy::limited(2))
        .build()
}

/// Delivers `push` once; on failure, schedules the retries on a task of their own and returns,
/// so a failing app does not hold up the events after this one (Slack does not wait either).
pub async fn deliver(
    http: &reqwest::Client,
    push: Push,
    delays: Vec<Duration>,
    shutdown: &CancellationToken,
) {
    let reason = match attempt(http, &push, None).await {
        Attempt::Failed(reason) => reason,
        Attempt::Delivered | Attempt::NoRetry => return,
    };
    let http = http.clone();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        let mut reason = reason;
        for (n, wait) in (1u32..).zip(delays) {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            match attempt(&http, &push, Some((n, reason))).await {
                Attempt::Failed(r) => reason = r,
                Attempt::Delivered | Attempt::NoRetry => return,
            }
        }
        tracing::debug!(url = %push.url, "simulator gave up on an event after every retry");
    });
}

/// One attempt; `retry` is `(retry number, why the attempt before failed)`.
async fn attempt(
    http: &reqwest::Client,
    push: &Push,
    retry: Option<(u32, &'static str)>,
) -> Attempt {
    let timestamp = now_unix().to_string();
    let mut req = http
        .post(&push.url)
        .header("content-type", "application/json")
        .header("x-slack-request-timestamp", &timestamp)
        .header(
            "x-slack-signature",
            sign(&push.secret, &timestamp, push.body.as_bytes()),
        )
        .body(push.body.clone());
    if let Some((n, reason)) = retry {
        req = req
            .header("x-slack-retry-num", n.to_string())
            .header("x-slack-retry-reason", reason);
    }
    match req.send().await {
        Ok(r) if r.status().is_success() => Attempt::Delivered,
        Ok(r)
            if r.headers()
                .get("x-slack-no-retry")
                .is_some_and(|v| v == "1") =>
        {
            Attempt::NoRetry
        }
        Ok(_) => Attempt::Failed("http_error"),
        Err(e) if e.is_timeout() => Attempt::Failed("http_timeout"),
        Err(e) if e.is_redirect() => Attempt::Failed("too_many_redirects"),
        Err(e) if e.is_connect() => Attempt::Failed("connection_failed"),
        Err(_) => Attempt::Failed("unknown_error"),
    }
}
