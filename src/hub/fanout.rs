//! The publisher's direct writes to parked subscribers ([`super::outlet`]), and who makes them.
//!
//! A topic with a few parked subscribers (a person's own topic) is written to by the publisher
//! itself, inline: a handful of non-blocking writes. A team of thousands would hold the publisher
//! (the pipeline's writer) for tens of milliseconds, so its subscribers go to fan-out threads
//! (one fewer than the cores by default: [`Fanout::start`]), each taking every n-th subscriber,
//! and the pipeline goes on committing.
//!
//! A thread sweeps its share of a topic's subscribers, and each socket gets, in one `sendmsg`,
//! every queued frame it has not been handed, newest included: changes that arrive during a
//! sweep join it for the sockets still ahead, and the sockets behind get them on the next sweep.
//! That is how a socket's task reading a backlog from its ring batches too. One `write` per
//! socket per change tops out near 150,000 deliveries/s on these machines; batched, the same
//! threads keep up with 50 changes/s to 10,000 subscribers.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::SeqCst};
use std::sync::mpsc;
use std::time::Instant;

use bytes::Bytes;

use super::outlet::{MAX_SLICES, Outlet};
use crate::metrics::METRICS;

/// Parked subscribers a publisher writes to itself; past this a topic goes to the fan-out threads.
const INLINE_MAX: usize = 16;

/// Sockets a fan-out thread writes between two looks at its queue (and two clock reads).
const LOOK_EVERY: usize = 32;

/// One subscription's standing with the publisher.
pub struct Slot {
    pub(super) outlet: Option<Arc<Outlet>>,
    /// Its task does not read the ring: new deliveries are the publisher's to write.
    pub(super) parked: AtomicBool,
    /// The ring position of the last delivery this subscriber has been handed, by either writer.
    pub(super) handed: AtomicU64,
    /// Events at or below this id are covered by a snapshot the subscriber holds.
    pub(super) floor: AtomicI64,
}

impl Slot {
    pub(super) fn new(outlet: Option<Arc<Outlet>>, handed: u64) -> Slot {
        Slot {
            outlet,
            parked: AtomicBool::new(false),
            handed: AtomicU64::new(handed),
            floor: AtomicI64::new(0),
        }
    }

    /// Writes the deliveries of `window` (consecutive positions on the topic) that the
    /// subscriber has not been handed, in one write, if it is parked and its socket is free;
    /// hands the subscription back to its task when it cannot. Returns what went out.
    fn offer<'w>(&self, window: &'w [Arc<Job>]) -> &'w [Arc<Job>] {
        let (Some(outlet), Some(head), Some(tail)) = (&self.outlet, window.first(), window.last())
        else {
            return &[];
        };
        if !self.parked.load(SeqCst) {
            return &[];
        }
        if !outlet.try_take() {
            // The task is writing, or a frame's rest is owed: the task delivers these.
            self.hand_back(outlet);
            return &[];
        }
        // Checked again with the socket held: an unparking task waits for the holder to finish.
        if !self.parked.load(SeqCst) {
            outlet.put_back();
            return &[];
        }
        let handed = self.handed.load(SeqCst);
        if handed >= tail.pos {
            outlet.put_back();
            return &[];
        }
        if handed + 1 < head.pos {
            // The deliveries between are in the ring only (this thread never had them).
            outlet.put_back();
            self.hand_back(outlet);
            return &[];
        }
        let mut from = (handed + 1 - head.pos) as usize;
        // A snapshot the subscriber holds covers these (ids grow along the ring).
        let floor = self.floor.load(SeqCst);
        while window.get(from).is_some_and(|j| j.id <= floor) {
            from += 1;
        }
        let to = window.len().min(from + MAX_SLICES);
        let last = window[to - 1].pos;
        let sent = &window[from..to];
        if sent.is_empty() {
            self.handed.store(last, SeqCst);
            outlet.put_back();
            return sent;
        }
        // Recorded before the write: an unparking task reads it only once the socket is given
        // back.
        self.handed.store(last, SeqCst);
        let mut frames: [&[u8]; MAX_SLICES] = [&[]; MAX_SLICES];
        for (f, j) in frames.iter_mut().zip(sent) {
            *f = &j.frame;
        }
        if outlet.write_held(&frames[..sent.len()]) {
            sent
        } else {
            self.handed.store(handed, SeqCst);
            outlet.put_back();
            self.hand_back(outlet);
            &[]
        }
    }

    fn hand_back(&self, outlet: &Outlet) {
        self.parked.store(false, SeqCst);
        outlet.notify();
        METRICS.ws_handed_back.inc();
    }
}

/// One delivery for a topic's parked subscribers.
pub(super) struct Job {
    pub slots: Arc<Vec<Arc<Slot>>>,
    pub frame: Bytes,
    pub id: i64,
    pub pos: u64,
    pub published: Instant,
}

/// Counts what a sweep wrote, in the write-delay histogram and the direct-writes counter.
struct Tally {
    now: Instant,
    written: u64,
}

impl Tally {
    fn new() -> Tally {
        Tally {
            now: Instant::now(),
            written: 0,
        }
    }

    fn add(&mut self, sent: &[Arc<Job>]) {
        for j in sent {
            METRICS
                .ws_write_delay
                .observe(self.now.saturating_duration_since(j.published));
        }
        self.written += sent.len() as u64;
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        METRICS.ws_direct_writes.add(self.written);
    }
}

/// The fan-out threads, started with the first large topic's delivery.
pub(super) struct Fanout {
    workers: Vec<mpsc::Sender<Share>>,
}

/// A job, and which of its slots a thread takes: every `step`-th from `first`.
struct Share {
    job: Arc<Job>,
    first: usize,
    step: usize,
}

impl Fanout {
    /// `threads` fan-out threads; 0 for one fewer than the cores, at least one.
    ///
    /// One core is left to the runtime (requests, the pipeline, the sockets' tasks): on the bench's
    /// two cores one thread and two measured alike at 5–10 changes/s to 10,000 subscribers, and
    /// at 30–50/s two took the cores from everything else (p99 0.6–0.9 s against 0.25–0.37 with
    /// one; docs/benchmarks-history.md, session 21).
    fn start(threads: usize) -> Fanout {
        let n = match threads {
            0 => std::thread::available_parallelism()
                .map(|n| n.get().saturating_sub(1))
                .unwrap_or(1)
                .max(1),
            n => n,
        };
        let mut workers = Vec::with_capacity(n);
        for i in 0..n {
            let (tx, rx) = mpsc::channel::<Share>();
            let spawned = std::thread::Builder::new()
                .name(format!("chex-fanout-{i}"))
                .spawn(move || work(rx));
            match spawned {
                Ok(_) => workers.push(tx),
                Err(e) => tracing::warn!(error = %e, "could not start a fan-out thread"),
            }
        }
        Fanout { workers }
    }

    /// Writes `job` to its parked subscribers: inline when they are few, else on the threads.
    pub(super) fn dispatch(cell: &std::sync::OnceLock<Fanout>, threads: usize, job: Job) {
        let job = Arc::new(job);
        if job.slots.len() > INLINE_MAX
            && let fanout = cell.get_or_init(|| Fanout::start(threads))
            && !fanout.workers.is_empty()
        {
            let step = fanout.workers.len();
            for (first, worker) in fanout.workers.iter().enumerate() {
                let share = Share {
                    job: job.clone(),
                    first,
                    step,
                };
                if let Err(mpsc::SendError(share)) = worker.send(share) {
                    // A thread that died leaves its share to this one rather than unwritten.
                    sweep(&share, &mut VecDeque::from([share.job.clone()]), None);
                }
            }
            return;
        }
        let mut tally = Tally::new();
        for (at, slot) in job.slots.iter().enumerate() {
            warm_ahead(&job.slots, at, 1);
            tally.add(slot.offer(std::slice::from_ref(&job)));
        }
    }
}

/// A fan-out thread: sweeps its share of a topic's sockets until no new change for it came.
fn work(rx: mpsc::Receiver<Share>) {
    let mut later = VecDeque::new();
    loop {
        let share = match later.pop_front() {
            Some(share) => share,
            None => match rx.recv() {
                Ok(share) => share,
                Err(_) => return,
            },
        };
        let mut window = VecDeque::from([share.job.clone()]);
        let mut queue = Queue {
            rx: &rx,
            later: &mut later,
        };
        while !window.is_empty() {
            // Every socket is offered the jobs there at the sweep's start, up to one write's
            // worth from what it holds; later ones reach only the sockets after their arrival.
            let swept = window.len().min(MAX_SLICES);
            sweep(&share, &mut window, Some(&mut queue));
            window.drain(..swept);
            queue.take_new(&share, &mut window);
        }
    }
}

/// A fan-out thread's inbox, looked at during a sweep.
struct Queue<'a> {
    rx: &'a mpsc::Receiver<Share>,
    /// Shares of other topics (or of a changed subscriber list), run after this one.
    later: &'a mut VecDeque<Share>,
}

impl Queue<'_> {
    /// Appends to `window` the queued jobs that continue it: same subscriber list, same share,
    /// the next position.
    fn take_new(&mut self, share: &Share, window: &mut VecDeque<Arc<Job>>) {
        while let Ok(s) = self.rx.try_recv() {
            let continues = Arc::ptr_eq(&s.job.slots, &share.job.slots)
                && s.first == share.first
                && window.back().is_none_or(|b| s.job.pos == b.pos + 1)
                && self.later.is_empty();
            if continues {
                window.push_back(s.job);
            } else {
                self.later.push_back(s);
            }
        }
    }
}

/// One pass over `share`'s sockets, offering each what it lacks of `window`; with a queue, jobs
/// that arrive meanwhile join the window for the sockets still ahead.
fn sweep(share: &Share, window: &mut VecDeque<Arc<Job>>, mut queue: Option<&mut Queue<'_>>) {
    let mut tally = Tally::new();
    let slots = &share.job.slots;
    for (i, at) in (share.first..slots.len()).step_by(share.step).enumerate() {
        if i > 0 && i % LOOK_EVERY == 0 {
            if let Some(q) = queue.as_deref_mut() {
                q.take_new(share, window);
            }
            tally.now = Instant::now();
        }
        warm_ahead(slots, at, share.step);
        tally.add(slots[at].offer(window.make_contiguous()));
    }
}

/// Starts loading what [`Slot::offer`] reads first, a few sockets ahead of the one being
/// written: the slot, then its outlet. On a large topic neither stays in cache from one change to
/// the next, and each miss waited on the one before it (a profile of 10,000 sockets put most of
/// `offer`'s own time on those two loads); issued ahead, they overlap the kernel's work on the
/// sockets between.
fn warm_ahead(slots: &[Arc<Slot>], at: usize, step: usize) {
    if let Some(slot) = slots.get(at + 4 * step) {
        prefetch(Arc::as_ptr(slot));
    }
    if let Some(outlet) = slots.get(at + 2 * step).and_then(|s| s.outlet.as_ref()) {
        prefetch(Arc::as_ptr(outlet));
    }
}

/// Prefetches every cache line `*p` covers: where an allocation starts within a line is the
/// allocator's choice, so a 120-byte outlet may lie across three lines, and a 32-byte slot across
/// two.
#[inline(always)]
fn prefetch<T>(p: *const T) {
    let size = std::mem::size_of::<T>().max(1);
    let first = p.cast::<u8>();
    for offset in (0..size).step_by(64).chain([size - 1]) {
        // SAFETY: a prefetch is a hint: it cannot fault whatever the address, and the program
        // never sees what it loads. SSE, which it needs, is part of x86_64's baseline.
        #[cfg(target_arch = "x86_64")]
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                first.wrapping_add(offset).cast(),
            )
        };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = first.wrapping_add(offset);
    }
}
