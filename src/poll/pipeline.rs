//! Change detection and persist-then-publish.
//!
//! One writer owns every person's current status, so detection needs no locks and seqs cannot
//! race. It takes everything queued into a batch (at most [`MAX_BATCH`], give or take one source's
//! page), commits the batch in one transaction, and only then hands the events to the hub: a
//! client never sees an event that history does not hold.
//!
//! Batches form by themselves (group commit): what arrives while one batch commits, or within
//! [`COMMIT_SPACING`] of the last commit's start, is the next batch, so a busy pipeline writes
//! large batches and a quiet one commits a lone change at once. Sources that see many people at a
//! time (a sweep's page, a DND batch) hand them over in one message, so a page is one batch
//! without the writer waiting for company. (It used to wait up to 2 ms for company after every
//! quick commit, which was most of the median latency of a change at 2,000/s.)
//!
//! Slack's custom status and DND are both pushed (Events API) and polled (sweeps, DND batches),
//! and a poll's answer can reach the queue after a push that is newer than it: a page read before
//! an edit is parsed and queued after the edit's push. So an observation carries when the source
//! said it — a push when it arrived, or for Slack's late redelivery of one when Slack sent it
//! (`sources::slack::events::happened_by`), kept through retries of a failed store; a poll before
//! its request — and the writer keeps, per person, the time of the reading that last set each of
//! the two; an older reading of the same field is dropped ([`Heard`]) rather than undoing the
//! newer one until the next sweep. Within a batch, observations are applied in the order they
//! were made, so readings that were merely queued out of order (two pushes a moment apart, taken
//! by two request handlers) are all kept; only one older than what an earlier commit applied is
//! dropped.
//!
//! A failed commit is retried with backoff; the observations stay queued meanwhile, so an
//! acknowledged Slack event is not lost to a database hiccup.
//!
//! On a SQLite file the writer runs on a thread of its own ([`on_own_thread`]), not among the
//! server's tasks: every step of a batch starts with a wake-up, and a task woken on a runtime
//! busy with ten thousand sockets waits its turn.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::domain::{Field, PersonCard, Source, Status, StatusEvent, StatusPatch, diff, values_of};
use crate::hub::Hub;
use crate::metrics::METRICS;
use crate::store::{Appended, NewEvent, Store};

/// Most events committed in one transaction.
pub const MAX_BATCH: usize = 2000;
/// Commits start at least this far apart. A change arriving after a quiet spell commits at once;
/// under load each commit takes what arrived over the interval, which caps the commits per second
/// and with them their fixed cost (the hand-off to the database, the B-trees' upper pages written
/// to the WAL again). With no spacing, commits of a few events each cost the users scenario ~10%
/// more server CPU per change at 8,000/s; with 1 ms, ~7%.
pub(crate) const COMMIT_SPACING: Duration = Duration::from_millis(2);
/// Observations queued before senders wait: back-pressure on pollers, not unbounded memory.
const QUEUE: usize = 65_536;
/// Commit attempts before a batch is counted as lost.
const COMMIT_ATTEMPTS: u32 = 8;
/// The name of the writer's thread where it has one ([`on_own_thread`]): the bench reads its CPU.
pub const WRITER_THREAD: &str = "chex-pipeline";

/// What a source saw about one person at one moment.
#[derive(Clone, Debug)]
pub struct Observation {
    pub person: Arc<PersonCard>,
    pub patch: StatusPatch,
    /// When the source said it: for a poll, taken before its request (and any wait for the rate
    /// limit), so its answer is no older than this; that orders it against pushes ([`Heard`]).
    pub observed_at: DateTime<Utc>,
    pub source: Source,
}

/// When the readings that last set a person's fields were made, for the fields that two ways of
/// reading Slack both set. Kept in memory only: after a restart the first reading of each is
/// taken as it comes, as before.
#[derive(Clone, Copy, Debug, Default)]
struct Heard {
    custom: Option<DateTime<Utc>>,
    dnd: Option<DateTime<Utc>>,
}

impl Heard {
    /// Drops from `patch` what is older than the reading that set the field, and records the
    /// time of what it keeps.
    fn admit(&mut self, patch: &mut StatusPatch, at: DateTime<Utc>) {
        fn newer(last: &mut Option<DateTime<Utc>>, at: DateTime<Utc>) -> bool {
            if last.is_some_and(|l| at < l) {
                return false;
            }
            *last = Some(at);
            true
        }
        if patch.custom.is_some() && !newer(&mut self.custom, at) {
            patch.custom = None;
            METRICS.readings_superseded.inc();
        }
        if patch.dnd.is_some() && !newer(&mut self.dnd, at) {
            patch.dnd = None;
            METRICS.readings_superseded.inc();
        }
    }
}

/// What the writer's queue carries; observations with the moment they were queued, for the
/// writer's share of their wait ([`METRICS`]`.pipeline_wait`).
enum Command {
    Observe(Observation, Instant),
    /// Observations made together (one page of a sweep): they go into one batch.
    ObserveAll(Vec<Observation>, Instant),
    /// Resolves once everything sent before it is committed and published.
    Flush(oneshot::Sender<()>),
}

/// The sending side of the pipeline. Clone it freely.
#[derive(Clone)]
pub struct Pipeline {
    tx: mpsc::Sender<Command>,
}

impl Pipeline {
    /// Starts the writer; it ends when `shutdown` fires, after committing what is queued. The
    /// handle is a task of the caller's runtime that ends with it, wherever it runs.
    pub fn spawn(
        store: Store,
        hub: Hub,
        shutdown: CancellationToken,
    ) -> std::io::Result<(Pipeline, tokio::task::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let own_thread = store.appends_off_runtime();
        let writer = Writer {
            store,
            hub,
            own_thread,
            current: HashMap::new(),
            heard: HashMap::new(),
        };
        let run = writer.run(rx, shutdown);
        let handle = if own_thread {
            on_own_thread(run)?
        } else {
            tokio::spawn(run)
        };
        Ok((Pipeline { tx }, handle))
    }

    /// Queues an observation; waits only when the queue is full.
    pub async fn observe(&self, obs: Observation) {
        self.send(Command::Observe(obs, Instant::now()), 1).await;
    }

    /// Queues an observation if the queue has room at once; false (nothing queued, nothing
    /// counted) when it is full or the writer is gone, for the caller to fall back on
    /// [`Pipeline::observe`].
    pub fn try_observe(&self, obs: Observation) -> bool {
        let queued = self
            .tx
            .try_send(Command::Observe(obs, Instant::now()))
            .is_ok();
        if queued {
            METRICS.events_in.inc();
        }
        queued
    }

    /// Queues what one answer of `source` said about several people at `observed_at`, to be
    /// committed together; waits only when the queue is full.
    pub async fn observe_all(
        &self,
        seen: impl IntoIterator<Item = (Arc<PersonCard>, StatusPatch)>,
        observed_at: DateTime<Utc>,
        source: Source,
    ) {
        let all: Vec<Observation> = seen
            .into_iter()
            .map(|(person, patch)| Observation {
                person,
                patch,
                observed_at,
                source,
            })
            .collect();
        if all.is_empty() {
            return;
        }
        let n = all.len() as u64;
        self.send(Command::ObserveAll(all, Instant::now()), n).await;
    }

    /// Queues `n` observations, counted in and, if the writer is gone, counted lost.
    async fn send(&self, cmd: Command, n: u64) {
        METRICS.events_in.add(n);
        if self.tx.send(cmd).await.is_err() {
            METRICS.events_lost.add(n);
            tracing::error!(observations = n, "pipeline is gone; observations dropped");
        }
    }

    /// Waits until every observation sent before this call is committed and published.
    pub async fn flush(&self) {
        let (tx, rx) = oneshot::channel();
        if self.tx.send(Command::Flush(tx)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

struct Writer {
    store: Store,
    hub: Hub,
    /// On a thread of its own ([`on_own_thread`]), where it may block the thread.
    own_thread: bool,
    /// Current status per person, as committed.
    current: HashMap<i64, Status>,
    /// When each person's pushed-and-polled fields were last set, as committed.
    heard: HashMap<i64, Heard>,
}

impl Writer {
    async fn run(mut self, mut rx: mpsc::Receiver<Command>, shutdown: CancellationToken) {
        let mut batch = Batch::default();
        let mut last_start = Instant::now() - COMMIT_SPACING;
        loop {
            let first = tokio::select! {
                biased;
                cmd = rx.recv() => cmd,
                _ = shutdown.cancelled() => None,
            };
            let Some(first) = first else { break };
            batch.push(first);
            let not_before = last_start + COMMIT_SPACING;
            if self.own_thread {
                // Its own thread sleeps out the spacing, and the loop below takes what came
                // meanwhile: one wake-up per batch instead of one per arrival, on time to tens of
                // microseconds where the runtime's timer rounds up to its next millisecond.
                std::thread::sleep(not_before.saturating_duration_since(Instant::now()));
            }
            while batch.observations.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(cmd) => batch.push(cmd),
                    Err(_) if Instant::now() >= not_before => break,
                    Err(_) => match tokio::time::timeout_at(not_before, rx.recv()).await {
                        Ok(Some(cmd)) => batch.push(cmd),
                        _ => break,
                    },
                }
            }
            last_start = Instant::now();
            self.commit_and_answer(&mut batch, last_start).await;
        }
        // Shutdown: commit what is already queued.
        rx.close();
        while let Some(cmd) = rx.recv().await {
            batch.push(cmd);
        }
        self.commit_and_answer(&mut batch, Instant::now()).await;
    }

    /// Commits a batch that closed at `started` and answers the flushes queued with it.
    async fn commit_and_answer(&mut self, batch: &mut Batch, started: Instant) {
        for (queued, n) in batch.queued.drain(..) {
            METRICS
                .pipeline_wait
                .observe_n(started.saturating_duration_since(queued), n);
        }
        self.commit(std::mem::take(&mut batch.observations)).await;
        for w in batch.waiters.drain(..) {
            let _ = w.send(());
        }
    }

    async fn commit(&mut self, mut batch: Vec<Observation>) {
        if batch.is_empty() {
            return;
        }
        // In the order they were observed, not queued: two pushes about one person a moment
        // apart, queued in the reverse of their arrival by two request handlers, both go into
        // history, in order (the later one applied first would make the earlier one stale, and
        // [`Heard`] would drop it). Stable, so a page's people keep their order.
        batch.sort_by_key(|o| o.observed_at);
        if let Err(e) = self.load_current(&batch).await {
            tracing::error!(error = %e, "could not load current statuses; retrying batch later");
        }
        let now = crate::domain::now();
        // Detect against a scratch copy: `current` only moves once the commit succeeded.
        let mut scratch: HashMap<i64, Status> = HashMap::new();
        let mut heard: HashMap<i64, Heard> = HashMap::new();
        let mut events = Vec::new();
        let mut cards = Vec::new();
        for mut obs in batch {
            let id = obs.person.id;
            heard
                .entry(id)
                .or_insert_with(|| self.heard.get(&id).copied().unwrap_or_default())
                .admit(&mut obs.patch, obs.observed_at);
            let prev = scratch.get(&id).or_else(|| self.current.get(&id)).cloned();
            let mut next = prev.clone().unwrap_or_default();
            obs.patch.apply(&mut next);
            next.expire(now);
            let (changed, previous) = match &prev {
                Some(p) => {
                    let changed = diff(p, &next);
                    if changed.is_empty() {
                        continue;
                    }
                    let previous = values_of(p, &changed);
                    (changed, previous)
                }
                // First sight: a baseline event naming every field.
                None => (Field::ALL.to_vec(), Default::default()),
            };
            events.push(NewEvent {
                person_id: id,
                observed_at: obs.observed_at,
                status: next.clone(),
                changed,
                previous,
                source: obs.source,
            });
            cards.push(obs.person);
            scratch.insert(id, next);
        }
        if events.is_empty() {
            self.heard.extend(heard);
            return;
        }
        let Some(assigned) = self.append_with_retry(&events).await else {
            return;
        };
        self.current.extend(scratch);
        self.heard.extend(heard);
        let published = chrono::Utc::now();
        for ((e, card), at) in events.into_iter().zip(cards).zip(assigned) {
            let delay = (published - e.observed_at).num_microseconds().unwrap_or(0);
            METRICS.publish_delay.observe_micros(delay.max(0) as u64);
            let event = Arc::new(StatusEvent {
                id: at.id,
                person: card,
                seq: at.seq,
                status: e.status,
                changed: e.changed,
                previous: e.previous,
                observed_at: at.observed_at,
                source: e.source,
            });
            self.hub.publish(&event);
        }
    }

    async fn append_with_retry(&self, events: &[NewEvent]) -> Option<Vec<Appended>> {
        let mut wait = Duration::from_millis(50);
        for attempt in 1..=COMMIT_ATTEMPTS {
            let started = Instant::now();
            // Blocks this thread for the commit exactly where the writer has a thread of its own
            // (a SQLite file, `Store::appends_off_runtime`); elsewhere it is `append_events`.
            match self.store.append_events_here(events).await {
                Ok(a) => {
                    METRICS.db_write_duration.observe(started.elapsed());
                    METRICS.events_committed.add(a.len() as u64);
                    return Some(a);
                }
                Err(e) => {
                    METRICS.db_write_failures.inc();
                    tracing::warn!(error = %e, attempt, events = events.len(), "committing status events failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(Duration::from_secs(5));
                }
            }
        }
        METRICS.events_lost.add(events.len() as u64);
        tracing::error!(
            events = events.len(),
            "status events could not be stored after every retry; dropped"
        );
        None
    }

    /// Loads the committed status of people this writer has not seen since it started.
    async fn load_current(&mut self, batch: &[Observation]) -> crate::store::Result<()> {
        let mut missing: Vec<i64> = batch
            .iter()
            .map(|o| o.person.id)
            .filter(|id| !self.current.contains_key(id))
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        missing.sort_unstable();
        missing.dedup();
        let latest = self.store.latest_events(&missing).await?;
        for (id, row) in latest {
            self.current.insert(id, row.status());
        }
        Ok(())
    }
}

/// Runs the writer on a thread with a runtime of its own; returns a task of the caller's runtime
/// that ends when the writer does.
///
/// The writer waits for a wake-up at every step: for the first observation of a batch, for the
/// commit spacing to pass (and, until session 17, for the appender's thread to say the batch is
/// committed). As a task of the server's runtime, each wake-up queues behind the socket tasks the
/// runtime's workers are running; a thread of its own is woken by the kernel directly. Users
/// scenario, six interleaved pairs (session 15): p99 at 8,000 changes/s 23.9 ms against 30.8 on
/// the runtime (medians), at 5,000/s 10.4 against 12.8; the thread was ahead in ten of the twelve
/// pairs, level in one. There it also sleeps out the commit spacing instead of waiting on the
/// queue with a timer: until session 20 every arrival within the spacing woke it (7.5 wake-ups per
/// batch at 8,000/s), and the runtime's millisecond timer stretched 2 ms to ~2.4; sleeping, the
/// users scenario's p50 at 2,000/s fell from 2.1 ms to 1.0 in three interleaved pairs, its p99 from
/// 5.6–6.7 to 4.0–4.8, and at 8,000/s both p99 and server CPU per change were lower in five pairs
/// of six. Since the writer blocks this thread for its commits
/// ([`Store::append_events_here`]), nothing else may run on its runtime.
///
/// Only where appends leave the runtime alone (a SQLite file: [`Store::appends_off_runtime`]).
/// A PostgreSQL connection's socket belongs to the runtime that opened it: one opened here would
/// only be driven while this thread waits, for every other task of the server that uses it, and
/// would die with this runtime.
fn on_own_thread(
    run: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (done, ended) = oneshot::channel::<()>();
    std::thread::Builder::new()
        .name(WRITER_THREAD.into())
        .spawn(move || {
            runtime.block_on(run);
            drop(done);
        })?;
    Ok(tokio::spawn(async move {
        let _ = ended.await;
    }))
}

/// What the writer has taken off its queue for the next commit.
#[derive(Default)]
struct Batch {
    observations: Vec<Observation>,
    /// When each command's observations were queued, and how many it carried.
    queued: Vec<(Instant, u64)>,
    waiters: Vec<oneshot::Sender<()>>,
}

impl Batch {
    fn push(&mut self, cmd: Command) {
        match cmd {
            Command::Observe(o, at) => {
                self.observations.push(o);
                self.queued.push((at, 1));
            }
            Command::ObserveAll(all, at) => {
                self.queued.push((at, all.len() as u64));
                self.observations.extend(all);
            }
            Command::Flush(w) => self.waiters.push(w),
        }
    }
}
