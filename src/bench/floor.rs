//! The floor: what fan-out costs on this machine with nothing of Chex in the way.
//!
//! A bare server in a child process, one writer thread per core (as many as Chex's runtime has
//! workers; `--floor-writers` sets another number), accepts the same subscribers, answers their
//! subscribe, and then, for each change, serializes one status frame the way the hub does and
//! writes it to every socket with one blocking `write` each — no runtime, no channels, no
//! parsing, no store. The subscribers are the bench's own, timing frames exactly as they time
//! Chex's. So `chex p99 / floor p99` from one run says how much of a latency figure is Chex and
//! how much is the kernel's loopback path and the load generator sharing the cores; across
//! machines, only that ratio is comparable.
//!
//! Its `subscribed` carries a snapshot of the team as Chex's does (one status event per person,
//! `--users` of them), not an empty one: the subscriber's kernel sizes its delayed ACKs by the
//! largest segment the connection has received, and after a snapshot's large segment it ACKs each
//! smaller status frame as soon as it is read. Until session 30 the floor's empty snapshot spared
//! its subscribers that ACK, a fifth of the load generator's CPU per frame read from Chex.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use tokio_tungstenite::tungstenite::{self, Message};

use crate::domain::{Field, PersonCard, Source, Status, StatusEvent, now};

/// The environment variable that tells the child how many people its snapshot holds.
const TEAM_VAR: &str = "CHEX_FLOOR_TEAM";
/// The environment variable that tells the child how many writer threads to run.
const WRITERS_VAR: &str = "CHEX_FLOOR_WRITERS";

/// The writer threads a floor runs for `requested` (`--floor-writers`): 0 means one per core, as
/// many as Chex's runtime has workers. One is Chex's own shape, a single fan-out thread writing
/// every socket: the readers pay more per frame when every frame comes from one core (What
/// session 31 tried, docs/benchmarks.md).
pub fn writers(requested: usize) -> usize {
    match requested {
        0 => std::thread::available_parallelism().map_or(2, |n| n.get()),
        n => n,
    }
}

/// The floor server as a child process (`chex bench-floor`), so that, like Chex's, its sockets
/// and CPU are its own; killed on drop.
pub struct FloorProcess {
    child: Child,
    stdin: ChildStdin,
    pub ws: String,
}

impl FloorProcess {
    /// Starts the floor server with `writers` writer threads ([`writers`]), its subscribers'
    /// snapshot holding `team` people.
    pub fn spawn(team: usize, writers: usize) -> anyhow::Result<FloorProcess> {
        let mut child = Command::new(std::env::current_exe()?)
            .arg("bench-floor")
            .env(TEAM_VAR, team.to_string())
            .env(WRITERS_VAR, writers.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()?;
        let stdin = child.stdin.take().context("floor stdin")?;
        let mut first = String::new();
        BufReader::new(child.stdout.take().context("floor stdout")?).read_line(&mut first)?;
        let ws = first.trim().to_owned();
        anyhow::ensure!(ws.starts_with("ws://"), "the floor server said {ws:?}");
        Ok(FloorProcess { child, stdin, ws })
    }

    /// One change: the server writes a frame stamped `stamp` to every socket.
    pub fn change(&mut self, stamp: u64) -> anyhow::Result<()> {
        writeln!(self.stdin, "{stamp}")?;
        Ok(self.stdin.flush()?)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for FloorProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The floor server's body (`chex bench-floor`): prints its WebSocket URL, then takes one stamp
/// per line on stdin; returns at end of input.
pub fn serve() -> anyhow::Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    listen_deep(&listener)?;
    println!("ws://{}/ws", listener.local_addr()?);
    std::io::stdout().flush()?;
    let subscribed = team_reply(count_from_env(TEAM_VAR));
    let mut stamps = Vec::new();
    let mut lists = Vec::new();
    for _ in 0..writers(count_from_env(WRITERS_VAR)) {
        let (tx, rx) = mpsc::channel::<u64>();
        let sockets = Arc::new(Mutex::new(Vec::new()));
        let mine = sockets.clone();
        std::thread::Builder::new()
            .name("chex-floor".into())
            .spawn(move || write_loop(rx, mine))?;
        stamps.push(tx);
        lists.push(sockets);
    }
    std::thread::Builder::new()
        .name("chex-floor-accept".into())
        .spawn(move || accept_loop(listener, lists, &subscribed))?;
    for line in std::io::stdin().lock().lines() {
        let Ok(stamp) = line?.trim().parse::<u64>() else {
            continue;
        };
        for tx in &stamps {
            let _ = tx.send(stamp);
        }
    }
    Ok(())
}

/// A count the bench handed the child in `var`; 0 where it is missing or unreadable.
fn count_from_env(var: &str) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// std listens with a backlog of 128, and one thread accepts: the bench opens sockets 200 ahead
/// of their replies, and an overflowing queue resets connections. Listening again resizes it.
pub(super) fn listen_deep(listener: &TcpListener) -> anyhow::Result<()> {
    socket2::SockRef::from(listener)
        .listen(4096)
        .context("listen")
}

/// Accepts subscribers, shakes hands, answers the subscribe, and hands the raw socket to a writer.
fn accept_loop(listener: TcpListener, lists: Vec<Arc<Mutex<Vec<Peer>>>>, subscribed: &str) {
    let mut next = 0;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        match subscribe(stream, |_| subscribed.to_owned()) {
            Ok((raw, _topic)) => {
                if let Ok(mut l) = lists[next % lists.len()].lock() {
                    l.push(raw);
                }
                next += 1;
            }
            Err(e) => eprintln!("floor: a subscriber failed its handshake: {e:#}"),
        }
    }
}

/// A subscribed socket; frames are written to it raw (`get_mut`), past tungstenite.
pub(super) type Peer = tungstenite::WebSocket<TcpStream>;

/// Shakes hands and answers the subscriber's subscribe with what `subscribed` makes of the first
/// topic it named; returns the socket and that topic.
pub(super) fn subscribe(
    stream: TcpStream,
    subscribed: impl FnOnce(&str) -> String,
) -> anyhow::Result<(Peer, String)> {
    stream.set_nodelay(true)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    let mut ws = tungstenite::accept(stream).map_err(|e| anyhow::anyhow!("{e}"))?;
    let first = ws.read().context("reading the subscribe frame")?;
    let sub: serde_json::Value = first
        .to_text()
        .ok()
        .and_then(|t| serde_json::from_str(t).ok())
        .context("the first frame is not JSON")?;
    anyhow::ensure!(sub["type"] == "subscribe", "expected a subscribe frame");
    let topic = sub["topics"][0].as_str().unwrap_or_default().to_owned();
    ws.send(Message::text(subscribed(&topic)))?;
    ws.flush()?;
    Ok((ws, topic))
}

/// `subscribed` to `topic` with a snapshot of `people`, each a baseline status event serialized
/// as the hub serializes them, sent (as Chex sends it) as one message.
pub(super) fn subscribed_reply(
    topic: &str,
    people: impl IntoIterator<Item = Arc<PersonCard>>,
) -> String {
    let snapshot: Vec<String> = people
        .into_iter()
        .map(|person| {
            StatusEvent {
                id: person.id,
                person,
                seq: 1,
                status: Status {
                    text: "In a meeting".into(),
                    emoji: ":calendar:".into(),
                    ..Status::default()
                },
                changed: Field::ALL.to_vec(),
                previous: Default::default(),
                observed_at: now(),
                source: Source::Slack,
            }
            .to_json(topic)
        })
        .collect();
    format!(
        r#"{{"type":"subscribed","id":"b","topics":["{topic}"],"snapshot":[{}]}}"#,
        snapshot.join(",")
    )
}

/// `subscribed` to the demo team with a snapshot of `team` people.
fn team_reply(team: usize) -> String {
    let topic = format!("team:{}", crate::demo::DEMO_TEAM);
    subscribed_reply(&topic, (1..=team as i64).map(|id| Arc::new(person(id))))
}

/// The floor's stand-in for a person of the team.
fn person(id: i64) -> PersonCard {
    PersonCard {
        id,
        organization_id: 1,
        topic: PersonCard::topic_for(id),
        team_id: Some(crate::demo::DEMO_TEAM.into()),
        name: format!("floor{id}"),
        display_name: format!("Floor Reference {id}"),
        image_72: format!("https://avatars.example/floor{id}_72.png"),
    }
}

fn write_loop(stamps: mpsc::Receiver<u64>, sockets: Arc<Mutex<Vec<Peer>>>) {
    let person = Arc::new(person(1));
    let topic = format!("team:{}", crate::demo::DEMO_TEAM);
    let mut frame = Vec::new();
    while let Ok(stamp) = stamps.recv() {
        let event = StatusEvent {
            id: stamp as i64,
            person: person.clone(),
            seq: stamp as i64,
            status: Status {
                text: format!("bench {stamp}"),
                emoji: ":zap:".into(),
                ..Status::default()
            },
            changed: vec![Field::Text, Field::Emoji],
            previous: Default::default(),
            observed_at: now(),
            source: Source::Slack,
        };
        ws_text_frame(event.to_json(&topic), &mut frame);
        let Ok(mut list) = sockets.lock() else { return };
        // A socket that fails (its subscriber closed) is dropped from the list.
        list.retain_mut(|s| s.get_mut().write_all(&frame).is_ok());
    }
}

/// An unmasked, final text frame (server to client), header and payload in one buffer, encoded
/// by tungstenite as Chex's own frames are.
pub(super) fn ws_text_frame(text: String, out: &mut Vec<u8>) {
    use tungstenite::protocol::frame::Frame;
    use tungstenite::protocol::frame::coding::{Data, OpCode};
    out.clear();
    // Writing into a Vec cannot fail.
    let _ = Frame::message(text, OpCode::Data(Data::Text), true).format(out);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_length_in_the_form_its_size_needs() {
        let mut f = Vec::new();
        ws_text_frame("hi".into(), &mut f);
        assert_eq!(f, b"\x81\x02hi");
        ws_text_frame("x".repeat(300), &mut f);
        assert_eq!(&f[..4], &[0x81, 126, 1, 44]);
        assert_eq!(f.len(), 304);
    }

    #[test]
    fn the_subscribed_reply_holds_one_status_per_person_of_the_team() {
        let reply: serde_json::Value =
            serde_json::from_str(&team_reply(3)).expect("the reply is JSON");
        assert_eq!(reply["type"], "subscribed");
        let snapshot = reply["snapshot"].as_array().expect("a snapshot");
        let ids: Vec<_> = snapshot.iter().map(|e| e["user"]["id"].as_i64()).collect();
        assert_eq!(ids, [Some(1), Some(2), Some(3)]);
        assert!(snapshot.iter().all(|e| e["topic"] == reply["topics"][0]));
        let empty: serde_json::Value =
            serde_json::from_str(&team_reply(0)).expect("the reply is JSON");
        assert_eq!(empty["snapshot"], serde_json::json!([]));
    }
}
