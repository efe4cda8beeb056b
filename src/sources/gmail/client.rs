//! The Gmail client: token refresh, profile, vacation settings.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::de::DeserializeOwned;

use super::error::GmailError;
use super::types::{ErrorEnvelope, Profile, TokenError, TokenResponse, VacationSettings};
use crate::metrics::METRICS;
use crate::sources::http::{Answer, MAX_INLINE_WAIT, answer, backoff, json, retrying, without_url};

/// Google's quota errors rarely carry `Retry-After`; its guidance is exponential backoff from
/// about a second, and the poller keeps doubling from here.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// What a Gmail connection stores, sealed: the OAuth2 client and grant, and the current access
/// token (refreshed shortly before `expires_at`).
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct GmailCredentials {
    pub client_id: String,
    pub client_secret: String,
    pub refresh_token: String,
    #[serde(default)]
    pub access_token: Option<String>,
    #[serde(default)]
    pub expires_at: Option<DateTime<Utc>>,
}

impl GmailCredentials {
    /// The access token, unless it is missing or expires within a minute.
    pub fn usable_access_token(&self, now: DateTime<Utc>) -> Option<&str> {
        let fresh = self
            .expires_at
            .is_none_or(|at| at - chrono::Duration::seconds(60) > now);
        self.access_token.as_deref().filter(|_| fresh)
    }
}

/// A client for the Gmail API and Google's token endpoint. Cheap to clone.
#[derive(Clone)]
pub struct GmailClient {
    http: reqwest::Client,
    api: String,
    token_url: String,
}

impl GmailClient {
    /// `api` is `https://gmail.googleapis.com`, `token_url` `https://oauth2.googleapis.com/token`
    /// (or the simulator's).
    pub fn new(http: reqwest::Client, api: &str, token_url: &str) -> GmailClient {
        GmailClient {
            http,
            api: api.trim_end_matches('/').to_owned(),
            token_url: token_url.to_owned(),
        }
    }

    /// Exchanges the refresh token for a new access token and stores it in `creds`.
    pub async fn refresh(&self, creds: &mut GmailCredentials) -> Result<(), GmailError> {
        let resp = self
            .http
            .post(&self.token_url)
            .form(&[
                ("grant_type", "refresh_token"),
                ("refresh_token", creds.refresh_token.as_str()),
                ("client_id", creds.client_id.as_str()),
                ("client_secret", creds.client_secret.as_str()),
            ])
            .send()
            .await
            .map_err(|e| GmailError::Transport(without_url(e)));
        let result = match resp {
            Ok(r) => read_token(r).await,
            Err(e) => Err(e),
        };
        METRICS.source_call("gmail", "oauth2.token", outcome(&result));
        let token = result?;
        creds.access_token = Some(token.access_token);
        creds.expires_at = token
            .expires_in
            .map(|s| crate::domain::now() + chrono::Duration::seconds(s));
        Ok(())
    }

    pub async fn profile(&self, access_token: &str) -> Result<Profile, GmailError> {
        self.get(
            "users.getProfile",
            "/gmail/v1/users/me/profile",
            access_token,
        )
        .await
    }

    pub async fn vacation(&self, access_token: &str) -> Result<VacationSettings, GmailError> {
        self.get(
            "users.settings.getVacation",
            "/gmail/v1/users/me/settings/vacation",
            access_token,
        )
        .await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        access_token: &str,
    ) -> Result<T, GmailError> {
        retrying(
            || async {
                let result = self.get_once(path, access_token).await;
                METRICS.source_call("gmail", op, outcome(&result));
                result
            },
            // Google asks for exponential backoff on quota errors: at least the backoff, then.
            |e, attempt| match e {
                GmailError::RateLimited { retry_after } => {
                    (*retry_after <= MAX_INLINE_WAIT).then(|| (*retry_after).max(backoff(attempt)))
                }
                e if e.is_transient() => Some(backoff(attempt)),
                _ => None,
            },
        )
        .await
    }

    async fn get_once<T: DeserializeOwned>(
        &self,
        path: &str,
        access_token: &str,
    ) -> Result<T, GmailError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.api))
            .bearer_auth(access_token)
            .send()
            .await
            .map_err(|e| GmailError::Transport(without_url(e)))?;
        let Answer {
            status,
            retry_after: wait,
            body,
        } = answer(resp, DEFAULT_RETRY_AFTER)
            .await
            .map_err(GmailError::Transport)?;
        if (200..300).contains(&status) {
            return json(&body).map_err(GmailError::Malformed);
        }
        let err = json::<ErrorEnvelope>(&body).unwrap_or_default().error;
        Err(match (status, err.reason()) {
            (429, _) | (403, "rateLimitExceeded" | "userRateLimitExceeded") => {
                GmailError::RateLimited { retry_after: wait }
            }
            (401, _) => GmailError::Unauthenticated,
            (403, reason) => GmailError::Forbidden {
                reason: if reason.is_empty() {
                    "forbidden".into()
                } else {
                    reason.to_owned()
                },
                message: err.message,
            },
            (s, _) => GmailError::Http(s),
        })
    }
}

async fn read_token(resp: reqwest::Response) -> Result<TokenResponse, GmailError> {
    let Answer {
        status,
        retry_after: wait,
        body,
    } = answer(resp, DEFAULT_RETRY_AFTER)
        .await
        .map_err(GmailError::Transport)?;
    match status {
        200..=299 => json(&body).map_err(GmailError::Malformed),
        429 => Err(GmailError::RateLimited { retry_after: wait }),
        400 | 401 => {
            let e: TokenError = json(&body).map_err(GmailError::Malformed)?;
            Err(GmailError::Grant {
                code: if e.error.is_empty() {
                    "invalid_grant".into()
                } else {
                    e.error
                },
                description: e.error_description,
            })
        }
        s => Err(GmailError::Http(s)),
    }
}

fn outcome<T>(r: &Result<T, GmailError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(GmailError::RateLimited { .. }) => "ratelimited",
        Err(GmailError::Unauthenticated | GmailError::Grant { .. }) => "auth_error",
        Err(GmailError::Http(_)) => "http_error",
        Err(GmailError::Transport(_)) => "transport_error",
        Err(GmailError::Malformed(_)) => "malformed",
        Err(_) => "api_error",
    }
}
