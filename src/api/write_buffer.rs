//! A socket write buffer that exists only while it holds something.
//!
//! tungstenite's own write buffer keeps the capacity of the largest batch it ever held for the
//! life of the socket, so an idle subscriber went on paying ~2 KiB for the snapshot it received
//! once. With tungstenite's buffering off (`write_buffer_size = 0`) every encoded frame lands
//! here instead; a flush writes everything queued in as few system calls as the kernel allows —
//! a batch of 32 frames is one `write` — and frees the buffer once it is empty. The price is one
//! small allocation per flushed batch, next to the system call it saves or the one it makes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Bytes held before a write waits for the socket: past this, a peer that stopped reading makes
/// the sender wait (and time out) rather than grow the buffer.
const LIMIT: usize = 64 * 1024;

pub struct WriteBuffer<S> {
    inner: S,
    buf: Vec<u8>,
    /// How much of `buf` the socket has taken.
    written: usize,
}

impl<S> WriteBuffer<S> {
    pub fn new(inner: S) -> WriteBuffer<S> {
        WriteBuffer {
            inner,
            buf: Vec::new(),
            written: 0,
        }
    }
}

impl<S: AsyncWrite + Unpin> WriteBuffer<S> {
    /// Writes out everything buffered; frees the buffer when done.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while self.written < self.buf.len() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
        }
        self.buf = Vec::new();
        self.written = 0;
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteBuffer<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.buf.len() + data.len() > LIMIT {
            ready!(this.poll_drain(cx))?;
            if data.len() > LIMIT {
                return Pin::new(&mut this.inner).poll_write(cx, data);
            }
        }
        this.buf.extend_from_slice(data);
        Poll::Ready(Ok(data.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteBuffer<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn writes_wait_for_a_flush_and_leave_no_buffer_behind() {
        let (a, mut b) = tokio::io::duplex(1 << 20);
        let mut w = WriteBuffer::new(a);
        w.write_all(b"one ").await.expect("write");
        w.write_all(b"two").await.expect("write");
        let mut got = [0u8; 16];
        let early = tokio::time::timeout(std::time::Duration::from_millis(20), b.read(&mut got));
        assert!(
            early.await.is_err(),
            "nothing reaches the peer before a flush"
        );
        w.flush().await.expect("flush");
        let n = b.read(&mut got).await.expect("read");
        assert_eq!(&got[..n], b"one two");
        assert_eq!(w.buf.capacity(), 0, "an empty buffer is freed");
    }

    #[tokio::test]
    async fn a_peer_that_stops_reading_makes_writes_wait_past_the_limit() {
        // The pipe holds 1 KiB, the buffer 64 KiB: one more must wait for the reader.
        let (a, mut b) = tokio::io::duplex(1024);
        let mut w = WriteBuffer::new(a);
        let chunk = [7u8; 1024];
        for _ in 0..64 {
            w.write_all(&chunk).await.expect("buffered");
        }
        let blocked =
            tokio::time::timeout(std::time::Duration::from_millis(50), w.write_all(&chunk));
        assert!(blocked.await.is_err(), "past the limit, writes wait");
        let mut sink = Vec::new();
        let reader = tokio::spawn(async move {
            b.read_to_end(&mut sink).await.expect("read");
            sink.len()
        });
        w.write_all(&chunk).await.expect("write");
        w.shutdown().await.expect("shutdown");
        drop(w);
        // The write that timed out was never taken; the one after it was.
        assert_eq!(reader.await.expect("reader"), 65 * 1024);
    }
}
