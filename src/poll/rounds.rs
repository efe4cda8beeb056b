//! Sources polled in rounds — Jira and Gmail — share one loop: read everything the connection
//! covers, hand what was seen to the pipeline, sleep, repeat. What differs per source is one
//! round ([`Chexer::round`]); what a failure does is decided here, the same for each:
//!
//! * a credential error stops the connection and records the error on it (an admin replaces the
//!   credential, which starts polling again), and flags the linked people's part stale;
//! * a rate limit waits what the source asked (at least the backoff) without flagging anything;
//! * any other failure flags the part stale and retries with exponential backoff.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::pipeline::Pipeline;
use crate::crypto::SecretKey;
use crate::domain::{PersonCard, Source, StatusPatch, now};
use crate::sources::gmail::GmailClient;
use crate::store::Store;
use crate::store::entity::connection;

/// Longest pause between retries of a failing source.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// Why a round ended early.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The credential is unusable (revoked, wrong, lacking scope): stop until it is replaced.
    Credential(String),
    /// The source asked us to slow down.
    RateLimited(Duration),
    /// Outage, timeout, garbage: try again later.
    Transient(String),
}

/// What one round saw: a patch per linked person.
pub type Seen = Vec<(Arc<PersonCard>, StatusPatch)>;

/// One source connection polled in rounds.
pub trait Chexer: Send + 'static {
    fn source(&self) -> Source;

    /// Reads the source once.
    fn round(&mut self) -> impl Future<Output = Result<Seen, Failure>> + Send;

    /// People whose part of the status comes from this connection (to flag stale on failure).
    fn linked(&self) -> Vec<Arc<PersonCard>>;

    /// The patch that flags this source's part stale.
    fn stale(&self) -> StatusPatch;
}

/// What the round-polled sources share.
#[derive(Clone)]
pub struct RoundsContext {
    pub store: Store,
    pub pipeline: Pipeline,
    pub key: SecretKey,
    /// One HTTP pool for every Jira site.
    pub http: reqwest::Client,
    pub gmail: GmailClient,
    pub jira_interval: Duration,
    pub gmail_interval: Duration,
}

/// Polls `chexer` every `interval` until `stop`, or until its credential fails.
pub async fn run<C: Chexer>(
    mut chexer: C,
    ctx: RoundsContext,
    conn: connection::Model,
    interval: Duration,
    stop: CancellationToken,
) {
    let source = chexer.source();
    tracing::info!(connection = conn.id, %source, "polling");
    let mut failures: u32 = 0;
    loop {
        let result = tokio::select! {
            _ = stop.cancelled() => return,
            r = chexer.round() => r,
        };
        let wait = match result {
            Ok(seen) => {
                failures = 0;
                let at = now();
                ctx.pipeline.observe_all(seen, at, source).await;
                let _ = ctx.store.record_poll(conn.id, at, None).await;
                interval
            }
            Err(Failure::Credential(why)) => {
                tracing::warn!(connection = conn.id, %source, error = %why, "the source refused the credential; polling stopped");
                let _ = ctx
                    .store
                    .set_connection_status(conn.id, "error", Some(&why))
                    .await;
                let _ = ctx.store.record_poll(conn.id, now(), Some(&why)).await;
                flag_stale(&chexer, &ctx.pipeline).await;
                return;
            }
            Err(Failure::RateLimited(asked)) => {
                failures += 1;
                tracing::info!(connection = conn.id, %source, wait_s = asked.as_secs(), "rate limited; waiting");
                let _ = ctx
                    .store
                    .record_poll(conn.id, now(), Some("ratelimited"))
                    .await;
                asked.max(backoff(failures))
            }
            Err(Failure::Transient(why)) => {
                failures += 1;
                tracing::warn!(connection = conn.id, %source, error = %why, failures, "poll failed; retrying with backoff");
                let _ = ctx.store.record_poll(conn.id, now(), Some(&why)).await;
                flag_stale(&chexer, &ctx.pipeline).await;
                backoff(failures)
            }
        };
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn flag_stale<C: Chexer>(chexer: &C, pipeline: &Pipeline) {
    let stale = chexer.linked().into_iter().map(|p| (p, chexer.stale()));
    pipeline.observe_all(stale, now(), chexer.source()).await;
}

/// 1 s, 2 s, 4 s, … up to [`MAX_BACKOFF`].
fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(9)).min(MAX_BACKOFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(1), Duration::from_secs(1));
        assert_eq!(backoff(3), Duration::from_secs(4));
        assert_eq!(backoff(40), MAX_BACKOFF);
    }
}
