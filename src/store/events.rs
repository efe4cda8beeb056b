//! The status time series: batched appends with per-person seqs, current status, history, and
//! time-in-status summaries.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use chrono::{DateTime, Duration, Utc};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::Serialize;

use super::entity::{person, status_event};
use super::{Result, Store};
use crate::domain::{
    Dnd, Field, GmailPart, JiraPart, PersonCard, Presence, Source, Status, StatusEvent,
};

/// A change to append. The store assigns `seq` (and nudges `observed_at` forward by a microsecond
/// when two changes of one person would otherwise share a timestamp).
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    pub person_id: i64,
    pub observed_at: DateTime<Utc>,
    pub status: Status,
    pub changed: Vec<Field>,
    pub previous: serde_json::Map<String, serde_json::Value>,
    pub source: Source,
}

impl NewEvent {
    /// The `changed` column: field names, comma-separated.
    pub(super) fn changed_column(&self) -> String {
        let names: Vec<&str> = self.changed.iter().map(|f| f.as_str()).collect();
        names.join(",")
    }

    /// The `previous` column: the changed fields' old values as a JSON object, `None` if none.
    pub(super) fn previous_column(&self) -> Option<String> {
        (!self.previous.is_empty())
            .then(|| serde_json::to_string(&self.previous).unwrap_or_default())
    }
}

/// The people of a batch, each once, in id order.
pub(super) fn people_of(batch: &[NewEvent]) -> Vec<i64> {
    let mut ids: Vec<i64> = batch.iter().map(|e| e.person_id).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Where each event of a batch went, from its assigned seq and time and its row id.
pub(super) fn appended(assigned: Vec<(i64, DateTime<Utc>)>, row_ids: Vec<i64>) -> Vec<Appended> {
    assigned
        .into_iter()
        .zip(row_ids)
        .map(|((seq, observed_at), id)| Appended {
            id,
            seq,
            observed_at,
        })
        .collect()
}

/// Where the store put one appended event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The row id: increases in commit order across all people (one writer appends), which
    /// makes it the resume cursor of streams that mix many people (SSE `Last-Event-ID`).
    pub id: i64,
    pub seq: i64,
    pub observed_at: DateTime<Utc>,
}

/// One page of history, oldest first; `next_cursor` is the seq to pass as `after` for more.
#[derive(Clone, Debug)]
pub struct HistoryPage {
    pub events: Vec<status_event::Model>,
    pub next_cursor: Option<i64>,
}

/// Time spent in each state over a range, in seconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub presence: BTreeMap<String, i64>,
    pub dnd_seconds: i64,
    /// Seconds per custom status text; the empty text (no status) is left out.
    pub status_text: BTreeMap<String, i64>,
}

/// Ids per `IN (…)` list or statement of a read: far below SQLite's and PostgreSQL's parameter
/// limits.
const IDS_PER_QUERY: usize = 1000;

/// OR arms per query (each `person_id = ? AND seq = ?` adds depth to SQLite's expression tree).
const OR_ARMS: usize = 200;

impl Store {
    /// Appends a batch in one transaction and returns where each event went, in input order. Seqs
    /// continue from the person's last one with no gap, whatever restarted in between.
    pub async fn append_events(&self, batch: &[NewEvent]) -> Result<Vec<Appended>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        if self.backend() == sea_orm::DbBackend::Postgres {
            return super::events_copy::append(self.db.get_postgres_connection_pool(), batch).await;
        }
        let _turn = self.write_turn().await;
        match &self.appender {
            Some(appender) => appender.append(batch).await,
            None => super::sqlite_append::append_in_place(&self.write_db, batch).await,
        }
    }

    /// As [`Store::append_events`], with the statements run on the calling thread rather than
    /// handed to another: for the pipeline's writer on a thread of its own, which waits for the
    /// commit anyway, and for which a hand-off and the wake-up back were only two more waits for
    /// a core per batch. The thread blocks for the whole commit, so never call it from
    /// a runtime that runs anything else. Elsewhere than on a SQLite file
    /// ([`Store::appends_off_runtime`]) it is [`Store::append_events`].
    pub async fn append_events_here(&self, batch: &[NewEvent]) -> Result<Vec<Appended>> {
        let Some(appender) = self.appender.as_ref().filter(|_| !batch.is_empty()) else {
            return self.append_events(batch).await;
        };
        let _turn = self.write_turn().await;
        appender.append_here(batch)
    }

    /// The latest event of each given person (absent for people never observed), all as of one
    /// moment: a subscription skips live events up to the highest id read here
    /// (`hub::Subscription::skip_through`), which is only exact if no head is older than another.
    pub async fn latest_events(
        &self,
        person_ids: &[i64],
    ) -> Result<HashMap<i64, status_event::Model>> {
        use sea_orm::{AccessMode, IsolationLevel, TransactionOptions, TransactionTrait};
        if person_ids.len() <= IDS_PER_QUERY {
            // The heads come from one statement, which sees one moment on both backends.
            return latest_events_on(&self.db, person_ids).await;
        }
        // More heads than one statement reads: a transaction holds the moment for all of them
        // (SQLite's read transactions are snapshots already; PostgreSQL's default is not).
        let postgres = self.backend() == sea_orm::DbBackend::Postgres;
        let txn = self
            .db
            .begin_with_options(TransactionOptions {
                isolation_level: postgres.then_some(IsolationLevel::RepeatableRead),
                access_mode: postgres.then_some(AccessMode::ReadOnly),
                ..Default::default()
            })
            .await?;
        let out = latest_events_on(&txn, person_ids).await?;
        txn.commit().await?;
        Ok(out)
    }

    /// The last seq of each given person; people never observed are absent.
    pub async fn last_seqs(&self, person_ids: &[i64]) -> Result<HashMap<i64, i64>> {
        Ok(last_seqs_on(&self.db, person_ids)
            .await?
            .into_iter()
            .collect())
    }

    /// History of one person within `[from, to)`, oldest first, `limit` rows after seq `after`.
    pub async fn history(
        &self,
        person_id: i64,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        after: Option<i64>,
        limit: u64,
    ) -> Result<HistoryPage> {
        let mut q = status_event::Entity::find()
            .filter(status_event::Column::PersonId.eq(person_id))
            .order_by_asc(status_event::Column::Seq)
            .limit(limit + 1);
        if let Some(f) = from {
            q = q.filter(status_event::Column::ObservedAt.gte(f));
        }
        if let Some(t) = to {
            q = q.filter(status_event::Column::ObservedAt.lt(t));
        }
        if let Some(a) = after {
            q = q.filter(status_event::Column::Seq.gt(a));
        }
        let mut events = q.all(&self.db).await?;
        let next_cursor = if events.len() as u64 > limit {
            events.truncate(limit as usize);
            events.last().map(|e| e.seq)
        } else {
            None
        };
        Ok(HistoryPage {
            events,
            next_cursor,
        })
    }

    /// Events of one person with seq greater than `after`, oldest first, at most `limit`: the
    /// replay behind a resumed subscription.
    pub async fn events_after(
        &self,
        person_id: i64,
        after: i64,
        limit: u64,
    ) -> Result<Vec<status_event::Model>> {
        Ok(self
            .history(person_id, None, None, Some(after), limit)
            .await?
            .events)
    }

    /// Events of `people` committed after row `after_id`, in commit order: the replay of a stream
    /// that resumes from a global position rather than per-person seqs.
    pub async fn events_after_id(
        &self,
        people: &[i64],
        after_id: i64,
        limit: u64,
    ) -> Result<Vec<status_event::Model>> {
        let mut out = Vec::new();
        for chunk in people.chunks(IDS_PER_QUERY) {
            out.extend(
                status_event::Entity::find()
                    .filter(status_event::Column::PersonId.is_in(chunk.to_vec()))
                    .filter(status_event::Column::Id.gt(after_id))
                    .order_by_asc(status_event::Column::Id)
                    .limit(limit)
                    .all(&self.db)
                    .await?,
            );
        }
        out.sort_unstable_by_key(|e| e.id);
        out.truncate(limit as usize);
        Ok(out)
    }

    /// Time spent active/away/unknown, in DND, and per status text within `[from, to)`. The state
    /// at `from` is the last event before it.
    pub async fn summary(
        &self,
        person_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Summary> {
        let before = status_event::Entity::find()
            .filter(status_event::Column::PersonId.eq(person_id))
            .filter(status_event::Column::ObservedAt.lt(from))
            .order_by_desc(status_event::Column::Seq)
            .one(&self.db)
            .await?;
        let within = status_event::Entity::find()
            .filter(status_event::Column::PersonId.eq(person_id))
            .filter(status_event::Column::ObservedAt.gte(from))
            .filter(status_event::Column::ObservedAt.lt(to))
            .order_by_asc(status_event::Column::Seq)
            .all(&self.db)
            .await?;
        let mut s = Summary {
            from,
            to,
            ..Summary::default()
        };
        let mut spans: Vec<(DateTime<Utc>, status_event::Model)> =
            Vec::with_capacity(within.len() + 1);
        if let Some(b) = before {
            spans.push((from, b));
        }
        spans.extend(within.into_iter().map(|e| (e.observed_at, e)));
        for (i, (start, e)) in spans.iter().enumerate() {
            let end = spans.get(i + 1).map(|(t, _)| *t).unwrap_or(to);
            let secs = (end - *start).num_seconds().max(0);
            *s.presence.entry(e.presence.clone()).or_default() += secs;
            if e.dnd_enabled {
                s.dnd_seconds += secs;
            }
            if !e.status_text.is_empty() {
                *s.status_text.entry(e.status_text.clone()).or_default() += secs;
            }
        }
        Ok(s)
    }
}

/// The seq and timestamp of each event, in order: one past the person's last seq, and at least a
/// microsecond after the person's last timestamp, so `(person, seq)` and `(person, observed_at)`
/// stay unique and ordered alike. `last` starts at the stored heads and ends at the new ones.
pub(super) fn assign_seqs(
    batch: &[NewEvent],
    last: &mut HashMap<i64, (i64, DateTime<Utc>)>,
) -> Vec<(i64, DateTime<Utc>)> {
    let mut assigned = Vec::with_capacity(batch.len());
    for e in batch {
        let (seq, at) = next_entry(last.get(&e.person_id).copied(), e.observed_at);
        last.insert(e.person_id, (seq, at));
        assigned.push((seq, at));
    }
    assigned
}

/// The seq and timestamp of a person's entry observed at `observed_at`, after `last` (their
/// latest, if any): one past its seq, and at least a microsecond after its time.
pub(crate) fn next_entry(
    last: Option<(i64, DateTime<Utc>)>,
    observed_at: DateTime<Utc>,
) -> (i64, DateTime<Utc>) {
    match last {
        Some((seq, at)) => (seq + 1, (at + Duration::microseconds(1)).max(observed_at)),
        None => (1, observed_at),
    }
}

/// The parts of a status other sources own, kept together as JSON in `status_events.extra`: they
/// are read whole and never queried by field, so columns would only cost migrations. Borrowed
/// when written (every appended row), owned when read.
#[derive(Default, serde::Deserialize, Serialize)]
pub(super) struct Parts<'a> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    jira: Option<Cow<'a, JiraPart>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gmail: Option<Cow<'a, GmailPart>>,
}

impl Parts<'_> {
    /// The `extra` column of a status: `None` when it has no parts.
    pub(super) fn to_json(s: &Status) -> Option<String> {
        let parts = Parts {
            jira: s.jira.as_ref().map(Cow::Borrowed),
            gmail: s.gmail.as_ref().map(Cow::Borrowed),
        };
        (parts.jira.is_some() || parts.gmail.is_some())
            .then(|| serde_json::to_string(&parts).unwrap_or_default())
    }

    /// An unreadable `extra` (written by a newer version, or edited by hand) reads as no parts:
    /// the next poll of each source writes them again.
    fn from_json(s: Option<&str>) -> Parts<'static> {
        s.and_then(|s| serde_json::from_str(s).ok())
            .unwrap_or_default()
    }
}

impl status_event::Model {
    /// The normalized status this row recorded.
    pub fn status(&self) -> Status {
        let parts = Parts::from_json(self.extra.as_deref());
        Status {
            presence: Presence::parse(&self.presence).unwrap_or_default(),
            text: self.status_text.clone(),
            emoji: self.status_emoji.clone(),
            expires_at: self.status_expires_at,
            dnd: Dnd {
                enabled: self.dnd_enabled,
                until: self.dnd_until,
            },
            stale: self.stale,
            jira: parts.jira.map(Cow::into_owned),
            gmail: parts.gmail.map(Cow::into_owned),
        }
    }

    /// The row as the event clients receive, about `person`.
    pub fn to_event(&self, person: Arc<PersonCard>) -> StatusEvent {
        StatusEvent {
            id: self.id,
            person,
            seq: self.seq,
            status: self.status(),
            changed: self.changed.split(',').filter_map(Field::parse).collect(),
            previous: self
                .previous
                .as_deref()
                .and_then(|p| serde_json::from_str(p).ok())
                .unwrap_or_default(),
            observed_at: self.observed_at,
            source: Source::parse(&self.source).unwrap_or(Source::Slack),
        }
    }
}

/// Each given person's last seq, in one statement per [`IDS_PER_QUERY`] people; people never
/// observed are absent. The last seq is the last entry of `ux_status_events_person_seq`, which
/// `MAX` reads with one backward probe of the index per person on both backends: a person's
/// history is never scanned.
async fn last_seqs_on<C: sea_orm::ConnectionTrait>(
    c: &C,
    person_ids: &[i64],
) -> Result<Vec<(i64, i64)>> {
    use sea_orm::sea_query::{Alias, Expr, ExprTrait, Func, Query};
    let mut out = Vec::with_capacity(person_ids.len());
    for chunk in person_ids.chunks(IDS_PER_QUERY) {
        let l = Alias::new("l");
        let last = Query::select()
            .expr(Func::max(Expr::col((l.clone(), status_event::Column::Seq))))
            .from_as(status_event::Entity, l.clone())
            .and_where(
                Expr::col((l, status_event::Column::PersonId))
                    .equals((person::Entity, person::Column::Id)),
            )
            .to_owned();
        let heads = Query::select()
            .column((person::Entity, person::Column::Id))
            .expr_as(
                Expr::SubQuery(None, Box::new(last.into())),
                Alias::new("seq"),
            )
            .from(person::Entity)
            .and_where(Expr::col((person::Entity, person::Column::Id)).is_in(chunk.iter().copied()))
            .to_owned();
        for row in c.query_all(&heads).await? {
            let id: i64 = row.try_get("", "id")?;
            if let Some(seq) = row.try_get::<Option<i64>>("", "seq")? {
                out.push((id, seq));
            }
        }
    }
    Ok(out)
}

/// [`Store::latest_events`] on a connection or a transaction.
async fn latest_events_on<C: sea_orm::ConnectionTrait>(
    c: &C,
    person_ids: &[i64],
) -> Result<HashMap<i64, status_event::Model>> {
    let heads = last_seqs_on(c, person_ids).await?;
    let mut out = HashMap::with_capacity(heads.len());
    // `(person_id, seq)` pairs as an OR of equalities: portable across both backends and each arm
    // is a unique-index lookup. At most [`OR_ARMS`] arms per query: SQLite refuses expression
    // trees deeper than 1000.
    for heads in heads.chunks(OR_ARMS) {
        let mut cond = sea_orm::Condition::any();
        for &(person_id, seq) in heads {
            cond = cond.add(
                sea_orm::Condition::all()
                    .add(status_event::Column::PersonId.eq(person_id))
                    .add(status_event::Column::Seq.eq(seq)),
            );
        }
        for e in status_event::Entity::find().filter(cond).all(c).await? {
            out.insert(e.person_id, e);
        }
    }
    Ok(out)
}
