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
