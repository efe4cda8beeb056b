//! The Slack Web API client: one method per Slack method Chex calls, all through the governor.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::de::DeserializeOwned;

use super::error::SlackError;
use super::governor::Governor;
use super::types::*;
use super::users_page::UsersPage;
use crate::crypto::fingerprint;
use crate::metrics::METRICS;
use crate::sources::http::{ATTEMPTS, retry_after, without_url};

/// Slack's documented maximum page size for `users.list`.
pub const USERS_LIST_LIMIT: u32 = 200;
/// `dnd.teamInfo` takes at most 50 users per call.
pub const DND_TEAM_BATCH: usize = 50;
/// What a 429 without a usable `Retry-After` makes us wait.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(30);

/// A Slack Web API client. Clone it freely: the HTTP pool and governor are shared.
#[derive(Clone)]
pub struct SlackClient {
    http: reqwest::Client,
    base: String,
    governor: Arc<Governor>,
}

impl SlackClient {
    /// `base` is `https://slack.com/api` or the simulator's equivalent.
    pub fn new(base: &str, governor: Arc<Governor>) -> Result<SlackClient, SlackError> {
        let http =
            crate::sources::http::client().map_err(|e| SlackError::Transport(e.to_string()))?;
        Ok(SlackClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            governor,
        })
    }

    pub fn governor(&self) -> &Governor {
        &self.governor
    }

    pub async fn auth_test(&self, token: &str) -> Result<AuthTest, SlackError> {
        self.call(token, "auth.test", &[]).await
    }

    pub async fn team_info(&self, token: &str) -> Result<TeamInfo, SlackError> {
        self.call(token, "team.info", &[]).await
    }

    /// One page of `users.list`; pass the previous page's `next_cursor` (empty for the first).
    pub async fn users_list_page(
        &self,
        token: &str,
        cursor: &str,
        limit: u32,
    ) -> Result<UsersList, SlackError> {
        self.call(token, "users.list", &users_list_query(cursor, limit))
            .await
    }

    /// The same page with its members left unparsed, for sweeps: see [`UsersPage`].
    pub async fn users_page(
        &self,
        token: &str,
        cursor: &str,
        limit: u32,
    ) -> Result<UsersPage, SlackError> {
        let query = users_list_query(cursor, limit);
        self.call_with(token, "users.list", &query, |body| {
            UsersPage::read(body.into())
        })
        .await
    }

    /// Every member of the workspace, page by page until `next_cursor` is empty.
    pub async fn users_list_all(&self, token: &str) -> Result<Vec<User>, SlackError> {
        let mut out = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self
                .users_list_page(token, &cursor, USERS_LIST_LIMIT)
                .await?;
            out.extend(page.members);
            cursor = page.response_metadata.next_cursor;
            if cursor.is_empty() {
                return Ok(out);
            }
        }
    }

    pub async fn users_info(&self, token: &str, user: &str) -> Result<User, SlackError> {
        let r: UsersInfo = self
            .call(token, "users.info", &[("user", user.to_owned())])
            .await?;
        Ok(r.user)
    }

    pub async fn get_presence(&self, token: &str, user: &str) -> Result<UserPresence, SlackError> {
        self.call(token, "users.getPresence", &[("user", user.to_owned())])
            .await
    }

    pub async fn profile_get(&self, token: &str, user: &str) -> Result<Profile, SlackError> {
        let r: ProfileGet = self
            .call(token, "users.profile.get", &[("user", user.to_owned())])
            .await?;
        Ok(r.profile)
    }

    pub async fn dnd_info(&self, token: &str, user: &str) -> Result<DndInfo, SlackError> {
        self.call(token, "dnd.info", &[("user", user.to_owned())])
            .await
    }

    /// DND of up to [`DND_TEAM_BATCH`] users.
    pub async fn dnd_team_info(
        &self,
        token: &str,
        users: &[String],
    ) -> Result<DndTeamInfo, SlackError> {
        let users = users[..users.len().min(DND_TEAM_BATCH)].join(",");
        self.call(token, "dnd.teamInfo", &[("users", users)]).await
    }

    /// One Slack method call, its body read as `T`: see [`SlackClient::call_with`].
    async fn call<T: DeserializeOwned>(
        &self,
        token: &str,
        method: &'static str,
        query: &[(&str, String)],
    ) -> Result<T, SlackError> {
        self.call_with(token, method, query, |body| parse(&body))
            .await
    }

    /// One Slack method call: waits for the governor, sends the token as a bearer header, reads
    /// the body with `read`, and retries transient failures (after the governor's backoff, or
    /// the 429's `Retry-After`).
    async fn call_with<T>(
        &self,
        token: &str,
        method: &'static str,
        query: &[(&str, String)],
        read: impl Fn(Bytes) -> Result<T, SlackError>,
    ) -> Result<T, SlackError> {
        let key = fingerprint(token);
        let mut attempt = 0;
        loop {
            attempt += 1;
            self.governor.acquire(&key, method).await;
            let result = self.call_once(token, method, query).await.and_then(&read);
            METRICS.source_call("slack", method, outcome(&result));
            match result {
                Ok(v) => {
                    self.governor.succeeded(&key, method);
                    return Ok(v);
                }
                Err(SlackError::RateLimited { retry_after }) => {
                    self.governor.rate_limited(&key, method, retry_after);
                    if attempt >= ATTEMPTS {
                        return Err(SlackError::RateLimited { retry_after });
                    }
                }
                Err(e) if e.is_transient() => {
                    let wait = self.governor.failed(&key, method);
                    tracing::debug!(method, error = %e, wait_ms = wait.as_millis() as u64, "slack call failed, backing off");
                    if attempt >= ATTEMPTS {
                        return Err(e);
                    }
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// One HTTP request: the body of a 2xx answer, or the error its status says.
    async fn call_once(
        &self,
        token: &str,
        method: &str,
        query: &[(&str, String)],
    ) -> Result<Bytes, SlackError> {
        let resp = self
            .http
            .get(format!("{}/{method}", self.base))
            .bearer_auth(token)
            .query(query)
            .send()
            .await
            .map_err(|e| SlackError::Transport(without_url(e)))?;
        let status = resp.status();
        if status.as_u16() == 429 {
            let retry_after = retry_after(resp.headers(), DEFAULT_RETRY_AFTER);
            return Err(SlackError::RateLimited { retry_after });
        }
        if !status.is_success() {
            return Err(SlackError::Http(status.as_u16()));
        }
        resp.bytes()
            .await
            .map_err(|e| SlackError::Transport(without_url(e)))
    }
}

fn users_list_query(cursor: &str, limit: u32) -> Vec<(&'static str, String)> {
    let mut q = vec![("limit", limit.clamp(1, USERS_LIST_LIMIT).to_string())];
    if !cursor.is_empty() {
        q.push(("cursor", cursor.to_owned()));
    }
    q
}

/// Reads a Slack body: `ok:false` becomes the typed error, `ok:true` the typed payload.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, SlackError> {
    let env: Envelope =
        serde_json::from_slice(body).map_err(|e| SlackError::Malformed(e.to_string()))?;
    if !env.ok {
        let code = env.error.unwrap_or_else(|| "unknown_error".into());
        return Err(SlackError::from_code(&code, env.needed, env.provided));
    }
    serde_json::from_slice(body).map_err(|e| SlackError::Malformed(e.to_string()))
}

fn outcome<T>(r: &Result<T, SlackError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(SlackError::RateLimited { .. }) => "ratelimited",
        Err(e) if e.is_credential_error() => "auth_error",
        Err(SlackError::Http(_)) => "http_error",
        Err(SlackError::Transport(_)) => "transport_error",
        Err(SlackError::Malformed(_)) => "malformed",
        Err(_) => "api_error",
    }
}
