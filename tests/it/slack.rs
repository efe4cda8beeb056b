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
