//! `GET /api/events`: Server-Sent Events with `Last-Event-ID` resume, read by a plain HTTP client.

use std::time::Duration;

use serde_json::Value;

use crate::helpers::{Options, TEAM, TestApp};

/// One parsed SSE event.
#[derive(Debug)]
struct SseEvent {
    id: Option<String>,
    kind: String,
    data: Value,
}

/// Reads events off a streaming response, skipping keep-alive comments.
struct SseReader {
    resp: reqwest::Response,
    buf: String,
}

impl SseReader {
    async fn next(&mut self) -> SseEvent {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let block: String = self.buf.drain(..end + 2).collect();
                let (mut id, mut kind, mut data) = (None, String::from("message"), String::new());
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        kind = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        data.push_str(v.trim_start());
                    }
                }
                if data.is_empty() {
                    continue;
                }
                let data = serde_json::from_str(&data).expect("data is JSON");
                return SseEvent { id, kind, data };
            }
            let chunk = tokio::time::timeout(Duration::from_secs(10), self.resp.chunk())
                .await
                .expect("an event within 10 s")
                .expect("stream readable")
                .expect("stream still open");
            self.buf
                .push_str(std::str::from_utf8(&chunk).expect("utf-8"));
        }
    }

    async fn next_status(&mut self) -> SseEvent {
        loop {
            let e = self.next().await;
            if e.kind == "status" {
                return e;
            }
        }
    }
}

async fn open(app: &TestApp, query: &str, last_id: Option<&str>) -> reqwest::Response {
    let mut req = app
        .http
        .get(app.url(&format!("/api/events{query}")))
        .bearer_auth(&app.token);
    if let Some(id) = last_id {
        req = req.header("last-event-id", id);
    }
    req.send().await.expect("request")
}

async fn stream(app: &TestApp, query: &str, last_id: Option<&str>) -> SseReader {
    let resp = open(app, query, last_id).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream",
        "an event stream"
    );
    SseReader {
        resp,
        buf: String::new(),
    }
}

#[tokio::test]
async fn a_stream_snapshots_goes_live_and_resumes_from_last_event_id() {
    let app = TestApp::spawn_with(Options {
        users: 3,
        ..Default::default()
    })
    .await;
    let people = app.wait_for_people(3).await;
    let p = &people[0];
    let slack_id = p["slack_id"].as_str().expect("slack id");
    let team = format!("?topics=team:{TEAM}");

    let mut sse = stream(&app, &team, None).await;
    let opening = sse.next().await;
    assert_eq!(opening.kind, "subscribed");
    assert_eq!(
        opening.data["snapshot"].as_array().expect("snapshot").len(),
        3
    );
    assert!(opening.id.is_some(), "the snapshot carries a resume point");

    app.sim.set_status(TEAM, slack_id, "live", ":one:", 0).await;
    let live = sse.next_status().await;
    assert_eq!(live.data["status"]["text"], "live");
    assert_eq!(live.data["topic"], format!("team:{TEAM}"));
    let last_id = live.id.expect("status events carry an id");
    let held = live.data["seq"].as_i64().expect("seq");
    drop(sse);

    // Three changes while the client is away.
    let mut head = held;
    for text in ["one", "two", "three"] {
        app.sim.set_status(TEAM, slack_id, text, ":one:", 0).await;
        head = app.wait_for_status_text(&p["id"], text).await;
    }

    let mut sse = stream(&app, &team, Some(&last_id)).await;
    let opening = sse.next().await;
    assert_eq!(opening.kind, "subscribed");
    assert_eq!(opening.data["recovered"], true);
    let mut replayed = Vec::new();
    let mut ids = Vec::new();
    while replayed.len() < (head - held) as usize {
        let e = sse.next_status().await;
        assert_eq!(e.data["user"]["id"], p["id"], "only the missed events");
        replayed.push(e.data["seq"].as_i64().expect("seq"));
        ids.push(e.id.expect("id").parse::<i64>().expect("numeric id"));
    }
    assert_eq!(replayed, ((held + 1)..=head).collect::<Vec<_>>());
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    // Then live again, with no duplicate of the replay in between.
    app.sim
        .set_status(TEAM, slack_id, "after", ":one:", 0)
        .await;
    let next = sse.next_status().await;
    assert_eq!(next.data["seq"], head + 1);
    assert_eq!(next.data["status"]["text"], "after");
}

#[tokio::test]
async fn a_person_reached_through_two_topics_arrives_once_per_event() {
    let app = TestApp::spawn_with(Options {
        users: 2,
        ..Default::default()
    })
    .await;
    let people = app.wait_for_people(2).await;
    let p = &people[1];
    let slack_id = p["slack_id"].as_str().expect("slack id");
    let q = format!(
        "?topics=team:{TEAM},{}",
        p["topic"].as_str().expect("topic")
    );
    let mut sse = stream(&app, &q, None).await;
    let opening = sse.next().await;
    assert_eq!(
        opening.data["snapshot"].as_array().expect("snapshot").len(),
        2
    );
    for text in ["a", "b"] {
        app.sim.set_status(TEAM, slack_id, text, ":one:", 0).await;
        let e = sse.next_status().await;
        assert_eq!(e.data["status"]["text"], text, "one copy, in order");
    }
}

#[tokio::test]
async fn bad_requests_get_clear_http_errors() {
    let app = TestApp::spawn_with(Options {
        users: 1,
        ..Default::default()
    })
    .await;
    let code = |r: reqwest::Response| async move {
        let status = r.status().as_u16();
        let v: Value = r.json().await.expect("json error");
        (status, v["error"]["code"].as_str().unwrap_or("").to_owned())
    };
    let anonymous = app
        .http
        .get(app.url(&format!("/api/events?topics=team:{TEAM}")))
        .send()
        .await
        .expect("request");
    assert_eq!(code(anonymous).await, (401, "unauthorized".into()));
    let forged = app
        .http
        .get(app.url(&format!(
            "/api/events?topics=team:{TEAM}&access_token=not.a.jwt"
        )))
        .send()
        .await
        .expect("request");
    assert_eq!(code(forged).await, (401, "unauthorized".into()));
    assert_eq!(
        code(open(&app, "", None).await).await,
        (400, "bad_request".into())
    );
    assert_eq!(
        code(open(&app, "?topics=nonsense", None).await).await,
        (400, "bad_request".into())
    );
    assert_eq!(
        code(open(&app, "?topics=team:TOTHER", None).await).await,
        (403, "forbidden".into())
    );
    assert_eq!(
        code(open(&app, &format!("?topics=team:{TEAM}"), Some("yesterday")).await).await,
        (400, "bad_request".into())
    );
}

#[tokio::test]
async fn the_query_token_works_for_event_source_clients() {
    let app = TestApp::spawn_with(Options {
        users: 1,
        ..Default::default()
    })
    .await;
    app.wait_for_people(1).await;
    let resp = app
        .http
        .get(app.url(&format!(
            "/api/events?topics=team:{TEAM}&access_token={}",
            app.token
        )))
        .send()
        .await
        .expect("request");
    assert_eq!(resp.status(), 200);
    let mut sse = SseReader {
        resp,
        buf: String::new(),
    };
    assert_eq!(sse.next().await.kind, "subscribed");
}
