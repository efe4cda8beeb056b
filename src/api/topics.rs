//! Which topics a caller may hold, and whom a topic covers: shared by the WebSocket and SSE
//! streams so both refuse and include exactly the same people.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::value::RawValue;

use super::state::AppState;
use crate::auth::Claims;
use crate::domain::{PersonCard, Topic};
use crate::store::PeopleFilter;
use crate::store::entity::status_event;

/// Checks that the caller may see `topic`.
pub async fn authorize(
    s: &AppState,
    topic: &str,
    claims: &Claims,
) -> Result<Topic, (&'static str, String)> {
    let parsed = Topic::parse(topic).ok_or((
        "bad_request",
        format!("{topic}: not a topic (user:<id> or team:<id>)"),
    ))?;
    if !claims.allows_topic(topic) {
        return Err(("forbidden", format!("{topic}: outside this token's topics")));
    }
    let ok = match &parsed {
        Topic::User(id) => s
            .store
            .person(*id)
            .await
            .ok()
            .flatten()
            .is_some_and(|p| p.organization_id == claims.org),
        Topic::Team(t) => s
            .store
            .connection_by_external_id("slack", t)
            .await
            .ok()
            .flatten()
            .is_some_and(|c| c.organization_id == claims.org),
    };
    if ok {
        Ok(parsed)
    } else {
        Err(("forbidden", format!("{topic}: not in your organization")))
    }
}

/// The people a topic covers, in the caller's organization.
pub async fn people_of(
    s: &AppState,
    topic: &Topic,
    org: i64,
) -> Result<Vec<Arc<PersonCard>>, String> {
    match topic {
        Topic::User(id) => Ok(s
            .store
            .person(*id)
            .await
            .map_err(|e| e.to_string())?
            .map(|p| Arc::new(p.card()))
            .into_iter()
            .collect()),
        Topic::Team(t) => {
            let mut out = Vec::new();
            let mut after = None;
            loop {
                let f = PeopleFilter {
                    team_id: Some(t.clone()),
                    query: None,
                    after_id: after,
                    limit: 1000,
                };
                let rows = s.store.people(org, &f).await.map_err(|e| e.to_string())?;
                let n = rows.len();
                after = rows.last().map(|r| r.person_id);
                out.extend(
                    rows.into_iter()
                        .filter(|r| !r.deleted && !r.is_bot)
                        .map(|r| Arc::new(r.card())),
                );
                if n < 1000 {
                    return Ok(out);
                }
            }
        }
    }
}

/// One topic as of now: the people it covers, their latest events, and the snapshot entries
/// (each event as sent on `topic`).
#[derive(Default)]
pub struct Snapshot {
    pub people: Vec<Arc<PersonCard>>,
    pub latest: HashMap<i64, status_event::Model>,
    /// Each event serialized as it goes out on the topic, kept as text: a snapshot of a team as
    /// `Value` trees was thousands of small allocations per subscriber, and with thousands
    /// subscribing at once the holes they left stayed resident between the sockets' long-lived
    /// state (3.5 KB per idle socket at a team of 100).
    pub entries: Vec<Box<RawValue>>,
    /// The highest event id the snapshot holds: live deliveries at or below it are duplicates
    /// (`hub::Subscription::skip_through`).
    pub through: i64,
}

impl Snapshot {
    /// The `resync` message for `topic`, the same for sockets and SSE streams; the entries are
    /// already JSON text and go out as they are.
    pub fn resync_json(&self, topic: &str) -> String {
        #[derive(serde::Serialize)]
        struct Resync<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            topic: &'a str,
            snapshot: &'a [Box<RawValue>],
        }
        let resync = Resync {
            kind: "resync",
            topic,
            snapshot: &self.entries,
        };
        serde_json::to_string(&resync).unwrap_or_default()
    }
}

/// Reads a topic's snapshot, every person as of one moment.
pub async fn snapshot(
    s: &AppState,
    topic: &str,
    parsed: &Topic,
    org: i64,
) -> Result<Snapshot, String> {
    let people = people_of(s, parsed, org).await?;
    let ids: Vec<i64> = people.iter().map(|c| c.id).collect();
    let latest = s
        .store
        .latest_events(&ids)
        .await
        .map_err(|e| e.to_string())?;
    let mut entries = Vec::new();
    for card in &people {
        if let Some(e) = latest.get(&card.id) {
            let json = e.to_event(card.clone()).to_json(topic);
            entries.push(RawValue::from_string(json).map_err(|e| e.to_string())?);
        }
    }
    let through = latest.values().map(|e| e.id).max().unwrap_or(0);
    Ok(Snapshot {
        people,
        latest,
        entries,
        through,
    })
}
