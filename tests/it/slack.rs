//! The Slack client against the simulator and against one-off servers: paging, 429, faults,
//! revoked tokens, and the Events API endpoint.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use chex::sim::slack::{SimOptions, SlackSim, WorkspaceSpec};
use chex::sources::slack::events::sign;
use chex::sources::slack::{Governor, SlackClient, SlackError};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use warp::Filter;

use crate::helpers::{Options, TEAM, TestApp, install_crypto};

async fn sim(users: usize, scale: Option<f64>) -> (SlackSim, WorkspaceSpec) {
    install_crypto();
    let spec = WorkspaceSpec::new("T0PAGE", users);
    let sim = SlackSim::start(
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        vec![spec.clone()],
        SimOptions {
            rate_scale: scale,
            life_interval: None,
            seed: 3,
        },
    )
    .await
    .expect("sim");
    (sim, spec)
}

#[tokio::test]
async fn paging_over_1000_users_returns_each_exactly_once() {
    let (sim, spec) = sim(1000, None).await;
    let client = SlackClient::new(&sim.api_url(), Arc::new(Governor::new(100.0))).expect("client");
    let users = client.users_list_all(&spec.token).await.expect("list");
    let ids: HashSet<_> = users.iter().map(|u| u.id.clone()).collect();
    assert_eq!(users.len(), 1000);
    assert_eq!(ids.len(), 1000);
    assert_eq!(sim.calls("users.list"), 5, "200 per page");
}

#[tokio::test]
async fn an_expired_cursor_is_a_typed_error() {
    let (sim, spec) = sim(300, None).await;
    let client = SlackClient::new(&sim.api_url(), Arc::new(Governor::new(100.0))).expect("client");
    let first = client
        .users_list_page(&spec.token, "", 200)
        .await
        .expect("page");
    sim.with(|w| w.by_team("T0PAGE").expect("ws").cursor_epoch += 1);
    let r = client
        .users_list_page(&spec.token, &first.response_metadata.next_cursor, 200)
        .await;
    assert_eq!(r.err(), Some(SlackError::InvalidCursor));
}

#[tokio::test]
async fn a_429_with_retry_after_2_delays_that_method_by_2s_and_no_other() {
    install_crypto();
    let hits = Arc::new(AtomicU32::new(0));
    let h = hits.clone();
    let route = warp::path!("api" / String).map(move |m: String| {
        if m == "users.list" && h.fetch_add(1, Ordering::SeqCst) == 0 {
            return warp::http::Response::builder()
                .status(429)
                .header("retry-after", "2")
                .body(r#"{"ok":false,"error":"ratelimited"}"#.to_owned())
                .expect("response");
        }
        let body = if m == "users.list" {
            json!({"ok": true, "members": [], "response_metadata": {"next_cursor": ""}})
        } else {
            json!({"ok": true, "presence": "away"})
        };
        warp::http::Response::builder()
            .status(200)
            .body(body.to_string())
            .expect("response")
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(warp::serve(route).incoming(listener).run());
    let client = SlackClient::new(
        &format!("http://{addr}/api"),
        Arc::new(Governor::new(100.0)),
    )
    .expect("client");
    let t0 = Instant::now();
    let c2 = client.clone();
    let other = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let t = Instant::now();
        c2.get_presence("xoxb-x", "U1").await.expect("presence");
        t.elapsed()
    });
    client
        .users_list_page("xoxb-x", "", 200)
        .await
        .expect("second attempt succeeds");
    assert!(
        t0.elapsed() >= Duration::from_secs(2),
        "retried after {:?}",
        t0.elapsed()
    );
    assert!(
        other.await.expect("join") < Duration::from_millis(500),
        "another method was not held back"
    );
    assert_eq!(hits.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_500_and_a_garbage_body_are_retried_then_reported() {
    let (sim, spec) = sim(5, None).await;
    let client = SlackClient::new(&sim.api_url(), Arc::new(Governor::new(100.0))).expect("client");
    sim.with(|w| w.by_team("T0PAGE").expect("ws").faults.fail_next = 1);
    client
        .auth_test(&spec.token)
        .await
        .expect("recovers after one 500");
    sim.with(|w| w.by_team("T0PAGE").expect("ws").faults.malformed_next = 1);
    client
        .auth_test(&spec.token)
        .await
        .expect("recovers after one garbage body");
    sim.with(|w| w.by_team("T0PAGE").expect("ws").faults.fail_next = 10);
    assert_eq!(
        client.auth_test(&spec.token).await.err(),
        Some(SlackError::Http(500))
    );
    assert_eq!(
        client.auth_test("xoxb-unknown").await.err(),
        Some(SlackError::InvalidAuth)
    );
}

#[tokio::test]
async fn a_revoked_token_stops_polling_and_shows_the_error() {
    let app = TestApp::spawn_with(Options {
        users: 3,
        ..Default::default()
    })
    .await;
    app.wait_for_people(3).await;
    app.sim
        .with(|w| w.by_team(TEAM).expect("ws").faults.revoked = true);
    let deadline = Instant::now() + Duration::from_secs(15);
    let conn = loop {
        let (_, v) = app.get("/api/connections").await;
        let c = v["connections"][0].clone();
        if c["status"] == "error" {
            break c;
        }
        assert!(Instant::now() < deadline, "connection never marked: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        conn["last_error"]
            .as_str()
            .expect("error")
            .contains("token_revoked")
    );
    assert!(
        conn.get("token").is_none() && !conn.to_string().contains(&app.spec.token),
        "the token is never returned"
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    let calls = app.sim.calls("users.getPresence");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.sim.calls("users.getPresence"), calls, "polling stopped");
    let (_, users) = app.get("/api/users").await;
    assert!(
        users["users"]
            .as_array()
            .expect("users")
            .iter()
            .all(|u| u["status"]["stale"] == true),
        "people are marked stale"
    );
}

fn envelope(team: &str, user: &Value) -> String {
    json!({"type": "event_callback", "team_id": team, "event_id": "Ev1", "event": {"type": "user_change", "user": user}}).to_string()
}

#[tokio::test]
async fn the_events_api_accepts_signed_callbacks_and_refuses_the_rest() {
    let app = TestApp::spawn_with(Options {
        users: 2,
        ..Default::default()
    })
    .await;
    let people = app.wait_for_people(2).await;
    let slack_id = people[0]["slack_id"].as_str().expect("id").to_owned();
    let user = json!({"id": slack_id, "team_id": TEAM, "name": "x", "real_name": "Renamed", "profile": {"real_name": "Renamed", "status_text": "Signed", "status_emoji": ":lock:", "status_expiration": 0}});
    let body = envelope(TEAM, &user);
    let now = chrono::Utc::now().timestamp();
    let post = |ts: Option<String>, sig: Option<String>, body: String| {
        let mut r = app
            .http
            .post(app.url("/slack/events"))
            .header("content-type", "application/json")
            .body(body);
        if let Some(t) = ts {
            r = r.header("x-slack-request-timestamp", t);
        }
        if let Some(s) = sig {
            r = r.header("x-slack-signature", s);
        }
        async move { r.send().await.expect("post").status().as_u16() }
    };
    let bad = sign("wrong-secret", &now.to_string(), body.as_bytes());
    assert_eq!(
        post(Some(now.to_string()), Some(bad), body.clone()).await,
        401
    );
    assert_eq!(post(None, None, body.clone()).await, 401);
    let stale = now - 600;
    assert_eq!(
        post(
            Some(stale.to_string()),
            Some(sign(
                &app.spec.signing_secret,
                &stale.to_string(),
                body.as_bytes()
            )),
            body.clone()
        )
        .await,
        401
    );
    assert_eq!(post(None, None, "{not json".into()).await, 400);
    let (_, before) = app.get(&format!("/api/users/{}", people[0]["id"])).await;
    assert_ne!(
        before["status"]["text"], "Signed",
        "refused events changed nothing"
    );

    let good = sign(&app.spec.signing_secret, &now.to_string(), body.as_bytes());
    assert_eq!(
        post(Some(now.to_string()), Some(good), body.clone()).await,
        200
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, after) = app.get(&format!("/api/users/{}", people[0]["id"])).await;
        if after["status"]["text"] == "Signed" {
            assert_eq!(
                after["name"], "Renamed",
                "user_change replaces the stored user"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "signed event not applied: {after}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The server counted that change's way from observation to publication.
    assert!(app.metric("chex_publish_delay_seconds_count").await >= 1);

    // Signed, but an event of a known type in the wrong shape, or not an object at all: refused
    // with the reason, nothing applied.
    for event in [
        json!({"type": "user_change", "user": slack_id}),
        json!({"type": "dnd_updated_user"}),
        json!(5),
    ] {
        let body = json!({"type": "event_callback", "team_id": TEAM, "event": event}).to_string();
        let s = sign(&app.spec.signing_secret, &now.to_string(), body.as_bytes());
        assert_eq!(
            post(Some(now.to_string()), Some(s), body).await,
            400,
            "{event}"
        );
    }

    let challenge =
        json!({"type": "url_verification", "team_id": TEAM, "challenge": "abc123"}).to_string();
    let r = app
        .http
        .post(app.url("/slack/events"))
        .header("x-slack-request-timestamp", now.to_string())
        .header(
            "x-slack-signature",
            sign(
                &app.spec.signing_secret,
                &now.to_string(),
                challenge.as_bytes(),
            ),
        )
        .body(challenge)
        .send()
        .await
        .expect("post");
    assert_eq!(
        r.json::<Value>().await.expect("json")["challenge"],
        "abc123"
    );

    let unknown =
        json!({"type": "event_callback", "team_id": TEAM, "event": {"type": "reaction_added"}})
            .to_string();
    let s = sign(
        &app.spec.signing_secret,
        &now.to_string(),
        unknown.as_bytes(),
    );
    assert_eq!(
        post(Some(now.to_string()), Some(s), unknown).await,
        200,
        "unknown types are acknowledged"
    );
}

#[tokio::test]
async fn a_sweep_picks_up_an_unpushed_status_and_its_expiry() {
    let app = TestApp::spawn_with(Options {
        users: 3,
        ..Default::default()
    })
    .await;
    let people = app.wait_for_people(3).await;
    // No Events API push: only a sweep can see the edit (its `updated` moved).
    app.sim.set_events_url(None);
    let slack_id = people[1]["slack_id"].as_str().expect("slack id").to_owned();
    let expires = chrono::Utc::now().timestamp() + 2;
    // (Answers false: with no events URL there is nothing to push.)
    app.sim
        .set_status(TEAM, &slack_id, "Quick call", ":phone:", expires)
        .await;
    let id = &people[1]["id"];
    app.wait_for_status_text(id, "Quick call").await;
    // Slack clears it at expiry without bumping `updated`; Chex clears it too.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, u) = app.get(&format!("/api/users/{id}")).await;
        if u["status"]["text"] == "" {
            assert_eq!(u["status"]["expires_at"], Value::Null);
            break;
        }
        assert!(Instant::now() < deadline, "never expired: {u}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Slack redelivers an event it could not deliver a minute or five minutes late, after newer
/// edits of the same person were applied. The late retry must not undo them; a retry of a recent
/// event, and a first delivery however far Slack's clock is off, still apply.
#[tokio::test]
async fn a_late_retry_does_not_undo_a_newer_edit() {
    let (app, id, slack_id) = app_and_its_first_person().await;
    let (id, slack_id) = (&id, slack_id.as_str());
    let now = chrono::Utc::now().timestamp();
    let deliver = async |event_id: &str, text: &str, event_time: i64, retry: Option<u32>| {
        let body = user_change(slack_id, event_id, text, event_time);
        assert_eq!(post_event(&app, body, retry).await, 200, "{text}");
    };

    deliver("Ev1", "New", now, None).await;
    app.wait_for_status_text(id, "New").await;
    // Dispatched a minute before "New" arrived, redelivered only now: acknowledged, dropped,
    // and counted.
    let superseded = app.metric("chex_readings_superseded_total").await;
    deliver("Ev0", "Old", now - 61, Some(2)).await;
    app.server.state.pipeline.flush().await;
    let (_, user) = app.get(&format!("/api/users/{id}")).await;
    assert_eq!(user["status"]["text"], "New", "{user}");
    assert!(app.metric("chex_readings_superseded_total").await > superseded);
    // A retry of an event dispatched after "New" arrived applies.
    deliver("Ev2", "Retried", chrono::Utc::now().timestamp(), Some(1)).await;
    app.wait_for_status_text(id, "Retried").await;
    // A first delivery is stamped at its arrival: ten minutes of skew on Slack's clock (inside
    // the signature's window is another matter) do not make it older than "Retried".
    deliver("Ev3", "Skewed", now - 600, None).await;
    app.wait_for_status_text(id, "Skewed").await;

    // A malformed body is refused for good: Slack is told not to retry it. A refused signature
    // is left to Slack's retries, since the secret may be mid-rotation.
    let body = json!({"type": "event_callback", "team_id": TEAM, "event": {"type": "user_change", "user": 5}}).to_string();
    let ts = chrono::Utc::now().timestamp().to_string();
    let post = |sig: String| {
        app.http
            .post(app.url("/slack/events"))
            .header("x-slack-request-timestamp", &ts)
            .header("x-slack-signature", sig)
            .body(body.clone())
            .send()
    };
    let r = post(sign(&app.spec.signing_secret, &ts, body.as_bytes()))
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 400);
    assert_eq!(r.headers()["x-slack-no-retry"], "1");
    let r = post(sign("wrong", &ts, body.as_bytes()))
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("x-slack-no-retry").is_none());
}

/// An app whose pollers stop after their first round (the tests' events are the only changes),
/// and its first person's id and Slack id once the first sweep has imported everyone.
async fn app_and_its_first_person() -> (TestApp, Value, String) {
    let app = TestApp::spawn_with(Options::first_polls_only(2)).await;
    let people = app.wait_for_people(2).await;
    let id = people[0]["id"].clone();
    let slack_id = people[0]["slack_id"].as_str().expect("slack id").to_owned();
    (app, id, slack_id)
}

/// A `user_change` callback for the test workspace's `slack_id`, setting its status text.
fn user_change(slack_id: &str, event_id: &str, text: &str, event_time: i64) -> String {
    let user = json!({"id": slack_id, "team_id": TEAM, "name": "x", "real_name": "Pushed", "profile": {"real_name": "Pushed", "status_text": text, "status_emoji": ":clock1:", "status_expiration": 0}});
    json!({"type": "event_callback", "team_id": TEAM, "event_id": event_id, "event_time": event_time, "event": {"type": "user_change", "user": user}}).to_string()
}

/// Posts an Events API body signed with the test workspace's secret, as a retry when `retry` is
/// set; returns the status.
async fn post_event(app: &TestApp, body: String, retry: Option<u32>) -> u16 {
    post_event_at(app, body, retry, chrono::Utc::now().timestamp()).await
}

/// The same, with the request timestamp `at` (Unix seconds).
async fn post_event_at(app: &TestApp, body: String, retry: Option<u32>, at: i64) -> u16 {
    signed_event_post(app, body, retry, at)
        .await
        .status()
        .as_u16()
}

/// The same, whole answer.
async fn signed_event_post(
    app: &TestApp,
    body: String,
    retry: Option<u32>,
    at: i64,
) -> reqwest::Response {
    let ts = at.to_string();
    let mut r = app
        .http
        .post(app.url("/slack/events"))
        .header("x-slack-request-timestamp", &ts)
        .header(
            "x-slack-signature",
            sign(&app.spec.signing_secret, &ts, body.as_bytes()),
        )
        .body(body);
    if let Some(n) = retry {
        r = r
            .header("x-slack-retry-num", n.to_string())
            .header("x-slack-retry-reason", "http_timeout");
    }
    r.send().await.expect("post")
}

/// Slack redelivers an event whose answer came late or was lost, though Chex took it: the
/// redelivery is acknowledged (else Slack tries again), counted and dropped. An event refused
/// before it was taken is not remembered, so its retry is applied.
#[tokio::test]
async fn a_redelivery_of_a_taken_event_is_acknowledged_and_dropped() {
    let (app, id, slack_id) = app_and_its_first_person().await;
    let (id, slack_id) = (&id, slack_id.as_str());
    let body = |event_id: &str, text: &str| {
        user_change(slack_id, event_id, text, chrono::Utc::now().timestamp())
    };
    assert_eq!(post_event(&app, body("EvTaken", "Taken"), None).await, 200);
    app.wait_for_status_text(id, "Taken").await;
    // Slack's redelivery is the same body; a different text here shows it is not applied.
    let duplicates = app.metric("chex_slack_events_duplicate_total").await;
    assert_eq!(
        post_event(&app, body("EvTaken", "Again"), Some(1)).await,
        200
    );
    assert_eq!(
        post_event(&app, body("EvTaken", "Again"), Some(2)).await,
        200
    );
    app.server.state.pipeline.flush().await;
    let (_, user) = app.get(&format!("/api/users/{id}")).await;
    assert_eq!(user["status"]["text"], "Taken", "{user}");
    // (The counter is the process's, shared with tests running alongside.)
    assert!(app.metric("chex_slack_events_duplicate_total").await >= duplicates + 2);

    // Refused (a stale request timestamp) before it was taken: the retry is new to Chex.
    let refused = body("EvRefused", "Refused first");
    let stale = chrono::Utc::now().timestamp() - 600;
    assert_eq!(post_event_at(&app, refused.clone(), None, stale).await, 401);
    assert_eq!(post_event(&app, refused, Some(1)).await, 200);
    app.wait_for_status_text(id, "Refused first").await;
}

/// A database failure before an event is taken (here: its workspace cannot be looked up) answers
/// 5xx without `X-Slack-No-Retry`, so Slack redelivers it; the event is not marked taken, and the
/// redelivery, once the database is back, is applied.
#[tokio::test]
async fn a_database_failure_answers_5xx_and_the_redelivery_lands() {
    use sea_orm::ConnectionTrait;
    let (app, id, slack_id) = app_and_its_first_person().await;
    let (id, slack_id) = (&id, slack_id.as_str());
    let body = user_change(
        slack_id,
        "EvDuringOutage",
        "Sent during the outage",
        chrono::Utc::now().timestamp(),
    );
    // No event has come in yet, so the workspace is not cached: the lookup goes to the database.
    let db = app.server.state.store.db();
    db.execute_unprepared("ALTER TABLE connections RENAME TO connections_away")
        .await
        .expect("take the table away");
    let answer = signed_event_post(&app, body.clone(), None, chrono::Utc::now().timestamp()).await;
    assert!(answer.status().is_server_error(), "{}", answer.status());
    assert!(answer.headers().get("x-slack-no-retry").is_none());
    db.execute_unprepared("ALTER TABLE connections_away RENAME TO connections")
        .await
        .expect("put the table back");
    assert_eq!(post_event(&app, body, Some(1)).await, 200);
    app.wait_for_status_text(id, "Sent during the outage").await;
}

/// One request the simulator delivered to a test's events endpoint.
#[derive(Debug)]
struct Delivered {
    retry_num: Option<String>,
    retry_reason: Option<String>,
    signed: bool,
    body: String,
}

/// An events endpoint that records every request and answers the i-th with `answers[i]` (then
/// 200): a status, and whether to add `X-Slack-No-Retry: 1`.
async fn events_endpoint(
    secret: String,
    answers: Vec<(u16, bool)>,
) -> (String, Arc<std::sync::Mutex<Vec<Delivered>>>) {
    let seen = Arc::new(std::sync::Mutex::new(Vec::<Delivered>::new()));
    let log = seen.clone();
    let route = warp::post()
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .map(move |h: warp::http::HeaderMap, body: bytes::Bytes| {
            let header = |k: &str| h.get(k).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let ts = header("x-slack-request-timestamp").unwrap_or_default();
            let signed = header("x-slack-signature").as_deref() == Some(&sign(&secret, &ts, &body));
            let mut seen = log.lock().expect("log");
            let (status, no_retry) = answers.get(seen.len()).copied().unwrap_or((200, false));
            seen.push(Delivered {
                retry_num: header("x-slack-retry-num"),
                retry_reason: header("x-slack-retry-reason"),
                signed,
                body: String::from_utf8_lossy(&body).into_owned(),
            });
            let mut r = warp::http::Response::builder().status(status);
            if no_retry {
                r = r.header("x-slack-no-retry", "1");
            }
            r.body(String::new()).expect("response")
        });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/slack/events",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(warp::serve(route).incoming(listener).run());
    (url, seen)
}

/// The simulator delivers callbacks as Slack does: a failed one again, with the same body under
/// a fresh signature, numbered and with the reason; a refusal marked `X-Slack-No-Retry` once.
#[tokio::test]
async fn the_simulator_redelivers_a_failed_callback_as_slack_does() {
    let (sim, spec) = sim(3, None).await;
    let short = Duration::from_millis(50);
    sim.set_event_retry_delays(vec![Duration::ZERO, short, short]);
    let user = sim.with(|w| w.by_team("T0PAGE").expect("ws").users[0].id.clone());
    let wait_for = async |seen: &std::sync::Mutex<Vec<Delivered>>, n: usize| {
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.lock().expect("log").len() < n {
            assert!(Instant::now() < deadline, "{n} deliveries never came");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Time for one more, which must not come.
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    // Refused twice, taken the third time: two retries of the three, then no more.
    let (url, seen) = events_endpoint(spec.signing_secret.clone(), vec![(500, false); 2]).await;
    sim.set_events_url(Some(url));
    assert!(sim.set_status("T0PAGE", &user, "Out", ":x:", 0).await);
    wait_for(&seen, 3).await;
    {
        let seen = seen.lock().expect("log");
        assert_eq!(seen.len(), 3, "{seen:?}");
        let nums: Vec<_> = seen.iter().map(|d| d.retry_num.as_deref()).collect();
        assert_eq!(nums, [None, Some("1"), Some("2")]);
        let reasons: Vec<_> = seen.iter().map(|d| d.retry_reason.as_deref()).collect();
        assert_eq!(reasons, [None, Some("http_error"), Some("http_error")]);
        assert!(seen.iter().all(|d| d.signed), "each attempt signed");
        assert!(
            seen.iter().all(|d| d.body == seen[0].body),
            "the same event each time"
        );
        let event: Value = serde_json::from_str(&seen[0].body).expect("json");
        assert!(event["event_id"].is_string() && event["event_time"].is_i64());
    }

    // Failing every attempt: the first delivery and one per retry delay, then it is given up.
    let (url, seen) = events_endpoint(spec.signing_secret.clone(), vec![(503, false); 9]).await;
    sim.set_events_url(Some(url));
    assert!(sim.set_status("T0PAGE", &user, "Gone", ":x:", 0).await);
    wait_for(&seen, 4).await;
    assert_eq!(seen.lock().expect("log").len(), 4);

    // Refused with X-Slack-No-Retry: delivered once.
    let (url, seen) = events_endpoint(spec.signing_secret.clone(), vec![(400, true)]).await;
    sim.set_events_url(Some(url));
    assert!(sim.set_status("T0PAGE", &user, "Back", ":x:", 0).await);
    wait_for(&seen, 1).await;
    assert_eq!(seen.lock().expect("log").len(), 1);
}

/// An event Chex could not take comes back as Slack's retry and is applied. Here a proxy in
/// front of Chex answers 503 the first time, as a proxy does while Chex is down (Chex itself
/// answers 500 while its database is: `a_database_failure_answers_5xx_and_the_redelivery_lands`).
#[tokio::test]
async fn an_event_refused_once_is_applied_from_slacks_retry() {
    let (app, id, slack_id) = app_and_its_first_person().await;
    let attempts = Arc::new(AtomicU32::new(0));
    let seen = attempts.clone();
    let (http, target) = (app.http.clone(), app.url("/slack/events"));
    let proxy = warp::post()
        .and(warp::header::headers_cloned())
        .and(warp::body::bytes())
        .then(move |mut h: warp::http::HeaderMap, body: bytes::Bytes| {
            let (http, target) = (http.clone(), target.clone());
            let first = seen.fetch_add(1, Ordering::SeqCst) == 0;
            async move {
                let status = if first {
                    503
                } else {
                    h.remove("host");
                    h.remove("content-length");
                    let r = http.post(target).headers(h).body(body).send().await;
                    r.expect("forward").status().as_u16()
                };
                warp::http::Response::builder()
                    .status(status)
                    .body(String::new())
                    .expect("response")
            }
        });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/slack/events",
        listener.local_addr().expect("addr")
    );
    tokio::spawn(warp::serve(proxy).incoming(listener).run());
    app.sim
        .set_event_retry_delays(vec![Duration::from_millis(100)]);
    app.sim.set_events_url(Some(url));

    assert!(
        app.sim
            .set_status(TEAM, &slack_id, "Retried", ":x:", 0)
            .await
    );
    app.wait_for_status_text(&id, "Retried").await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        2,
        "refused, then retried once"
    );
}
