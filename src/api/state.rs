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

#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub hub: Hub,
    pub keys: Keys,
    pub config: Arc<Config>,
    pub pipeline: Pipeline,
    pub secret_key: SecretKey,
    pub slack: SlackClient,
    /// Live sockets per bot credential (`bot:{id}`), so revoking a token closes them at once.
    pub credentials: Arc<dashmap::DashMap<String, tokio_util::sync::CancellationToken>>,
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

    pub fn revoke_credential(&self, sub: &str) {
        if let Some((_, t)) = self.credentials.remove(sub) {
            t.cancel();
        }
    }
}
