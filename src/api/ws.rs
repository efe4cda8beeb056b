//! `GET /ws`: protocol v1 (see docs/protocol.md).
//!
//! The upgrade is done by hand (hyper's `OnUpgrade` + tokio-tungstenite) rather than by warp's
//! `ws()` filter, because warp exposes only the maximum sizes and not tungstenite's read and write
//! buffer sizes, which dominate an idle socket's memory, and because the hub writes to an idle
//! subscriber's TCP socket itself ([`crate::hub::outlet`]), which needs the socket, not hyper's
//! boxed connection.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use super::rest::claims_for;
use super::state::AppState;
use super::topics;
use crate::auth::Claims;
use crate::domain::Topic;
use crate::hub::outlet::TaskIo;
use crate::hub::{Delivery, Outlet, Subscription};
use crate::metrics::METRICS;

/// Close codes (docs/protocol.md): 4000–4099 do not reconnect, 4100–4199 reconnect with backoff.
pub const CLOSE_UNAUTHORIZED: u16 = 4001;
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;
/// How long a browser has to send its `auth` frame.
const AUTH_TIMEOUT: Duration = Duration::from_secs(5);
/// Events replayed per person on resume before the snapshot is declared the truth.
const MAX_REPLAY: u64 = 1000;
/// A send that takes longer than this means the peer stopped reading.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);
/// Resyncs tolerated within [`RESYNC_WINDOW`] before the socket is closed as too slow.
const MAX_RESYNCS: usize = 3;
const RESYNC_WINDOW: Duration = Duration::from_secs(30);

type Socket = WebSocketStream<TaskIo>;

/// When a token's `exp` passes, on the runtime's clock.
fn deadline_of(claims: &Claims) -> tokio::time::Instant {
    tokio::time::Instant::now()
        + (claims.expires_at() - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
}

/// Largest frame written in one piece. tungstenite keeps a buffer of the largest frame it ever
/// encoded, so one 60 KB snapshot would cost a socket 60 KB for life; sent as continuation frames
/// of this size it costs 256 bytes (and 4 bytes of header per frame on the wire). The client
/// still receives one message.
const FRAGMENT: usize = 256;

/// Frames written before one flush when a topic has a backlog.
const MAX_WRITE_BATCH: usize = 32;

/// Sends `text` as one message in frames of at most [`FRAGMENT`] bytes.
async fn send_fragmented(socket: &mut Socket, text: bytes::Bytes) -> Result<(), WsError> {
    use tokio_tungstenite::tungstenite::protocol::frame::Frame;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};
    let mut at = 0;
    while at < text.len() {
        let end = (at + FRAGMENT).min(text.len());
        let op = if at == 0 { Data::Text } else { Data::Continue };
        let frame = Frame::message(text.slice(at..end), OpCode::Data(op), end == text.len());
        socket.feed(Message::Frame(frame)).await?;
        at = end;
    }
    socket.flush().await
}

pub fn route(
    state: AppState,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("ws")
        .and(warp::get())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::header::optional::<String>("sec-websocket-key"))
        .and(warp::ext::optional::<OnUpgrade>())
        .and(state.filter())
        .and_then(upgrade)
}

async fn upgrade(
    auth: Option<String>,
    query: HashMap<String, String>,
    key: Option<String>,
    on_upgrade: Option<OnUpgrade>,
    s: AppState,
) -> Result<warp::reply::Response, Rejection> {
    let (Some(key), Some(on_upgrade)) = (key, on_upgrade) else {
        return Err(warp::reject::custom(ApiError::BadRequest(
            "expected a WebSocket upgrade".into(),
        )));
    };
    let token = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| query.get("access_token").cloned());
    // Boxed: the claims ride along for the socket's life, and inline they would be copied into
    // each layer of its task (the spawned block, `run`'s arguments and locals).
    let claims = match token {
        Some(t) => Some(Box::new(
            claims_for(&s, t.trim())
                .await
                .map_err(warp::reject::custom)?,
        )),
        None => None,
    };
    let max = s.config.ws_max_frame;
    let mut config = WebSocketConfig::default();
    // Clients send a few small frames; a larger one grows the buffer for as long as it needs.
    config.read_buffer_size = 128;
    // Frames go straight to `TaskIo`, which batches until a flush and then frees itself.
    config.write_buffer_size = 0;
    config.max_write_buffer_size = 1024 * 1024;
    config.max_message_size = Some(max);
    config.max_frame_size = Some(max);
    tokio::spawn(async move {
        match on_upgrade.await {
            Ok(upgraded) => {
                // The server's connections are plain TCP (`api::serve`); anything else is a bug.
                let parts = match upgraded.downcast::<TokioIo<tokio::net::TcpStream>>() {
                    Ok(parts) => parts,
                    Err(_) => {
                        tracing::error!("websocket upgraded over a connection that is not TCP");
                        return;
                    }
                };
                let outlet = Arc::new(Outlet::new(parts.io.into_inner()));
                // Bytes the client sent right behind its upgrade request are the socket's first.
                // Copied out: `read_buf` is a view of hyper's 8 KiB read buffer, which it would
                // keep alive for the socket's life (6 KB more per idle connection, measured).
                let early = parts.read_buf.to_vec();
                drop(parts.read_buf);
                let socket = WebSocketStream::from_partially_read(
                    TaskIo::new(outlet.clone()),
                    early,
                    Role::Server,
                    Some(config),
                )
                .await;
                METRICS.sockets.inc();
                // Held here and lent to `run`: an async fn taking `self` by value keeps two
                // copies of it in its state (the argument and the moved-in local).
                let mut session = Session::new(s, socket, outlet);
                session.run(claims).await;
                METRICS.sockets.dec();
            }
            Err(e) => tracing::debug!(error = %e, "websocket upgrade failed"),
        }
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = warp::reply().into_response();
    *resp.status_mut() = warp::http::StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(
        "connection",
        warp::http::HeaderValue::from_static("upgrade"),
    );
    h.insert("upgrade", warp::http::HeaderValue::from_static("websocket"));
    h.insert(
        "sec-websocket-accept",
        accept
            .parse()
            .map_err(|_| warp::reject::custom(ApiError::BadRequest("bad key".into())))?,
    );
    Ok(resp)
}

/// Client → server frames.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
enum ClientFrame {
    Auth {
        token: String,
        id: Option<Value>,
    },
    Subscribe {
        id: Option<Value>,
        topics: Vec<String>,
        #[serde(default)]
        since: HashMap<String, i64>,
    },
    Unsubscribe {
        id: Option<Value>,
        topics: Vec<String>,
    },
    Ping {
        id: Option<Value>,
    },
    Refresh {
        id: Option<Value>,
        token: String,
    },
}

/// `subscribed`: the snapshot entries are already JSON text and go out as they are.
#[derive(serde::Serialize)]
struct Subscribed<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    id: Option<&'a Value>,
    topics: &'a [String],
    snapshot: &'a [&'a serde_json::value::RawValue],
    #[serde(skip_serializing_if = "Option::is_none")]
    recovered: Option<&'a serde_json::Map<String, Value>>,
}

struct Session {
    s: AppState,
    socket: Socket,
    /// The socket as the hub's publishers see it: they write to it while its subscriptions are
    /// parked, and wake this session through it when they cannot.
    outlet: Arc<Outlet>,
    subs: Vec<Subscription>,
    resyncs: Vec<tokio::time::Instant>,
    /// The caller's organization, known once authenticated; every topic held is within it.
    org: i64,
}

enum Flow {
    Continue,
    Close(u16, &'static str),
}

fn error_frame(id: Option<&Value>, code: &str, message: &str) -> Message {
    Message::text(json!({"type": "error", "id": id, "code": code, "message": message}).to_string())
}

impl Session {
    fn new(s: AppState, socket: Socket, outlet: Arc<Outlet>) -> Session {
        Session {
            s,
            socket,
            outlet,
            subs: Vec::new(),
            resyncs: Vec::new(),
            org: 0,
        }
    }

    async fn send(&mut self, m: Message) -> bool {
        let sent = match m {
            Message::Text(t) if t.len() > FRAGMENT => {
                tokio::time::timeout(SEND_TIMEOUT, send_fragmented(&mut self.socket, t.into()))
                    .await
            }
            m => tokio::time::timeout(SEND_TIMEOUT, self.socket.send(m)).await,
        };
        matches!(sent, Ok(Ok(())))
    }

    async fn close(&mut self, code: u16, reason: &'static str) {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.into(),
        };
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            self.socket.send(Message::Close(Some(frame))),
        )
        .await;
    }

    async fn run(&mut self, claims: Option<Box<Claims>>) {
        let mut claims = match claims {
            Some(c) => c,
            None => match Box::pin(self.first_frame_auth()).await {
                Some(c) => c,
                None => return self.close(CLOSE_UNAUTHORIZED, "unauthorized").await,
            },
        };
        self.org = claims.org;
        let is_bot = claims.sub.starts_with("bot:");
        // Only a bot's credential can be revoked (a person's token just expires): other sockets
        // need no cancellation token of their own.
        let revoked = is_bot.then(|| self.s.revocation(&claims.sub));
        let ping_every = Duration::from_secs(self.s.config.ws_ping_interval);
        let mut ping = tokio::time::interval(ping_every);
        ping.reset();
        let mut last_heard = tokio::time::Instant::now();
        // Built once, not per wake-up: a fresh timer or cancellation waiter on every delivery
        // would cost each of ten thousand sockets a timer-wheel insert and a lock per event.
        let expiry = tokio::time::sleep_until(deadline_of(&claims));
        tokio::pin!(expiry);
        let cancelled = async {
            match &revoked {
                Some(token) => token.cancelled().await,
                None => std::future::pending().await,
            }
        };
        tokio::pin!(cancelled);
        let outlet = self.outlet.clone();
        loop {
            let exp_before = claims.exp;
            // Subscriptions with nothing queued go back to the publisher's direct writes.
            for sub in &mut self.subs {
                sub.park();
            }
            let flow = tokio::select! {
                msg = self.socket.next() => {
                    last_heard = tokio::time::Instant::now();
                    match msg {
                        None | Some(Ok(Message::Close(_))) => break,
                        // Boxed: subscribing holds database futures, and inline they would
                        // size every idle socket's task for its busiest moment.
                        Some(Ok(Message::Text(t))) => Box::pin(self.on_text(t.as_str(), &mut claims)).await,
                        Some(Ok(Message::Binary(_))) => {
                            let m = error_frame(None, "bad_request", "binary frames are not part of the protocol; send JSON text");
                            if self.send(m).await { Flow::Continue } else { break }
                        }
                        Some(Ok(_)) => Flow::Continue,
                        Some(Err(WsError::Capacity(_))) => Flow::Close(1009, "frame too large"),
                        Some(Err(_)) => break,
                    }
                }
                (idx, r) = crate::hub::next_delivery(&mut self.subs) => match r {
                    Ok(d) => self.deliver(idx, d).await,
                    Err(e) => Box::pin(self.on_lag(idx, e)).await,
                },
                // A publisher handed a subscription back (the loop reads its ring next), or left
                // the rest of a frame for this task to write.
                _ = outlet.notified() => {
                    match tokio::time::timeout(SEND_TIMEOUT, self.socket.flush()).await {
                        Ok(Ok(())) => Flow::Continue,
                        _ => Flow::Close(CLOSE_SLOW_CONSUMER, "too slow"),
                    }
                }
                _ = ping.tick() => {
                    if last_heard.elapsed() > ping_every * 2 {
                        break;
                    }
                    if self.send(Message::Ping(Default::default())).await { Flow::Continue } else { break }
                }
                _ = &mut expiry, if !is_bot => Flow::Close(CLOSE_UNAUTHORIZED, "token expired"),
                _ = &mut cancelled => Flow::Close(CLOSE_UNAUTHORIZED, "token revoked"),
            };
            if claims.exp != exp_before {
                expiry.as_mut().reset(deadline_of(&claims));
            }
            match flow {
                Flow::Continue => {}
                Flow::Close(code, reason) => {
                    if code == CLOSE_SLOW_CONSUMER {
                        METRICS.slow_consumers_closed.inc();
                    }
                    self.close(code, reason).await;
                    break;
                }
            }
        }
    }

    async fn first_frame_auth(&mut self) -> Option<Box<Claims>> {
        let msg = tokio::time::timeout(AUTH_TIMEOUT, self.socket.next())
            .await
            .ok()??
            .ok()?;
        let Message::Text(t) = msg else { return None };
        let ClientFrame::Auth { token, id } = serde_json::from_str(t.as_str()).ok()? else {
            return None;
        };
        let claims = claims_for(&self.s, &token).await.ok()?;
        let reply = json!({"type": "authenticated", "id": id, "expires_at": claims.expires_at()});
        self.send(Message::text(reply.to_string()))
            .await
            .then_some(Box::new(claims))
    }

    async fn on_text(&mut self, text: &str, claims: &mut Claims) -> Flow {
        let frame: ClientFrame = match serde_json::from_str(text) {
            Ok(f) => f,
            Err(e) => {
                let id = serde_json::from_str::<Value>(text)
                    .ok()
                    .and_then(|v| v.get("id").cloned());
                let m = error_frame(
                    id.as_ref(),
                    "bad_request",
                    &format!("unreadable frame: {e}"),
                );
                return if self.send(m).await {
                    Flow::Continue
                } else {
                    Flow::Close(1011, "send failed")
                };
            }
        };
        let reply = match frame {
            ClientFrame::Ping { id } => json!({"type": "pong", "id": id}),
            ClientFrame::Auth { id, .. } => {
                return self
                    .reply(error_frame(
                        id.as_ref(),
                        "bad_request",
                        "already authenticated",
                    ))
                    .await;
            }
            ClientFrame::Refresh { id, token } => match claims_for(&self.s, &token).await {
                Ok(c) if c.org == claims.org => {
                    *claims = c;
                    json!({"type": "refreshed", "id": id, "expires_at": claims.expires_at()})
                }
                _ => return Flow::Close(CLOSE_UNAUTHORIZED, "refresh token invalid"),
            },
            ClientFrame::Unsubscribe { id, topics } => {
                self.subs.retain(|s| !topics.iter().any(|t| t == s.topic()));
                json!({"type": "unsubscribed", "id": id})
            }
            ClientFrame::Subscribe { id, topics, since } => {
                return self.subscribe(id, topics, since, claims).await;
            }
        };
        self.reply(Message::text(reply.to_string())).await
    }

    async fn reply(&mut self, m: Message) -> Flow {
        if self.send(m).await {
            Flow::Continue
        } else {
            Flow::Close(1011, "send failed")
        }
    }

    async fn subscribe(
        &mut self,
        id: Option<Value>,
        topics: Vec<String>,
        since: HashMap<String, i64>,
        claims: &Claims,
    ) -> Flow {
        let started = std::time::Instant::now();
        let new: Vec<&String> = topics
            .iter()
            .filter(|t| !self.subs.iter().any(|s| s.topic() == t.as_str()))
            .collect();
        if self.subs.len() + new.len() > self.s.config.ws_max_topics {
            return self
                .reply(error_frame(
                    id.as_ref(),
                    "too_many_topics",
                    &format!("at most {} topics per socket", self.s.config.ws_max_topics),
                ))
                .await;
        }
        let mut parsed = Vec::new();
        for t in &topics {
            match topics::authorize(&self.s, t, claims).await {
                Ok(p) => parsed.push((t.clone(), p)),
                Err((code, msg)) => return self.reply(error_frame(id.as_ref(), code, &msg)).await,
            }
        }
        // Exactly: a Vec's first growth would make room for four, and most sockets hold one.
        self.subs.reserve_exact(new.len());
        // Subscribe first, then read: anything committed after the read arrives live, anything
        // before is in the snapshot or replay, and `skip_through` drops the overlap.
        for (t, _) in &parsed {
            if !self.subs.iter().any(|s| s.topic() == t) {
                self.subs.push(self.s.hub.subscribe_direct(t, &self.outlet));
            }
        }
        // Shared: a team's snapshot may be the one read for everyone subscribing to it just now.
        let mut snaps = Vec::with_capacity(parsed.len());
        let mut replay: Vec<Message> = Vec::new();
        let mut recovered = serde_json::Map::new();
        for (topic, p) in &parsed {
            let snap = match topics::shared_snapshot(&self.s, topic, p, self.org).await {
                Ok(x) => x,
                Err(e) => return self.reply(error_frame(id.as_ref(), "internal", &e)).await,
            };
            if let Some(sub) = self.subs.iter_mut().find(|s| s.topic() == topic) {
                sub.skip_through(snap.through);
            }
            snaps.push(snap.clone());
            if since.is_empty() {
                continue;
            }
            let (people, latest) = (&snap.people, &snap.latest);
            let mut all_ok = true;
            for card in people {
                let Some(&from) = since.get(&card.topic) else {
                    continue;
                };
                let head = latest.get(&card.id).map(|e| e.seq).unwrap_or(0);
                if from > head {
                    all_ok = false;
                    continue;
                }
                // Only what the snapshot's moment holds: later events arrive live.
                let events: Vec<_> = self
                    .s
                    .store
                    .events_after(card.id, from, MAX_REPLAY)
                    .await
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|e| e.seq <= head)
                    .collect();
                let complete = events.first().is_none_or(|e| e.seq == from + 1)
                    && events.last().map_or(from == head, |e| e.seq == head);
                all_ok &= complete;
                replay.extend(
                    events
                        .iter()
                        .map(|e| Message::text(e.to_event(card.clone()).to_json(topic))),
                );
            }
            recovered.insert(topic.clone(), json!(all_ok));
        }
        let snapshot: Vec<&serde_json::value::RawValue> = snaps
            .iter()
            .flat_map(|s| s.entries.iter().map(|e| &**e))
            .collect();
        let entries = snapshot.len();
        let reply = Subscribed {
            kind: "subscribed",
            id: id.as_ref(),
            topics: &topics,
            snapshot: &snapshot,
            recovered: (!since.is_empty()).then_some(&recovered),
        };
        let reply = serde_json::to_string(&reply).unwrap_or_default();
        let built = started.elapsed();
        if !self.send(Message::text(reply)).await {
            return Flow::Close(1011, "send failed");
        }
        tracing::debug!(
            entries,
            built_ms = built.as_millis() as u64,
            sent_ms = started.elapsed().as_millis() as u64,
            "subscribed"
        );
        for m in replay {
            if !self.send(m).await {
                return Flow::Close(1011, "send failed");
            }
        }
        Flow::Continue
    }

    /// Writes a delivery, and what is already queued behind it on the same topic.
    async fn deliver(&mut self, idx: usize, d: Delivery) -> Flow {
        // Write what is already queued on this topic too, then flush once: at high
        // rates one write system call carries several frames instead of one each. The first
        // frame is the oldest: the write's frames are counted at its delay.
        let published = d.published;
        let mut next = Some(d);
        let mut lagged = None;
        let mut queued = 0;
        while let Some(d) = next.take() {
            let fed = tokio::time::timeout(SEND_TIMEOUT, self.socket.feed(d.frame)).await;
            if !matches!(fed, Ok(Ok(()))) {
                return Flow::Close(CLOSE_SLOW_CONSUMER, "too slow");
            }
            queued += 1;
            if queued < MAX_WRITE_BATCH
                && let Some(sub) = self.subs.get_mut(idx)
            {
                match sub.try_recv() {
                    Ok(d) => next = Some(d),
                    Err(TryRecvError::Lagged(n)) => lagged = Some(n),
                    Err(_) => {}
                }
            }
        }
        let flushed = tokio::time::timeout(SEND_TIMEOUT, self.socket.flush()).await;
        if !matches!(flushed, Ok(Ok(()))) {
            return Flow::Close(CLOSE_SLOW_CONSUMER, "too slow");
        }
        METRICS
            .ws_write_delay
            .observe_n(published.elapsed(), queued as u64);
        match lagged {
            Some(n) => Box::pin(self.on_lag(idx, RecvError::Lagged(n))).await,
            None => Flow::Continue,
        }
    }

    /// A subscription fell behind its topic's ring: a fresh snapshot, or a close when it keeps
    /// happening.
    async fn on_lag(&mut self, idx: usize, e: RecvError) -> Flow {
        match e {
            RecvError::Lagged(n) => {
                METRICS.frames_dropped.add(n);
                let now = tokio::time::Instant::now();
                self.resyncs
                    .retain(|t| now.duration_since(*t) < RESYNC_WINDOW);
                self.resyncs.push(now);
                if self.resyncs.len() > MAX_RESYNCS {
                    return Flow::Close(CLOSE_SLOW_CONSUMER, "consumer too slow");
                }
                METRICS.resyncs.inc();
                let Some(topic) = self.subs.get(idx).map(|s| s.topic().to_owned()) else {
                    return Flow::Continue;
                };
                let Some(parsed) = Topic::parse(&topic) else {
                    return Flow::Continue;
                };
                let snap = topics::shared_snapshot(&self.s, &topic, &parsed, self.org)
                    .await
                    .unwrap_or_default();
                if let Some(sub) = self.subs.get_mut(idx) {
                    sub.skip_through(snap.through);
                }
                self.reply(Message::text(snap.resync_json(&topic))).await
            }
            RecvError::Closed => Flow::Continue,
        }
    }
}
