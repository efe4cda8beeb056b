//! Fan-out: one tokio broadcast channel per topic, created by the first subscriber and removed
//! with the last.
//!
//! An event is serialized once per topic it goes out on, into a frame whose bytes are shared (a
//! `Message` clone bumps a reference count), so ten thousand subscribers of a team cost one
//! serialization, not ten thousand. A subscriber that falls more than [`CHANNEL_CAPACITY`] frames
//! behind finds a gap in its ring's positions; the connection answers that with a fresh snapshot
//! (`resync`), never a silent gap.
//!
//! A WebSocket subscriber whose ring is drained is *parked*: its task stops reading the ring, and
//! the publisher writes each new frame to its socket directly ([`outlet`], `fanout`), without
//! waking the task. Whatever the publisher cannot write (a full socket, a task mid-write) it
//! hands back, and the task reads it from the ring, in order: every delivery carries its position
//! on the topic, and each subscription knows the last position it was handed by either writer.

mod broker;
mod fanout;
pub mod outlet;

pub use broker::{Broker, LocalBroker};
pub use outlet::Outlet;

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use fanout::{Fanout, Job, Slot};

use dashmap::DashMap;
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::Message;

use crate::domain::StatusEvent;
use crate::metrics::METRICS;

/// Frames a team topic's channel holds for its slowest subscriber. Large enough to ride out a
/// burst (a whole team changing at once), small enough that a stuck socket costs bounded memory:
/// the ring is shared, so this is per topic, not per subscriber.
pub const CHANNEL_CAPACITY: usize = 1024;

/// The same for one person's topic: a person changes a few times a minute, and the ring is
/// allocated whole (~130 bytes a slot), so 1,024 slots would cost each watched person 130 KB.
/// A subscriber 64 frames behind on one person gets a one-person resync.
pub const USER_CHANNEL_CAPACITY: usize = 64;

/// One event as it goes out on one topic.
#[derive(Clone, Debug)]
pub struct Delivery {
    /// The event's stored id (its place in commit order), the SSE resume cursor.
    pub event_id: i64,
    pub person_id: i64,
    pub seq: i64,
    /// The `status` frame, serialized once and shared by every subscriber of the topic.
    pub frame: Message,
    /// Its place on the topic: 1, 2, 3… with no gaps, so a subscriber can tell a delivery it has
    /// (from the publisher's direct write) from one it missed (the ring lapped it).
    pub pos: u64,
    /// When the hub took the event: a socket measures its wake-up and write from here
    /// (`chex_ws_write_delay_seconds`).
    pub published: Instant,
}

/// The topic registry. Clone it freely.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

struct Inner {
    /// Never hold a guard of this map across an `.await`: a shard lock held while parked would
    /// block every other topic in the shard.
    topics: DashMap<String, Arc<Channel>>,
    /// The highest event id handed to [`Hub::deliver`], on any topic.
    published: AtomicI64,
    broker: Box<dyn Broker>,
    fanout: OnceLock<Fanout>,
    /// Fan-out threads to start (0: one fewer than the cores).
    fanout_threads: usize,
    /// Counts subscriptions made and dropped: while it stands still, who is watched has not
    /// changed ([`Watched::version`]).
    subscriptions_changed: AtomicU64,
}

/// One topic's channel.
struct Channel {
    tx: broadcast::Sender<Delivery>,
    /// See [`Hub::watermark`].
    watermark: AtomicI64,
    /// The last position sent; held while sending, so positions follow the ring's order.
    sent: Mutex<u64>,
    /// The WebSocket subscribers the publisher may write to directly. Copied on change only while
    /// a fan-out still holds the old list.
    slots: Mutex<Arc<Vec<Arc<Slot>>>>,
}

impl Channel {
    fn new(capacity: usize, watermark: i64) -> (Channel, broadcast::Receiver<Delivery>) {
        let (tx, rx) = broadcast::channel(capacity);
        let channel = Channel {
            tx,
            watermark: AtomicI64::new(watermark),
            sent: Mutex::new(0),
            slots: Mutex::default(),
        };
        (channel, rx)
    }

    /// A receiver and the last position sent before it: its first delivery is the one after.
    fn receiver(&self) -> (broadcast::Receiver<Delivery>, u64) {
        let sent = self.sent.lock().unwrap_or_else(|p| p.into_inner());
        (self.tx.subscribe(), *sent)
    }

    fn slots(&self) -> std::sync::MutexGuard<'_, Arc<Vec<Arc<Slot>>>> {
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Default for Hub {
    fn default() -> Self {
        Hub::new(Box::new(LocalBroker), 0)
    }
}

impl Hub {
    /// `fanout_threads`: threads writing to the parked subscribers of large topics, started with
    /// the first such delivery (0: one fewer than the cores, at least one).
    pub fn new(broker: Box<dyn Broker>, fanout_threads: usize) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                topics: DashMap::new(),
                published: AtomicI64::new(0),
                broker,
                fanout: OnceLock::new(),
                fanout_threads,
                subscriptions_changed: AtomicU64::new(0),
            }),
        }
    }

    /// Publishes an event committed on this node: to local subscribers and to other nodes.
    pub fn publish(&self, event: &Arc<StatusEvent>) {
        self.deliver(event);
        self.inner.broker.publish(event);
    }

    /// Hands an event to local subscribers only (events from other nodes come in here).
    pub fn deliver(&self, event: &StatusEvent) {
        // Before the topics are looked up: a channel made meanwhile starts its watermark here.
        self.inner.published.fetch_max(event.id, Ordering::SeqCst);
        let published = Instant::now();
        for topic in event.person.topics() {
            // Clone the channel out so no shard guard is held while serializing.
            let Some(channel) = self.inner.topics.get(&topic).map(|t| {
                t.watermark.fetch_max(event.id, Ordering::SeqCst);
                t.clone()
            }) else {
                continue;
            };
            if channel.tx.receiver_count() == 0 {
                continue;
            }
            let json = event.to_json(&topic);
            let slots = channel.slots().clone();
            let direct = (!slots.is_empty()).then(|| outlet::text_frame(json.as_bytes()));
            let pos = {
                let mut sent = channel.sent.lock().unwrap_or_else(|p| p.into_inner());
                *sent += 1;
                let delivery = Delivery {
                    event_id: event.id,
                    person_id: event.person.id,
                    seq: event.seq,
                    frame: Message::text(json),
                    pos: *sent,
                    published,
                };
                if let Ok(n) = channel.tx.send(delivery) {
                    METRICS.frames_out.add(n as u64);
                }
                *sent
            };
            if let Some(frame) = direct {
                let job = Job {
                    slots,
                    frame,
                    id: event.id,
                    pos,
                    published,
                };
                Fanout::dispatch(&self.inner.fanout, self.inner.fanout_threads, job);
            }
        }
    }

    /// Subscribes to `topic`; dropping the subscription unsubscribes.
    pub fn subscribe(&self, topic: &str) -> Subscription {
        self.subscribe_with(topic, None)
    }

    /// Subscribes a WebSocket whose socket the publisher may write to directly once the
    /// subscription is parked ([`Subscription::park`]).
    pub fn subscribe_direct(&self, topic: &str, outlet: &Arc<Outlet>) -> Subscription {
        self.subscribe_with(topic, Some(outlet.clone()))
    }

    fn subscribe_with(&self, topic: &str, outlet: Option<Arc<Outlet>>) -> Subscription {
        // The receiver is made under the shard's lock, which `release` checks under: a channel
        // being removed is never subscribed to.
        let (channel, rx, handed) = match self.inner.topics.entry(topic.to_owned()) {
            dashmap::Entry::Occupied(e) => {
                let (rx, handed) = e.get().receiver();
                (e.get().clone(), rx, handed)
            }
            dashmap::Entry::Vacant(e) => {
                let capacity = if topic.starts_with("user:") {
                    USER_CHANNEL_CAPACITY
                } else {
                    CHANNEL_CAPACITY
                };
                // Whatever was published before the channel existed counts as published on it.
                let watermark = self.inner.published.load(Ordering::SeqCst);
                let (channel, rx) = Channel::new(capacity, watermark);
                let channel = Arc::new(channel);
                e.insert(channel.clone());
                METRICS.hub_topics.inc();
                (channel, rx, 0)
            }
        };
        let slot = Arc::new(Slot::new(outlet, handed));
        if slot.outlet.is_some() {
            Arc::make_mut(&mut channel.slots()).push(slot.clone());
        }
        METRICS.subscriptions.inc();
        // After the receiver exists: a watcher that reads the old count reads it again later.
        self.inner
            .subscriptions_changed
            .fetch_add(1, Ordering::Release);
        Subscription {
            topic: topic.to_owned(),
            rx: Some(rx),
            slot,
            active: true,
            channel,
            hub: self.clone(),
        }
    }

    /// Topics with at least one subscriber.
    pub fn topic_count(&self) -> usize {
        self.inner.topics.len()
    }

    /// Subscribers of `topic` right now.
    pub fn subscriber_count(&self, topic: &str) -> usize {
        self.inner
            .topics
            .get(topic)
            .map(|t| t.tx.receiver_count())
            .unwrap_or(0)
    }

    /// An upper bound on the ids of events published on `topic` so far: the highest id delivered
    /// on it since its channel was made, or on any topic before that (`None` when it has no
    /// channel). A snapshot read earlier whose highest id is at or above it holds everything a
    /// subscriber of the topic has not been sent live, so it may be handed to a new subscriber
    /// instead of a fresh read (ids grow in commit order: see [`Subscription::skip_through`]).
    pub fn watermark(&self, topic: &str) -> Option<i64> {
        self.inner
            .topics
            .get(topic)
            .map(|t| t.watermark.load(Ordering::SeqCst))
    }

    /// The narrow view the poller gets: who is being watched, nothing else.
    pub fn watched(&self) -> Watched {
        Watched { hub: self.clone() }
    }

    fn release(&self, topic: &str) {
        // `remove_if` checks under the shard's write lock, and `subscribe` creates receivers under
        // the same lock, so a subscriber arriving now either sees the old channel (and keeps it)
        // or gets a new one: never a removed channel.
        if self
            .inner
            .topics
            .remove_if(topic, |_, t| t.tx.receiver_count() == 0)
            .is_some()
        {
            METRICS.hub_topics.dec();
        }
    }
}

/// A live subscription to one topic.
pub struct Subscription {
    topic: String,
    rx: Option<broadcast::Receiver<Delivery>>,
    /// What the publisher sees of this subscription (its position, its snapshot's floor, whether
    /// it is parked).
    slot: Arc<Slot>,
    /// This side's view of the ring: `false` from [`Subscription::park`] until the task takes
    /// the subscription back (see [`Subscription::take_back`]).
    active: bool,
    channel: Arc<Channel>,
    hub: Hub,
}

/// A delivery read from the ring, judged against what the subscriber already holds.
enum Judged {
    Skip,
    Take(Delivery),
    /// Positions were lapped: this many deliveries are gone.
    Gap(u64),
}

impl Subscription {
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Skips deliveries of events with an id at or below `event_id`, because the subscriber holds
    /// them already (a snapshot read after subscribing covered them).
    ///
    /// One number does what a seq per person would: event ids grow in commit order (appends are
    /// serialized, on SQLite by its writer lock and on PostgreSQL by an advisory lock), the
    /// pipeline publishes in that order, and a snapshot taken at one moment holds exactly the
    /// events committed before it, every one with an id at or below its highest. So a connection
    /// keeps eight bytes per topic for this, not a map entry per person of the team.
    pub fn skip_through(&mut self, event_id: i64) {
        self.slot.floor.fetch_max(event_id, Ordering::SeqCst);
    }

    /// Hands the subscription's new deliveries to the publisher's direct writes, if its ring is
    /// drained and it was made with an outlet; its task stops reading the ring until the
    /// publisher hands one back (the outlet's `notified`). A subscription is parked only between
    /// deliveries, so nothing its task has read is left unwritten.
    pub fn park(&mut self) {
        let Some(outlet) = &self.slot.outlet else {
            return;
        };
        if !self.active {
            return;
        }
        self.slot.parked.store(true, Ordering::SeqCst);
        // A send after this check sees the subscription parked and offers its frame; one before
        // it is in the ring, and the ring stays the task's.
        if self.rx.as_ref().is_some_and(|rx| rx.is_empty()) {
            self.active = false;
            return;
        }
        self.slot.parked.store(false, Ordering::SeqCst);
        outlet.wait_for_publisher();
    }

    /// Whether the task may read the ring: not while parked. Once the publisher has handed the
    /// subscription back, waits for a publisher still inside a write for it, so the position
    /// read next is final.
    fn take_back(&mut self) -> bool {
        if self.active {
            return true;
        }
        if self.slot.parked.load(Ordering::SeqCst) {
            return false;
        }
        if let Some(outlet) = &self.slot.outlet {
            outlet.wait_for_publisher();
        }
        self.active = true;
        true
    }

    fn judge(&mut self, d: Delivery) -> Judged {
        let handed = self.slot.handed.load(Ordering::SeqCst);
        if d.pos <= handed {
            return Judged::Skip;
        }
        self.slot.handed.store(d.pos, Ordering::SeqCst);
        if d.pos > handed + 1 {
            // `d` goes too: the resync's snapshot, read after it was committed, holds it.
            return Judged::Gap(d.pos - handed - 1);
        }
        if d.event_id <= self.slot.floor.load(Ordering::SeqCst) {
            return Judged::Skip;
        }
        Judged::Take(d)
    }

    /// The next delivery not covered by [`Subscription::skip_through`] nor written by the
    /// publisher; `Lagged(n)` when `n` deliveries were lapped by the ring. Pending while parked.
    pub async fn recv(&mut self) -> Result<Delivery, broadcast::error::RecvError> {
        use broadcast::error::RecvError;
        if !self.take_back() {
            return std::future::pending().await;
        }
        loop {
            let d = match self.receiver().recv().await {
                Ok(d) => d,
                // The positions tell how many went, and whether any were not written already.
                Err(RecvError::Lagged(_)) => continue,
                Err(e) => return Err(e),
            };
            match self.judge(d) {
                Judged::Skip => {}
                Judged::Take(d) => return Ok(d),
                Judged::Gap(n) => return Err(RecvError::Lagged(n)),
            }
        }
    }

    /// As [`Subscription::recv`], without waiting (`Empty` while parked).
    pub fn try_recv(&mut self) -> Result<Delivery, broadcast::error::TryRecvError> {
        use broadcast::error::TryRecvError;
        if !self.take_back() {
            return Err(TryRecvError::Empty);
        }
        loop {
            let d = match self.receiver().try_recv() {
                Ok(d) => d,
                Err(TryRecvError::Lagged(_)) => continue,
                Err(e) => return Err(e),
            };
            match self.judge(d) {
                Judged::Skip => {}
                Judged::Take(d) => return Ok(d),
                Judged::Gap(n) => return Err(TryRecvError::Lagged(n)),
            }
        }
    }

    /// The receiver; `None` only during drop.
    fn receiver(&mut self) -> &mut broadcast::Receiver<Delivery> {
        self.rx.as_mut().expect("receiver is only taken in drop")
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // No frame of this topic reaches the socket after it is unsubscribed.
        self.slot.parked.store(false, Ordering::SeqCst);
        if let Some(outlet) = &self.slot.outlet {
            outlet.wait_for_publisher();
            let mut slots = self.channel.slots();
            if let Some(i) = slots.iter().position(|s| Arc::ptr_eq(s, &self.slot)) {
                Arc::make_mut(&mut slots).swap_remove(i);
            }
        }
        drop(self.rx.take());
        METRICS.subscriptions.dec();
        self.hub.release(&self.topic);
        self.hub
            .inner
            .subscriptions_changed
            .fetch_add(1, Ordering::Release);
    }
}

/// The next delivery from any of `subs`, with the index of the subscription it came from;
/// pending forever when there are none (so it can sit in a `select!` beside other work).
///
/// With several subscriptions it builds one boxed `recv` future per subscription on each call:
/// cheap for the handful of topics a dashboard or bot holds, a cost for a socket holding hundreds.
pub async fn next_delivery(
    subs: &mut [Subscription],
) -> (usize, Result<Delivery, broadcast::error::RecvError>) {
    match subs {
        [] => return std::future::pending().await,
        // The common case (one team, or one person) needs no allocation per wake-up.
        [one] => return (0, one.recv().await),
        _ => {}
    }
    let futs = subs.iter_mut().map(|s| Box::pin(s.recv()));
    let (r, idx, _) = futures_util::future::select_all(futs).await;
    (idx, r)
}

/// Who has subscribers: the one thing the poller needs to know about clients, so that watched
/// people are polled first.
#[derive(Clone)]
pub struct Watched {
    hub: Hub,
}

impl Watched {
    pub fn team_watched(&self, team_id: &str) -> bool {
        self.hub.subscriber_count(&format!("team:{team_id}")) > 0
    }

    /// Changes whenever a subscription is made or dropped; read it before asking who is watched,
    /// and the answer holds for as long as it stays the same.
    pub fn version(&self) -> u64 {
        self.hub.inner.subscriptions_changed.load(Ordering::Acquire)
    }

    /// People whose own topic has a subscriber.
    pub fn watched_people(&self) -> Vec<i64> {
        self.hub
            .inner
            .topics
            .iter()
            .filter(|t| t.value().tx.receiver_count() > 0)
            .filter_map(|t| t.key().strip_prefix("user:")?.parse().ok())
            .collect()
    }
}

#[cfg(test)]
mod direct_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{PersonCard, Source, Status, now};

    fn event(person: i64, seq: i64, team: Option<&str>) -> Arc<StatusEvent> {
        Arc::new(StatusEvent {
            id: seq,
            person: Arc::new(PersonCard {
                id: person,
                organization_id: 1,
                topic: PersonCard::topic_for(person),
                team_id: team.map(str::to_owned),
                name: "Ada".into(),
                display_name: "ada".into(),
                image_72: String::new(),
            }),
            seq,
            status: Status::default(),
            changed: vec![],
            previous: Default::default(),
            observed_at: now(),
            source: Source::Slack,
        })
    }

    #[tokio::test]
    async fn subscribing_and_unsubscribing_100k_times_leaves_the_map_empty() {
        let hub = Hub::default();
        for i in 0..100_000 {
            let topic = format!("user:{}", i % 977 + 1);
            let a = hub.subscribe(&topic);
            let b = hub.subscribe(&topic);
            drop(a);
            assert_eq!(hub.subscriber_count(&topic), 1);
            drop(b);
        }
        assert_eq!(hub.topic_count(), 0);
    }

    #[tokio::test]
    async fn an_event_reaches_user_and_team_subscribers_with_the_topic_it_came_through() {
        let hub = Hub::default();
        let mut user = hub.subscribe("user:7");
        let mut team = hub.subscribe("team:T1");
        hub.publish(&event(7, 3, Some("T1")));
        let u = user.recv().await.expect("user frame");
        let t = team.recv().await.expect("team frame");
        assert_eq!((u.person_id, u.seq), (7, 3));
        let u: serde_json::Value =
            serde_json::from_str(u.frame.to_text().expect("text")).expect("json");
        let t: serde_json::Value =
            serde_json::from_str(t.frame.to_text().expect("text")).expect("json");
        assert_eq!(u["topic"], "user:7");
        assert_eq!(t["topic"], "team:T1");
        assert_eq!(t["user"]["topic"], "user:7");
    }

    #[tokio::test]
    async fn subscribers_of_one_topic_share_the_same_bytes() {
        let hub = Hub::default();
        let mut a = hub.subscribe("team:T1");
        let mut b = hub.subscribe("team:T1");
        hub.publish(&event(1, 1, Some("T1")));
        let fa = a.recv().await.expect("a");
        let fb = b.recv().await.expect("b");
        let (Message::Text(ta), Message::Text(tb)) = (&fa.frame, &fb.frame) else {
            panic!("text frames");
        };
        assert_eq!(
            ta.as_str().as_ptr(),
            tb.as_str().as_ptr(),
            "one serialization, shared"
        );
    }

    #[tokio::test]
    async fn deliveries_a_snapshot_covered_are_skipped() {
        let hub = Hub::default();
        let mut team = hub.subscribe("team:T1");
        // `event` gives an event the id of its seq.
        for (person, id) in [(1, 1), (2, 2), (1, 3), (2, 4), (1, 5)] {
            hub.publish(&event(person, id, Some("T1")));
        }
        team.skip_through(3);
        team.skip_through(2); // never lowers
        assert_eq!(team.try_recv().expect("4").event_id, 4);
        assert_eq!(team.recv().await.expect("5").event_id, 5);
        assert!(matches!(
            team.try_recv(),
            Err(broadcast::error::TryRecvError::Empty)
        ));
    }

    #[tokio::test]
    async fn the_watermark_covers_what_was_published_before_and_on_a_topic() {
        let hub = Hub::default();
        assert_eq!(hub.watermark("team:T1"), None, "no channel, no watermark");
        // Published while nobody listened: a channel made later starts above it.
        hub.publish(&event(1, 5, Some("T1")));
        let _team = hub.subscribe("team:T1");
        assert_eq!(hub.watermark("team:T1"), Some(5));
        // Another team's event does not move this channel's watermark...
        hub.publish(&event(2, 6, Some("T2")));
        assert_eq!(hub.watermark("team:T1"), Some(5));
        // ...its own does.
        hub.publish(&event(1, 7, Some("T1")));
        assert_eq!(hub.watermark("team:T1"), Some(7));
        let _user = hub.subscribe("user:2");
        assert_eq!(
            hub.watermark("user:2"),
            Some(7),
            "new channels start at the global mark"
        );
    }

    #[tokio::test]
    async fn a_lagging_receiver_is_told_how_much_it_missed() {
        let hub = Hub::default();
        let mut slow = hub.subscribe("user:1");
        let mut team = hub.subscribe("team:T1");
        for seq in 0..(CHANNEL_CAPACITY as i64 + 10) {
            hub.publish(&event(1, seq, Some("T1")));
        }
        match team.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => assert_eq!(n, 10),
            other => panic!("expected lag, got {other:?}"),
        }
        // A person's own topic keeps a shorter ring.
        match slow.recv().await {
            Err(broadcast::error::RecvError::Lagged(n)) => {
                assert_eq!(n, (CHANNEL_CAPACITY - USER_CHANNEL_CAPACITY) as u64 + 10)
            }
            other => panic!("expected lag, got {other:?}"),
        }
    }

    #[test]
    fn watched_follows_direct_and_team_subscriptions() {
        let hub = Hub::default();
        let w = hub.watched();
        assert!(w.watched_people().is_empty() && !w.team_watched("T9"));
        let s = hub.subscribe("team:T9");
        assert!(w.team_watched("T9") && w.watched_people().is_empty());
        drop(s);
        let _s = hub.subscribe("user:5");
        assert_eq!(w.watched_people(), vec![5]);
        assert!(!w.team_watched("T9"));
    }
}
