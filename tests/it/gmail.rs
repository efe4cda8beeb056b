//! Gmail: token refresh, the vacation responder, quota errors (429 and 403), a revoked grant and
//! garbage against the simulator; a vacation switch reaching a WebSocket subscriber of the
//! linked person; a revoked grant stopping the mailbox with its error shown.

use std::time::Duration;

use chex::sim::gmail::{self, GmailSim};
use chex::sources::gmail::{GmailClient, GmailCredentials, GmailError};
use serde_json::json;
use tokio::net::TcpListener;

use crate::helpers::{
    Options, TestApp, install_crypto, recv_change, recv_until, subscribed_to_person,
};
use crate::jira::linked_person;

async fn sim(addresses: &[&str]) -> GmailSim {
    let addresses: Vec<String> = addresses.iter().map(|a| a.to_string()).collect();
    GmailSim::start(
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        &addresses,
        5,
        None,
    )
    .await
    .expect("gmail sim")
}

fn creds(address: &str) -> GmailCredentials {
    GmailCredentials {
        client_id: gmail::CLIENT_ID.into(),
        client_secret: gmail::CLIENT_SECRET.into(),
        refresh_token: gmail::refresh_token_for(address),
        access_token: None,
        expires_at: None,
    }
}

fn client(sim: &GmailSim) -> GmailClient {
    GmailClient::new(reqwest::Client::new(), &sim.api_url(), &sim.token_url())
}

#[tokio::test]
async fn refresh_then_profile_and_vacation() {
    install_crypto();
    let sim = sim(&["mia@example.com"]).await;
    let c = client(&sim);
    let mut cr = creds("mia@example.com");
    assert!(cr.usable_access_token(chex::domain::now()).is_none());
    c.refresh(&mut cr).await.expect("refresh");
    let token = cr
        .usable_access_token(chex::domain::now())
        .expect("fresh")
        .to_owned();
    assert!(cr.expires_at.is_some_and(|at| at > chex::domain::now()));
    assert_eq!(
        c.profile(&token).await.expect("profile").email_address,
        "mia@example.com"
    );
    let off = c.vacation(&token).await.expect("vacation");
    assert!(!off.enable_auto_reply);

    sim.mailbox("mia@example.com", |m| {
        m.set_vacation(
            true,
            "Hiking",
            Some(1_796_083_200_000),
            Some(1_796_515_200_000),
        )
    });
    let on = c.vacation(&token).await.expect("vacation");
    assert!(on.enable_auto_reply);
    assert_eq!(on.response_subject.as_deref(), Some("Hiking"));
    assert_eq!(on.since().map(|t| t.timestamp()), Some(1_796_083_200));
    assert_eq!(on.until().map(|t| t.timestamp()), Some(1_796_515_200));

    // An access token that stopped working is Unauthenticated: refresh, not give up.
    sim.mailbox("mia@example.com", |m| m.expire_access_tokens());
    assert_eq!(c.vacation(&token).await, Err(GmailError::Unauthenticated));
    c.refresh(&mut cr).await.expect("refresh again");
    let token = cr.access_token.clone().expect("token");
    c.vacation(&token).await.expect("works again");

    // Wrong client: invalid_client, a credential error.
    let mut bad = creds("mia@example.com");
    bad.client_secret = "wrong".into();
    let e = c.refresh(&mut bad).await.expect_err("refused");
    assert!(
        e.is_credential_error() && e.code() == "invalid_client",
        "{e}"
    );
}

#[tokio::test]
async fn quota_errors_back_off_and_garbage_is_reported() {
    install_crypto();
    let sim = sim(&["mia@example.com"]).await;
    let c = client(&sim);
    let mut cr = creds("mia@example.com");
    c.refresh(&mut cr).await.expect("refresh");
    let token = cr.access_token.clone().expect("token");

    for as_403 in [false, true] {
        sim.mailbox("mia@example.com", |m| {
            m.quota_as_403 = as_403;
            m.faults.rate_limit_next = 1;
            m.faults.retry_after_secs = 1;
        });
        let before = sim.calls("users.settings.getVacation");
        c.vacation(&token).await.expect("retried after the wait");
        assert_eq!(sim.calls("users.settings.getVacation"), before + 2);

        sim.mailbox("mia@example.com", |m| {
            m.faults.rate_limit_next = 1;
            m.faults.retry_after_secs = 60;
        });
        assert_eq!(
            c.vacation(&token).await,
            Err(GmailError::RateLimited {
                retry_after: Duration::from_secs(60)
            }),
            "403 as quota: {as_403}"
        );
    }
    sim.mailbox("mia@example.com", |m| m.faults.fail_next = 5);
    assert_eq!(c.vacation(&token).await, Err(GmailError::Http(500)));
    sim.mailbox("mia@example.com", |m| {
        m.faults.fail_next = 0;
        m.faults.malformed_next = 5;
    });
    assert!(matches!(
        c.vacation(&token).await,
        Err(GmailError::Malformed(_))
    ));
}

#[tokio::test]
async fn a_revoked_grant_is_invalid_grant() {
    install_crypto();
    let sim = sim(&["mia@example.com"]).await;
    let c = client(&sim);
    let mut cr = creds("mia@example.com");
    c.refresh(&mut cr).await.expect("refresh");
    sim.mailbox("mia@example.com", |m| m.faults.revoked = true);
    let token = cr.access_token.clone().expect("token");
    assert_eq!(c.vacation(&token).await, Err(GmailError::Unauthenticated));
    let e = c.refresh(&mut cr).await.expect_err("revoked");
    assert!(e.is_credential_error());
    assert_eq!(e.code(), "invalid_grant");
    assert!(e.to_string().contains("expired or revoked"), "{e}");
}

async fn app_with_gmail() -> (TestApp, GmailSim, String) {
    install_crypto();
    // The simulator must exist before Chex starts: its URLs are configuration.
    let gmail_sim = sim(&[]).await;
    let (api, token_url) = (gmail_sim.api_url(), gmail_sim.token_url());
    let app = TestApp::spawn_with(Options {
        users: 3,
        config: Box::new(move |c| {
            c.gmail_api_url = api.clone();
            c.google_token_url = token_url.clone();
            c.poll_gmail_interval = 1;
        }),
        ..Default::default()
    })
    .await;
    app.wait_for_people(3).await;
    let (_, email) = app.slack_people(1).remove(0);
    gmail_sim.with(|w| w.mailboxes.push(gmail::Mailbox::new(&email)));
    (app, gmail_sim, email)
}

#[tokio::test]
async fn a_vacation_switch_reaches_the_linked_persons_subscriber() {
    let (app, gmail_sim, email) = app_with_gmail().await;
    let (status, conn) = app
        .send_json(
            "POST",
            "/api/connections/gmail",
            json!({"client_id": gmail::CLIENT_ID, "client_secret": gmail::CLIENT_SECRET, "refresh_token": gmail::refresh_token_for(&email)}),
        )
        .await;
    assert_eq!(status, 201, "{conn}");
    assert_eq!(conn["external_id"], email.as_str());
    let conn = conn["id"].as_i64().expect("id");
    let person = linked_person(&app, conn, &email).await;
    app.wait_for_person(person, |u| u["status"]["gmail"]["auto_reply"] == false)
        .await;

    let mut ws = subscribed_to_person(&app, person).await;

    let now_ms = chrono::Utc::now().timestamp_millis();
    gmail_sim.mailbox(&email, |m| {
        m.set_vacation(
            true,
            "Back on Monday",
            Some(now_ms - 1000),
            Some(now_ms + 86_400_000),
        )
    });
    let e = recv_change(&mut ws, "gmail").await;
    assert_eq!(e["source"], "gmail");
    let g = &e["status"]["gmail"];
    assert_eq!(
        (g["out_of_office"].as_bool(), g["subject"].as_str()),
        (Some(true), Some("Back on Monday"))
    );
    assert_eq!(g["address"], email.as_str());
    assert_eq!(e["previous"]["gmail"]["out_of_office"], false);

    // Its access token dies early: the poller refreshes and carries on, no error shown.
    let refreshes = gmail_sim.calls("oauth2.token");
    gmail_sim.mailbox(&email, |m| {
        m.expire_access_tokens();
        m.vacation.enable_auto_reply = false;
    });
    let e = recv_change(&mut ws, "gmail").await;
    assert_eq!(e["status"]["gmail"]["out_of_office"], false);
    assert!(gmail_sim.calls("oauth2.token") > refreshes);

    // The grant is revoked: polling stops, the connection says why, the part goes stale.
    gmail_sim.mailbox(&email, |m| m.faults.revoked = true);
    let e = recv_until(&mut ws, |v| {
        v["type"] == "status" && v["status"]["gmail"]["stale"] == true
    })
    .await;
    assert_eq!(e["status"]["gmail"]["address"], email.as_str());
    let c = app.connection(conn).await;
    assert_eq!(c["status"], "error", "{c}");
    assert!(
        c["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("invalid_grant")),
        "{c}"
    );
    let calls = gmail_sim.calls("users.settings.getVacation");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(
        gmail_sim.calls("users.settings.getVacation"),
        calls,
        "polling stopped"
    );
}

#[tokio::test]
async fn a_refused_grant_is_refused_at_upload() {
    let (app, _gmail_sim, email) = app_with_gmail().await;
    let (status, v) = app
        .send_json(
            "POST",
            "/api/connections/gmail",
            json!({"client_id": gmail::CLIENT_ID, "client_secret": gmail::CLIENT_SECRET, "refresh_token": "1//not-a-grant"}),
        )
        .await;
    assert_eq!(status, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("invalid_grant")),
        "{v}"
    );
    let (status, _) = app
        .send_json(
            "POST",
            "/api/connections/gmail",
            json!({"client_id": "", "client_secret": "x", "refresh_token": gmail::refresh_token_for(&email)}),
        )
        .await;
    assert_eq!(status, 422);
    let (status, _) = app
        .send_json(
            "POST",
            "/api/connections/gmail",
            json!({"client_id": "a", "client_secret": "b", "refresh_token": "c", "scope": "x"}),
        )
        .await;
    assert_eq!(status, 400, "unknown field");
}
