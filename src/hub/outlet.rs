//! A WebSocket's TCP socket as the publisher sees it: written to directly, without waking the
//! socket's task.
//!
//! Fanning a change out to ten thousand subscribers through their tasks costs ten thousand
//! wake-ups, each followed by a `select!` over the task's branches, a ring read and tungstenite's
//! encoding of the same frame into its own buffer, before the one `write` that matters. Here the
//! publisher encodes the frame once and writes it to every idle socket itself, one non-blocking
//! `write` each: the shape of the bench's bare writer (docs/benchmarks.md, "the floor").
//!
//! The socket's task keeps everything else: reads, replies, pings, snapshots, and any delivery the
//! publisher could not make (a socket whose buffer is full, a task in the middle of its own write,
//! a subscription behind its ring). Two writers share one socket, so who may write is a small
//! state machine ([`Outlet::state`]): a frame is never split by another writer's frame.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering::SeqCst};
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Notify;

/// Frames one direct write carries at most.
pub(super) const MAX_SLICES: usize = 32;

/// Nobody is writing.
const IDLE: u8 = 0;
/// The socket's task is writing: it holds the socket until its write buffer is empty.
const TASK: u8 = 1;
/// A publisher is inside one non-blocking `write`.
const PUBLISHER: u8 = 2;
/// A publisher's frame went out in part; its rest ([`Outlet::owed`]) goes before anything else.
const OWED: u8 = 3;

/// One WebSocket's TCP socket, shared by its task and the publishers.
pub struct Outlet {
    tcp: TcpStream,
    state: AtomicU8,
    /// The unwritten rest of a publisher's frame (state [`OWED`]).
    owed: Mutex<Option<Bytes>>,
    /// Tells the task that a publisher handed a subscription back to it, or left a frame's rest.
    wake: Notify,
}

impl Outlet {
    pub fn new(tcp: TcpStream) -> Outlet {
        Outlet {
            tcp,
            state: AtomicU8::new(IDLE),
            owed: Mutex::new(None),
            wake: Notify::new(),
        }
    }

    /// Resolves when a publisher needs the task: a subscription handed back, or a frame's rest owed.
    pub async fn notified(&self) {
        self.wake.notified().await
    }

    pub(super) fn notify(&self) {
        self.wake.notify_one();
    }

    /// A publisher's attempt to take the socket for one write.
    pub(super) fn try_take(&self) -> bool {
        self.state
            .compare_exchange(IDLE, PUBLISHER, SeqCst, SeqCst)
            .is_ok()
    }

    pub(super) fn put_back(&self) {
        self.state.store(IDLE, SeqCst);
    }

    /// Writes `frames` with one non-blocking `sendmsg`; the caller holds the socket
    /// ([`Self::try_take`]). `false` when nothing went out (a full socket buffer, or an error the
    /// task will meet on its next write): the caller still holds the socket then. Frames that
    /// went out in part are `true`: their rest is owed, the task is told, and the socket is the
    /// task's to finish.
    pub(super) fn write_held(&self, frames: &[&[u8]]) -> bool {
        let mut slices = [io::IoSlice::new(&[]); MAX_SLICES];
        let frames = &frames[..frames.len().min(MAX_SLICES)];
        for (slice, frame) in slices.iter_mut().zip(frames) {
            *slice = io::IoSlice::new(frame);
        }
        let total: usize = frames.iter().map(|f| f.len()).sum();
        match self.send(&slices[..frames.len()]) {
            Ok(n) if n == total => {
                self.put_back();
                true
            }
            Ok(n) if n > 0 => {
                let mut rest = Vec::with_capacity(total - n);
                let mut skip = n;
                for frame in frames {
                    let from = skip.min(frame.len());
                    rest.extend_from_slice(&frame[from..]);
                    skip -= from;
                }
                *self.owed.lock().unwrap_or_else(|p| p.into_inner()) = Some(rest.into());
                self.state.store(OWED, SeqCst);
                self.notify();
                true
            }
            _ => false,
        }
    }

    /// One non-blocking `sendmsg(2)` on the socket, past tokio's readiness check.
    ///
    /// tokio's `try_write_vectored` first reads the socket's readiness from its registration: a
    /// third cache line per socket, after the slot's and the outlet's, and on a large topic's
    /// sweep a miss every time (a profile of 10,000 sockets put half of `try_io`'s time on that
    /// one load). The check only saves a system call on a socket already known to be full, which
    /// the sweep hands back to its task either way; and a readiness left stale by a refused write
    /// here costs the task one `write` that finds `WouldBlock` before it waits. `MSG_NOSIGNAL`:
    /// a peer gone away is an `EPIPE` for the caller, not a signal for whatever embeds the hub.
    fn send(&self, slices: &[io::IoSlice<'_>]) -> io::Result<usize> {
        socket2::SockRef::from(&self.tcp).send_vectored_with_flags(slices, libc::MSG_NOSIGNAL)
    }

    /// Waits out a publisher in the middle of its `write` (a few microseconds). After a
    /// subscription is unparked, once this returns no publisher writes for it any more.
    pub(super) fn wait_for_publisher(&self) {
        let mut spins = 0u32;
        while self.state.load(SeqCst) == PUBLISHER {
            spins += 1;
            if spins < 128 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// The task's claim on the socket before it writes: finishes a publisher's owed frame first.
    fn poll_take_for_task(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.state.compare_exchange(IDLE, TASK, SeqCst, SeqCst) {
                Ok(_) | Err(TASK) => return Poll::Ready(Ok(())),
                Err(OWED) => {
                    let mut owed = self.owed.lock().unwrap_or_else(|p| p.into_inner());
                    while let Some(rest) = owed.as_mut().filter(|r| !r.is_empty()) {
                        let n = ready!(self.poll_write_some(cx, rest))?;
                        rest.advance(n);
                    }
                    *owed = None;
                    self.state.store(TASK, SeqCst);
                    return Poll::Ready(Ok(()));
                }
                // A publisher's `write` is under way: let the runtime run something else meanwhile.
                Err(_) => {
                    std::hint::spin_loop();
                    if self.state.load(SeqCst) == PUBLISHER {
                        cx.waker().wake_by_ref();
                        return Poll::Pending;
                    }
                }
            }
        }
    }

    /// Writes some of `bytes` once the socket can take them: how much went.
    fn poll_write_some(&self, cx: &mut Context<'_>, bytes: &[u8]) -> Poll<io::Result<usize>> {
        loop {
            ready!(self.tcp.poll_write_ready(cx))?;
            match self.tcp.try_write(bytes) {
                Ok(0) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Ok(n) => return Poll::Ready(Ok(n)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }

    fn release_from_task(&self) {
        let _ = self.state.compare_exchange(TASK, IDLE, SeqCst, SeqCst);
    }

    fn owes(&self) -> bool {
        self.state.load(SeqCst) == OWED
    }
}

/// Encodes a server's text frame (unmasked, final): the same bytes for every subscriber.
pub fn text_frame(payload: &[u8]) -> Bytes {
    let len = payload.len();
    let mut out = Vec::with_capacity(len + 10);
    out.push(0x81);
    if len < 126 {
        out.push(len as u8);
    } else if len <= u16::MAX as usize {
        out.push(126);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.push(127);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    out.extend_from_slice(payload);
    out.into()
}

/// The task's side of a shared socket, for tungstenite: reads as a plain socket does; writes
/// are held in a buffer that exists only while it holds something, and go out under the
/// task's claim on the socket.
///
/// tungstenite's own write buffer keeps the capacity of the largest batch it ever held for the
/// life of the socket, so an idle subscriber went on paying ~2 KiB for the snapshot it received
/// once. With tungstenite's buffering off (`write_buffer_size = 0`) every encoded frame lands
/// here instead; a flush writes everything queued in as few system calls as the kernel allows —
/// a batch of 32 frames is one `write` — and frees the buffer once it is empty. The price is one
/// small allocation per flushed batch, next to the system call it saves or the one it makes.
pub struct TaskIo {
    outlet: std::sync::Arc<Outlet>,
    buf: Vec<u8>,
    /// How much of `buf` the socket has taken.
    written: usize,
}

/// Bytes held before a write waits for the socket: past this, a peer that stopped reading makes
/// the sender wait (and time out) rather than grow the buffer.
const LIMIT: usize = 64 * 1024;

impl TaskIo {
    pub fn new(outlet: std::sync::Arc<Outlet>) -> TaskIo {
        TaskIo {
            outlet,
            buf: Vec::new(),
            written: 0,
        }
    }

    /// Writes out everything buffered (and any publisher's owed rest before it), then gives the
    /// socket back and frees the buffer.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.buf.is_empty() && !self.outlet.owes() {
            return Poll::Ready(Ok(()));
        }
        ready!(self.outlet.poll_take_for_task(cx))?;
        while self.written < self.buf.len() {
            self.written += ready!(self.outlet.poll_write_some(cx, &self.buf[self.written..]))?;
        }
        self.buf = Vec::new();
        self.written = 0;
        self.outlet.release_from_task();
        Poll::Ready(Ok(()))
    }
}

impl AsyncRead for TaskIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let tcp = &self.outlet.tcp;
        loop {
            ready!(tcp.poll_read_ready(cx))?;
            match tcp.try_read(buf.initialize_unfilled()) {
                Ok(n) => {
                    buf.advance(n);
                    return Poll::Ready(Ok(()));
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Poll::Ready(Err(e)),
            }
        }
    }
}

impl AsyncWrite for TaskIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // Whole frames only: a frame is written out in one drain, never interleaved with a
        // publisher's.
        if !this.buf.is_empty() && this.buf.len() + data.len() > LIMIT {
            ready!(this.poll_drain(cx))?;
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.get_mut().poll_drain(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Poll::Ready(socket2::SockRef::from(&this.outlet.tcp).shutdown(std::net::Shutdown::Write))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::direct_tests::tcp_pair;
    use std::sync::Arc;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn text_frames_carry_the_length_in_the_form_its_size_needs() {
        assert_eq!(&text_frame(b"hi")[..], b"\x81\x02hi");
        let f = text_frame(&[b'a'; 300]);
        assert_eq!(&f[..4], &[0x81, 126, 1, 44]);
        assert_eq!(f.len(), 304);
        let f = text_frame(&vec![b'a'; 70_000]);
        assert_eq!(&f[..2], &[0x81, 127]);
        assert_eq!(
            u64::from_be_bytes(f[2..10].try_into().expect("8 bytes")),
            70_000
        );
    }

    #[tokio::test]
    async fn the_tasks_writes_wait_for_a_flush_and_leave_no_buffer_behind() {
        let (tcp, mut peer) = tcp_pair(false).await;
        let outlet = Arc::new(Outlet::new(tcp));
        let mut w = TaskIo::new(outlet.clone());
        w.write_all(b"one ").await.expect("write");
        w.write_all(b"two").await.expect("write");
        let mut got = [0u8; 16];
        let early = tokio::time::timeout(Duration::from_millis(20), peer.read(&mut got));
        assert!(
            early.await.is_err(),
            "nothing reaches the peer before a flush"
        );
        // Buffered whole frames are not on the socket yet: a publisher may write between them.
        assert!(
            outlet.try_take(),
            "the socket is free while the task only buffers"
        );
        outlet.put_back();
        w.flush().await.expect("flush");
        let n = peer.read(&mut got).await.expect("read");
        assert_eq!(&got[..n], b"one two");
        assert_eq!(w.buf.capacity(), 0, "an empty buffer is freed");
        assert!(
            outlet.try_take(),
            "and the socket is free for a publisher again"
        );
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_makes_the_tasks_writes_wait_past_the_limit() {
        let (tcp, mut peer) = tcp_pair(true).await;
        let mut w = TaskIo::new(Arc::new(Outlet::new(tcp)));
        let chunk = [7u8; 1024];
        // The buffer's 64 KiB, plus what the shrunk kernel buffers take on the first drain.
        let mut written = 0;
        let blocked = loop {
            let attempt = tokio::time::timeout(Duration::from_millis(50), w.write_all(&chunk));
            if attempt.await.is_err() {
                break true;
            }
            written += chunk.len();
            if written > 4 << 20 {
                break false;
            }
        };
        assert!(
            blocked,
            "past the limit and the socket's buffers, writes wait"
        );
        assert!(
            written >= LIMIT,
            "the buffer took its limit first: {written}"
        );
        let reader = tokio::spawn(async move {
            let mut sink = Vec::new();
            peer.read_to_end(&mut sink).await.expect("read");
            sink.len()
        });
        w.write_all(&chunk).await.expect("write");
        w.shutdown().await.expect("shutdown");
        drop(w);
        // The write that timed out was never taken; everything else was.
        assert_eq!(reader.await.expect("reader"), written + chunk.len());
    }
}
