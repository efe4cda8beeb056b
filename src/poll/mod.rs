//! Turning what sources say into committed, published events.
//!
//! * [`pipeline`]: the single writer. Observations (partial statuses) come in from pollers and the
//!   Events API; it detects real changes, commits them in batches, then publishes them.
//! * [`slack`]: the Slack poller pool: sweeps, watched-first presence polling, DND rounds.
//! * [`rounds`]: the loop of sources polled in rounds, [`jira`] and [`gmail`].
//!
//! [`run`] keeps one poller per active connection, whatever its source.

pub mod gmail;
pub mod jira;
pub mod pipeline;
pub mod presence;
pub mod rounds;
pub mod slack;

pub use pipeline::{Observation, Pipeline};

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

/// How often the pool looks for connections added, replaced or removed.
const RECONCILE_EVERY: Duration = Duration::from_secs(2);

/// Everything the pollers of every source need.
#[derive(Clone)]
pub struct Pollers {
    pub slack: slack::PollContext,
    pub rounds: rounds::RoundsContext,
}

/// Runs until `shutdown`: starts a poller for each active connection and stops pollers of
/// connections that were deleted, replaced (their `updated_at` moved) or failed.
pub async fn run(p: Pollers, shutdown: CancellationToken) {
    let store = p.slack.store.clone();
    let mut running: HashMap<i64, (DateTime<Utc>, CancellationToken)> = HashMap::new();
    loop {
        match store.connections(None).await {
            Ok(conns) => {
                let live: HashMap<i64, _> = conns
                    .into_iter()
                    .filter(|c| c.status == "active")
                    .map(|c| (c.id, c))
                    .collect();
                running.retain(|id, (updated, token)| {
                    let keep = live.get(id).is_some_and(|c| c.updated_at == *updated);
                    if !keep {
                        token.cancel();
                    }
                    keep
                });
                for (id, c) in live {
                    if running.contains_key(&id) {
                        continue;
                    }
                    let token = shutdown.child_token();
                    running.insert(id, (c.updated_at, token.clone()));
                    match c.kind.as_str() {
                        "slack" => {
                            tokio::spawn(slack::poll_connection(p.slack.clone(), c, token));
                        }
                        "jira" => {
                            tokio::spawn(jira::poll_connection(p.rounds.clone(), c, token));
                        }
                        "gmail" => {
                            tokio::spawn(gmail::poll_connection(p.rounds.clone(), c, token));
                        }
                        other => tracing::warn!(
                            connection = id,
                            kind = other,
                            "no poller for this kind of connection"
                        ),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not list connections"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(RECONCILE_EVERY) => {}
        }
    }
}
