//! What a Gmail or token call can end in. Google answers with an HTTP status and
//! `{"error": {"code", "message", "errors": [{"reason", …}], "status"}}`; the token endpoint with
//! `{"error": "invalid_grant", "error_description": …}`.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GmailError {
    /// 401: the access token expired or was revoked. Refresh, then try once more.
    #[error("unauthenticated: the access token was refused")]
    Unauthenticated,
    /// The refresh token was revoked or expired (`invalid_grant`), or the client is unknown
    /// (`invalid_client`): only a new grant helps.
    #[error("{code}: {description}")]
    Grant { code: String, description: String },
    /// 403 other than quota: e.g. `insufficientPermissions` (the grant lacks the scope).
    #[error("forbidden ({reason}): {message}")]
    Forbidden { reason: String, message: String },
    /// 429, or 403 `rateLimitExceeded` / `userRateLimitExceeded`: Google's quota.
    #[error("rate limited: retry after {}s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    #[error("Gmail answered HTTP {0}")]
    Http(u16),
    #[error("transport: {0}")]
    Transport(String),
    #[error("malformed response: {0}")]
    Malformed(String),
}

impl GmailError {
    /// The grant is unusable: polling the mailbox stops until an admin connects it again.
    pub fn is_credential_error(&self) -> bool {
        matches!(self, GmailError::Grant { .. })
            || matches!(self, GmailError::Forbidden { reason, .. } if reason == "insufficientPermissions")
    }

    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            GmailError::RateLimited { .. }
                | GmailError::Http(_)
                | GmailError::Transport(_)
                | GmailError::Malformed(_)
        )
    }

    pub fn code(&self) -> String {
        match self {
            GmailError::Unauthenticated => "unauthenticated".into(),
            GmailError::Grant { code, .. } => code.clone(),
            GmailError::Forbidden { reason, .. } => reason.clone(),
            GmailError::RateLimited { .. } => "ratelimited".into(),
            GmailError::Http(s) => format!("http_{s}"),
            GmailError::Transport(_) => "transport".into(),
            GmailError::Malformed(_) => "malformed".into(),
        }
    }
}
