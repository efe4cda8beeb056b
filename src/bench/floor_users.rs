//! The users scenario's floor: a persisted change's whole way with nothing of Chex in the way.
//!
//! A bare server in a child process (`chex bench-floor-users`) takes the same signed Slack
//! `user_change` posts over HTTP/1.1, checks their signature, parses the event for the user and
//! the status text, appends it to a SQLite file with Chex's schema (made by Chex's migrations:
//! the same table and five indexes) in group commits on one writer thread, and then writes the
//! status frame, serialized as the hub does, to the one socket subscribed to that user with one
//! blocking `write`. A thread per HTTP connection (the bench opens 16), one accepting
//! subscribers, one writer; no runtime, no pipeline diff, no hub, no cache of known users.
//!
//! It leaves out what is not a change's own work, which makes it a lower bound: the read of each
//! person's last entry (seqs are counted in memory), the foreign key's check, the pause Chex
//! takes to start the WAL over. Commits are spaced, and checkpoints passed, as Chex does them.
//! `chex p99 / floor p99` from one run says how much of the users figure is Chex.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Instant;

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Deserialize;

use super::floor::{Peer, subscribe, subscribed_reply, ws_text_frame};
use crate::domain::{Field, PersonCard, Source, Status, StatusEvent, now};
use crate::poll::pipeline::COMMIT_SPACING;
use crate::sources::slack::events::verify;
use crate::store::CHECKPOINT_EVERY;

/// The environment variable that hands the child the workspace's signing secret.
const SECRET_VAR: &str = "CHEX_FLOOR_SIGNING_SECRET";

/// The users floor as a child process, so that its sockets and CPU are its own; killed on drop.
pub struct UsersFloorProcess {
    child: Child,
    /// Held open: the child exits when it closes.
    _stdin: ChildStdin,
    pub ws: String,
    /// Where the Slack events go: `http://host:port`.
    pub http: String,
}

impl UsersFloorProcess {
    pub fn spawn(signing_secret: &str) -> anyhow::Result<UsersFloorProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("bench-floor-users")
            .env(SECRET_VAR, signing_secret)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().context("floor stdin")?;
        let mut out = BufReader::new(child.stdout.take().context("floor stdout")?);
        let (mut ws, mut http) = (String::new(), String::new());
        out.read_line(&mut ws)?;
        out.read_line(&mut http)?;
        let (ws, http) = (ws.trim().to_owned(), http.trim().to_owned());
        anyhow::ensure!(
            ws.starts_with("ws://") && http.starts_with("http://"),
            "the users floor said {ws:?}, {http:?}"
        );
        // Keep reading: a closed pipe would fail anything it prints later.
        std::thread::spawn(move || out.lines().for_each(drop));
        Ok(UsersFloorProcess {
            child,
            _stdin: stdin,
            ws,
            http,
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for UsersFloorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // A killed child cannot clean up after itself: its database goes here.
        let _ = std::fs::remove_dir_all(scratch_dir(self.child.id()));
    }
}

/// Where the floor process `pid` keeps its database.
fn scratch_dir(pid: u32) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("chex-floor-users-{pid}"))
}

/// One verified change on its way to the writer.
struct Change {
    user: String,
    text: String,
    observed_at: DateTime<Utc>,
}

/// The child's body (`chex bench-floor-users`): prints its WebSocket URL and its HTTP URL, then
/// serves until its stdin closes.
pub async fn serve() -> anyhow::Result<()> {
    let secret = std::env::var(SECRET_VAR).with_context(|| format!("{SECRET_VAR} is not set"))?;
    let dir = scratch_dir(std::process::id());
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("floor.db");
    let db = open_database(&path).await?;

    // Checkpoints off the writer's thread, as Chex runs them: without them the WAL grows by
    // ~16 KB per change, and at 8,000 changes/s the writer's writes stalled behind the kernel's
    // writeback of it (this floor's p99 at 8,000/s was 65–99 ms). A PASSIVE pass never waits for
    // the writer, and the first write after a complete one starts the WAL over.
    let checkpoints = rusqlite::Connection::open(&path)?;
    std::thread::Builder::new()
        .name("chex-floor-checkpoint".into())
        .spawn(move || {
            while checkpoints
                .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
                .is_ok()
            {
                std::thread::sleep(CHECKPOINT_EVERY);
            }
        })?;

    let subscribers = Arc::new(Mutex::new(HashMap::new()));
    let ws = TcpListener::bind("127.0.0.1:0")?;
    super::floor::listen_deep(&ws)?;
    let http = TcpListener::bind("127.0.0.1:0")?;
    println!("ws://{}/ws", ws.local_addr()?);
    println!("http://{}", http.local_addr()?);
    std::io::stdout().flush()?;

    let (tx, rx) = mpsc::channel::<Change>();
    let mine = subscribers.clone();
    std::thread::Builder::new()
        .name("chex-floor-writer".into())
        .spawn(move || {
            if let Err(e) = write_loop(rx, db, mine) {
                eprintln!("users floor: the writer stopped: {e:#}");
            }
        })?;
    std::thread::Builder::new()
        .name("chex-floor-accept".into())
        .spawn(move || accept_subscribers(ws, subscribers))?;
    let secret = Arc::new(secret);
    std::thread::Builder::new()
        .name("chex-floor-http".into())
        .spawn(move || {
            for stream in http.incoming().flatten() {
                let (secret, tx) = (secret.clone(), tx.clone());
                std::thread::spawn(move || {
                    if let Err(e) = take_posts(stream, &secret, &tx) {
                        eprintln!("users floor: a sender's connection failed: {e:#}");
                    }
                });
            }
        })?;
    // Until the bench lets go of stdin.
    tokio::task::spawn_blocking(|| std::io::stdin().lock().lines().for_each(drop)).await?;
    let _ = std::fs::remove_dir_all(dir);
    Ok(())
}

/// Creates the floor's database at `path` with Chex's schema, by Chex's migrations (the appends
/// are the floor's own), and opens the writer's connection to it.
async fn open_database(path: &std::path::Path) -> anyhow::Result<rusqlite::Connection> {
    let store = crate::store::Store::connect(&format!("sqlite://{}?mode=rwc", path.display()))
        .await
        .context("creating the floor's database")?;
    store.migrate().await?;
    drop(store);
    let db = rusqlite::Connection::open(path)?;
    db.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = OFF;
         PRAGMA cache_size = -32768;
         PRAGMA wal_autocheckpoint = 0;",
    )?;
    Ok(db)
}

/// Shakes hands, reads each subscriber's subscribe for its topic, and files the socket under it.
fn accept_subscribers(listener: TcpListener, subscribers: Arc<Mutex<HashMap<String, Peer>>>) {
    // The person's status as a snapshot of one, as Chex answers: the largest segment a subscriber
    // has received sets how its kernel ACKs what comes after (`floor`).
    for stream in listener.incoming().flatten() {
        match subscribe(stream, person_reply) {
            Ok((peer, topic)) => {
                if let Ok(mut s) = subscribers.lock() {
                    s.insert(topic, peer);
                }
            }
            Err(e) => eprintln!("users floor: a subscriber failed its handshake: {e:#}"),
        }
    }
}

/// `subscribed` to a user's topic, its snapshot that user's status. The floor numbers people as
/// their first change arrives, so the snapshot's stand-in has none yet.
fn person_reply(topic: &str) -> String {
    let user = topic.strip_prefix("slack:").unwrap_or(topic);
    subscribed_reply(topic, [card(0, user)])
}

/// Serves one sender's connection: each request is read whole, checked and queued, and answered
/// `200` at once (as Chex answers a taken event before committing it) or `401`.
fn take_posts(stream: TcpStream, secret: &str, tx: &mpsc::Sender<Change>) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut out = stream.try_clone()?;
    let mut requests = BufReader::with_capacity(64 * 1024, stream);
    let mut line = String::new();
    let mut body = Vec::new();
    loop {
        line.clear();
        if requests.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let (mut length, mut ts, mut sig) = (0usize, String::new(), String::new());
        loop {
            line.clear();
            if requests.read_line(&mut line)? == 0 {
                return Ok(());
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                let value = value.trim();
                match name.to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().context("content-length")?,
                    "x-slack-request-timestamp" => ts = value.to_owned(),
                    "x-slack-signature" => sig = value.to_owned(),
                    _ => {}
                }
            }
        }
        body.resize(length, 0);
        requests.read_exact(&mut body)?;
        let observed_at = now();
        let signed = verify(secret, Some(&ts), Some(&sig), &body, Utc::now().timestamp()).is_ok();
        let change = serde_json::from_slice::<Envelope>(&body).ok();
        let status = match (signed, change) {
            (true, Some(e)) => {
                let _ = tx.send(Change {
                    user: e.event.user.id,
                    text: e.event.user.profile.status_text,
                    observed_at,
                });
                "200 OK"
            }
            _ => "401 Unauthorized",
        };
        write!(out, "HTTP/1.1 {status}\r\ncontent-length: 0\r\n\r\n")?;
    }
}

/// What the floor reads of an event: whose status, and its text.
#[derive(Deserialize)]
struct Envelope {
    event: Event,
}

#[derive(Deserialize)]
struct Event {
    user: User,
}

#[derive(Deserialize)]
struct User {
    id: String,
    profile: Profile,
}

#[derive(Deserialize)]
struct Profile {
    status_text: String,
}

/// What the floor's writer keeps of a user: its person, its last entry's text, and that entry's
/// seq and time.
struct Head {
    card: Arc<PersonCard>,
    text: String,
    last: Option<(i64, DateTime<Utc>)>,
}

/// Group commits: everything queued goes into one transaction, then each change's frame goes to
/// its subscriber.
fn write_loop(
    changes: mpsc::Receiver<Change>,
    mut db: rusqlite::Connection,
    subscribers: Arc<Mutex<HashMap<String, Peer>>>,
) -> anyhow::Result<()> {
    // Per user: its person (id and card) and its last seq, text and time.
    let mut people: HashMap<String, Head> = HashMap::new();
    let mut frame = Vec::new();
    let mut batch = Vec::new();
    let mut last_start = Instant::now();
    while let Ok(first) = changes.recv() {
        // Chex's group-commit rule: commits start at least this far apart, so that under load
        // each takes what arrived over the interval (with none, this floor's p99 at 8,000/s was
        // three times Chex's: a commit per few changes, each with a commit's fixed cost).
        std::thread::sleep((last_start + COMMIT_SPACING).saturating_duration_since(Instant::now()));
        last_start = Instant::now();
        batch.push(first);
        batch.extend(changes.try_iter());
        let mut events = Vec::with_capacity(batch.len());
        let tx = db.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        {
            let mut insert = tx.prepare_cached(
                "INSERT INTO status_events (person_id, seq, observed_at, presence, status_text, \
                 status_emoji, status_expires_at, dnd_enabled, dnd_until, stale, changed, \
                 previous, extra, source) \
                 VALUES (?1, ?2, ?3, 'active', ?4, ':zap:', NULL, 0, NULL, 0, 'text', ?5, NULL, \
                 'slack')",
            )?;
            for change in batch.drain(..) {
                let next_id = people.len() as i64 + 1;
                let head = people.entry(change.user.clone()).or_insert_with(|| Head {
                    card: card(next_id, &change.user),
                    text: String::new(),
                    last: None,
                });
                // Chex's rule (`store::next_entry`): `(person, observed_at)` is unique, and two
                // posts about one user can be read in the same microsecond by two of this
                // floor's connection threads. Without the nudge the insert failed, the writer
                // stopped, and the step lost the rest of its changes (73,817 of 80,000 once at
                // 8,000/s, session 24).
                let (seq, at) = crate::store::next_entry(head.last, change.observed_at);
                head.last = Some((seq, at));
                let previous = serde_json::json!({ "text": head.text }).to_string();
                insert.execute(rusqlite::params![
                    head.card.id,
                    seq,
                    at.to_rfc3339_opts(SecondsFormat::AutoSi, false),
                    change.text,
                    previous,
                ])?;
                head.text.clone_from(&change.text);
                events.push(StatusEvent {
                    id: tx.last_insert_rowid(),
                    person: head.card.clone(),
                    seq,
                    status: Status {
                        text: change.text,
                        emoji: ":zap:".into(),
                        ..Status::default()
                    },
                    changed: vec![Field::Text],
                    previous: Default::default(),
                    observed_at: at,
                    source: Source::Slack,
                });
            }
        }
        tx.commit()?;
        let Ok(mut sockets) = subscribers.lock() else {
            anyhow::bail!("the subscribers' lock is poisoned");
        };
        for event in events {
            let topic = topic_of(&event.person.name);
            ws_text_frame(event.to_json(&topic), &mut frame);
            // A socket that fails (its subscriber closed) is dropped.
            if let Some(peer) = sockets.get_mut(&topic)
                && peer.get_mut().write_all(&frame).is_err()
            {
                sockets.remove(&topic);
            }
        }
    }
    Ok(())
}

/// The topic the bench subscribes to for a Slack user on the floor.
pub fn topic_of(slack_user: &str) -> String {
    format!("slack:{slack_user}")
}

fn card(id: i64, slack_user: &str) -> Arc<PersonCard> {
    Arc::new(PersonCard {
        id,
        organization_id: 1,
        topic: PersonCard::topic_for(id),
        team_id: Some(crate::demo::DEMO_TEAM.into()),
        name: slack_user.to_owned(),
        display_name: slack_user.to_owned(),
        image_72: String::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_subscriber_gets_its_users_status_as_a_snapshot_of_one() {
        let reply: serde_json::Value =
            serde_json::from_str(&person_reply("slack:U1")).expect("the reply is JSON");
        assert_eq!(reply["type"], "subscribed");
        assert_eq!(reply["topics"], serde_json::json!(["slack:U1"]));
        let snapshot = reply["snapshot"].as_array().expect("a snapshot");
        assert_eq!(snapshot.len(), 1);
        assert_eq!(snapshot[0]["user"]["name"], "U1");
        assert_eq!(snapshot[0]["topic"], "slack:U1");
    }

    /// Two posts about one user, read by two connection threads in the same microsecond: both are
    /// stored, a microsecond apart, and the writer goes on.
    #[tokio::test]
    async fn two_changes_to_one_user_in_one_microsecond_are_both_stored() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("chex-floor-test-{}", rand::random::<u64>()));
        std::fs::create_dir_all(&dir)?;
        let path = dir.join("floor.db");
        let db = open_database(&path).await?;
        let (tx, rx) = mpsc::channel();
        let at = now();
        for text in ["first", "second"] {
            tx.send(Change {
                user: "U1".into(),
                text: text.into(),
                observed_at: at,
            })?;
        }
        drop(tx);
        let writer = std::thread::spawn(move || write_loop(rx, db, Arc::default()));
        let ended = writer
            .join()
            .map_err(|_| anyhow::anyhow!("the writer panicked"))?;
        let stored: Vec<(i64, String)> = rusqlite::Connection::open(&path)?
            .prepare("SELECT seq, status_text FROM status_events ORDER BY seq")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        std::fs::remove_dir_all(&dir)?;
        ended?;
        assert_eq!(stored, [(1, "first".into()), (2, "second".into())]);
        Ok(())
    }
}
