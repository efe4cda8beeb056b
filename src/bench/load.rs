//! The load: subscribers that time every status frame they receive, and an open-loop driver that
//! posts signed Slack `user_change` events at a fixed rate, each stamped with its send time.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use futures_util::{SinkExt, StreamExt};
use memchr::memmem::Finder;
use serde_json::{Value, json};
use tokio::net::TcpSocket;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message;

use super::histogram::Histogram;
use super::post::{self, Poster};
use crate::sources::slack::events::sign;

/// Connections the driver posts over. A connection carries one exchange at a time and pipelines
/// what queues meanwhile; at 8,000 changes/s each of 16 carries 500/s.
const POST_CONNECTIONS: usize = 16;

/// Marks a bench change in a status text: `bench <send time in µs since the epoch>`.
const STAMP: &str = "\"text\":\"bench ";

/// The searches every received frame goes through, built once. With `str::find` they were 7% of
/// the load generator's CPU in the team scenario (session 27's profile), on the cores the server
/// shares.
static FIND_STAMP: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(STAMP));
static FIND_CHANGED: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new("\"changed\":["));
static FIND_OBSERVED: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(OBSERVED_KEY));

/// What precedes a status frame's `observed_at` value.
const OBSERVED_KEY: &str = "\"observed_at\":\"";

/// The send time to stamp a change with, above every stamp `last` has handed out: stamps are
/// unique, so no change repeats the status it replaces.
pub fn unique_stamp(last: &AtomicU64) -> u64 {
    let now = now_us();
    let prev = last.fetch_max(now, Ordering::Relaxed);
    if prev >= now {
        last.fetch_add(1, Ordering::Relaxed) + 1
    } else {
        now
    }
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// What subscribers saw during one measured step.
#[derive(Default, Clone)]
pub struct Step {
    pub latencies: Histogram,
    /// The same changes split at the server's observation (`observed_at` in the frame: when the
    /// event's request reached its handler, or when the floor's writer serialized the frame; the
    /// same clock, on the same machine): from the send to there (the sender, loopback, HTTP), and
    /// from there to the subscriber (the pipeline's commit, the hub, the socket, the read).
    /// Percentiles of the parts do not add up to the whole's, but they say which side a tail is
    /// on.
    pub to_server: Histogram,
    pub from_server: Histogram,
    /// When the last stamped frame arrived (µs since the epoch).
    pub last_us: u64,
}

/// What the subscribers saw, per step.
#[derive(Default)]
pub struct Seen {
    pub steps: Vec<Step>,
    pub resyncs: u64,
}

/// Sets of per-step histograms the subscribers record into, each subscriber into its runtime
/// thread's set. Until session 28 each subscriber kept its own, which cost twice:
/// - Their counters were allocated at a step's first sample, so the first change of a team step
///   had each of 10,000 readers allocate and zero three histograms (84 MB in all) before
///   reading on. At 5 and 10 changes/s (50 and 100 changes a step) that one late change was most
///   of the slowest 1%: without it the p99 and the max fell by a quarter to a half, against Chex
///   and the bare writer alike, and the p50 did not move (docs/benchmarks.md, session 28).
/// - 10,000 subscribers' counters did not stay in cache: recording a frame was ~7% of the reader's
///   CPU, mostly cache misses (session 27's profile). One set per thread stays in cache.
///
/// A shard's lock is contended only when two threads draw the same shard.
struct Recorder {
    shards: Vec<Shard>,
    /// Frames recorded so far, across every shard, to tell when a step has drained.
    received: AtomicU64,
}

/// A shard's lock on a cache line of its own (128 bytes: adjacent-line prefetch pairs lines), so
/// that two threads recording into neighbouring shards do not pass one line back and forth.
#[derive(Default)]
#[repr(align(128))]
struct Shard(Mutex<Vec<Step>>);

const RECORDER_SHARDS: usize = 8;

/// Hands each thread that records its shard, in turn.
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static SHARD: usize = NEXT_SHARD.fetch_add(1, Ordering::Relaxed) % RECORDER_SHARDS;
}

impl Recorder {
    fn new() -> Recorder {
        Recorder {
            shards: (0..RECORDER_SHARDS).map(|_| Shard::default()).collect(),
            received: AtomicU64::new(0),
        }
    }

    /// A stamped frame received at `now` in step `k`, sent at `sent`, observed by the server at
    /// `observed` when the frame says.
    fn record(&self, k: usize, sent: u64, observed: Option<u64>, now: u64) {
        let mut steps = self.shards[SHARD.with(|s| *s)]
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if steps.len() <= k {
            steps.resize(k + 1, Step::default());
        }
        let step = &mut steps[k];
        step.latencies.record(now.saturating_sub(sent));
        if let Some(observed) = observed {
            step.to_server.record(observed.saturating_sub(sent));
            step.from_server.record(now.saturating_sub(observed));
        }
        step.last_us = step.last_us.max(now);
        drop(steps);
        self.received.fetch_add(1, Ordering::Relaxed);
    }

    /// Every shard's steps, merged.
    fn merged(&self) -> Vec<Step> {
        let mut all: Vec<Step> = Vec::new();
        for shard in &self.shards {
            let steps = shard.0.lock().unwrap_or_else(PoisonError::into_inner);
            if all.len() < steps.len() {
                all.resize(steps.len(), Step::default());
            }
            for (a, b) in all.iter_mut().zip(steps.iter()) {
                a.latencies.merge(&b.latencies);
                a.to_server.merge(&b.to_server);
                a.from_server.merge(&b.from_server);
                a.last_us = a.last_us.max(b.last_us);
            }
        }
        all
    }
}

/// Phases the subscribers follow: record into step `k` while `Measure(k)`.
#[derive(Clone, Copy, Debug)]
pub enum Phase {
    Idle,
    Measure(usize),
}

/// The phase as every subscriber reads it with each frame: 0 idle, `k + 1` while measuring step
/// `k`. An atomic rather than a channel: a `watch` receiver polled beside the socket took its
/// channel's lock to register a waker on every frame (7% of the load generator's CPU, session 27).
#[derive(Default)]
struct SharedPhase(AtomicUsize);

impl SharedPhase {
    fn set(&self, p: Phase) {
        let v = match p {
            Phase::Idle => 0,
            Phase::Measure(k) => k + 1,
        };
        self.0.store(v, Ordering::Release);
    }

    fn get(&self) -> Phase {
        match self.0.load(Ordering::Acquire) {
            0 => Phase::Idle,
            v => Phase::Measure(v - 1),
        }
    }
}

/// Connections open and subscribed, reading in their own tasks.
pub struct Subscribers {
    /// Each returns the resyncs its subscriber was sent.
    tasks: Vec<tokio::task::JoinHandle<anyhow::Result<u64>>>,
    phase: Arc<SharedPhase>,
    recorder: Arc<Recorder>,
    /// One per task: sent (or dropped) to close its socket and end the task.
    stops: Vec<oneshot::Sender<()>>,
}

/// A local source address for connection `i`: 20,000 per address so that past ~28k connections
/// the ephemeral ports of one source address do not run out, and a block of addresses of its own
/// per run (127.x.0.y, x from the process id): a run right after another of 19,000 sockets found
/// that run's ports still in TIME_WAIT on 127.0.0.1 and failed to bind.
fn source_addr(i: usize) -> SocketAddr {
    let run = (std::process::id() % 250) as u8 + 1;
    SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, run, 0, 1 + (i / 20_000) as u8)),
        0,
    )
}

impl Subscribers {
    /// Opens one socket per entry of `topics`, authenticated with `token`, each subscribed to its
    /// topic; returns once every one has its `subscribed` reply.
    pub async fn open(
        ws_url: &str,
        token: &str,
        topics: Vec<String>,
    ) -> anyhow::Result<Subscribers> {
        let phase = Arc::new(SharedPhase::default());
        let recorder = Arc::new(Recorder::new());
        let host = ws_url
            .trim_start_matches("ws://")
            .split('/')
            .next()
            .context("ws url")?
            .to_owned();
        let server: SocketAddr = host.parse().context("server address")?;
        let url = format!("{ws_url}?access_token={token}");
        let ready = Arc::new(AtomicU64::new(0));
        let mut tasks = Vec::with_capacity(topics.len());
        let mut stops = Vec::with_capacity(topics.len());
        // Opened in waves so the accept queue never overflows.
        let n = topics.len();
        for (i, topic) in topics.into_iter().enumerate() {
            let url = url.clone();
            let phase = phase.clone();
            let recorder = recorder.clone();
            let (stop_tx, stop) = oneshot::channel();
            stops.push(stop_tx);
            let ready_one = ready.clone();
            tasks.push(tokio::spawn(async move {
                let socket = TcpSocket::new_v4()?;
                // Binding picks the port itself, and without this it will not take one that a
                // previous run's socket holds in TIME_WAIT: back-to-back runs of 19,000 ran out
                // of ports and the second one hung.
                socket.set_reuseaddr(true)?;
                socket.bind(source_addr(i))?;
                let tcp = socket.connect(server).await?;
                tcp.set_nodelay(true)?;
                let (ws, _) = tokio_tungstenite::client_async_with_config(
                    url.as_str(),
                    tcp,
                    Some(subscriber_config()),
                )
                .await?;
                subscriber(ws, topic, phase, recorder, stop, ready_one).await
            }));
            if i % 500 == 499 {
                while ready.load(Ordering::Relaxed) + 200 < (i + 1) as u64 {
                    if let Some(done) = tasks.iter().position(|t| t.is_finished()) {
                        let failed = tasks.swap_remove(done).await?;
                        bail!("a subscriber ended while opening: {:?}", failed.err());
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while ready.load(Ordering::Relaxed) < n as u64 {
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "only {} of {n} subscribers were ready after 120 s",
                    ready.load(Ordering::Relaxed)
                );
            }
            if let Some(done) = tasks.iter().position(|t| t.is_finished()) {
                let failed = tasks.swap_remove(done).await?;
                bail!("a subscriber ended early: {:?}", failed.err());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Ok(Subscribers {
            tasks,
            phase,
            recorder,
            stops,
        })
    }

    pub fn count(&self) -> usize {
        self.tasks.len()
    }

    /// Stamped frames received by all subscribers together, to tell when a step has drained.
    pub fn received(&self) -> u64 {
        self.recorder.received.load(Ordering::Relaxed)
    }

    pub fn set_phase(&self, p: Phase) {
        self.phase.set(p);
    }

    /// Stops every subscriber and merges what they saw.
    pub async fn finish(self) -> anyhow::Result<Seen> {
        for stop in self.stops {
            let _ = stop.send(());
        }
        let mut resyncs = 0;
        for t in self.tasks {
            resyncs += t.await??;
        }
        Ok(Seen {
            steps: self.recorder.merged(),
            resyncs,
        })
    }
}

/// A bench subscriber's socket settings. tungstenite's default read buffer is 128 KiB, and it
/// zero-fills the free part of it before every read: a profile of the users scenario had that
/// `memset` as the load generator's largest cost (17% of its CPU), which it charged to every frame
/// on the cores the server shares. Frames here are under 2 KiB.
fn subscriber_config() -> tokio_tungstenite::tungstenite::protocol::WebSocketConfig {
    let mut config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default();
    config.read_buffer_size = 4096;
    config
}

async fn subscriber<S>(
    mut ws: tokio_tungstenite::WebSocketStream<S>,
    topic: String,
    phase: Arc<SharedPhase>,
    recorder: Arc<Recorder>,
    mut stop: oneshot::Receiver<()>,
    ready: Arc<AtomicU64>,
) -> anyhow::Result<u64>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let sub = json!({"type": "subscribe", "id": "b", "topics": [topic]}).to_string();
    ws.send(Message::text(sub)).await?;
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(t))) if t.as_str().contains("\"subscribed\"") => break,
            Some(Ok(Message::Text(t))) if t.as_str().contains("\"error\"") => {
                bail!("subscribe refused: {}", t.as_str())
            }
            Some(Ok(_)) => {}
            other => bail!("socket ended before subscribed: {other:?}"),
        }
    }
    ready.fetch_add(1, Ordering::Relaxed);
    let mut resyncs = 0;
    loop {
        tokio::select! {
            // The socket first: the stop is polled only once it has nothing to read, and a
            // oneshot's poll is a look at its state, with no lock.
            biased;
            msg = ws.next() => match msg {
                Some(Ok(Message::Text(t))) => {
                    let t = t.as_str();
                    // Only frames of a text change count: a presence change polled meanwhile
                    // carries the current (old) stamp too, and is not a delivery of it.
                    if let Some(at) = FIND_STAMP.find(t.as_bytes()).filter(|_| changes_text(t)) {
                        let digits = &t[at + STAMP.len()..];
                        let end = digits.find('"').unwrap_or(digits.len());
                        if let Ok(sent) = digits[..end].parse::<u64>()
                            && let Phase::Measure(k) = phase.get()
                        {
                            let now = now_us();
                            recorder.record(k, sent, observed_at_us(t), now);
                        }
                    } else if t.contains("\"resync\"") {
                        resyncs += 1;
                    }
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => bail!("socket error: {e}"),
                None => bail!("server closed the socket"),
            },
            _ = &mut stop => {
                let _ = ws.close(None).await;
                return Ok(resyncs);
            }
        }
    }
}

/// A status frame's `observed_at`, in µs since the epoch.
fn observed_at_us(frame: &str) -> Option<u64> {
    let rest = &frame[FIND_OBSERVED.find(frame.as_bytes())? + OBSERVED_KEY.len()..];
    let at = chrono::DateTime::parse_from_rfc3339(&rest[..rest.find('"')?]).ok()?;
    u64::try_from(at.timestamp_micros()).ok()
}

/// True when a status frame's `changed` names `text`.
fn changes_text(frame: &str) -> bool {
    FIND_CHANGED
        .find(frame.as_bytes())
        .and_then(|at| {
            let rest = &frame[at..];
            memchr::memchr(b']', rest.as_bytes()).map(|end| rest[..end].contains("\"text\""))
        })
        .unwrap_or(false)
}

/// Posts signed `user_change` events for the workspace's users.
pub struct Driver {
    poster: Poster,
    /// The server's `host:port`, for the requests' Host header.
    host: String,
    team: String,
    secret: String,
    users: Vec<Value>,
    /// Each user's JSON with a `:zap:` emoji, split where the status text goes.
    templates: Vec<(String, String)>,
    pub sent: Arc<AtomicU64>,
    /// Last stamp used: stamps are unique, so no change repeats the status it replaces.
    last_stamp: AtomicU64,
}

impl Driver {
    /// Loads the users as Slack serves them (from the simulator's `users.list`).
    pub async fn new(
        http: &reqwest::Client,
        base: &str,
        sim_url: &str,
        team: &str,
        secret: &str,
    ) -> anyhow::Result<Driver> {
        let token = format!("xoxb-sim-{}", team.to_lowercase());
        let mut users = Vec::new();
        let mut cursor = String::new();
        loop {
            let v: Value = http
                .get(format!("{}/users.list", sim_url.trim_end_matches('/')))
                .bearer_auth(&token)
                .query(&[("limit", "200"), ("cursor", cursor.as_str())])
                .send()
                .await?
                .json()
                .await?;
            if v["ok"] != true {
                bail!("users.list: {v}");
            }
            users.extend(
                v["members"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|u| {
                        u["is_bot"] != true && u["deleted"] != true && u["id"] != "USLACKBOT"
                    }),
            );
            cursor = v["response_metadata"]["next_cursor"]
                .as_str()
                .unwrap_or("")
                .to_owned();
            if cursor.is_empty() {
                break;
            }
        }
        let templates = users.iter().map(template).collect::<anyhow::Result<_>>()?;
        let host = base.trim_start_matches("http://").to_owned();
        let server: SocketAddr = host.parse().context("server address")?;
        Ok(Driver {
            poster: Poster::connect(server, POST_CONNECTIONS).await?,
            host,
            team: team.to_owned(),
            secret: secret.to_owned(),
            users,
            templates,
            sent: Arc::default(),
            last_stamp: AtomicU64::new(0),
        })
    }

    /// Posts that were not answered with a 2xx.
    pub fn failed(&self) -> u64 {
        self.poster.failed.load(Ordering::Relaxed)
    }

    pub fn users(&self) -> &[Value] {
        &self.users
    }

    /// Changes user `idx`'s status text to a send-time stamp, without waiting for the answer.
    fn fire(&self, idx: usize, counter: u64) {
        let (head, tail) = &self.templates[idx];
        let stamp = unique_stamp(&self.last_stamp);
        let now = stamp / 1_000_000;
        // The envelope around a pre-rendered user: building and serializing the user's JSON tree
        // per change was a tenth of the load generator's CPU.
        let body = format!(
            r#"{{"token":"bench","team_id":"{team}","api_app_id":"A0BENCH","type":"event_callback","event_id":"EvB{counter:012}","event_time":{now},"event":{{"type":"user_change","user":{head}bench {stamp}{tail},"event_ts":"{now}.000100"}}}}"#,
            team = self.team,
        );
        let ts = now.to_string();
        let sig = sign(&self.secret, &ts, body.as_bytes());
        self.poster.post(post::request(
            &self.host,
            "/slack/events",
            &[
                ("x-slack-request-timestamp", &ts),
                ("x-slack-signature", &sig),
            ],
            &body,
        ));
    }

    /// Sends `rate` changes per second for `secs` (see [`open_loop`]); `pick(n)` chooses the user
    /// of the n-th change. Returns changes sent per user.
    pub async fn drive(
        &self,
        rate: f64,
        secs: f64,
        mut pick: impl FnMut(u64) -> usize,
    ) -> Vec<u64> {
        let mut per_user = vec![0u64; self.users.len()];
        open_loop(rate, secs, |n| {
            let idx = pick(n);
            per_user[idx] += 1;
            self.fire(idx, self.sent.fetch_add(1, Ordering::Relaxed));
        })
        .await;
        per_user
    }
}

/// A user's JSON with a `:zap:` emoji and the status text cut out: `(before, after)`, so that
/// `before + text + after` is the user with that (JSON-safe) text.
fn template(user: &Value) -> anyhow::Result<(String, String)> {
    const MARK: &str = "@@chex-bench-stamp@@";
    let mut user = user.clone();
    user["profile"]["status_text"] = json!(MARK);
    user["profile"]["status_emoji"] = json!(":zap:");
    let text = user.to_string();
    let (head, tail) = text
        .split_once(MARK)
        .context("user JSON without its status text")?;
    Ok((head.to_owned(), tail.to_owned()))
}

/// Calls `fire(n)` `rate` times a second for `secs`, open loop: the schedule is fixed in advance
/// and a late tick fires everything due, so a slow server cannot slow the sender down.
pub async fn open_loop(rate: f64, secs: f64, mut fire: impl FnMut(u64)) {
    let total = (rate * secs).round() as u64;
    let start = tokio::time::Instant::now();
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut n = 0u64;
    while n < total {
        tick.tick().await;
        let due = ((start.elapsed().as_secs_f64() * rate) as u64).min(total);
        while n < due {
            fire(n);
            n += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_recorded_on_several_threads_merge_into_one_step() {
        let recorder = Arc::new(Recorder::new());
        let threads: Vec<_> = (0..RECORDER_SHARDS + 3)
            .map(|i| {
                let recorder = recorder.clone();
                std::thread::spawn(move || {
                    for n in 0..100u64 {
                        recorder.record(1, 1_000, Some(1_000 + n), 2_000 + i as u64);
                    }
                    recorder.record(0, 1_000, None, 1_500);
                })
            })
            .collect();
        for t in threads {
            t.join().expect("recording thread");
        }
        let steps = recorder.merged();
        let threads = (RECORDER_SHARDS + 3) as u64;
        assert_eq!(recorder.received.load(Ordering::Relaxed), 101 * threads);
        assert_eq!(steps.len(), 2);
        assert_eq!(steps[0].latencies.count(), threads);
        assert_eq!(steps[0].to_server.count(), 0);
        assert_eq!(steps[0].last_us, 1_500);
        assert_eq!(steps[1].latencies.count(), 100 * threads);
        assert_eq!(steps[1].from_server.count(), 100 * threads);
        assert_eq!(steps[1].to_server.max_us(), 99);
        assert_eq!(steps[1].last_us, 2_000 + threads - 1);
    }

    #[test]
    fn a_frames_observation_time_is_read_to_the_microsecond() {
        let frame = r#"{"type":"status","topic":"user:7","seq":3,"status":{"text":"bench 1"},"changed":["text"],"observed_at":"2026-12-06T13:59:52.123456Z","source":"slack"}"#;
        let want = chrono::DateTime::parse_from_rfc3339("2026-12-06T13:59:52Z")
            .map(|t| t.timestamp_micros() as u64 + 123_456)
            .ok();
        assert_eq!(observed_at_us(frame), want);
        assert_eq!(observed_at_us(r#"{"type":"status"}"#), None);
        assert_eq!(observed_at_us(r#"{"observed_at":"yesterday"}"#), None);
        assert_eq!(
            observed_at_us(r#"{"observed_at":"2026-12-06T13:59:52Z"#),
            None
        );
    }
}
