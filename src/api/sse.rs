//! `GET /api/events?topics=…`: the socket's status events as Server-Sent Events, for clients that
//! cannot hold a WebSocket (corporate proxies, `curl`, serverless functions).
//!
//! A WebSocket client resumes with per-person seqs; an SSE client can only echo back one string,
//! `Last-Event-ID`. So every status event carries its stored row id as the SSE `id`: row ids grow
//! in commit order across all people (one writer appends), so "every event of the covered people
//! with a larger id" is exactly what a reconnecting client missed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use futures_util::stream;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use warp::sse::Event;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use super::rest::claims_for;
use super::state::AppState;
use super::topics;
use crate::domain::{PersonCard, Topic};
use crate::hub::{Delivery, Subscription, next_delivery};
use crate::metrics::METRICS;

/// Events replayed on resume before the snapshot is declared the truth (as on the socket).
const MAX_REPLAY: u64 = 1000;
/// Comment lines keep idle proxies from timing the stream out.
const KEEP_ALIVE: Duration = Duration::from_secs(15);

pub fn route(
    state: AppState,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("api" / "events")
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::header::optional::<String>("last-event-id"))
        .and(warp::query::<HashMap<String, String>>())
        .and(state.filter())
        .and_then(open)
}

async fn open(
    auth: Option<String>,
    last_event_id: Option<String>,
    query: HashMap<String, String>,
    s: AppState,
) -> Result<warp::reply::Response, Rejection> {
    open_stream(auth, last_event_id, query, s)
        .await
        .map_err(warp::reject::custom)
}

async fn open_stream(
    auth: Option<String>,
    last_event_id: Option<String>,
    query: HashMap<String, String>,
    s: AppState,
) -> Result<warp::reply::Response, ApiError> {
    // EventSource cannot set headers, so the token may come in the query (redacted from logs).
    let token = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .or(query.get("access_token").map(String::as_str))
        .ok_or_else(|| {
            ApiError::Unauthorized("send Authorization: Bearer <token> or ?access_token=".into())
        })?;
    let claims = claims_for(&s, token.trim()).await?;
    let wanted: Vec<String> = query
        .get("topics")
        .map(|t| {
            t.split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if wanted.is_empty() {
        return Err(ApiError::BadRequest(
            "name the topics: ?topics=team:T123,user:42".into(),
        ));
    }
    let unique: HashSet<&String> = wanted.iter().collect();
    if unique.len() > s.config.ws_max_topics {
        return Err(ApiError::BadRequest(format!(
            "at most {} topics per stream",
            s.config.ws_max_topics
        )));
    }
    let after = match last_event_id.or_else(|| query.get("last_event_id").cloned()) {
        None => None,
        Some(v) => Some(v.trim().parse::<i64>().map_err(|_| {
            ApiError::BadRequest("Last-Event-ID must be an id this stream sent".into())
        })?),
    };
    let mut parsed = Vec::new();
    for t in &wanted {
        if parsed.iter().any(|(seen, _)| seen == t) {
            continue;
        }
        match topics::authorize(&s, t, &claims).await {
            Ok(p) => parsed.push((t.clone(), p)),
            Err(("forbidden", m)) => return Err(ApiError::Forbidden(m)),
            Err((_, m)) => return Err(ApiError::BadRequest(m)),
        }
    }

    // Subscribe first, then read: anything committed after the read arrives live, anything before
    // is in the snapshot or the replay, and `sent` drops the overlap.
    let subs: Vec<Subscription> = parsed.iter().map(|(t, _)| s.hub.subscribe(t)).collect();
    // Counted from here; `Drop` uncounts, on every path out.
    METRICS.sockets.inc();
    let mut stream = Stream {
        s: s.clone(),
        subs,
        sent: HashMap::new(),
        org: claims.org,
        pending: VecDeque::new(),
        revoked: s.revocation(&claims.sub),
        expires: (!claims.sub.starts_with("bot:")).then(|| {
            tokio::time::Instant::now()
                + (claims.expires_at() - chrono::Utc::now())
                    .to_std()
                    .unwrap_or(Duration::ZERO)
        }),
    };
    stream.start(&parsed, after).await?;
    // The stream runs in its own task and hands events over a small channel: hyper wants a
    // `Sync` body, which database futures are not, and the task notices a departed client at once
    // (`closed`) rather than at its next event, so its subscriptions go with it.
    let (tx, rx) = mpsc::channel::<Event>(16);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                e = stream.next() => match e {
                    Some(e) => if tx.send(e).await.is_err() { break },
                    None => break,
                },
                _ = tx.closed() => break,
            }
        }
    });
    let events = stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|e| (Ok::<_, Infallible>(e), rx))
    });
    let reply = warp::sse::reply(warp::sse::keep_alive().interval(KEEP_ALIVE).stream(events));
    let mut resp = reply.into_response();
    // Tell nginx-style proxies not to buffer the stream.
    resp.headers_mut().insert(
        "x-accel-buffering",
        warp::http::HeaderValue::from_static("no"),
    );
    Ok(resp)
}

/// One client's stream: its subscriptions and what it has been sent.
struct Stream {
    s: AppState,
    subs: Vec<Subscription>,
    /// Highest seq sent per person: drops live events the snapshot or replay already covered,
    /// and the second copy of an event that reaches the stream through two topics.
    sent: HashMap<i64, i64>,
    org: i64,
    pending: VecDeque<Event>,
    revoked: CancellationToken,
    /// When a JWT's `exp` passes the stream ends; the client reconnects with a fresh token.
    expires: Option<tokio::time::Instant>,
}

impl Drop for Stream {
    fn drop(&mut self) {
        METRICS.sockets.dec();
    }
}

fn json_event(kind: &str, id: Option<i64>, data: &Value) -> Event {
    let e = Event::default().event(kind).data(data.to_string());
    match id {
        Some(id) => e.id(id.to_string()),
        None => e,
    }
}

impl Stream {
    /// Queues the opening events: a replay after `after` when it is complete, else a snapshot.
    async fn start(
        &mut self,
        parsed: &[(String, Topic)],
        after: Option<i64>,
    ) -> Result<(), ApiError> {
        // The first topic that covers a person is the one its events go out on: one copy each.
        let mut cards: HashMap<i64, (Arc<PersonCard>, &str)> = HashMap::new();
        for (topic, p) in parsed {
            for card in topics::people_of(&self.s, p, self.org)
                .await
                .map_err(ApiError::Internal)?
            {
                cards.entry(card.id).or_insert((card, topic.as_str()));
            }
        }
        let ids: Vec<i64> = cards.keys().copied().collect();
        let names: Vec<&str> = parsed.iter().map(|(t, _)| t.as_str()).collect();
        if let Some(after) = after {
            let replay = self
                .s
                .store
                .events_after_id(&ids, after, MAX_REPLAY + 1)
                .await?;
            if replay.len() as u64 <= MAX_REPLAY {
                let opening = json!({"type": "subscribed", "topics": names, "recovered": true, "snapshot": []});
                self.pending
                    .push_back(json_event("subscribed", Some(after), &opening));
                for e in replay {
                    let Some((card, topic)) = cards.get(&e.person_id) else {
                        continue;
                    };
                    self.hold(e.person_id, e.seq);
                    let text = e.to_event(card.clone()).to_json(topic);
                    self.pending.push_back(
                        Event::default()
                            .id(e.id.to_string())
                            .event("status")
                            .data(text),
                    );
                }
                return Ok(());
            }
        }
        let latest = self.s.store.latest_events(&ids).await?;
        let mut snapshot = Vec::with_capacity(latest.len());
        let mut head = after.unwrap_or(0);
        for (id, e) in &latest {
            let Some((card, topic)) = cards.get(id) else {
                continue;
            };
            snapshot.push(e.to_event(card.clone()).to_value(topic));
            self.sent.insert(*id, e.seq);
            head = head.max(e.id);
        }
        let mut opening = json!({"type": "subscribed", "topics": names, "snapshot": snapshot});
        if after.is_some() {
            opening["recovered"] = json!(false);
        }
        self.pending
            .push_back(json_event("subscribed", Some(head), &opening));
        Ok(())
    }

    /// Records that the client holds `person`'s events up to `seq` (a replay or a snapshot sent
    /// them), so live ones at or below it are dropped.
    fn hold(&mut self, person: i64, seq: i64) {
        let held = self.sent.entry(person).or_default();
        *held = (*held).max(seq);
    }

    /// The next event to send; `None` ends the stream.
    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.pending.pop_front() {
                return Some(e);
            }
            let expiry = async {
                match self.expires {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                (idx, r) = next_delivery(&mut self.subs) => self.on_delivery(idx, r).await,
                _ = expiry => {
                    self.expires = None;
                    self.subs.clear();
                    let v = json!({"type": "error", "code": "unauthorized", "message": "token expired"});
                    return Some(json_event("error", None, &v));
                }
                _ = self.revoked.cancelled(), if !self.subs.is_empty() => {
                    self.subs.clear();
                    let v = json!({"type": "error", "code": "unauthorized", "message": "token revoked"});
                    return Some(json_event("error", None, &v));
                }
                // Ends the stream once the error event above has gone out.
                _ = std::future::ready(()), if self.subs.is_empty() => return None,
            }
        }
    }

    /// Queues `first` and whatever else the subscriptions already hold, in commit order.
    ///
    /// Each topic's channel is in commit order, but two channels interleave freely, and an SSE
    /// client keeps only the last id it saw: sending event 12 (from one topic) before event 11
    /// (from another) and dropping there would lose 11 on resume. The hub publishes every topic of
    /// event 11 before any of event 12, so once 12 is visible here, 11 is already in its channel:
    /// draining all channels and sorting by id keeps the ids a client sees increasing.
    async fn on_delivery(&mut self, idx: usize, first: Result<Delivery, RecvError>) {
        let mut batch = Vec::new();
        let mut lagged = Vec::new();
        let mut take = |i: usize, r: Result<Delivery, RecvError>| match r {
            Ok(d) => batch.push(d),
            Err(RecvError::Lagged(n)) => {
                METRICS.frames_dropped.add(n);
                lagged.push(i);
            }
            Err(RecvError::Closed) => {}
        };
        take(idx, first);
        for (i, sub) in self.subs.iter_mut().enumerate() {
            loop {
                match sub.try_recv() {
                    Ok(d) => take(i, Ok(d)),
                    Err(TryRecvError::Lagged(n)) => take(i, Err(RecvError::Lagged(n))),
                    Err(_) => break,
                }
            }
        }
        batch.sort_by_key(|d| d.event_id);
        for d in batch {
            if self.sent.get(&d.person_id).is_some_and(|s| *s >= d.seq) {
                continue;
            }
            self.sent.insert(d.person_id, d.seq);
            let text = d.frame.to_text().unwrap_or_default();
            self.pending.push_back(
                Event::default()
                    .id(d.event_id.to_string())
                    .event("status")
                    .data(text),
            );
        }
        lagged.dedup();
        for i in lagged {
            METRICS.resyncs.inc();
            if let Some(e) = self.resync(i).await {
                self.pending.push_back(e);
            }
        }
    }

    /// A fresh snapshot of the topic at `idx` after the stream fell behind its ring.
    async fn resync(&mut self, idx: usize) -> Option<Event> {
        let topic = self.subs.get(idx)?.topic().to_owned();
        let parsed = Topic::parse(&topic)?;
        let snap = topics::snapshot(&self.s, &topic, &parsed, self.org)
            .await
            .ok()?;
        for e in snap.latest.values() {
            self.hold(e.person_id, e.seq);
        }
        // No id: the client's last id stays where the live events left it, so a resume after
        // this replays (and the client drops by seq) rather than skips.
        Some(
            Event::default()
                .event("resync")
                .data(snap.resync_json(&topic)),
        )
    }
}
