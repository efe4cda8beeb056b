//! The simulated Jira site: users, issues on a four-status workflow, and the JSON Jira renders.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::sim::faults::Faults;

/// The workflow every simulated project uses: (status id, name, category id, key, category name,
/// colour). Transition ids are the target's position times ten plus one, as Jira's defaults.
pub const WORKFLOW: [(&str, &str, i64, &str, &str, &str); 4] = [
    ("10000", "To Do", 2, "new", "To Do", "blue-gray"),
    (
        "3",
        "In Progress",
        4,
        "indeterminate",
        "In Progress",
        "yellow",
    ),
    (
        "10001",
        "In Review",
        4,
        "indeterminate",
        "In Progress",
        "yellow",
    ),
    ("10002", "Done", 3, "done", "Done", "green"),
];

const SUMMARIES: [&str; 12] = [
    "Rotate the API signing keys",
    "Flaky login test on Safari",
    "Dashboard loads slowly for large teams",
    "Add CSV export to history",
    "Migrate billing to the new provider",
    "Dark mode for the widget",
    "Audit log for admin actions",
    "Paginate the people endpoint",
    "Crash when a status emoji is unknown",
    "Onboarding email copy",
    "Upgrade the database driver",
    "Alert when a source keeps failing",
];

#[derive(Clone, Debug)]
pub struct SimUser {
    pub account_id: String,
    pub display_name: String,
    pub email: String,
    /// `atlassian` for people, `app` for integrations.
    pub account_type: String,
}

#[derive(Clone, Debug)]
pub struct SimIssue {
    pub id: u64,
    pub key: String,
    pub summary: String,
    /// Index into [`WORKFLOW`].
    pub status: usize,
    pub assignee: Option<String>,
}

pub struct JiraWorld {
    pub base_url: String,
    /// The account the connection uses (Basic auth email + API token).
    pub email: String,
    pub api_token: String,
    pub users: Vec<SimUser>,
    pub issues: BTreeMap<String, SimIssue>,
    pub faults: Faults,
    rng: StdRng,
}

impl JiraWorld {
    pub fn new(spec: &super::JiraSpec, base_url: String, seed: u64) -> JiraWorld {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut users = vec![SimUser {
            account_id: "557058:chex-reader".into(),
            display_name: "Chex Reader".into(),
            email: spec.email.clone(),
            account_type: "atlassian".into(),
        }];
        users.push(SimUser {
            account_id: "557058:automation".into(),
            display_name: "Automation for Jira".into(),
            email: String::new(),
            account_type: "app".into(),
        });
        for (i, (name, email)) in spec.people.iter().enumerate() {
            users.push(SimUser {
                account_id: format!("5b10a2844c20165700ede{i:03}"),
                display_name: name.clone(),
                email: email.clone(),
                account_type: "atlassian".into(),
            });
        }
        let mut issues = BTreeMap::new();
        let people: Vec<String> = users.iter().skip(2).map(|u| u.account_id.clone()).collect();
        for n in 0..spec.issues {
            let key = format!("{}-{}", spec.project, n + 1);
            let assignee = (!people.is_empty()).then(|| people[n % people.len()].clone());
            issues.insert(
                key.clone(),
                SimIssue {
                    id: 10_000 + n as u64,
                    key,
                    summary: SUMMARIES[n % SUMMARIES.len()].to_owned(),
                    status: rng.random_range(0..WORKFLOW.len()),
                    assignee,
                },
            );
        }
        JiraWorld {
            base_url,
            email: spec.email.clone(),
            api_token: spec.api_token.clone(),
            users,
            issues,
            faults: Faults::default(),
            rng,
        }
    }

    /// Moves an issue to the named status; false when either is unknown.
    pub fn transition(&mut self, key: &str, status: &str) -> bool {
        let Some(to) = WORKFLOW.iter().position(|w| w.1 == status) else {
            return false;
        };
        match self.issues.get_mut(key) {
            Some(i) => {
                i.status = to;
                true
            }
            None => false,
        }
    }

    pub fn assign(&mut self, key: &str, account_id: Option<&str>) -> bool {
        match self.issues.get_mut(key) {
            Some(i) => {
                i.assignee = account_id.map(str::to_owned);
                true
            }
            None => false,
        }
    }

    pub fn account_of(&self, email: &str) -> Option<&str> {
        self.users
            .iter()
            .find(|u| u.email == email)
            .map(|u| u.account_id.as_str())
    }

    /// Moves one random issue to another status: a team at work.
    pub fn random_step(&mut self) {
        if self.issues.is_empty() {
            return;
        }
        let n = self.rng.random_range(0..self.issues.len());
        let to = self.rng.random_range(0..WORKFLOW.len());
        if let Some(issue) = self.issues.values_mut().nth(n) {
            issue.status = to;
        }
    }

    pub fn user_json(&self, u: &SimUser) -> Value {
        let avatar = |size: u32| {
            format!(
                "https://avatar-management.services.atlassian.com/default/{size}?id={}",
                u.account_id
            )
        };
        let mut v = json!({
            "self": format!("{}/rest/api/3/user?accountId={}", self.base_url, u.account_id),
            "accountId": u.account_id,
            "accountType": u.account_type,
            "avatarUrls": {"48x48": avatar(48), "24x24": avatar(24), "16x16": avatar(16), "32x32": avatar(32)},
            "displayName": u.display_name,
            "active": true,
            "timeZone": "Europe/London",
            "locale": "en_GB",
        });
        if !u.email.is_empty() {
            v["emailAddress"] = json!(u.email);
        }
        v
    }

    fn status_json(&self, idx: usize) -> Value {
        let (id, name, cat_id, cat_key, cat_name, colour) = WORKFLOW[idx];
        json!({
            "self": format!("{}/rest/api/3/status/{id}", self.base_url),
            "description": "",
            "iconUrl": format!("{}/images/icons/statuses/generic.png", self.base_url),
            "name": name,
            "id": id,
            "statusCategory": {
                "self": format!("{}/rest/api/3/statuscategory/{cat_id}", self.base_url),
                "id": cat_id,
                "key": cat_key,
                "colorName": colour,
                "name": cat_name,
            }
        })
    }

    /// An issue with the requested fields (`summary`, `status`, `assignee`; all when empty).
    pub fn issue_json(&self, issue: &SimIssue, fields: &[&str], transitions: bool) -> Value {
        let want = |f: &str| fields.is_empty() || fields.contains(&f) || fields.contains(&"*all");
        let mut f = serde_json::Map::new();
        if want("summary") {
            f.insert("summary".into(), json!(issue.summary));
        }
        if want("status") {
            f.insert("status".into(), self.status_json(issue.status));
        }
        if want("assignee") {
            let a = issue
                .assignee
                .as_deref()
                .and_then(|id| self.users.iter().find(|u| u.account_id == id))
                .map(|u| self.user_json(u))
                .unwrap_or(Value::Null);
            f.insert("assignee".into(), a);
        }
        let mut v = json!({
            "expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
            "id": issue.id.to_string(),
            "self": format!("{}/rest/api/3/issue/{}", self.base_url, issue.id),
            "key": issue.key,
            "fields": f,
        });
        if transitions {
            v["transitions"] = Value::Array(
                WORKFLOW
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != issue.status)
                    .map(|(i, w)| {
                        json!({
                            "id": ((i + 1) * 10 + 1).to_string(),
                            "name": w.1,
                            "to": self.status_json(i),
                            "hasScreen": false,
                            "isGlobal": true,
                            "isInitial": false,
                            "isAvailable": true,
                            "isConditional": false,
                            "isLooped": false,
                        })
                    })
                    .collect(),
            );
        }
        v
    }
}

/// A parsed JQL query: the clauses Chex and the demo send, joined by AND.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Jql {
    pub assignee: Option<String>,
    pub category: Option<String>,
    pub status: Option<String>,
    pub project: Option<String>,
}

impl Jql {
    /// Parses `field = value [AND …] [ORDER BY …]`; anything else is Jira's 400 message.
    pub fn parse(q: &str) -> Result<Jql, String> {
        let upper = q.to_uppercase();
        let body = match upper.find(" ORDER BY ") {
            Some(i) => &q[..i],
            None => q,
        };
        let mut out = Jql::default();
        for clause in split_and(body) {
            let Some((field, value)) = clause.split_once('=') else {
                return Err(format!(
                    "Error in the JQL Query: Expecting operator but got '{}'.",
                    clause.trim()
                ));
            };
            let value = unquote(value.trim());
            match field.trim().to_lowercase().as_str() {
                "assignee" => out.assignee = Some(value),
                "statuscategory" => out.category = Some(value),
                "status" => out.status = Some(value),
                "project" => out.project = Some(value),
                other => {
                    return Err(format!(
                        "Field '{other}' does not exist or you do not have permission to view it."
                    ));
                }
            }
        }
        if out == Jql::default() {
            return Err("Unbounded JQL queries are not allowed here. Please add a search restriction to your query.".into());
        }
        Ok(out)
    }

    pub fn matches(&self, i: &SimIssue, me: &str) -> bool {
        let w = WORKFLOW[i.status];
        let assignee_ok = self.assignee.as_deref().is_none_or(|a| {
            let a = if a.eq_ignore_ascii_case("currentUser()") {
                me
            } else {
                a
            };
            i.assignee.as_deref() == Some(a)
        });
        assignee_ok
            && self
                .category
                .as_deref()
                .is_none_or(|c| c.eq_ignore_ascii_case(w.4) || c.eq_ignore_ascii_case(w.3))
            && self
                .status
                .as_deref()
                .is_none_or(|s| s.eq_ignore_ascii_case(w.1))
            && self
                .project
                .as_deref()
                .is_none_or(|p| i.key.split('-').next() == Some(p))
    }
}

/// Splits on `AND` outside quotes.
fn split_and(q: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let words: Vec<&str> = q.split(' ').collect();
    for w in words {
        if !quoted && w.eq_ignore_ascii_case("AND") {
            out.push(std::mem::take(&mut cur));
            continue;
        }
        if w.matches('"').count() % 2 == 1 {
            quoted = !quoted;
        }
        if !cur.is_empty() {
            cur.push(' ');
        }
        cur.push_str(w);
    }
    if !cur.trim().is_empty() {
        out.push(cur);
    }
    out
}

fn unquote(v: &str) -> String {
    let v = v.trim();
    let inner = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v);
    inner.replace("\\\"", "\"").replace("\\\\", "\\")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_queries_chex_sends_parse() {
        let q = Jql::parse(&crate::sources::jira::in_progress_jql("5b10")).expect("valid");
        assert_eq!(q.assignee.as_deref(), Some("5b10"));
        assert_eq!(q.category.as_deref(), Some("In Progress"));
        assert!(Jql::parse("summary ~ cats").is_err());
        assert!(Jql::parse("ORDER BY key").is_err(), "unbounded");
        assert!(Jql::parse("labels = x").is_err());
    }
}
