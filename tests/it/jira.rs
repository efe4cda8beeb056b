//! Jira: the client against the simulator (paging, 429, revoked token, garbage), and a transition
//! reaching a WebSocket subscriber of the linked person.

use std::time::Duration;

use chex::sim::jira::{JiraSim, JiraSpec};
use chex::sources::jira::{JiraClient, JiraCredentials, JiraError, in_progress_jql};
use serde_json::json;
use tokio::net::TcpListener;

use crate::helpers::{Options, TestApp, install_crypto, recv_change, subscribed_to_person};

async fn sim(spec: JiraSpec) -> JiraSim {
    JiraSim::start(
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        spec,
        3,
        None,
    )
    .await
    .expect("jira sim")
}

fn client(sim: &JiraSim, spec: &JiraSpec) -> JiraClient {
    JiraClient::new(
        reqwest::Client::new(),
        &JiraCredentials {
            site_url: sim.url(),
            email: spec.email.clone(),
            api_token: spec.api_token.clone(),
        },
    )
}

fn people(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| (format!("Person {i}"), format!("p{i}@example.com")))
        .collect()
}

#[tokio::test]
async fn search_and_users_page_through_everything() {
    install_crypto();
    let spec = JiraSpec {
        people: people(60),
        issues: 180,
        ..JiraSpec::default()
    };
    let sim = sim(spec.clone()).await;
    let me = sim.with(|w| w.account_of("p0@example.com").expect("p0").to_owned());
    // p0 gets issues 1, 61, 121: make 130 issues theirs and in progress.
    sim.with(|w| {
        for n in 1..=130 {
            let key = format!("OPS-{n}");
            w.assign(&key, Some(&me));
            w.transition(
                &key,
                if n % 2 == 0 {
                    "In Review"
                } else {
                    "In Progress"
                },
            );
        }
    });
    let c = client(&sim, &spec);
    let found = c.search(&in_progress_jql(&me)).await.expect("search");
    assert_eq!(found.len(), 130);
    assert_eq!(sim.calls("search.jql"), 3, "50 + 50 + 30");
    assert!(found.iter().all(|i| i.category_key() == "indeterminate"));
    let users = c.users().await.expect("users");
    assert_eq!(users.len(), 62, "60 people, the reader, an app");
    assert_eq!(sim.calls("users.search"), 2);
    assert_eq!(users.iter().filter(|u| u.is_person()).count(), 61);

    let issue = c.issue("OPS-2").await.expect("issue");
    assert_eq!(issue.status_name(), "In Review");
    assert_eq!(issue.transitions.len(), 3, "every other status");
    assert!(matches!(
        c.issue("OPS-9999").await,
        Err(JiraError::NotFound(_))
    ));
    assert!(matches!(
        c.issue("../myself").await,
        Err(JiraError::BadRequest(_))
    ));
    assert!(matches!(
        c.search("summary ~ cats").await,
        Err(JiraError::BadRequest(m)) if m.contains("Expecting operator")
    ));
}

#[tokio::test]
async fn rate_limits_5xx_and_garbage_are_retried_then_reported() {
    install_crypto();
    let spec = JiraSpec {
        people: people(1),
        issues: 3,
        ..JiraSpec::default()
    };
    let sim = sim(spec.clone()).await;
    let c = client(&sim, &spec);

    // A short Retry-After is waited out inside the call.
    sim.with(|w| {
        w.faults.rate_limit_next = 1;
        w.faults.retry_after_secs = 1;
    });
    let started = std::time::Instant::now();
    c.myself().await.expect("retried after 1 s");
    assert!(started.elapsed() >= Duration::from_millis(900));
    assert_eq!(sim.calls("myself"), 2);

    // A long one goes back to the caller, which pauses the connection.
    sim.with(|w| {
        w.faults.rate_limit_next = 1;
        w.faults.retry_after_secs = 120;
    });
    assert_eq!(
        c.myself().await,
        Err(JiraError::RateLimited {
            retry_after: Duration::from_secs(120)
        })
    );

    sim.with(|w| w.faults.fail_next = 1);
    c.myself().await.expect("one 500 is retried");
    sim.with(|w| w.faults.malformed_next = 1);
    c.myself().await.expect("one garbage body is retried");
    sim.with(|w| w.faults.fail_next = 5);
    assert_eq!(c.myself().await, Err(JiraError::Http(500)));
    sim.with(|w| {
        w.faults.fail_next = 0;
        w.faults.malformed_next = 5;
    });
    assert!(matches!(c.myself().await, Err(JiraError::Malformed(_))));
    sim.with(|w| w.faults.malformed_next = 0);

    // A site-wide budget answers 429 like Jira's limiter.
    let limited = self::sim(JiraSpec {
        per_minute: Some(2),
        ..spec.clone()
    })
    .await;
    let lc = client(&limited, &spec);
    lc.myself().await.expect("1");
    lc.myself().await.expect("2");
    assert!(matches!(
        lc.myself().await,
        Err(JiraError::RateLimited { .. })
    ));
}

#[tokio::test]
async fn a_revoked_token_is_a_credential_error() {
    install_crypto();
    let spec = JiraSpec::default();
    let sim = sim(spec.clone()).await;
    sim.with(|w| w.faults.revoked = true);
    let e = client(&sim, &spec).myself().await.expect_err("refused");
    assert_eq!(e, JiraError::Unauthorized);
    assert!(e.is_credential_error());
    let wrong = JiraClient::new(
        reqwest::Client::new(),
        &JiraCredentials {
            site_url: sim.url(),
            email: spec.email.clone(),
            api_token: "wrong".into(),
        },
    );
    sim.with(|w| w.faults.revoked = false);
    assert_eq!(wrong.myself().await, Err(JiraError::Unauthorized));
}

/// Starts Chex with a Slack workspace and a Jira site whose people share its emails, connected
/// through the REST API as an admin would.
async fn app_with_jira(interval: u64) -> (TestApp, JiraSim, JiraSpec, i64) {
    let app = TestApp::spawn_with(Options {
        users: 4,
        config: Box::new(move |c| c.poll_jira_interval = interval),
        ..Default::default()
    })
    .await;
    app.wait_for_people(4).await;
    let spec = JiraSpec {
        people: app.slack_people(3),
        issues: 6,
        ..JiraSpec::default()
    };
    let jira = sim(spec.clone()).await;
    // Start from a known state: nothing in progress.
    jira.with(|w| {
        let keys: Vec<String> = w.issues.keys().cloned().collect();
        for k in keys {
            w.transition(&k, "To Do");
        }
    });
    let (status, conn) = app
        .send_json(
            "POST",
            "/api/connections/jira",
            json!({"site_url": jira.url(), "email": spec.email, "api_token": spec.api_token}),
        )
        .await;
    assert_eq!(status, 201, "{conn}");
    (app, jira, spec, conn["id"].as_i64().expect("id"))
}

#[tokio::test]
async fn a_transition_reaches_the_linked_persons_subscriber() {
    let (app, jira, spec, conn) = app_with_jira(1).await;
    let (_, email) = spec.people[0].clone();
    let account = jira.with(|w| w.account_of(&email).expect("account").to_owned());

    // Linked by email: the Slack profile's address is the Jira account's.
    let person = linked_person(&app, conn, &account).await;
    let (_, u) = app.get(&format!("/api/users/{person}")).await;
    assert_eq!(u["email"], email.as_str());
    app.wait_for_person(person, |u| u["status"]["jira"]["issues"] == json!([]))
        .await;

    let mut ws = subscribed_to_person(&app, person).await;

    // Someone starts work on OPS-1 (assigned to the first person) in Jira.
    assert!(jira.with(|w| w.transition("OPS-1", "In Progress")));
    let e = recv_change(&mut ws, "jira").await;
    assert_eq!(e["source"], "jira");
    assert_eq!(e["status"]["jira"]["issues"][0]["key"], "OPS-1");
    assert_eq!(e["status"]["jira"]["issues"][0]["status"], "In Progress");
    assert_eq!(
        e["status"]["jira"]["moved"],
        json!([{"key": "OPS-1", "summary": e["status"]["jira"]["issues"][0]["summary"], "from": null, "to": "In Progress"}])
    );
    assert_eq!(e["previous"]["jira"]["issues"], json!([]));

    // Done: it leaves the in-progress list, and the event says where it went.
    assert!(jira.with(|w| w.transition("OPS-1", "Done")));
    let e = recv_change(&mut ws, "jira").await;
    assert_eq!(e["status"]["jira"]["issues"], json!([]));
    let moved = &e["status"]["jira"]["moved"][0];
    assert_eq!(
        (
            moved["key"].as_str(),
            moved["from"].as_str(),
            moved["to"].as_str()
        ),
        (Some("OPS-1"), Some("In Progress"), Some("Done"))
    );
}

#[tokio::test]
async fn a_checked_issue_counts_whatever_its_status_and_an_admin_pin_moves_it() {
    let (app, jira, spec, conn) = app_with_jira(1).await;
    let first = jira.with(|w| w.account_of(&spec.people[0].1).expect("a").to_owned());
    let second = jira.with(|w| w.account_of(&spec.people[1].1).expect("b").to_owned());
    let (status, check) = app
        .send_json(
            "POST",
            "/api/chex/jira",
            json!({"connection_id": conn, "subject": "OPS-1"}),
        )
        .await;
    assert_eq!(status, 201, "{check}");
    for bad in ["ops 1", "*/../x", ""] {
        let (status, _) = app
            .send_json(
                "POST",
                "/api/chex/jira",
                json!({"connection_id": conn, "subject": bad}),
            )
            .await;
        assert_eq!(status, 422, "{bad}");
    }

    // OPS-1 is "To Do" but checked by key: it shows, with where it can go next.
    let p1 = linked_person(&app, conn, &first).await;
    let u = app
        .wait_for_person(p1, |u| u["status"]["jira"]["issues"][0]["key"] == "OPS-1")
        .await;
    assert_eq!(u["status"]["jira"]["issues"][0]["status"], "To Do");
    assert_eq!(
        u["status"]["jira"]["issues"][0]["next"]
            .as_array()
            .map(Vec::len),
        Some(3)
    );
    assert!(
        u["identities"]
            .as_array()
            .is_some_and(|l| l.iter().any(|i| i["external_id"] == first.as_str()))
    );

    // The admin says the first account is really the second person.
    let p2 = linked_person(&app, conn, &second).await;
    let path = format!(
        "/api/connections/{conn}/identities/{}",
        first.replace(':', "%3A")
    );
    let (status, pinned) = app.send_json("PUT", &path, json!({"person_id": p2})).await;
    assert_eq!(status, 200, "{pinned}");
    assert_eq!(
        (pinned["person_id"].as_i64(), pinned["manual"].as_bool()),
        (Some(p2), Some(true))
    );
    app.wait_for_person(p2, |u| {
        u["status"]["jira"]["issues"]
            .as_array()
            .is_some_and(|l| l.iter().any(|i| i["key"] == "OPS-1"))
    })
    .await;
    let (status, _) = app
        .send_json("PUT", &path, json!({"person_id": 999_999}))
        .await;
    assert_eq!(status, 404, "no such person in the org");
    let (status, _) = app.send_json("PUT", &path, json!({"person": p2})).await;
    assert_eq!(status, 400, "unknown field");
    let (status, back) = app.send_json("DELETE", &path, json!({})).await;
    assert_eq!(
        (status, back["person_id"].as_i64(), back["manual"].as_bool()),
        (200, Some(p1), Some(false))
    );
}

/// Waits (10 s at most) until the account is linked to a person; returns the person's id.
pub async fn linked_person(app: &TestApp, conn: i64, external_id: &str) -> i64 {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, v) = app
            .get(&format!("/api/connections/{conn}/identities"))
            .await;
        let found = v["identities"]
            .as_array()
            .and_then(|ids| ids.iter().find(|i| i["external_id"] == external_id))
            .and_then(|i| i["person_id"].as_i64());
        if let Some(p) = found {
            return p;
        }
        assert!(tokio::time::Instant::now() < deadline, "never linked: {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_refused_token_stops_the_site_and_says_why() {
    let (app, jira, _spec, conn) = app_with_jira(1).await;
    // Wrong credentials are refused at upload.
    let (status, v) = app
        .send_json(
            "POST",
            "/api/connections/jira",
            json!({"site_url": jira.url(), "email": "x@example.com", "api_token": "nope"}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    let (status, _) = app
        .send_json(
            "POST",
            "/api/connections/jira",
            json!({"site_url": "http://jira.example.com", "email": "x@example.com", "api_token": "t"}),
        )
        .await;
    assert_eq!(status, 422, "plain http to a remote host");
    let (status, _) = app
        .send_json(
            "POST",
            "/api/connections/jira",
            json!({"site_url": jira.url(), "email": "x@example.com"}),
        )
        .await;
    assert_eq!(status, 400, "missing field");

    jira.with(|w| w.faults.revoked = true);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let c = app.connection(conn).await;
        if c["status"] == "error" {
            assert!(
                c["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("unauthorized")),
                "{c}"
            );
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "never stopped: {c}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let calls = jira.calls("search.jql");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(jira.calls("search.jql"), calls, "polling stopped");
}

#[tokio::test]
async fn an_outage_flags_the_part_stale_and_recovery_clears_it() {
    let (app, jira, spec, conn) = app_with_jira(1).await;
    let account = jira.with(|w| w.account_of(&spec.people[0].1).expect("a").to_owned());
    let person = linked_person(&app, conn, &account).await;
    app.wait_for_person(person, |u| u["status"]["jira"]["stale"] == false)
        .await;
    // Garbage and 500s on every call: the round fails, the last issues stay, flagged stale.
    jira.with(|w| w.faults.malformed_next = 1_000);
    let u = app
        .wait_for_person(person, |u| u["status"]["jira"]["stale"] == true)
        .await;
    assert_eq!(u["status"]["jira"]["issues"], json!([]));
    let (_, checks) = app.get("/api/chex").await;
    assert!(
        checks["checks"].as_array().is_some_and(|l| l
            .iter()
            .any(|c| c["kind"] == "jira" && c["last_error"] == "malformed")),
        "{checks}"
    );
    jira.with(|w| w.faults.malformed_next = 0);
    app.wait_for_person(person, |u| u["status"]["jira"]["stale"] == false)
        .await;
    let c = app.connection(conn).await;
    assert_eq!(
        c["status"], "active",
        "an outage is not a credential error: {c}"
    );
}
