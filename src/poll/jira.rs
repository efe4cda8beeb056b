//! The Jira poller: one per connected site.
//!
//! A round lists the site's users now and then (to link accounts to people by email), searches
//! each tracked person's in-progress issues, reads individually checked issues, and reports each
//! person's issue list with the moves since the last round. An issue that leaves a person's list
//! is read once more to say where it went ("In Progress → Done").
//!
//! What is tracked comes from the connection's `jira` checks: `*` (every linked person), a Jira
//! `accountId` (one person), or an issue key (that issue, whoever it is assigned to).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::rounds::{self, Chexer, Failure, RoundsContext, Seen};
use crate::domain::{IssueMove, JiraIssue, JiraPart, PartPatch, PersonCard, Source, StatusPatch};
use crate::sources::jira::types::Issue;
use crate::sources::jira::{JiraClient, JiraCredentials, JiraError, in_progress_jql};
use crate::store::entity::connection;
use crate::store::{NewIdentity, Store};

/// Rounds between two listings of the site's users (new people, changed emails).
const USERS_EVERY: u64 = 10;

pub async fn poll_connection(ctx: RoundsContext, conn: connection::Model, stop: CancellationToken) {
    let creds: JiraCredentials = match ctx
        .key
        .open(&conn.credential_ciphertext)
        .ok()
        .and_then(|s| serde_json::from_str(&s).ok())
    {
        Some(c) => c,
        None => {
            tracing::error!(
                connection = conn.id,
                "cannot open the Jira credentials; is CHEX_SECRET_KEY the one they were stored under?"
            );
            let _ = ctx
                .store
                .set_connection_status(conn.id, "error", Some("credentials cannot be decrypted"))
                .await;
            return;
        }
    };
    let chexer = JiraChexer {
        client: JiraClient::new(ctx.http.clone(), &creds),
        store: ctx.store.clone(),
        conn: conn.clone(),
        linked: HashMap::new(),
        last: HashMap::new(),
        rounds: 0,
    };
    let interval = ctx.jira_interval;
    rounds::run(chexer, ctx, conn, interval, stop).await;
}

pub struct JiraChexer {
    client: JiraClient,
    store: Store,
    conn: connection::Model,
    /// Jira `accountId` → the person it is linked to.
    linked: HashMap<String, Arc<PersonCard>>,
    /// Person id → the issues last reported, by key.
    last: HashMap<i64, BTreeMap<String, JiraIssue>>,
    rounds: u64,
}

/// What the checks ask for.
struct Tracked {
    everyone: bool,
    accounts: Vec<String>,
    issues: Vec<String>,
}

impl Chexer for JiraChexer {
    fn source(&self) -> Source {
        Source::Jira
    }

    async fn round(&mut self) -> Result<Seen, Failure> {
        if self.rounds.is_multiple_of(USERS_EVERY) {
            self.list_users().await?;
        }
        self.rounds += 1;
        // Every round: an admin's pin takes effect at the next poll.
        self.load_links().await?;
        let tracked = self.tracked().await?;
        let mut now: HashMap<i64, BTreeMap<String, JiraIssue>> = HashMap::new();
        let mut people: Vec<(String, Arc<PersonCard>)> = self
            .linked
            .iter()
            .filter(|(id, _)| tracked.everyone || tracked.accounts.contains(id))
            .map(|(id, card)| (id.clone(), card.clone()))
            .collect();
        people.sort_by_key(|(_, c)| c.id);
        // People whose search Jira refused: not reported this round (an empty list would read
        // as "everything moved away").
        let mut unread = HashSet::new();
        for (account, card) in &people {
            let found = match self.client.search(&in_progress_jql(account)).await {
                Ok(f) => f,
                Err(e) if is_local(&e) => {
                    tracing::warn!(connection = self.conn.id, error = %e, "search for one person failed; skipped this round");
                    unread.insert(card.id);
                    continue;
                }
                Err(e) => return Err(failure(e)),
            };
            let issues = now.entry(card.id).or_default();
            for i in &found {
                issues.insert(i.key.clone(), self.issue(i));
            }
        }
        // Checked issues count for their assignee, whatever their status.
        let mut read: HashMap<String, Option<Issue>> = HashMap::new();
        for key in &tracked.issues {
            let issue = self.read_issue(key).await?;
            if let Some(i) = &issue
                && let Some(card) = i.assignee_id().and_then(|a| self.linked.get(a))
            {
                now.entry(card.id)
                    .or_default()
                    .insert(i.key.clone(), self.issue(i));
            }
            read.insert(key.clone(), issue);
        }

        // Tracked people, then assignees of checked issues who are not tracked otherwise; once
        // each, though an admin may have pinned two accounts to one person; never the unread.
        let mut report: Vec<Arc<PersonCard>> = Vec::new();
        let mut reported = unread;
        let candidates = people.into_iter().map(|(_, c)| c).chain(
            self.linked
                .values()
                .filter(|c| now.contains_key(&c.id))
                .cloned(),
        );
        for card in candidates {
            if reported.insert(card.id) {
                report.push(card);
            }
        }
        let mut seen = Vec::new();
        for card in report {
            let issues = now.remove(&card.id).unwrap_or_default();
            let moved = match self.last.get(&card.id) {
                Some(before) => self.moves(before, &issues, &mut read).await?,
                None => Vec::new(),
            };
            self.last.insert(card.id, issues.clone());
            seen.push((
                card,
                StatusPatch {
                    jira: Some(PartPatch::Set(Box::new(JiraPart {
                        issues: issues.into_values().collect(),
                        moved,
                        stale: false,
                    }))),
                    ..StatusPatch::default()
                },
            ));
        }
        Ok(seen)
    }

    fn linked(&self) -> Vec<Arc<PersonCard>> {
        self.linked.values().cloned().collect()
    }

    fn stale(&self) -> StatusPatch {
        StatusPatch {
            jira: Some(PartPatch::Stale),
            ..StatusPatch::default()
        }
    }
}

impl JiraChexer {
    /// Lists the site's users and links them to people by email (unless an admin pinned them).
    async fn list_users(&mut self) -> Result<(), Failure> {
        let users = self.client.users().await.map_err(failure)?;
        let found: Vec<NewIdentity> = users
            .iter()
            .filter(|u| u.is_person())
            .map(|u| NewIdentity {
                external_id: u.account_id.clone(),
                email: u.email_address.clone(),
                display_name: u.display_name.clone(),
            })
            .collect();
        self.store
            .sync_identities(self.conn.id, self.conn.organization_id, &found)
            .await
            .map_err(|e| Failure::Transient(format!("store: {e}")))?;
        Ok(())
    }

    /// Who each account is now, and for people newly linked, what history last said of their
    /// issues, so the first round reports moves rather than a fresh list.
    async fn load_links(&mut self) -> Result<(), Failure> {
        let ids = self
            .store
            .identities(self.conn.id)
            .await
            .map_err(|e| Failure::Transient(format!("store: {e}")))?;
        let person_ids: Vec<i64> = ids.iter().filter_map(|i| i.person_id).collect();
        let rows = self
            .store
            .people_by_ids(&person_ids)
            .await
            .map_err(|e| Failure::Transient(format!("store: {e}")))?;
        let cards: HashMap<i64, Arc<PersonCard>> = rows
            .iter()
            .map(|r| (r.person_id, Arc::new(r.card())))
            .collect();
        self.linked = ids
            .iter()
            .filter_map(|i| Some((i.external_id.clone(), cards.get(&i.person_id?)?.clone())))
            .collect();
        let fresh: Vec<i64> = cards
            .keys()
            .copied()
            .filter(|id| !self.last.contains_key(id))
            .collect();
        let latest = self
            .store
            .latest_events(&fresh)
            .await
            .map_err(|e| Failure::Transient(format!("store: {e}")))?;
        for (id, row) in latest {
            if let Some(part) = row.status().jira {
                self.last.insert(
                    id,
                    part.issues
                        .into_iter()
                        .map(|i| (i.key.clone(), i))
                        .collect(),
                );
            }
        }
        Ok(())
    }

    async fn tracked(&self) -> Result<Tracked, Failure> {
        let checks = self
            .store
            .checks(None, Some(self.conn.id), Some("jira"))
            .await
            .map_err(|e| Failure::Transient(format!("store: {e}")))?;
        let mut t = Tracked {
            everyone: false,
            accounts: Vec::new(),
            issues: Vec::new(),
        };
        for c in checks.into_iter().filter(|c| c.enabled) {
            if c.subject == "*" {
                t.everyone = true;
            } else if crate::sources::jira::is_issue_key(&c.subject) {
                t.issues.push(c.subject);
            } else {
                t.accounts.push(c.subject);
            }
        }
        Ok(t)
    }

    /// One issue; `None` when it is gone or hidden (404, 403).
    async fn read_issue(&self, key: &str) -> Result<Option<Issue>, Failure> {
        match self.client.issue(key).await {
            Ok(i) => Ok(Some(i)),
            Err(JiraError::NotFound(_) | JiraError::Forbidden(_) | JiraError::BadRequest(_)) => {
                Ok(None)
            }
            Err(e) => Err(failure(e)),
        }
    }

    /// What moved between two rounds of one person's issues. Issues that left the list are read
    /// (once per round) to learn their new status.
    async fn moves(
        &self,
        before: &BTreeMap<String, JiraIssue>,
        now: &BTreeMap<String, JiraIssue>,
        read: &mut HashMap<String, Option<Issue>>,
    ) -> Result<Vec<IssueMove>, Failure> {
        let mut out = Vec::new();
        for (key, i) in now {
            let from = before.get(key).map(|b| b.status.clone());
            if from.as_deref() != Some(i.status.as_str()) {
                out.push(IssueMove {
                    key: key.clone(),
                    summary: i.summary.clone(),
                    from,
                    to: Some(i.status.clone()),
                });
            }
        }
        for (key, b) in before.iter().filter(|(k, _)| !now.contains_key(*k)) {
            if !read.contains_key(key) {
                let issue = self.read_issue(key).await?;
                read.insert(key.clone(), issue);
            }
            let to = read
                .get(key)
                .and_then(|i| i.as_ref())
                .map(|i| i.status_name().to_owned());
            if to.as_deref() == Some(b.status.as_str()) {
                // Same status, off the list: reassigned. Say so by who it went to.
                out.push(IssueMove {
                    key: key.clone(),
                    summary: b.summary.clone(),
                    from: Some(b.status.clone()),
                    to: Some("Reassigned".into()),
                });
                continue;
            }
            out.push(IssueMove {
                key: key.clone(),
                summary: b.summary.clone(),
                from: Some(b.status.clone()),
                to,
            });
        }
        Ok(out)
    }

    fn issue(&self, i: &Issue) -> JiraIssue {
        JiraIssue {
            key: i.key.clone(),
            summary: i.fields.summary.clone(),
            status: i.status_name().to_owned(),
            category: i.category_key().to_owned(),
            url: format!("{}/browse/{}", self.client.site(), i.key),
            next: i.transitions.iter().map(|t| t.to.name.clone()).collect(),
        }
    }
}

/// A failure about one person or issue (their search is refused), not about the site.
fn is_local(e: &JiraError) -> bool {
    matches!(
        e,
        JiraError::Forbidden(_) | JiraError::NotFound(_) | JiraError::BadRequest(_)
    )
}

fn failure(e: JiraError) -> Failure {
    match e {
        JiraError::RateLimited { retry_after } => Failure::RateLimited(retry_after),
        e if e.is_credential_error() => Failure::Credential(e.to_string()),
        e => Failure::Transient(e.code()),
    }
}
