//! Which topics a caller may hold, and whom a topic covers: shared by the WebSocket and SSE
//! streams so both refuse and include exactly the same people.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

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

/// Team snapshots shared by a burst of subscribers, per (topic, organization).
pub type SnapshotCache = dashmap::DashMap<(String, i64), (Instant, Arc<Snapshot>)>;

/// How long one read of a team may be handed out. Long enough for a burst (a deploy reconnects
/// every dashboard within a few seconds: thousands of identical reads of the same team, and the
/// allocations of each left holes between the sockets' long-lived state); short, because a
/// change to a person's card (a new name or avatar) without a status event does not invalidate
/// it.
const SHARE_FOR: Duration = Duration::from_secs(2);

/// A topic's snapshot for a caller already subscribed to it: a team's is one read shared by
/// everyone subscribing within [`SHARE_FOR`], unless something was published on the topic after
/// that read (the hub's watermark is above the snapshot's highest id), which forces a fresh one.
pub async fn shared_snapshot(
    s: &AppState,
    topic: &str,
    parsed: &Topic,
    org: i64,
) -> Result<Arc<Snapshot>, String> {
    if !matches!(parsed, Topic::Team(_)) {
        return snapshot(s, topic, parsed, org).await.map(Arc::new);
    }
    let key = (topic.to_owned(), org);
    let hit = s
        .snapshots
        .get(&key)
        .filter(|h| h.0.elapsed() < SHARE_FOR)
        .map(|h| h.1.clone());
    if let Some(hit) = hit
        && s.hub.watermark(topic).is_some_and(|w| w <= hit.through)
    {
        return Ok(hit);
    }
    let read_at = Instant::now();
    let fresh = Arc::new(snapshot(s, topic, parsed, org).await?);
    // Expired reads go now, so a large team's snapshot is not held past its window.
    s.snapshots.retain(|_, h| h.0.elapsed() < SHARE_FOR);
    s.snapshots.insert(key, (read_at, fresh.clone()));
    Ok(fresh)
}
