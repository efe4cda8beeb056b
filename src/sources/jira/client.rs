//! The Jira Cloud REST v3 client: the calls Chex makes, with retries for transient failures.

use std::time::Duration;

use base64::Engine;
use serde::de::DeserializeOwned;

use super::error::JiraError;
use super::types::{ErrorBody, Issue, JiraUser, SearchPage};
use crate::metrics::METRICS;
use crate::sources::http::{Answer, MAX_INLINE_WAIT, answer, backoff, json, retrying, without_url};

/// Issues and users per page. Jira caps pages at 100 (users) and 5,000 (ids-only search); 50
/// keeps each answer small.
pub const PAGE_SIZE: u32 = 50;
/// Jira sends `Retry-After` with its 429s; this is for one that does not.
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(10);

/// What a Jira connection stores, sealed: the site and the account that reads it.
#[derive(Clone, Debug, serde::Deserialize, serde::Serialize)]
pub struct JiraCredentials {
    pub site_url: String,
    pub email: String,
    pub api_token: String,
}

/// The JQL of a person's current work.
pub fn in_progress_jql(account_id: &str) -> String {
    let id = account_id.replace('\\', "\\\\").replace('"', "\\\"");
    format!("assignee = \"{id}\" AND statusCategory = \"In Progress\" ORDER BY key ASC")
}

/// A client for one Jira site and account. Cheap to clone: the HTTP pool is shared.
#[derive(Clone)]
pub struct JiraClient {
    http: reqwest::Client,
    site: String,
    authorization: String,
}

impl JiraClient {
    /// `site_url` is `https://your-domain.atlassian.net` (or the simulator's base URL).
    pub fn new(http: reqwest::Client, creds: &JiraCredentials) -> JiraClient {
        let basic = base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", creds.email, creds.api_token));
        JiraClient {
            http,
            site: creds.site_url.trim_end_matches('/').to_owned(),
            authorization: format!("Basic {basic}"),
        }
    }

    pub fn site(&self) -> &str {
        &self.site
    }

    /// The account the credentials belong to: the check an admin's upload goes through.
    pub async fn myself(&self) -> Result<JiraUser, JiraError> {
        self.get("myself", "/rest/api/3/myself", &[]).await
    }

    /// One page of the site's users, from `start_at`.
    pub async fn users_page(&self, start_at: u32) -> Result<Vec<JiraUser>, JiraError> {
        self.get(
            "users.search",
            "/rest/api/3/users/search",
            &[
                ("startAt", start_at.to_string()),
                ("maxResults", PAGE_SIZE.to_string()),
            ],
        )
        .await
    }

    /// Every user of the site; pages until one comes back short.
    pub async fn users(&self) -> Result<Vec<JiraUser>, JiraError> {
        let mut out = Vec::new();
        loop {
            let page = self.users_page(out.len() as u32).await?;
            let short = (page.len() as u32) < PAGE_SIZE;
            out.extend(page);
            if short {
                return Ok(out);
            }
        }
    }

    /// One page of a JQL search, with the fields Chex shows.
    pub async fn search_page(
        &self,
        jql: &str,
        next_page_token: Option<&str>,
    ) -> Result<SearchPage, JiraError> {
        let mut q = vec![
            ("jql", jql.to_owned()),
            ("fields", "summary,status,assignee".to_owned()),
            ("maxResults", PAGE_SIZE.to_string()),
        ];
        if let Some(t) = next_page_token {
            q.push(("nextPageToken", t.to_owned()));
        }
        self.get("search.jql", "/rest/api/3/search/jql", &q).await
    }

    /// Every issue a JQL search finds, page by page.
    pub async fn search(&self, jql: &str) -> Result<Vec<Issue>, JiraError> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let page = self.search_page(jql, token.as_deref()).await?;
            let next = page.more().map(str::to_owned);
            out.extend(page.issues);
            match next {
                Some(t) => token = Some(t),
                None => return Ok(out),
            }
        }
    }

    /// One issue's status, assignee and summary, with the transitions open from its status.
    pub async fn issue(&self, key: &str) -> Result<Issue, JiraError> {
        if !is_issue_key(key) {
            return Err(JiraError::BadRequest(format!(
                "{key:?} is not an issue key"
            )));
        }
        self.get(
            "issue.get",
            &format!("/rest/api/3/issue/{key}"),
            &[
                ("fields", "status,assignee,summary".to_owned()),
                ("expand", "transitions".to_owned()),
            ],
        )
        .await
    }

    async fn get<T: DeserializeOwned>(
        &self,
        op: &'static str,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, JiraError> {
        retrying(
            || async {
                let result = self.get_once(path, query).await;
                METRICS.source_call("jira", op, outcome(&result));
                result
            },
            |e, attempt| match e {
                JiraError::RateLimited { retry_after } => {
                    (*retry_after <= MAX_INLINE_WAIT).then_some(*retry_after)
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
        query: &[(&str, String)],
    ) -> Result<T, JiraError> {
        let resp = self
            .http
            .get(format!("{}{path}", self.site))
            .header("authorization", &self.authorization)
            .header("accept", "application/json")
            .query(query)
            .send()
            .await
            .map_err(|e| JiraError::Transport(without_url(e)))?;
        let Answer {
            status,
            retry_after,
            body,
        } = answer(resp, DEFAULT_RETRY_AFTER)
            .await
            .map_err(JiraError::Transport)?;
        if status == 429 {
            return Err(JiraError::RateLimited { retry_after });
        }
        let message = || {
            json::<ErrorBody>(&body)
                .map(|b| b.message())
                .unwrap_or_default()
        };
        match status {
            200..=299 => json(&body).map_err(JiraError::Malformed),
            400 => Err(JiraError::BadRequest(message())),
            401 => Err(JiraError::Unauthorized),
            403 => Err(JiraError::Forbidden(message())),
            404 => Err(JiraError::NotFound(message())),
            s => Err(JiraError::Http(s)),
        }
    }
}

/// `PROJ-123`: a project key (letters, digits, `_`, starting with a letter) and a number. Checked
/// before it goes into a URL path.
pub fn is_issue_key(key: &str) -> bool {
    let Some((project, number)) = key.split_once('-') else {
        return false;
    };
    project.len() <= 64
        && project.starts_with(|c: char| c.is_ascii_uppercase())
        && project
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !number.is_empty()
        && number.len() <= 12
        && number.chars().all(|c| c.is_ascii_digit())
}

fn outcome<T>(r: &Result<T, JiraError>) -> &'static str {
    match r {
        Ok(_) => "ok",
        Err(JiraError::RateLimited { .. }) => "ratelimited",
        Err(JiraError::Unauthorized) => "auth_error",
        Err(JiraError::Http(_)) => "http_error",
        Err(JiraError::Transport(_)) => "transport_error",
        Err(JiraError::Malformed(_)) => "malformed",
        Err(_) => "api_error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issue_keys_are_checked_before_they_reach_a_path() {
        for ok in ["OPS-1", "AB_2-1234", "X1-9"] {
            assert!(is_issue_key(ok), "{ok}");
        }
        for bad in ["ops-1", "OPS-", "-1", "OPS-1/../x", "OPS 1", "OPS-1a", ""] {
            assert!(!is_issue_key(bad), "{bad}");
        }
    }

    #[test]
    fn jql_quotes_the_account_id() {
        assert_eq!(
            in_progress_jql("5b10\"x"),
            "assignee = \"5b10\\\"x\" AND statusCategory = \"In Progress\" ORDER BY key ASC"
        );
    }
}
