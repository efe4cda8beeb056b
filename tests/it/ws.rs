//! Protocol v1 over real sockets: auth, refusals, bad frames, resume.

use std::time::Duration;

use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

use crate::helpers::{
    Options, TEAM, TestApp, close_code, recv, recv_change, recv_until, send, subscribed_to,
};

async fn upgrade_status(app: &TestApp, query: &str, header: Option<&str>) -> u16 {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut req = format!("ws://{}/ws{query}", app.server.addr)
        .into_client_request()
        .expect("request");
    if let Some(h) = header {
        req.headers_mut()
            .insert("authorization", h.parse().expect("header"));
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => 101,
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => r.status().as_u16(),
        Err(e) => panic!("{e}"),
    }
}

#[tokio::test]
async fn header_query_and_first_frame_auth_all_work() {
    let app = TestApp::spawn_with(Options {
        users: 2,
        ..Default::default()
    })
    .await;
    assert_eq!(
        upgrade_status(&app, "", Some(&format!("Bearer {}", app.token))).await,
        101
    );
    let mut ws = app.connect(Some(&app.token)).await;
    send(&mut ws, json!({"type": "ping", "id": "3"})).await;
    assert_eq!(recv(&mut ws).await, json!({"type": "pong", "id": "3"}));
    let mut ws = app.connect(None).await;
    send(&mut ws, json!({"type": "auth", "token": app.token})).await;
    let v = recv(&mut ws).await;
    assert_eq!(v["type"], "authenticated");
    assert!(v["expires_at"].as_str().expect("time").ends_with('Z'));
}

#[tokio::test]
async fn bad_tokens_are_refused() {
    let app = TestApp::spawn_with(Options {
        users: 1,
        ..Default::default()
    })
    .await;
    assert_eq!(
        upgrade_status(&app, "?access_token=garbage", None).await,
        401
    );
    let (expired, _) = app
        .server
        .state
        .keys
        .mint("1", app.org_id, "admin", None, Some(-60));
    assert_eq!(
        upgrade_status(&app, &format!("?access_token={expired}"), None).await,
        401
    );
    let (ghost_org, _) = app.server.state.keys.mint("1", 999, "admin", None, None);
    assert_eq!(
        upgrade_status(&app, &format!("?access_token={ghost_org}"), None).await,
        401,
        "unknown organization"
    );
    let mut ws = app.connect(None).await;
    send(&mut ws, json!({"type": "auth", "token": "forged"})).await;
    assert_eq!(close_code(&mut ws).await, Some(4001));
    let r = app
        .http
        .get(app.url("/api/users"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status().as_u16(), 401);
    let body: serde_json::Value = r.json().await.expect("json");
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn topics_outside_the_organization_or_the_claim_are_forbidden() {
    let app = TestApp::spawn_with(Options {
        users: 2,
        ..Default::default()
    })
    .await;
    let people = app.wait_for_people(2).await;
    let (scoped, _) = app.server.state.keys.mint(
        "1",
        app.org_id,
        "member",
        Some(vec![people[0]["topic"].as_str().expect("t").to_owned()]),
        None,
    );
    let mut ws = app.connect(Some(&scoped)).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "a", "topics": [people[1]["topic"]]}),
    )
    .await;
    let e = recv(&mut ws).await;
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str(), e["id"].as_str()),
        (Some("error"), Some("forbidden"), Some("a"))
    );
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "b", "topics": ["team:TOTHER"]}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["code"], "forbidden");
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "c", "topics": [people[0]["topic"]]}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "subscribed");
}

#[tokio::test]
async fn bad_frames_get_errors_and_the_socket_stays_up() {
    let app = TestApp::spawn_with(Options {
        users: 1,
        ..Default::default()
    })
    .await;
    let mut ws = app.connect(Some(&app.token)).await;
    for bad in [
        "{not json",
        r#"{"type":"dance"}"#,
        r#"{"type":"subscribe","topics":"user:1"}"#,
        r#"{"type":"ping","extra":1}"#,
    ] {
        ws.send(Message::text(bad)).await.expect("send");
        let e = recv(&mut ws).await;
        assert_eq!(
            (e["type"].as_str(), e["code"].as_str()),
            (Some("error"), Some("bad_request")),
            "{bad}"
        );
    }
    ws.send(Message::binary(vec![1u8, 2, 3]))
        .await
        .expect("send");
    assert_eq!(recv(&mut ws).await["code"], "bad_request");
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "x", "topics": ["nonsense"]}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["code"], "bad_request");
    for i in 0..200 {
        send(
            &mut ws,
            json!({"type": "subscribe", "id": i, "topics": [format!("user:{}", 100_000 + i)]}),
        )
        .await;
        assert_eq!(recv(&mut ws).await["code"], "forbidden");
    }
    send(&mut ws, json!({"type": "ping", "id": "still-here"})).await;
    assert_eq!(recv(&mut ws).await["type"], "pong");
    // A frame over the 64 KiB limit closes the socket with 1009.
    ws.send(Message::text("x".repeat(1024 * 1024)))
        .await
        .expect("send");
    assert_eq!(close_code(&mut ws).await, Some(1009));
    // The server is still up.
    let mut again = app.connect(Some(&app.token)).await;
    send(&mut again, json!({"type": "ping"})).await;
    assert_eq!(recv(&mut again).await["type"], "pong");
}

#[tokio::test]
async fn reconnecting_with_since_replays_exactly_the_missed_events() {
    let app = TestApp::spawn_with(Options {
        users: 3,
        ..Default::default()
    })
    .await;
    let people = app.wait_for_people(3).await;
    let p = &people[0];
    let slack_id = p["slack_id"].as_str().expect("slack id");
    let mut ws = app.connect(Some(&app.token)).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "1", "topics": [format!("team:{TEAM}")]}),
    )
    .await;
    let sub = recv_until(&mut ws, |v| v["type"] == "subscribed").await;
    let snap = sub["snapshot"]
        .as_array()
        .expect("snapshot")
        .iter()
        .find(|e| e["user"]["id"] == p["id"])
        .expect("person in snapshot")
        .clone();
    assert_eq!(snap["topic"], format!("team:{TEAM}"));
    let held = snap["seq"].as_i64().expect("seq");
    drop(ws);

    let mut head = held;
    for text in ["one", "two", "three"] {
        app.sim.set_status(TEAM, slack_id, text, ":one:", 0).await;
        head = app.wait_for_status_text(&p["id"], text).await;
    }

    let mut ws = app.connect(Some(&app.token)).await;
    send(&mut ws, json!({"type": "subscribe", "id": "2", "topics": [format!("team:{TEAM}")], "since": {p["topic"].as_str().expect("topic"): held}})).await;
    let sub = recv_until(&mut ws, |v| v["type"] == "subscribed").await;
    assert_eq!(sub["recovered"][format!("team:{TEAM}")], true);
    let mut replayed = Vec::new();
    while replayed.len() < (head - held) as usize {
        let v = recv(&mut ws).await;
        if v["type"] == "status" && v["user"]["id"] == p["id"] {
            replayed.push(v["seq"].as_i64().expect("seq"));
        }
    }
    assert_eq!(replayed, ((held + 1)..=head).collect::<Vec<_>>());
    // Nothing more for that person: no duplicate.
    send(&mut ws, json!({"type": "ping", "id": "end"})).await;
    let v = recv_until(&mut ws, |v| {
        v["type"] == "pong" || (v["type"] == "status" && v["user"]["id"] == p["id"])
    })
    .await;
    assert_eq!(v["type"], "pong", "no duplicate after replay: {v}");

    // Asking for more than history holds is reported, never a silent partial replay.
    let mut ws = app.connect(Some(&app.token)).await;
    send(&mut ws, json!({"type": "subscribe", "id": "3", "topics": [p["topic"]], "since": {p["topic"].as_str().expect("topic"): head + 50}})).await;
    let sub = recv_until(&mut ws, |v| v["type"] == "subscribed").await;
    assert_eq!(sub["recovered"][p["topic"].as_str().expect("topic")], false);
}

#[tokio::test]
async fn a_socket_on_a_team_and_one_of_its_people_gets_each_change_once_per_topic() {
    let app = TestApp::spawn_with(Options {
        users: 3,
        ..Default::default()
    })
    .await;
    let people = app.wait_for_people(3).await;
    let p = &people[1];
    let slack_id = p["slack_id"].as_str().expect("slack id");
    let team = format!("team:{TEAM}");
    let mut ws = app.connect(Some(&app.token)).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "1", "topics": [team, p["topic"]]}),
    )
    .await;
    let sub = recv_until(&mut ws, |v| v["type"] == "subscribed").await;
    // One snapshot entry per topic that covers the person.
    let entries = sub["snapshot"]
        .as_array()
        .expect("snapshot")
        .iter()
        .filter(|e| e["user"]["id"] == p["id"])
        .count();
    assert_eq!(entries, 2, "{sub}");

    for text in ["first", "second"] {
        app.sim.set_status(TEAM, slack_id, text, ":one:", 0).await;
        let mut topics = Vec::new();
        while topics.len() < 2 {
            let v = recv_change(&mut ws, "text").await;
            if v["user"]["id"] == p["id"] {
                assert_eq!(v["status"]["text"], text);
                topics.push(v["topic"].as_str().expect("topic").to_owned());
            }
        }
        topics.sort();
        assert_eq!(
            topics,
            vec![team.clone(), p["topic"].as_str().expect("t").to_owned()]
        );
    }
    // And nothing more: each change came once on each topic.
    send(&mut ws, json!({"type": "ping", "id": "end"})).await;
    let v = recv_until(&mut ws, |v| {
        v["type"] == "pong" || (v["type"] == "status" && v["user"]["id"] == p["id"])
    })
    .await;
    assert_eq!(v["type"], "pong", "no third frame: {v}");
}

#[tokio::test]
async fn a_reader_that_never_reads_costs_bounded_memory_and_gets_resync_or_4008() {
    use std::sync::Arc;
    let (app, people, id) = app_with_one_person().await;
    let mut ws = app.connect(Some(&app.token)).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "topics": [people[0]["topic"]]}),
    )
    .await;
    recv_until(&mut ws, |v| v["type"] == "subscribed").await;
    let row = app
        .server
        .state
        .store
        .person(id)
        .await
        .expect("q")
        .expect("person");
    let card = Arc::new(row.card());
    // Far more frames than the socket buffers and the topic's ring hold, while the client reads
    // nothing: 100,000 frames of ~4 KB, 400 MB if anything buffered them per socket.
    let rss_before = rss_bytes();
    let text = "x".repeat(4000);
    for seq in 1..=100_000 {
        app.server
            .state
            .hub
            .publish(&synthetic_event(&card, 1_000_000 + seq, &text));
        if seq % 1000 == 0 {
            tokio::task::yield_now().await;
        }
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let grown = rss_bytes().saturating_sub(rss_before);
    assert!(
        grown < 150 << 20,
        "a reader that never reads cost {} MB of server memory",
        grown >> 20
    );
    let mut statuses = 0;
    let resync = loop {
        use futures_util::StreamExt;
        match tokio::time::timeout(Duration::from_secs(10), ws.next())
            .await
            .expect("frames keep coming")
        {
            Some(Ok(Message::Text(t))) => {
                let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
                if v["type"] == "resync" {
                    break v;
                }
                statuses += 1;
            }
            Some(Ok(Message::Close(c))) => {
                assert_eq!(
                    c.map(|c| u16::from(c.code)),
                    Some(4008),
                    "only a slow-consumer close is acceptable"
                );
                return;
            }
            Some(Ok(_)) => {}
            other => panic!("socket ended without resync or 4008: {other:?}"),
        }
    };
    assert!(
        statuses < 100_000,
        "frames were skipped, so a resync is owed"
    );
    assert_eq!(resync["topic"], people[0]["topic"]);
    assert_eq!(resync["snapshot"][0]["user"]["id"], id);
    assert!(
        app.metric("chex_resyncs_total").await >= 1,
        "resyncs are counted"
    );
}

/// A burst of large changes to a team of 20 sockets — more than the publisher writes to itself, so
/// the fan-out threads write — one of which reads nothing until the burst is out, its receive
/// buffer a few KB: the threads find its socket full and hand it back to its task, which writes
/// the rest from the ring. Every socket gets every change once, in order.
#[tokio::test]
async fn a_burst_to_a_team_reaches_every_socket_once_and_in_order_even_a_stalled_one() {
    use std::sync::Arc;
    let (app, _, id) = app_with_one_person().await;
    let team = format!("team:{TEAM}");
    // The stalled socket: a 4 KB receive buffer, so ~6 MB of frames cannot all sit in the kernel.
    let tcp = tokio::net::TcpSocket::new_v4().expect("socket");
    tcp.set_recv_buffer_size(4096).expect("rcvbuf");
    let tcp = tcp.connect(app.server.addr).await.expect("connect");
    let url = format!("ws://{}/ws?access_token={}", app.server.addr, app.token);
    let (mut stalled, _) =
        tokio_tungstenite::client_async(url, tokio_tungstenite::MaybeTlsStream::Plain(tcp))
            .await
            .expect("upgrade");
    send(&mut stalled, json!({"type": "subscribe", "topics": [team]})).await;
    recv_until(&mut stalled, |v| v["type"] == "subscribed").await;
    let mut readers = Vec::new();
    for _ in 0..19 {
        readers.push(subscribed_to(&app, &team).await.0);
    }
    let card = Arc::new(
        app.server
            .state
            .store
            .person(id)
            .await
            .expect("q")
            .expect("person")
            .card(),
    );
    const BURST: i64 = 400;
    let text = "z".repeat(16_000);
    let direct_before = app.metric("chex_ws_direct_writes_total").await;
    let handed_before = app.metric("chex_ws_handed_back_total").await;
    let publisher = {
        let hub = app.server.state.hub.clone();
        tokio::task::spawn_blocking(move || {
            for i in 1..=BURST {
                hub.publish(&synthetic_event(&card, 1_000_000 + i, &text));
            }
        })
    };
    async fn seqs(ws: &mut crate::helpers::Ws) -> Vec<i64> {
        let mut got = Vec::new();
        while got.len() < BURST as usize {
            let v = recv(ws).await;
            assert_ne!(v["type"], "resync", "the ring held the whole burst");
            if v["type"] == "status" {
                got.push(v["seq"].as_i64().expect("seq"));
            }
        }
        got
    }
    let expected: Vec<i64> = (1..=BURST).map(|i| 1_000_000 + i).collect();
    // The stalled socket starts reading a second in, the burst long out by then (well within the
    // server's 10 s send timeout).
    let late = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        seqs(&mut stalled).await
    };
    let (reading, late) = tokio::join!(
        futures_util::future::join_all(readers.iter_mut().map(seqs)),
        late
    );
    for got in reading {
        assert_eq!(got, expected, "a reading socket");
    }
    assert_eq!(late, expected, "the stalled socket");
    publisher.await.expect("publisher");
    assert!(
        app.metric("chex_ws_direct_writes_total").await > direct_before,
        "the publisher wrote directly"
    );
    assert!(
        app.metric("chex_ws_handed_back_total").await > handed_before,
        "and handed the stalled socket back"
    );
    // Nothing more behind the burst.
    send(&mut stalled, json!({"type": "ping", "id": "end"})).await;
    let v = recv_until(&mut stalled, |v| v["type"] != "status").await;
    assert_eq!(v["type"], "pong", "{v}");
}

/// An app whose workspace has one person, with the people list and that person's id.
async fn app_with_one_person() -> (TestApp, Vec<serde_json::Value>, i64) {
    let app = TestApp::spawn_with(Options {
        users: 1,
        ..Default::default()
    })
    .await;
    let people = app.wait_for_people(1).await;
    let id = people[0]["id"].as_i64().expect("id");
    (app, people, id)
}

/// An event published straight to the hub, as the pipeline would after a commit: `n` is its id
/// and its seq, past any the store has given out, so that ids grow in publication order.
fn synthetic_event(
    card: &std::sync::Arc<chex::domain::PersonCard>,
    n: i64,
    text: &str,
) -> std::sync::Arc<chex::domain::StatusEvent> {
    std::sync::Arc::new(chex::domain::StatusEvent {
        id: n,
        person: card.clone(),
        seq: n,
        status: chex::domain::Status {
            text: text.to_owned(),
            ..Default::default()
        },
        changed: vec![],
        previous: Default::default(),
        observed_at: chex::domain::now(),
        source: chex::domain::Source::Slack,
    })
}

/// This process's resident set (the server runs in it), from /proc; 0 where there is no /proc.
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

#[tokio::test]
async fn ten_thousand_subscribe_requests_are_each_answered() {
    use futures_util::StreamExt;
    let app = TestApp::spawn_with(Options {
        users: 2,
        ..Default::default()
    })
    .await;
    app.wait_for_people(2).await;
    let ws = app.connect(Some(&app.token)).await;
    let (mut tx, mut rx) = ws.split();
    // Written from another task while this one reads, as a greedy client would: replies must not
    // wait for the client to stop sending.
    let writer = tokio::spawn(async move {
        for i in 0..10_000u32 {
            let topic = match i % 4 {
                0 => format!("team:{TEAM}"),
                1 => format!("user:{}", 1_000_000 + i),
                2 => "not-a-topic".to_owned(),
                _ => "team:TNOTOURS".to_owned(),
            };
            let frame = json!({"type": "subscribe", "id": i, "topics": [topic]});
            tx.send(Message::text(frame.to_string()))
                .await
                .expect("send");
        }
        tx
    });
    let mut answered = std::collections::HashMap::<String, u32>::new();
    let mut next_id = 0u32;
    while next_id < 10_000 {
        let msg = tokio::time::timeout(Duration::from_secs(30), rx.next())
            .await
            .expect("answers keep coming")
            .expect("socket open")
            .expect("frame");
        let Message::Text(t) = msg else { continue };
        let v: serde_json::Value = serde_json::from_str(t.as_str()).expect("json");
        if v["type"] == "status" {
            continue;
        }
        assert_eq!(v["id"], next_id, "answers come in order, one per request");
        let kind = if v["type"] == "error" {
            v["code"].as_str().expect("code").to_owned()
        } else {
            v["type"].as_str().expect("type").to_owned()
        };
        *answered.entry(kind).or_default() += 1;
        next_id += 1;
    }
    assert_eq!(answered["subscribed"], 2500);
    assert_eq!(answered["forbidden"], 5000);
    assert_eq!(answered["bad_request"], 2500);
    let mut tx = writer.await.expect("writer");
    tx.send(Message::text(
        json!({"type": "ping", "id": "alive"}).to_string(),
    ))
    .await
    .expect("send");
    loop {
        let Some(Ok(Message::Text(t))) = rx.next().await else {
            panic!("socket closed")
        };
        if t.as_str().contains("\"pong\"") {
            break;
        }
    }
}

/// A burst of subscribers to a team shares one read of it (a deploy reconnects every dashboard at
/// once), but a subscriber arriving after a change was published gets a fresh read holding it:
/// a shared snapshot is never older than what the socket was not sent live.
#[tokio::test]
async fn a_team_snapshot_is_shared_by_a_burst_but_never_older_than_a_change() {
    let app = TestApp::spawn_with(Options {
        users: 4,
        ..Default::default()
    })
    .await;
    let people = app.wait_for_people(4).await;
    let team = format!("team:{TEAM}");
    let key = (team.clone(), app.org_id);
    let read_at = || app.server.state.snapshots.get(&key).map(|e| e.0);

    let (mut first, reply_a) = subscribed_to(&app, &team).await;
    let read = read_at().expect("the first subscriber's read is kept");
    let (_second, reply_b) = subscribed_to(&app, &team).await;
    assert_eq!(
        read_at(),
        Some(read),
        "the second subscriber used the same read"
    );
    assert_eq!(reply_a["snapshot"], reply_b["snapshot"]);

    let p = &people[0];
    let slack_id = p["slack_id"].as_str().expect("slack id");
    app.sim
        .set_status(TEAM, slack_id, "after the burst", ":new:", 0)
        .await;
    // Published: the first socket has it live.
    recv_until(&mut first, |v| v["status"]["text"] == "after the burst").await;
    let (_third, reply_c) = subscribed_to(&app, &team).await;
    assert_ne!(
        read_at(),
        Some(read),
        "a change since the shared read forces a new one"
    );
    let entry = reply_c["snapshot"]
        .as_array()
        .expect("snapshot")
        .iter()
        .find(|e| e["user"]["id"] == p["id"])
        .cloned()
        .expect("the person is in the snapshot");
    assert_eq!(entry["status"]["text"], "after the burst", "{entry}");
}
