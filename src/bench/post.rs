//! The driver's HTTP sender: a few kept-alive HTTP/1.1 connections, written to directly.
//!
//! The load generator shares the server's two cores, so each microsecond it spends on a change is
//! one the server does not get, and it shows up in every latency measured. Through reqwest a POST
//! was a task of its own, a pool checkout, a URL, header maps and a response future; here a request
//! is bytes rendered once by the caller, queued to a connection's task, which writes it and reads
//! the answer's status, skipping its body.
//!
//! Each connection has one exchange in flight. Requests that queue behind it are written together
//! on the next turn (HTTP/1.1 pipelining: hyper answers them in order), so a server that stalls
//! delays the changes, which the stamps in them measure, and never the sender's schedule.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

/// Most queued requests written in one turn.
const MAX_PIPELINED: u64 = 64;
/// Largest answer body read: the Events API answers with a few bytes, and a connection that
/// announces more is not the server under test.
const MAX_ANSWER: usize = 1 << 20;

/// Connections to one server, each fed by a queue of whole requests.
pub struct Poster {
    lanes: Vec<mpsc::UnboundedSender<Vec<u8>>>,
    next: AtomicUsize,
    /// Requests that were not answered with a 2xx: refused, or lost with their connection.
    pub failed: Arc<AtomicU64>,
}

impl Poster {
    /// Opens `lanes` connections to `server`.
    pub async fn connect(server: SocketAddr, lanes: usize) -> anyhow::Result<Poster> {
        let failed = Arc::new(AtomicU64::new(0));
        let mut senders = Vec::with_capacity(lanes);
        for _ in 0..lanes.max(1) {
            let tcp = TcpStream::connect(server).await?;
            tcp.set_nodelay(true)?;
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(lane(tcp, rx, failed.clone()));
            senders.push(tx);
        }
        Ok(Poster {
            lanes: senders,
            next: AtomicUsize::new(0),
            failed,
        })
    }

    /// Queues one whole request (head and body) on the next connection, without waiting.
    pub fn post(&self, request: Vec<u8>) {
        let i = self.next.fetch_add(1, Ordering::Relaxed) % self.lanes.len();
        if self.lanes[i].send(request).is_err() {
            self.failed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Renders a POST of a JSON `body` with extra `headers` (name, value).
pub fn request(host: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 256);
    out.extend_from_slice(b"POST ");
    out.extend_from_slice(path.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\nhost: ");
    out.extend_from_slice(host.as_bytes());
    out.extend_from_slice(b"\r\ncontent-type: application/json\r\n");
    for (name, value) in headers {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("content-length: {}\r\n\r\n", body.len()).as_bytes());
    out.extend_from_slice(body.as_bytes());
    out
}

/// One connection's task: writes what is queued, reads as many answers. Once the connection
/// fails, every request queued to it counts as failed.
async fn lane(
    mut tcp: TcpStream,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    failed: Arc<AtomicU64>,
) {
    let mut answers = BytesMut::with_capacity(4096);
    while let Some(mut out) = rx.recv().await {
        // What queued meanwhile goes after the first request, in its buffer.
        let mut queued = 1;
        while queued < MAX_PIPELINED
            && let Ok(more) = rx.try_recv()
        {
            out.extend_from_slice(&more);
            queued += 1;
        }
        let mut answered = 0;
        if let Err(e) = exchange(&mut tcp, &out, queued, &mut answers, &mut answered, &failed).await
        {
            tracing::warn!(error = %e, "bench connection failed");
            failed.fetch_add(queued.saturating_sub(answered), Ordering::Relaxed);
            rx.close();
            while rx.recv().await.is_some() {
                failed.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
    }
}

/// Writes `requests` (`n` of them) and reads `n` answers, counting those that are not 2xx.
async fn exchange(
    tcp: &mut TcpStream,
    requests: &[u8],
    n: u64,
    buf: &mut BytesMut,
    answered: &mut u64,
    failed: &AtomicU64,
) -> io::Result<()> {
    tcp.write_all(requests).await?;
    while *answered < n {
        match next_answer(buf)? {
            Some(code) => {
                if !(200..300).contains(&code) {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
                *answered += 1;
            }
            None => {
                if tcp.read_buf(buf).await? == 0 {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
        }
    }
    Ok(())
}

/// Takes one whole answer off the front of `buf` and returns its status code; `None` while the
/// answer is still incomplete.
fn next_answer(buf: &mut BytesMut) -> io::Result<Option<u16>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut answer = httparse::Response::new(&mut headers);
    let head = match answer.parse(buf) {
        Ok(httparse::Status::Complete(head)) => head,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
    };
    let mut length = 0usize;
    for h in answer.headers.iter() {
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a chunked answer (the bench reads only sized ones)",
            ));
        }
        if h.name.eq_ignore_ascii_case("content-length") {
            length = std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "content-length"))?;
        }
    }
    if length > MAX_ANSWER {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("an answer of {length} bytes"),
        ));
    }
    let code = answer.code.unwrap_or(0);
    if buf.len() < head + length {
        return Ok(None);
    }
    buf.advance(head + length);
    Ok(Some(code))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_taken_whole_and_in_order() {
        let mut buf = BytesMut::from(
            &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nokHTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nab"[..],
        );
        assert_eq!(next_answer(&mut buf).unwrap(), Some(200));
        assert_eq!(next_answer(&mut buf).unwrap(), Some(401));
        // The third answer's body is not all here yet: nothing is taken.
        assert_eq!(next_answer(&mut buf).unwrap(), None);
        buf.extend_from_slice(b"cde");
        assert_eq!(next_answer(&mut buf).unwrap(), Some(200));
        assert!(buf.is_empty());
        assert!(next_answer(&mut BytesMut::from(&b"garbage\r\n\r\n"[..])).is_err());
        assert!(
            next_answer(&mut BytesMut::from(
                &b"HTTP/1.1 200 OK\r\ncontent-length: 99999999999\r\n\r\n"[..]
            ))
            .is_err()
        );
        assert!(
            next_answer(&mut BytesMut::from(
                &b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"[..]
            ))
            .is_err()
        );
    }

    /// A refused request counts as failed, and so does every one queued to a connection the
    /// server closed.
    #[tokio::test]
    async fn refusals_and_a_lost_connection_count_as_failures() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 1024];
            // Two requests in, then a 200 and a 500, then the connection closes.
            while seen.windows(4).filter(|w| w == b"\r\n\r\n").count() < 2 {
                let n = s.read(&mut buf).await.unwrap();
                assert!(n > 0, "client closed early");
                seen.extend_from_slice(&buf[..n]);
            }
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nHTTP/1.1 500 Internal Server Error\r\ncontent-length: 3\r\n\r\nbad")
                .await
                .unwrap();
        });
        let poster = Poster::connect(addr, 1).await.unwrap();
        poster.post(request("h", "/", &[], ""));
        poster.post(request("h", "/", &[], ""));
        server.await.unwrap();
        for _ in 0..2 {
            poster.post(request("h", "/", &[], ""));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while poster.failed.load(Ordering::Relaxed) < 3 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        // The 500, and the two requests sent to the closed connection.
        assert_eq!(poster.failed.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn a_request_carries_its_length_and_headers() {
        let r = request("h:1", "/p", &[("x-a", "1")], "{}");
        assert_eq!(
            std::str::from_utf8(&r).unwrap(),
            "POST /p HTTP/1.1\r\nhost: h:1\r\ncontent-type: application/json\r\nx-a: 1\r\ncontent-length: 2\r\n\r\n{}"
        );
    }
}
