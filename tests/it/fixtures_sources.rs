//! Every Jira and Gmail fixture (tests/fixtures, written from the public API references) is read
//! by the client, and the simulator's answer to the same call carries every field the fixture
//! has, with the same JSON type.

use std::path::Path;

use chex::sim::gmail::{self, GmailSim};
use chex::sim::jira::{JiraSim, JiraSpec};
use chex::sources::gmail::types::{
    ErrorEnvelope, Profile, TokenError, TokenResponse, VacationSettings,
};
use chex::sources::jira::types::{ErrorBody, Issue, JiraUser, SearchPage};
use serde_json::Value;
use tokio::net::TcpListener;

fn fixture(path: &str) -> Value {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(path);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Every field of `want` is in `got` with the same JSON type (null matches anything: a fixture's
/// `assignee: null` is one case of an object).
fn covers(got: &Value, want: &Value, at: &str) -> Vec<String> {
    let mut missing = Vec::new();
    match (got, want) {
        (_, Value::Null) | (Value::Null, _) => {}
        (Value::Object(g), Value::Object(w)) => {
            for (k, wv) in w {
                match g.get(k) {
                    Some(gv) => missing.extend(covers(gv, wv, &format!("{at}.{k}"))),
                    None => missing.push(format!("{at}.{k}")),
                }
            }
        }
        (Value::Array(g), Value::Array(w)) => {
            if let (Some(gf), Some(wf)) = (g.first(), w.first()) {
                missing.extend(covers(gf, wf, &format!("{at}[0]")));
            }
        }
        (g, w) if std::mem::discriminant(g) == std::mem::discriminant(w) => {}
        (g, w) => missing.push(format!("{at}: {g} is not the type of {w}")),
    }
    missing
}

fn assert_covers(got: &Value, fixture_path: &str) {
    let missing = covers(got, &fixture(fixture_path), "$");
    assert!(
        missing.is_empty(),
        "{fixture_path}: simulator lacks {missing:?}\n{got:#}"
    );
}

#[test]
fn the_clients_read_every_fixture() {
    let u: JiraUser = serde_json::from_value(fixture("jira/myself.json")).expect("myself");
    assert_eq!(u.email_address.as_deref(), Some("mia@example.com"));
    let users: Vec<JiraUser> =
        serde_json::from_value(fixture("jira/users-search.json")).expect("users");
    assert_eq!(users[1].email_address, None, "hidden by privacy settings");
    let page: SearchPage =
        serde_json::from_value(fixture("jira/search-jql-page1.json")).expect("page");
    assert_eq!(page.more(), Some("CAEaAggD"));
    assert_eq!(page.issues[0].category_key(), "indeterminate");
    assert_eq!(
        page.issues[0].assignee_id(),
        Some("5b10a2844c20165700ede21g")
    );
    let issue: Issue =
        serde_json::from_value(fixture("jira/issue-with-transitions.json")).expect("issue");
    assert_eq!(
        (issue.status_name(), issue.transitions[0].to.name.as_str()),
        ("To Do", "In Progress")
    );
    assert_eq!(issue.assignee_id(), None);
    let e: ErrorBody = serde_json::from_value(fixture("jira/error-400.json")).expect("error");
    assert!(e.message().contains("Expecting operator"));

    let p: Profile = serde_json::from_value(fixture("gmail/profile.json")).expect("profile");
    assert_eq!(
        (p.email_address.as_str(), p.history_id),
        ("mia@example.com", Some(1_597_643))
    );
    let v: VacationSettings =
        serde_json::from_value(fixture("gmail/vacation-on.json")).expect("on");
    assert!(v.enable_auto_reply && v.since().is_some() && v.until() > v.since());
    let off: VacationSettings =
        serde_json::from_value(fixture("gmail/vacation-off.json")).expect("off");
    assert!(!off.enable_auto_reply && off.since().is_none());
    let t: TokenResponse = serde_json::from_value(fixture("gmail/token.json")).expect("token");
    assert_eq!(t.expires_in, Some(3920));
    let g: TokenError =
        serde_json::from_value(fixture("gmail/token-invalid-grant.json")).expect("grant");
    assert_eq!(g.error, "invalid_grant");
    for (f, reason) in [
        ("gmail/error-403-rate.json", "userRateLimitExceeded"),
        ("gmail/error-429.json", "rateLimitExceeded"),
        ("gmail/error-401.json", "authError"),
    ] {
        let e: ErrorEnvelope = serde_json::from_value(fixture(f)).expect(f);
        assert_eq!(e.error.reason(), reason, "{f}");
    }
}

async fn get(url: &str, auth: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(url)
        .header("authorization", auth)
        .send()
        .await
        .expect("get");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn the_jira_simulator_answers_in_the_fixtures_shapes() {
    crate::helpers::install_crypto();
    let spec = JiraSpec {
        people: (0..60)
            .map(|i| (format!("P {i}"), format!("p{i}@example.com")))
            .collect(),
        issues: 120,
        ..JiraSpec::default()
    };
    let sim = JiraSim::start(
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        spec.clone(),
        1,
        None,
    )
    .await
    .expect("sim");
    let me = sim.with(|w| {
        let id = w.account_of("p0@example.com").expect("p0").to_owned();
        for n in 1..=60 {
            w.assign(&format!("OPS-{n}"), Some(&id));
            w.transition(&format!("OPS-{n}"), "In Progress");
        }
        w.assign("OPS-1", None);
        w.transition("OPS-1", "To Do");
        id
    });
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", spec.email, spec.api_token))
    );
    let base = format!("{}/rest/api/3", sim.url());
    let (s, v) = get(&format!("{base}/myself"), &basic).await;
    assert_eq!(s, 200);
    assert_covers(&v, "jira/myself.json");
    let (_, v) = get(&format!("{base}/users/search?maxResults=50"), &basic).await;
    assert_covers(&v, "jira/users-search.json");
    let jql =
        url::form_urlencoded::byte_serialize(chex::sources::jira::in_progress_jql(&me).as_bytes())
            .collect::<String>();
    let (_, v) = get(
        &format!("{base}/search/jql?jql={jql}&fields=summary,status,assignee&maxResults=50"),
        &basic,
    )
    .await;
    assert_covers(&v, "jira/search-jql-page1.json");
    let (_, v) = get(
        &format!("{base}/issue/OPS-1?fields=status,assignee,summary&expand=transitions"),
        &basic,
    )
    .await;
    assert_covers(&v, "jira/issue-with-transitions.json");
    let (s, v) = get(&format!("{base}/search/jql?jql=summary%20~%20cats"), &basic).await;
    assert_eq!(s, 400);
    assert_covers(&v, "jira/error-400.json");
}

#[tokio::test]
async fn the_gmail_simulator_answers_in_the_fixtures_shapes() {
    crate::helpers::install_crypto();
    let sim = GmailSim::start(
        TcpListener::bind("127.0.0.1:0").await.expect("bind"),
        &["mia@example.com".to_owned()],
        1,
        None,
    )
    .await
    .expect("sim");
    let http = reqwest::Client::new();
    let form = |refresh: &str| {
        vec![
            ("grant_type", "refresh_token".to_owned()),
            ("refresh_token", refresh.to_owned()),
            ("client_id", gmail::CLIENT_ID.to_owned()),
            ("client_secret", gmail::CLIENT_SECRET.to_owned()),
        ]
    };
    let r = http
        .post(sim.token_url())
        .form(&form(&gmail::refresh_token_for("mia@example.com")))
        .send()
        .await
        .expect("token");
    let token: Value = r.json().await.expect("json");
    assert_covers(&token, "gmail/token.json");
    let r = http
        .post(sim.token_url())
        .form(&form("1//nope"))
        .send()
        .await
        .expect("token");
    assert_eq!(r.status().as_u16(), 400);
    assert_covers(
        &r.json().await.expect("json"),
        "gmail/token-invalid-grant.json",
    );

    let bearer = format!("Bearer {}", token["access_token"].as_str().expect("access"));
    let api = format!("{}/gmail/v1/users/me", sim.api_url());
    let (_, v) = get(&format!("{api}/profile"), &bearer).await;
    assert_covers(&v, "gmail/profile.json");
    let (_, v) = get(&format!("{api}/settings/vacation"), &bearer).await;
    assert_covers(&v, "gmail/vacation-off.json");
    sim.mailbox("mia@example.com", |m| {
        m.set_vacation(true, "Away", Some(1), Some(2))
    });
    let (_, v) = get(&format!("{api}/settings/vacation"), &bearer).await;
    assert_covers(&v, "gmail/vacation-on.json");
    sim.mailbox("mia@example.com", |m| {
        m.quota_as_403 = true;
        m.faults.rate_limit_next = 1;
    });
    let (s, v) = get(&format!("{api}/settings/vacation"), &bearer).await;
    assert_eq!(s, 403);
    assert_covers(&v, "gmail/error-403-rate.json");
    sim.mailbox("mia@example.com", |m| {
        m.quota_as_403 = false;
        m.faults.rate_limit_next = 1;
    });
    let (s, v) = get(&format!("{api}/settings/vacation"), &bearer).await;
    assert_eq!(s, 429);
    assert_covers(&v, "gmail/error-429.json");
    let (s, v) = get(&format!("{api}/profile"), "Bearer ya29.expired").await;
    assert_eq!(s, 401);
    assert_covers(&v, "gmail/error-401.json");
}
