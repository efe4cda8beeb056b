//! The publisher's direct writes and the socket task's ring, sharing one real TCP socket.

use std::sync::Arc;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};

use super::outlet::{Outlet, TaskIo};
use super::{Hub, Subscription};
use crate::domain::{PersonCard, Source, Status, StatusEvent, now};

/// A connected pair: the server's end (for an outlet) and the client's. `small` shrinks both
/// ends' kernel buffers to a few KB, so that a client that does not read fills them quickly.
pub(super) async fn tcp_pair(small: bool) -> (TcpStream, TcpStream) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (client, accepted) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (server, client) = (accepted.expect("accept").0, client.expect("connect"));
    if small {
        shrink(&server);
        shrink(&client);
    }
    (server, client)
}

fn shrink(tcp: &TcpStream) {
    let socket = socket2::SockRef::from(tcp);
    socket.set_send_buffer_size(4096).expect("SO_SNDBUF");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
}

async fn client(tcp: TcpStream) -> WebSocketStream<TcpStream> {
    let mut config = WebSocketConfig::default();
    config.max_message_size = Some(64 << 20);
    config.max_frame_size = Some(64 << 20);
    WebSocketStream::from_raw_socket(tcp, Role::Client, Some(config)).await
}

async fn server(outlet: &Arc<Outlet>) -> WebSocketStream<TaskIo> {
    let mut config = WebSocketConfig::default();
    config.write_buffer_size = 0;
    WebSocketStream::from_raw_socket(TaskIo::new(outlet.clone()), Role::Server, Some(config)).await
}

/// Event `id` (also its seq) about person 1 of team T1, its status text `text`.
fn event(id: i64, text: &str) -> Arc<StatusEvent> {
    Arc::new(StatusEvent {
        id,
        person: Arc::new(PersonCard {
            id: 1,
            organization_id: 1,
            topic: PersonCard::topic_for(1),
            team_id: Some("T1".into()),
            name: "Ada".into(),
            display_name: "ada".into(),
            image_72: String::new(),
        }),
        seq: id,
        status: Status {
            text: text.into(),
            ..Default::default()
        },
        changed: vec![],
        previous: Default::default(),
        observed_at: now(),
        source: Source::Slack,
    })
}

/// Reads `n` status frames and returns their seqs.
async fn read_seqs(ws: &mut WebSocketStream<TcpStream>, n: usize) -> Vec<i64> {
    let mut seqs = Vec::with_capacity(n);
    while seqs.len() < n {
        let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .unwrap_or_else(|_| panic!("a frame within 10 s; so far {seqs:?}"))
            .expect("open")
            .expect("well-formed");
        if let Message::Text(t) = msg {
            let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
            seqs.push(v["seq"].as_i64().expect("seq"));
        }
    }
    seqs
}

/// A hub and one socket parked on person 1's topic: the outlet, the subscription, the client's end.
async fn parked_on_person(small: bool) -> (Hub, Arc<Outlet>, Subscription, TcpStream) {
    let hub = Hub::default();
    let (tcp, peer) = tcp_pair(small).await;
    let outlet = Arc::new(Outlet::new(tcp));
    let mut sub = hub.subscribe_direct("user:1", &outlet);
    sub.park();
    (hub, outlet, sub, peer)
}

/// What a socket's task does with a subscription, in miniature (api::ws's loop): parks it when its
/// ring is drained, finishes what a publisher hands back, writes ring deliveries itself.
async fn task(mut sub: Subscription, outlet: Arc<Outlet>, mut socket: WebSocketStream<TaskIo>) {
    loop {
        sub.park();
        tokio::select! {
            _ = outlet.notified() => socket.flush().await.expect("flush"),
            d = sub.recv() => {
                let d = d.expect("no lag in these tests");
                socket.send(d.frame).await.expect("send");
            }
        }
    }
}

#[tokio::test]
async fn a_parked_subscriber_is_written_to_by_the_publisher_without_its_task() {
    let (hub, _outlet, mut sub, peer) = parked_on_person(false).await;
    for id in 1..=3 {
        hub.publish(&event(id, "on the publisher"));
    }
    assert_eq!(read_seqs(&mut client(peer).await, 3).await, [1, 2, 3]);
    // Nothing for the task: the ring's copies were handed already.
    assert!(matches!(
        sub.try_recv(),
        Err(tokio::sync::broadcast::error::TryRecvError::Empty)
    ));
}

#[tokio::test]
async fn what_a_full_socket_refuses_reaches_it_from_the_ring_in_order_and_once() {
    let (hub, outlet, sub, peer) = parked_on_person(true).await;
    // ~1 KB frames, 60 of them: far past the shrunk buffers, within the person's ring of 64.
    let text = "x".repeat(1000);
    for id in 1..=60 {
        hub.publish(&event(id, &text));
    }
    assert!(
        !sub.slot.parked.load(std::sync::atomic::Ordering::SeqCst),
        "a full socket hands the subscription back to its task"
    );
    let reader = tokio::spawn(async move { read_seqs(&mut client(peer).await, 60).await });
    let task = tokio::spawn(task(sub, outlet.clone(), server(&outlet).await));
    let seqs = reader.await.expect("reader");
    task.abort();
    assert_eq!(
        seqs,
        (1..=60).collect::<Vec<_>>(),
        "all, in order, none twice"
    );
}

#[tokio::test]
async fn a_frame_written_in_part_is_finished_before_anything_else_is_written() {
    let (hub, outlet, _sub, peer) = parked_on_person(true).await;
    // 200 KB: the shrunk socket takes a few KB of it, the rest is owed.
    let text = "y".repeat(200_000);
    hub.publish(&event(1, &text));
    let mut socket = server(&outlet).await;
    let reader = tokio::spawn(async move {
        let mut ws = client(peer).await;
        let mut got = Vec::new();
        while got.len() < 2 {
            let next = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
            match next
                .expect("a whole frame within 10 s")
                .expect("open")
                .expect("well-formed")
            {
                Message::Text(t) => got.push(t.to_string()),
                _ => continue,
            }
        }
        got
    });
    // The task's own frame waits for the publisher's rest.
    tokio::time::timeout(Duration::from_secs(10), socket.send(Message::text("after")))
        .await
        .expect("in time")
        .expect("sent");
    let got = reader.await.expect("reader");
    let status: serde_json::Value = serde_json::from_str(&got[0]).expect("json");
    assert_eq!(
        status["status"]["text"].as_str().map(str::len),
        Some(200_000)
    );
    assert_eq!(got[1], "after");
}

#[tokio::test]
async fn a_large_topic_is_written_by_one_fanout_thread_to_every_parked_socket() {
    large_topic_on_fanout_threads(1).await;
}

#[tokio::test]
async fn a_large_topic_is_shared_by_three_fanout_threads_and_every_parked_socket_gets_it() {
    large_topic_on_fanout_threads(3).await;
}

async fn large_topic_on_fanout_threads(threads: usize) {
    let hub = Hub::new(Box::new(super::LocalBroker), threads);
    let mut clients = Vec::new();
    let mut tasks = Vec::new();
    for _ in 0..40 {
        let (tcp, peer) = tcp_pair(false).await;
        let outlet = Arc::new(Outlet::new(tcp));
        let sub = hub.subscribe_direct("team:T1", &outlet);
        // The sockets' tasks: a write the kernel takes in part leaves the rest to them.
        tasks.push(tokio::spawn(task(
            sub,
            outlet.clone(),
            server(&outlet).await,
        )));
        clients.push(client(peer).await);
    }
    // Forty changes at once: the threads batch what queues behind the sweep they are in.
    for id in 1..=40 {
        hub.publish(&event(id, "to the team"));
    }
    let expected: Vec<i64> = (1..=40).collect();
    for c in &mut clients {
        assert_eq!(read_seqs(c, 40).await, expected);
    }
    for t in tasks {
        t.abort();
    }
}
