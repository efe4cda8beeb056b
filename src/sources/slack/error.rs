//! What a Slack call can end in. Slack answers errors with HTTP 200 and `ok:false`; the one
//! meaningful non-200 status is 429.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SlackError {
    #[error("invalid_auth: the token is not valid")]
    InvalidAuth,
    #[error("not_authed: no token was sent")]
    NotAuthed,
    #[error("token_revoked: the token was revoked")]
    TokenRevoked,
    #[error("token_expired: the token expired")]
    TokenExpired,
    #[error("account_inactive: the token's user or workspace is deactivated")]
    AccountInactive,
    #[error("missing_scope: needs {needed}, token has {provided}")]
    MissingScope { needed: String, provided: String },
    #[error("user_not_found")]
    UserNotFound,
    #[error("invalid_cursor: the page cursor expired")]
    InvalidCursor,
    #[error("ratelimited: retry after {}s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// Any other `ok:false` error, kept verbatim.
    #[error("slack error: {0}")]
    Api(String),
    /// A non-200, non-429 HTTP status (5xx in practice).
    #[error("slack answered HTTP {0}")]
    Http(u16),
    /// Timeout, refused connection, reset.
    #[error("transport: {0}")]
    Transport(String),
    /// A body that is not the JSON Slack sends.
    #[error("malformed response: {0}")]
    Malformed(String),
}

impl SlackError {
    /// Maps an `ok:false` error code to its variant.
    pub fn from_code(code: &str, needed: Option<String>, provided: Option<String>) -> SlackError {
        match code {
            "invalid_auth" => SlackError::InvalidAuth,
            "not_authed" => SlackError::NotAuthed,
            "token_revoked" => SlackError::TokenRevoked,
            "token_expired" => SlackError::TokenExpired,
            "account_inactive" => SlackError::AccountInactive,
            "missing_scope" => SlackError::MissingScope {
                needed: needed.unwrap_or_default(),
                provided: provided.unwrap_or_default(),
            },
            "user_not_found" => SlackError::UserNotFound,
            "invalid_cursor" => SlackError::InvalidCursor,
            "ratelimited" => SlackError::RateLimited {
                retry_after: Duration::from_secs(60),
            },
            other => SlackError::Api(other.to_owned()),
        }
    }

    /// The credential itself is unusable: polling the workspace stops until an admin replaces it.
    pub fn is_credential_error(&self) -> bool {
        matches!(
            self,
            SlackError::InvalidAuth
                | SlackError::NotAuthed
                | SlackError::TokenRevoked
                | SlackError::TokenExpired
                | SlackError::AccountInactive
                | SlackError::MissingScope { .. }
        )
    }

    /// Worth trying again after a backoff.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SlackError::RateLimited { .. }
                | SlackError::Http(_)
                | SlackError::Transport(_)
                | SlackError::Malformed(_)
        )
    }

    /// The short code used in metrics and stored as a connection's last error.
    pub fn code(&self) -> String {
        match self {
            SlackError::InvalidAuth => "invalid_auth".into(),
            SlackError::NotAuthed => "not_authed".into(),
            SlackError::TokenRevoked => "token_revoked".into(),
            SlackError::TokenExpired => "token_expired".into(),
            SlackError::AccountInactive => "account_inactive".into(),
            SlackError::MissingScope { .. } => "missing_scope".into(),
            SlackError::UserNotFound => "user_not_found".into(),
            SlackError::InvalidCursor => "invalid_cursor".into(),
            SlackError::RateLimited { .. } => "ratelimited".into(),
            SlackError::Api(c) => c.clone(),
            SlackError::Http(s) => format!("http_{s}"),
            SlackError::Transport(_) => "transport".into(),
            SlackError::Malformed(_) => "malformed".into(),
        }
    }
}
