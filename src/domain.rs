//! The vocabulary every layer shares: who is tracked, what their status is, and the event that
//! says it changed. Parsed once at the boundary (sources, API) and typed from then on.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

/// Now, at the precision both databases keep (microseconds), so what is written reads back equal.
pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

/// Where a status came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Slack,
    Jira,
    Gmail,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Slack => "slack",
            Source::Jira => "jira",
            Source::Gmail => "gmail",
        }
    }

    pub fn parse(s: &str) -> Option<Source> {
        match s {
            "slack" => Some(Source::Slack),
            "jira" => Some(Source::Jira),
            "gmail" => Some(Source::Gmail),
            _ => None,
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Slack's presence. `Unknown` until the first `users.getPresence` answers.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Presence {
    Active,
    Away,
    #[default]
    Unknown,
}

impl Presence {
    pub fn as_str(self) -> &'static str {
        match self {
            Presence::Active => "active",
            Presence::Away => "away",
            Presence::Unknown => "unknown",
        }
    }

    pub fn parse(s: &str) -> Option<Presence> {
        match s {
            "active" => Some(Presence::Active),
            "away" => Some(Presence::Away),
            "unknown" => Some(Presence::Unknown),
            _ => None,
        }
    }
}

/// Do-not-disturb: on or off, and until when (RFC 3339 on the wire).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dnd {
    pub enabled: bool,
    pub until: Option<DateTime<Utc>>,
}

/// A person's normalized status: what clients see in `status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub presence: Presence,
    pub text: String,
    pub emoji: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub dnd: Dnd,
    /// True while the source has kept failing: the values are the last ones seen.
    pub stale: bool,
    /// What Jira says the person works on; absent until a Jira site is linked to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jira: Option<JiraPart>,
    /// The person's Gmail vacation responder; absent until a mailbox is linked to them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gmail: Option<GmailPart>,
}

/// The Jira part of a status: the issues a person has in progress.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JiraPart {
    /// Issues assigned to the person whose status is in the "In Progress" category, plus
    /// individually checked issues assigned to them, ordered by key.
    pub issues: Vec<JiraIssue>,
    /// The transitions that made the last change of `issues`: which issue moved from which
    /// status to which. Kept until the next change, so a late subscriber still sees why.
    #[serde(default)]
    pub moved: Vec<IssueMove>,
    /// True while the Jira site keeps failing: `issues` are the last ones seen.
    #[serde(default)]
    pub stale: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JiraIssue {
    pub key: String,
    pub summary: String,
    /// The status's name as the site's workflow calls it ("In Review", "Doing").
    pub status: String,
    /// Jira's fixed status category key: `new`, `indeterminate` or `done`.
    pub category: String,
    /// The issue in the browser (`{site}/browse/{key}`).
    pub url: String,
    /// For an individually checked issue: the statuses it can move to next (its transitions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub next: Vec<String>,
}

/// One issue changing status. `from` is absent for an issue newly seen in progress, `to` for one
/// that could no longer be read (deleted, or hidden from the connection's account).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IssueMove {
    pub key: String,
    pub summary: String,
    pub from: Option<String>,
    pub to: Option<String>,
}

/// The Gmail part of a status: the vacation responder, as out-of-office.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GmailPart {
    /// The mailbox (`users.getProfile`'s `emailAddress`).
    pub address: String,
    /// The responder is switched on (it may be scheduled for later).
    pub auto_reply: bool,
    /// On and within its window now: what a dashboard shows as "out of office".
    pub out_of_office: bool,
    pub subject: String,
    pub since: Option<DateTime<Utc>>,
    pub until: Option<DateTime<Utc>>,
    /// True while the mailbox cannot be read (quota, outage, revoked grant).
    #[serde(default)]
    pub stale: bool,
}

impl GmailPart {
    /// Gmail replies only between `since` and `until`; outside them the person is not away.
    pub fn settle(&mut self, now: DateTime<Utc>) {
        self.out_of_office = self.auto_reply
            && self.since.is_none_or(|s| s <= now)
            && self.until.is_none_or(|u| now < u);
    }
}

impl Status {
    /// Slack clears a custom status when its expiry passes; so do we, whatever the source said.
    pub fn expire(&mut self, now: DateTime<Utc>) {
        if self.expires_at.is_some_and(|at| at <= now) {
            self.text.clear();
            self.emoji.clear();
            self.expires_at = None;
        }
        if self.dnd.until.is_some_and(|at| at <= now) {
            self.dnd = Dnd::default();
        }
        if let Some(g) = &mut self.gmail {
            g.settle(now);
        }
    }
}

/// A field of [`Status`]: the names used in `changed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Presence,
    Text,
    Emoji,
    ExpiresAt,
    Dnd,
    Stale,
    Jira,
    Gmail,
}

impl Field {
    pub const ALL: [Field; 8] = [
        Field::Presence,
        Field::Text,
        Field::Emoji,
        Field::ExpiresAt,
        Field::Dnd,
        Field::Stale,
        Field::Jira,
        Field::Gmail,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Field::Presence => "presence",
            Field::Text => "text",
            Field::Emoji => "emoji",
            Field::ExpiresAt => "expires_at",
            Field::Dnd => "dnd",
            Field::Stale => "stale",
            Field::Jira => "jira",
            Field::Gmail => "gmail",
        }
    }

    pub fn parse(s: &str) -> Option<Field> {
        Field::ALL.into_iter().find(|f| f.as_str() == s)
    }
}

/// A partial observation: each source knows some fields only (`users.getPresence` knows presence,
/// `dnd.teamInfo` knows DND, `users.list` knows the custom status). `None` means "not observed".
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StatusPatch {
    pub presence: Option<Presence>,
    /// Text, emoji and expiry travel together: Slack sets them as one custom status.
    pub custom: Option<CustomStatus>,
    pub dnd: Option<Dnd>,
    pub stale: Option<bool>,
    pub jira: Option<PartPatch<JiraPart>>,
    pub gmail: Option<PartPatch<GmailPart>>,
}

/// What a source says of its own part of a status.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PartPatch<T> {
    /// The part as just read. Boxed: most observations are Slack's and carry no part, and every
    /// observation waits in the pipeline's queue at the size of the largest.
    Set(Box<T>),
    /// The source could not be read: keep the last values, flagged stale.
    Stale,
}

/// Slack's custom status.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CustomStatus {
    pub text: String,
    pub emoji: String,
    pub expires_at: Option<DateTime<Utc>>,
}

impl StatusPatch {
    /// Applies the patch; returns the fields whose value differs afterwards.
    pub fn apply(&self, status: &mut Status) {
        if let Some(p) = self.presence {
            status.presence = p;
        }
        if let Some(c) = &self.custom {
            status.text.clone_from(&c.text);
            status.emoji.clone_from(&c.emoji);
            status.expires_at = c.expires_at;
        }
        if let Some(d) = &self.dnd {
            status.dnd = d.clone();
        }
        if let Some(s) = self.stale {
            status.stale = s;
        }
        match &self.jira {
            Some(PartPatch::Set(j)) => status.jira = Some(j.as_ref().clone()),
            Some(PartPatch::Stale) => status.jira.iter_mut().for_each(|j| j.stale = true),
            None => {}
        }
        match &self.gmail {
            Some(PartPatch::Set(g)) => status.gmail = Some(g.as_ref().clone()),
            Some(PartPatch::Stale) => status.gmail.iter_mut().for_each(|g| g.stale = true),
            None => {}
        }
    }

    pub fn is_empty(&self) -> bool {
        self.presence.is_none()
            && self.custom.is_none()
            && self.dnd.is_none()
            && self.stale.is_none()
            && self.jira.is_none()
            && self.gmail.is_none()
    }
}

/// The fields in which `a` and `b` differ, in a fixed order.
pub fn diff(a: &Status, b: &Status) -> Vec<Field> {
    let mut out = Vec::new();
    if a.presence != b.presence {
        out.push(Field::Presence);
    }
    if a.text != b.text {
        out.push(Field::Text);
    }
    if a.emoji != b.emoji {
        out.push(Field::Emoji);
    }
    if a.expires_at != b.expires_at {
        out.push(Field::ExpiresAt);
    }
    if a.dnd != b.dnd {
        out.push(Field::Dnd);
    }
    if a.stale != b.stale {
        out.push(Field::Stale);
    }
    // `moved` explains a change of `issues`; on its own it is not one (a restarted poller knows
    // no moves, and must not announce that as news).
    fn jira_key(s: &Status) -> Option<(&[JiraIssue], bool)> {
        s.jira.as_ref().map(|j| (j.issues.as_slice(), j.stale))
    }
    if jira_key(a) != jira_key(b) {
        out.push(Field::Jira);
    }
    if a.gmail != b.gmail {
        out.push(Field::Gmail);
    }
    out
}

/// The values of `fields` in `status`, as the `previous` object of an event.
pub fn values_of(status: &Status, fields: &[Field]) -> serde_json::Map<String, serde_json::Value> {
    let mut map = serde_json::Map::new();
    for f in fields {
        let v = match f {
            Field::Presence => serde_json::json!(status.presence),
            Field::Text => serde_json::json!(status.text),
            Field::Emoji => serde_json::json!(status.emoji),
            Field::ExpiresAt => serde_json::json!(status.expires_at),
            Field::Dnd => serde_json::json!(status.dnd),
            Field::Stale => serde_json::json!(status.stale),
            Field::Jira => serde_json::json!(status.jira),
            Field::Gmail => serde_json::json!(status.gmail),
        };
        map.insert(f.as_str().to_owned(), v);
    }
    map
}

/// Who an event is about, as clients see them in `user`. Shared (`Arc`) between the many events of
/// one person.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonCard {
    pub id: i64,
    #[serde(skip)]
    pub organization_id: i64,
    pub topic: String,
    pub team_id: Option<String>,
    pub name: String,
    pub display_name: String,
    pub image_72: String,
}

impl PersonCard {
    pub fn topic_for(id: i64) -> String {
        format!("user:{id}")
    }

    /// The topics an event about this person is published on.
    pub fn topics(&self) -> Vec<String> {
        let mut t = vec![self.topic.clone()];
        if let Some(team) = &self.team_id {
            t.push(format!("team:{team}"));
        }
        t
    }
}

/// A committed change: what the hub broadcasts and what history holds.
#[derive(Clone, Debug, PartialEq)]
pub struct StatusEvent {
    /// The stored row's id: a position in commit order across all people (0 before storing).
    pub id: i64,
    pub person: Arc<PersonCard>,
    pub seq: i64,
    pub status: Status,
    pub changed: Vec<Field>,
    pub previous: serde_json::Map<String, serde_json::Value>,
    pub observed_at: DateTime<Utc>,
    pub source: Source,
}

#[derive(Serialize)]
struct Wire<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    topic: &'a str,
    seq: i64,
    user: &'a PersonCard,
    status: &'a Status,
    changed: &'a [Field],
    previous: &'a serde_json::Map<String, serde_json::Value>,
    observed_at: &'a DateTime<Utc>,
    source: Source,
}

impl StatusEvent {
    /// The `status` frame of protocol v1 as it goes out on `topic`.
    pub fn to_json(&self, topic: &str) -> String {
        serde_json::to_string(&self.wire(topic)).unwrap_or_default()
    }

    /// The same frame as a JSON value, for embedding in snapshots and REST answers.
    pub fn to_value(&self, topic: &str) -> serde_json::Value {
        serde_json::to_value(self.wire(topic)).unwrap_or_default()
    }

    fn wire<'a>(&'a self, topic: &'a str) -> Wire<'a> {
        Wire {
            kind: "status",
            topic,
            seq: self.seq,
            user: &self.person,
            status: &self.status,
            changed: &self.changed,
            previous: &self.previous,
            observed_at: &self.observed_at,
            source: self.source,
        }
    }
}

/// A subscription topic: `user:{person id}` or `team:{slack team id}`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    User(i64),
    Team(String),
}

impl Topic {
    pub fn parse(s: &str) -> Option<Topic> {
        if let Some(id) = s.strip_prefix("user:") {
            return id.parse().ok().filter(|n: &i64| *n > 0).map(Topic::User);
        }
        let team = s.strip_prefix("team:")?;
        let ok = !team.is_empty()
            && team.len() <= 32
            && team
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        ok.then(|| Topic::Team(team.to_owned()))
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Topic::User(id) => write!(f, "user:{id}"),
            Topic::Team(t) => write!(f, "team:{t}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn an_expired_custom_status_is_cleared() {
        let now = now();
        let mut s = Status {
            text: "lunch".into(),
            emoji: ":taco:".into(),
            expires_at: Some(now - Duration::seconds(1)),
            ..Status::default()
        };
        s.expire(now);
        assert_eq!(s.text, "");
        assert_eq!(s.emoji, "");
        assert_eq!(s.expires_at, None);
    }

    #[test]
    fn a_future_expiry_is_kept() {
        let now = now();
        let mut s = Status {
            text: "lunch".into(),
            expires_at: Some(now + Duration::seconds(60)),
            ..Status::default()
        };
        s.expire(now);
        assert_eq!(s.text, "lunch");
    }

    #[test]
    fn diff_names_each_changed_field_once() {
        let a = Status::default();
        let mut b = a.clone();
        b.presence = Presence::Active;
        b.dnd.enabled = true;
        assert_eq!(diff(&a, &b), vec![Field::Presence, Field::Dnd]);
        assert!(diff(&a, &a).is_empty());
    }

    #[test]
    fn jira_moves_alone_are_not_a_change() {
        let issue = JiraIssue {
            key: "OPS-1".into(),
            status: "In Progress".into(),
            ..JiraIssue::default()
        };
        let a = Status {
            jira: Some(JiraPart {
                issues: vec![issue.clone()],
                moved: vec![IssueMove::default()],
                stale: false,
            }),
            ..Status::default()
        };
        let mut b = a.clone();
        if let Some(j) = b.jira.as_mut() {
            j.moved.clear();
        }
        assert!(diff(&a, &b).is_empty());
        if let Some(j) = b.jira.as_mut() {
            j.issues.clear();
        }
        assert_eq!(diff(&a, &b), vec![Field::Jira]);
    }

    #[test]
    fn a_stale_part_patch_keeps_the_values() {
        let mut s = Status {
            gmail: Some(GmailPart {
                address: "a@x".into(),
                auto_reply: true,
                ..GmailPart::default()
            }),
            ..Status::default()
        };
        StatusPatch {
            gmail: Some(PartPatch::Stale),
            jira: Some(PartPatch::Stale),
            ..StatusPatch::default()
        }
        .apply(&mut s);
        let g = s.gmail.expect("kept");
        assert!(g.stale && g.auto_reply);
        assert_eq!(s.jira, None, "no part to flag");
    }

    #[test]
    fn out_of_office_holds_only_inside_the_window() {
        let now = now();
        let mut g = GmailPart {
            auto_reply: true,
            since: Some(now + Duration::hours(1)),
            until: Some(now + Duration::hours(2)),
            ..GmailPart::default()
        };
        g.settle(now);
        assert!(!g.out_of_office, "scheduled, not yet");
        g.settle(now + Duration::minutes(90));
        assert!(g.out_of_office);
        g.settle(now + Duration::hours(2));
        assert!(!g.out_of_office, "ended");
        g.auto_reply = false;
        g.settle(now + Duration::minutes(90));
        assert!(!g.out_of_office);
    }

    #[test]
    fn topics_parse_and_print_round_trip() {
        for s in ["user:42", "team:T012AB3C4"] {
            assert_eq!(Topic::parse(s).map(|t| t.to_string()).as_deref(), Some(s));
        }
        for bad in [
            "user:", "user:abc", "user:-1", "team:", "team:a b", "chan:1", "",
        ] {
            assert_eq!(Topic::parse(bad), None, "{bad}");
        }
    }
}
