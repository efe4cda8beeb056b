//! Jira Cloud (REST API v3): the client ([`JiraClient`]), its errors and wire types. Basic auth
//! with an account's email and API token; search through the enhanced JQL endpoint
//! (`/rest/api/3/search/jql`, token-paged).

mod client;
mod error;
pub mod types;

pub use client::{JiraClient, JiraCredentials, PAGE_SIZE, in_progress_jql, is_issue_key};
pub use error::JiraError;
