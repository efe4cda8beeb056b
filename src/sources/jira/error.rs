//! What a Jira call can end in. Jira answers errors with an HTTP status and a body of
//! `{"errorMessages": [...], "errors": {...}}`.

use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum JiraError {
    /// 401: wrong email or API token, or the token was revoked.
    #[error("unauthorized: Jira refused the email and API token")]
    Unauthorized,
    /// 403: the account may not see this.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// 404: no such issue, or hidden from the account.
    #[error("not found: {0}")]
    NotFound(String),
    /// 400: Jira refused the request (bad JQL, unknown field).
    #[error("bad request: {0}")]
    BadRequest(String),
    #[error("rate limited: retry after {}s", retry_after.as_secs())]
    RateLimited { retry_after: Duration },
    /// Any other non-2xx status (5xx in practice).
    #[error("Jira answered HTTP {0}")]
    Http(u16),
    #[error("transport: {0}")]
    Transport(String),
    /// A body that is not the JSON Jira sends.
    #[error("malformed response: {0}")]
    Malformed(String),
}

impl JiraError {
    /// The credential itself is unusable: polling the site stops until an admin replaces it.
    pub fn is_credential_error(&self) -> bool {
        matches!(self, JiraError::Unauthorized)
    }

    /// Worth trying again after a pause.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            JiraError::RateLimited { .. }
                | JiraError::Http(_)
                | JiraError::Transport(_)
                | JiraError::Malformed(_)
        )
    }

    /// The short code stored as a check's or connection's last error.
    pub fn code(&self) -> String {
        match self {
            JiraError::Unauthorized => "unauthorized".into(),
            JiraError::Forbidden(_) => "forbidden".into(),
            JiraError::NotFound(_) => "not_found".into(),
            JiraError::BadRequest(_) => "bad_request".into(),
            JiraError::RateLimited { .. } => "ratelimited".into(),
            JiraError::Http(s) => format!("http_{s}"),
            JiraError::Transport(_) => "transport".into(),
            JiraError::Malformed(_) => "malformed".into(),
        }
    }
}
