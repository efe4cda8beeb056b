//! What every handler shares: cheap handles only.

use std::sync::Arc;

use warp::Filter;

use crate::auth::Keys;
use crate::config::Config;
use crate::crypto::SecretKey;
use crate::hub::Hub;
use crate::poll::Pipeline;
use crate::sources::slack::SlackClient;
use crate::store::Store;

/// What every handler and socket shares, behind one `Arc`: cloning it per request or per socket
/// is a reference count, not a copy of ~1.4 KB (the sealing key's AES schedule alone is ~1 KB),
/// and a socket's task holds 8 bytes of it instead of carrying the whole state for its lifetime.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

pub struct Shared {
    pub store: Store,
    pub hub: Hub,
    pub keys: Keys,
    pub config: Arc<Config>,
    pub pipeline: Pipeline,
    pub secret_key: SecretKey,
    pub slack: SlackClient,
    /// Live sockets per bot credential (`bot:{id}`), so revoking a token closes them at once.
    pub credentials: Arc<dashmap::DashMap<String, tokio_util::sync::CancellationToken>>,
    /// Users the Events API path need not rewrite (see `KnownUsers`).
    pub known_users: crate::poll::slack::KnownUsers,
    /// Workspace and opened signing secret per Slack team, for [`WORKSPACE_TTL`]: every pushed
    /// event needs both, and a database read plus an AES open per event is the slow part of
    /// the Events API path at thousands of events a second.
    pub workspaces: Arc<dashmap::DashMap<String, Arc<CachedWorkspace>>>,
    /// Events taken lately, so Slack's redelivery of one is dropped (`SeenEvents`).
    pub seen_events: crate::sources::slack::events::SeenEvents,
    /// The sources' HTTP pool: a Jira site's credentials are checked with it on upload.
    pub http: reqwest::Client,
    pub gmail: crate::sources::gmail::GmailClient,
    /// Team snapshots shared by subscribers arriving together (`topics::shared_snapshot`).
    pub snapshots: super::topics::SnapshotCache,
}

/// How long a cached workspace is trusted; replacing or deleting a connection also clears it.
pub const WORKSPACE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Clone)]
pub struct CachedWorkspace {
    pub at: std::time::Instant,
    pub connection: crate::store::entity::connection::Model,
    pub signing_secret: Option<String>,
}

impl AppState {
    pub fn filter(
        &self,
    ) -> impl warp::Filter<Extract = (AppState,), Error = std::convert::Infallible> + Clone + use<>
    {
        let s = self.clone();
        warp::any().map(move || s.clone())
    }
}

impl AppState {
    /// A token that fires when the credential behind `sub` is revoked (bots only).
    pub fn revocation(&self, sub: &str) -> tokio_util::sync::CancellationToken {
        if !sub.starts_with("bot:") {
            return tokio_util::sync::CancellationToken::new();
        }
        self.credentials
            .entry(sub.to_owned())
            .or_default()
            .child_token()
    }

    /// Forgets what is cached of a workspace after it was replaced or deleted.
    pub fn forget_workspace(&self, team_id: &str, connection_id: i64) {
        self.workspaces.remove(team_id);
        self.known_users.forget_connection(connection_id);
    }

    pub fn revoke_credential(&self, sub: &str) {
        if let Some((_, t)) = self.credentials.remove(sub) {
            t.cancel();
        }
    }
}
