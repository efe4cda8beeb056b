//! End to end: simulator → poller/Events API → store → hub → WebSocket.

use std::time::Duration;

use chex::store::testing::TestDb;
use serde_json::json;

use crate::helpers::{Options, TEAM, TestApp, recv_change, recv_until, send, subscribed_to_person};

#[tokio::test]
async fn a_status_change_reaches_a_subscriber_and_history_with_the_right_seq() {
    let app = TestApp::spawn_with(Options {
        users: 4,
        ..Default::default()
    })
    .await;
    let people = app.wait_for_people(4).await;
    let person = &people[1];
    let slack_id = person["slack_id"].as_str().expect("slack id");
    let mut ws = app.connect(Some(&app.token)).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "1", "topics": [person["topic"]]}),
    )
    .await;
    let sub = recv_until(&mut ws, |v| v["type"] == "subscribed").await;
    let seq0 = sub["snapshot"][0]["seq"].as_i64().expect("snapshot seq");

    // Pushed through the Events API: arrives at once.
    app.sim
        .set_status(TEAM, slack_id, "Deep work", ":brain:", 0)
        .await;
    let ev = recv_until(&mut ws, |v| {
        v["type"] == "status" && v["status"]["text"] == "Deep work"
    })
    .await;
    assert_eq!(ev["topic"], person["topic"]);
    assert!(ev["seq"].as_i64().expect("seq") > seq0);
    assert!(
        ev["changed"]
            .as_array()
            .expect("changed")
            .contains(&json!("text"))
    );

    // Presence is only polled: arrives within a poll interval.
    let was_active = person["status"]["presence"] == "active";
    app.sim.set_presence(TEAM, slack_id, !was_active);
    let want = if was_active { "away" } else { "active" };
    let ev2 = recv_until(&mut ws, |v| {
        v["type"] == "status" && v["status"]["presence"] == want
    })
    .await;
    assert_eq!(ev2["previous"]["presence"], person["status"]["presence"]);

    // A pushed dnd_updated_user arrives at once too.
    let r = app
        .http
        .post(format!("http://{}/_sim/dnd", app.sim.addr()))
        .json(&json!({"team": TEAM, "user": slack_id, "minutes": 30}))
        .send()
        .await
        .expect("sim dnd");
    assert_eq!(r.status().as_u16(), 200);
    let ev3 = recv_until(&mut ws, |v| {
        v["type"] == "status" && v["status"]["dnd"]["enabled"] == true
    })
    .await;
    assert!(
        ev3["changed"]
            .as_array()
            .expect("changed")
            .contains(&json!("dnd"))
    );

    let (_, hist) = app
        .get(&format!("/api/users/{}/history?limit=1000", person["id"]))
        .await;
    let seqs: Vec<i64> = hist["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["seq"].as_i64().expect("seq"))
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "gap-free"
    );
    assert!(
        seqs.contains(&ev["seq"].as_i64().expect("seq"))
            && seqs.contains(&ev2["seq"].as_i64().expect("seq"))
    );
}

#[tokio::test]
async fn a_restart_mid_stream_leaves_no_gap_and_no_duplicate() {
    crate::helpers::install_crypto();
    let dir = std::env::temp_dir().join(format!("chex-restart-{}", uuid_like()));
    std::fs::create_dir_all(&dir).expect("dir");
    let url = format!("sqlite://{}/chex.db?mode=rwc", dir.display());
    for round in 0..2 {
        let store = chex::store::Store::connect(&url).await.expect("connect");
        store.migrate().await.expect("migrate");
        let db = TestDb::wrap(store);
        let app = TestApp::spawn_on(
            db,
            Options {
                users: 5,
                ..Default::default()
            },
        )
        .await;
        app.wait_for_people(5).await;
        for i in 0..20 {
            app.sim.step().await;
            if i == 10 && round == 0 {
                break; // stop mid-stream
            }
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        app.server.state.pipeline.flush().await;
        let TestApp { server, sim, .. } = app;
        sim.stop();
        server.shutdown().await;
    }
    let store = chex::store::Store::connect(&url).await.expect("connect");
    let people = store
        .people(
            1,
            &chex::store::PeopleFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .expect("people");
    assert_eq!(people.len(), 5);
    for p in people {
        let h = store
            .history(p.person_id, None, None, None, 10_000)
            .await
            .expect("history");
        let seqs: Vec<i64> = h.events.iter().map(|e| e.seq).collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as i64).collect::<Vec<_>>(),
            "person {}",
            p.person_id
        );
        let times: Vec<_> = h.events.iter().map(|e| e.observed_at).collect();
        assert!(
            times.windows(2).all(|w| w[0] < w[1]),
            "observed_at strictly increases"
        );
    }
    let _ = std::fs::remove_dir_all(dir);
}

fn uuid_like() -> String {
    format!(
        "{}-{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    )
}

/// Slack's tiers, enforced by the simulator at 10× speed for 12 s: the same number of calls per
/// tier as two minutes at real speed. The governor must keep the poller under every limit.
#[tokio::test]
async fn polling_5000_users_under_enforced_tiers_causes_no_429() {
    let app = TestApp::spawn_with(Options {
        users: 5000,
        sim_scale: Some(10.0),
        client_scale: 10.0,
        config: Box::new(|c| c.poll_sweep_interval = 1),
        ..Default::default()
    })
    .await;
    // Someone watches the team, so presence polling runs flat out.
    let mut ws = app.connect(Some(&app.token)).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "topics": [format!("team:{TEAM}")]}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(12)).await;
    let list = app.sim.calls("users.list");
    let presence = app.sim.calls("users.getPresence");
    assert!(list >= 25, "a full sweep happened: {list} users.list calls");
    assert!(presence >= 50, "presence was polled: {presence} calls");
    assert_eq!(
        app.sim.rate_limited(),
        0,
        "no 429 with {list} users.list and {presence} users.getPresence calls"
    );
}

/// With `CHEX_POLL_UNWATCHED_PRESENCE=false` the presence budget is spent on watched people only:
/// nothing is polled while nobody watches, and one watched person is polled at their interval
/// (with it on, the same second polls everyone — hundreds of calls at this speed).
#[tokio::test]
async fn presence_polling_can_be_kept_to_watched_people() {
    let app = TestApp::spawn_with(Options {
        config: Box::new(|c| c.poll_unwatched_presence = false),
        ..Default::default()
    })
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let person = loop {
        let (_, v) = app.get("/api/users?limit=1000").await;
        if let Some(u) = v["users"]
            .as_array()
            .filter(|u| u.len() >= 9)
            .and_then(|u| u.first())
        {
            break u["id"].clone();
        }
        assert!(tokio::time::Instant::now() < deadline, "no people: {v}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(app.sim.calls("users.getPresence"), 0, "nobody is watched");

    let id = person.as_i64().expect("id");
    let _ws = crate::helpers::subscribed_to_person(&app, id).await;
    app.wait_for_person(id, |u| u["status"]["presence"] != "unknown")
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let calls = app.sim.calls("users.getPresence");
    assert!(
        (1..=6).contains(&calls),
        "one watched person at a 1 s interval for ~2 s: {calls} calls"
    );
}

/// On a SQLite file the pipeline runs on a thread of its own: a change is committed and published
/// while the server's runtime runs nothing at all (here its one thread, the test's, is blocked).
#[tokio::test]
async fn on_a_sqlite_file_a_change_is_committed_and_published_while_the_runtime_is_blocked() {
    let app = TestApp::spawn_on(
        TestDb::sqlite_file().await,
        Options {
            users: 2,
            ..Default::default()
        },
    )
    .await;
    app.wait_for_people(2).await;
    let state = &app.server.state;
    // The sweep's baseline is committed: the change below needs no read of current statuses.
    let person = first_person(&app).await.expect("a person");
    let card = std::sync::Arc::new(person.card());
    let mut sub = state.hub.subscribe(&card.topic);
    let text = "Blocked runtime";
    state
        .pipeline
        .observe(chex::poll::Observation {
            person: card,
            patch: chex::domain::StatusPatch {
                custom: Some(chex::domain::CustomStatus {
                    text: text.into(),
                    emoji: ":lock:".into(),
                    expires_at: None,
                }),
                ..Default::default()
            },
            observed_at: chex::domain::now(),
            source: chex::domain::Source::Slack,
        })
        .await;

    // No await from here on: nothing of this runtime runs until the delivery is in.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let delivery = loop {
        match sub.try_recv() {
            Ok(d) if d.frame.to_text().is_ok_and(|f| f.contains(text)) => break d,
            Ok(_) => continue,
            Err(_) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            Err(e) => panic!("no delivery while the runtime was blocked: {e}"),
        }
    };
    assert_eq!(delivery.person_id, person.person_id);
    let latest = state
        .store
        .latest_events(&[person.person_id])
        .await
        .expect("latest");
    let stored = &latest[&person.person_id];
    assert_eq!(
        stored.id, delivery.event_id,
        "published after it was stored"
    );
    assert_eq!(stored.status().text, text);
}

/// Pushed edits of a user Chex already knows go into the pipeline's queue from the request itself
/// (`try_ingest_known_user`), with no task of their own. Pushed back to back, each is applied
/// once, in the order Slack sent them, and reaches a subscriber in that order.
#[tokio::test]
async fn pushed_edits_of_a_known_user_are_applied_once_each_in_order() {
    // A later sweep would observe the simulator's status of the moment between two pushes.
    let app = TestApp::spawn_with(Options::first_polls_only(2)).await;
    let people = app.wait_for_people(2).await;
    let person = &people[0];
    let id = person["id"].as_i64().expect("id");
    let slack_id = person["slack_id"].as_str().expect("slack id");
    // The first push stores the user; the ones after it find the user known.
    app.sim
        .set_status(TEAM, slack_id, "Edit 0", ":one:", 0)
        .await;
    app.wait_for_status_text(&person["id"], "Edit 0").await;
    let mut ws = subscribed_to_person(&app, id).await;
    let texts: Vec<String> = (1..=20).map(|i| format!("Edit {i}")).collect();
    for t in &texts {
        app.sim.set_status(TEAM, slack_id, t, ":one:", 0).await;
    }
    for t in &texts {
        let ev = recv_change(&mut ws, "text").await;
        assert_eq!(ev["status"]["text"], t.as_str(), "{ev}");
    }

    let (_, hist) = app
        .get(&format!("/api/users/{id}/history?limit=1000"))
        .await;
    let edits: Vec<(i64, String)> = hist["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| {
            e["status"]["text"]
                .as_str()
                .is_some_and(|t| t.starts_with("Edit "))
        })
        .map(|e| {
            let text = e["status"]["text"].as_str().expect("text").to_owned();
            (e["seq"].as_i64().expect("seq"), text)
        })
        .collect();
    let stored: Vec<&str> = edits
        .iter()
        .filter(|(_, t)| t != "Edit 0")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(stored, texts, "each edit once, in order");
    assert!(
        edits.windows(2).all(|w| w[0].0 < w[1].0),
        "seqs follow the order: {edits:?}"
    );
}

/// `try_observe` never waits: with the writer gone it refuses, so the Events API falls back on
/// the path that counts the observation lost and logs it.
#[tokio::test]
async fn try_observe_refuses_once_the_writer_is_gone() {
    let db = TestDb::sqlite().await;
    let shutdown = tokio_util::sync::CancellationToken::new();
    let (pipeline, writer) = chex::poll::Pipeline::spawn(
        db.store.clone(),
        chex::hub::Hub::default(),
        shutdown.clone(),
    )
    .expect("pipeline");
    let observation = || chex::poll::Observation {
        person: std::sync::Arc::new(chex::domain::PersonCard {
            id: 1,
            organization_id: 1,
            topic: chex::domain::PersonCard::topic_for(1),
            team_id: None,
            name: "n".into(),
            display_name: "n".into(),
            image_72: String::new(),
        }),
        patch: Default::default(),
        observed_at: chex::domain::now(),
        source: chex::domain::Source::Slack,
    };
    shutdown.cancel();
    writer.await.expect("writer ends");
    assert!(!pipeline.try_observe(observation()));
}

/// A poll's answer can reach the pipeline after a newer push about the same person: a sweep's
/// page asked for before an edit is parsed and queued after the edit's push. The older reading of
/// the custom status or DND must not undo the newer one (it used to, until the next sweep); a
/// newer reading still goes through, and so does the rest of an older observation.
#[tokio::test]
async fn an_older_reading_queued_after_a_newer_one_does_not_undo_it() {
    use chex::domain::{CustomStatus, Dnd, Presence, StatusPatch};
    let (app, person) = quiet_app_and_its_first_person().await;
    let state = &app.server.state;
    let card = std::sync::Arc::new(person.card());
    let latest = async || {
        state
            .store
            .latest_events(&[person.person_id])
            .await
            .expect("latest")[&person.person_id]
            .status()
    };
    let flipped = match latest().await.presence {
        Presence::Active => Presence::Away,
        _ => Presence::Active,
    };
    let custom = |text: &str| CustomStatus {
        text: text.into(),
        emoji: ":clock1:".into(),
        expires_at: None,
    };
    let asked = chex::domain::now();
    let second = chrono::Duration::seconds(1);
    let observe = |patch: StatusPatch, at| {
        state.pipeline.observe(chex::poll::Observation {
            person: card.clone(),
            patch,
            observed_at: at,
            source: chex::domain::Source::Slack,
        })
    };
    // The push: a new custom status and DND on, read a second after the page was asked for.
    observe(
        StatusPatch {
            custom: Some(custom("Pushed")),
            dnd: Some(Dnd {
                enabled: true,
                until: None,
            }),
            ..Default::default()
        },
        asked + second,
    )
    .await;
    state.pipeline.flush().await;
    // The page, queued after it: the old status, DND off, and a presence only it knows.
    observe(
        StatusPatch {
            custom: Some(custom("Paged")),
            dnd: Some(Dnd {
                enabled: false,
                until: None,
            }),
            presence: Some(flipped),
            ..Default::default()
        },
        asked,
    )
    .await;
    state.pipeline.flush().await;
    let now = latest().await;
    assert_eq!(now.text, "Pushed", "the older custom status was dropped");
    assert!(now.dnd.enabled, "the older DND was dropped");
    assert_eq!(now.presence, flipped, "the rest of it applied");

    // A reading newer than the push replaces it.
    observe(
        StatusPatch {
            custom: Some(custom("Later")),
            ..Default::default()
        },
        asked + second * 2,
    )
    .await;
    state.pipeline.flush().await;
    let texts = texts_in_history(&app, &person, &["Pushed", "Paged", "Later"]).await;
    assert_eq!(texts.last().map(String::as_str), Some("Later"));
    assert!(!texts.iter().any(|t| t == "Paged"), "{texts:?}");
}

/// Two pushes about one person a moment apart, handled by two request handlers, can reach the
/// pipeline in the reverse of their arrival. Both are history: they are applied in the order
/// they were observed, not queued (the later one applied first made the earlier one stale, and
/// it was dropped).
#[tokio::test]
async fn pushes_queued_in_the_reverse_of_their_arrival_are_both_kept_in_order() {
    use chex::domain::{CustomStatus, StatusPatch};
    let (app, person) = quiet_app_and_its_first_person().await;
    let state = &app.server.state;
    let card = std::sync::Arc::new(person.card());
    let push = |text: &str, at| chex::poll::Observation {
        person: card.clone(),
        patch: StatusPatch {
            custom: Some(CustomStatus {
                text: text.into(),
                emoji: ":zap:".into(),
                expires_at: None,
            }),
            ..Default::default()
        },
        observed_at: at,
        source: chex::domain::Source::Slack,
    };
    let arrived = chex::domain::now();
    let later = arrived + chrono::Duration::milliseconds(1);
    // Queued back to back without yielding, so the writer (a task of this test's runtime, on
    // in-memory SQLite) takes both into one batch: the later arrival first.
    assert!(state.pipeline.try_observe(push("Second", later)));
    assert!(state.pipeline.try_observe(push("First", arrived)));
    state.pipeline.flush().await;
    let texts = texts_in_history(&app, &person, &["First", "Second"]).await;
    assert_eq!(texts, ["First", "Second"]);
}

/// An app whose pollers stop after the first sweep and DND poll, so that the observations a test
/// queues are the only ones, and its first person once the sweep's baseline of them is committed.
/// Nobody watches and unwatched presence is not polled (presence stays unknown: no
/// `wait_for_people`).
async fn quiet_app_and_its_first_person() -> (TestApp, chex::store::PersonRow) {
    let app = TestApp::spawn_with(Options {
        users: 2,
        config: Box::new(|c| {
            c.poll_sweep_interval = 3600;
            c.poll_dnd_interval = 3600;
            c.poll_unwatched_presence = false;
        }),
        ..Default::default()
    })
    .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(p) = first_person(&app).await
            && !app
                .server
                .state
                .store
                .latest_events(&[p.person_id])
                .await
                .expect("latest")
                .is_empty()
        {
            return (app, p);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the first sweep never landed"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The custom status texts among `wanted` in a person's history, in the order history holds them
/// (by seq).
async fn texts_in_history(
    app: &TestApp,
    person: &chex::store::PersonRow,
    wanted: &[&str],
) -> Vec<String> {
    let history = app
        .server
        .state
        .store
        .history(person.person_id, None, None, None, 10_000)
        .await
        .expect("history");
    let mut kept: Vec<(i64, String)> = history
        .events
        .iter()
        .map(|e| (e.seq, e.status().text))
        .filter(|(_, t)| wanted.contains(&t.as_str()))
        .collect();
    kept.sort();
    kept.into_iter().map(|(_, t)| t).collect()
}

/// The first person of the test's organization, once everything queued in the pipeline is
/// committed.
async fn first_person(app: &TestApp) -> Option<chex::store::PersonRow> {
    let state = &app.server.state;
    state.pipeline.flush().await;
    state
        .store
        .people(
            app.org_id,
            &chex::store::PeopleFilter {
                limit: 1,
                ..Default::default()
            },
        )
        .await
        .expect("people")
        .into_iter()
        .next()
}
