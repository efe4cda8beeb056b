//! What every HTTP source client shares: reading `Retry-After`, retry pacing, and error text that
//! never carries a URL (ours hold user ids, emails and issue keys).

use std::time::Duration;

/// Attempts per call for transient failures (429, 5xx, timeouts, garbage) before giving up.
pub const ATTEMPTS: u32 = 3;

/// Longest `Retry-After` a call waits out itself; a longer one goes back to the poller, which
/// pauses the whole connection instead of holding a request open.
pub const MAX_INLINE_WAIT: Duration = Duration::from_secs(10);

/// A 429's `Retry-After` in seconds (the form Slack, Jira and Google send), else `default`.
pub fn retry_after(headers: &reqwest::header::HeaderMap, default: Duration) -> Duration {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
        .unwrap_or(default)
}

/// The pause before attempt `attempt + 1` after a transient failure: 200 ms, 400 ms, …
pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(200u64 << attempt.min(6))
}

/// Runs `call` up to [`ATTEMPTS`] times. After a failure, `wait(error, attempt)` says how long
/// to pause before trying again, or `None` to give up at once (the error is not worth a retry,
/// or the source asked for a longer pause than a call should hold).
pub async fn retrying<T, E, Fut>(
    mut call: impl FnMut() -> Fut,
    wait: impl Fn(&E, u32) -> Option<Duration>,
) -> Result<T, E>
where
    Fut: std::future::Future<Output = Result<T, E>>,
    E: std::fmt::Display,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match call().await {
            Err(e) if attempt < ATTEMPTS => match wait(&e, attempt) {
                Some(pause) => {
                    tracing::debug!(error = %e, attempt, pause_ms = pause.as_millis() as u64, "source call failed, retrying");
                    tokio::time::sleep(pause).await;
                }
                None => return Err(e),
            },
            other => return other,
        }
    }
}

/// A response read whole.
pub struct Answer {
    pub status: u16,
    /// Its `Retry-After`, or the default given.
    pub retry_after: Duration,
    pub body: bytes::Bytes,
}

/// Reads a response: status, `Retry-After` and body (a failed read is a transport error).
pub async fn answer(resp: reqwest::Response, default_retry: Duration) -> Result<Answer, String> {
    let status = resp.status().as_u16();
    let retry_after = retry_after(resp.headers(), default_retry);
    let body = resp.bytes().await.map_err(without_url)?;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// reqwest errors print the URL; keep just the cause.
pub fn without_url(e: reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect"
    } else {
        "request"
    };
    format!("{kind}: {}", e.without_url())
}

/// The HTTP client every source shares: rustls, bounded timeouts, our user agent.
pub fn client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(5))
        .pool_idle_timeout(Duration::from_secs(60))
        .user_agent(concat!("chex/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// A JSON body that deserializes, or the serde error (never the body: it may hold personal data).
pub fn json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, String> {
    serde_json::from_slice(body).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_reads_seconds_and_falls_back() {
        let mut h = reqwest::header::HeaderMap::new();
        let d = Duration::from_secs(30);
        assert_eq!(retry_after(&h, d), d);
        h.insert("retry-after", "7".parse().expect("header"));
        assert_eq!(retry_after(&h, d), Duration::from_secs(7));
        h.insert("retry-after", "soon".parse().expect("header"));
        assert_eq!(retry_after(&h, d), d);
    }
}
