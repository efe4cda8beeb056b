//! Jira's JSON, the fields Chex reads. Unknown fields are ignored: Jira adds them freely.

use serde::{Deserialize, Serialize};

/// A user (`/myself`, `/users/search`, an issue's `assignee`). `emailAddress` is absent when the
/// user's privacy settings hide it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct JiraUser {
    pub account_id: String,
    #[serde(default)]
    pub account_type: Option<String>,
    #[serde(default)]
    pub email_address: Option<String>,
    #[serde(default)]
    pub display_name: String,
    #[serde(default = "yes")]
    pub active: bool,
}

fn yes() -> bool {
    true
}

impl JiraUser {
    /// People, not apps or integrations.
    pub fn is_person(&self) -> bool {
        self.active
            && self
                .account_type
                .as_deref()
                .is_none_or(|t| t == "atlassian")
    }
}

/// A page of `GET /rest/api/3/search/jql`. The last page has no `nextPageToken`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SearchPage {
    #[serde(default)]
    pub issues: Vec<Issue>,
    #[serde(default)]
    pub next_page_token: Option<String>,
    #[serde(default)]
    pub is_last: Option<bool>,
}

impl SearchPage {
    pub fn more(&self) -> Option<&str> {
        if self.is_last == Some(true) {
            return None;
        }
        self.next_page_token.as_deref().filter(|t| !t.is_empty())
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct Issue {
    pub id: String,
    pub key: String,
    #[serde(default)]
    pub fields: IssueFields,
    /// Present with `expand=transitions`: where the issue can move from here.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub transitions: Vec<Transition>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct IssueFields {
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub status: Option<IssueStatus>,
    #[serde(default)]
    pub assignee: Option<JiraUser>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IssueStatus {
    pub id: String,
    pub name: String,
    #[serde(default)]
    pub status_category: Option<StatusCategory>,
}

/// Jira's three fixed categories: keys `new`, `indeterminate` (shown as "In Progress"), `done`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusCategory {
    pub id: i64,
    pub key: String,
    pub name: String,
    #[serde(default)]
    pub color_name: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    pub id: String,
    pub name: String,
    pub to: IssueStatus,
}

impl Issue {
    pub fn status_name(&self) -> &str {
        self.fields.status.as_ref().map_or("", |s| s.name.as_str())
    }

    pub fn category_key(&self) -> &str {
        self.fields
            .status
            .as_ref()
            .and_then(|s| s.status_category.as_ref())
            .map_or("", |c| c.key.as_str())
    }

    pub fn assignee_id(&self) -> Option<&str> {
        self.fields.assignee.as_ref().map(|a| a.account_id.as_str())
    }
}

/// Jira's error body.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    #[serde(default)]
    pub error_messages: Vec<String>,
    #[serde(default)]
    pub errors: std::collections::BTreeMap<String, String>,
}

impl ErrorBody {
    pub fn message(&self) -> String {
        let mut parts = self.error_messages.clone();
        parts.extend(self.errors.iter().map(|(k, v)| format!("{k}: {v}")));
        parts.join("; ")
    }
}
