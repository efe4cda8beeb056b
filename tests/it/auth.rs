//! Accounts and bot tokens over real HTTP and WebSocket clients.

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp, close_code, recv, send};

async fn post(app: &TestApp, path: &str, bearer: Option<&str>, body: Value) -> (u16, Value) {
    let mut r = app.http.post(app.url(path)).json(&body);
    if let Some(b) = bearer {
        r = r.bearer_auth(b);
    }
    let resp = r.send().await.expect("post");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn get_with(app: &TestApp, path: &str, bearer: &str) -> u16 {
    app.http
        .get(app.url(path))
        .bearer_auth(bearer)
        .send()
        .await
        .expect("get")
        .status()
        .as_u16()
}

#[tokio::test]
async fn login_refresh_and_logout() {
    let app = TestApp::spawn_with(Options {
        users: 1,
        ..Default::default()
    })
    .await;
    let hash = chex::auth::hash_password("a long enough password");
    app.server
        .state
        .store
        .create_account(chex::store::NewAccount {
            organization_id: app.org_id,
            email: "Ops@Example.com",
            password_hash: &hash,
            role: "member",
        })
        .await
        .expect("account");
    let (s, _) = post(
        &app,
        "/api/auth/login",
        None,
        json!({"email": "ops@example.com", "password": "wrong"}),
    )
    .await;
    assert_eq!(s, 401);
    let (s, session) = post(
        &app,
        "/api/auth/login",
        None,
        json!({"email": "ops@example.com", "password": "a long enough password"}),
    )
    .await;
    assert_eq!(s, 200, "{session}");
    assert!(session["expires_at"].as_str().expect("time").ends_with('Z'));
    let access = session["access_token"].as_str().expect("token").to_owned();
    let rt = session["refresh_token"]
        .as_str()
        .expect("refresh")
        .to_owned();
    assert_eq!(get_with(&app, "/api/users", &access).await, 200);
    assert_eq!(
        get_with(&app, "/api/connections", &access).await,
        403,
        "members are not admins"
    );

    let (s, renewed) = post(
        &app,
        "/api/auth/refresh",
        None,
        json!({"refresh_token": rt}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = post(
        &app,
        "/api/auth/refresh",
        None,
        json!({"refresh_token": rt}),
    )
    .await;
    assert_eq!(s, 401, "a refresh token is spent once");

    let new_access = renewed["access_token"].as_str().expect("token");
    let (s, _) = post(
        &app,
        "/api/auth/logout",
        Some(new_access),
        json!({"refresh_token": renewed["refresh_token"]}),
    )
    .await;
    assert_eq!(s, 204);
    assert_eq!(
        get_with(&app, "/api/users", new_access).await,
        401,
        "a logged-out token is refused"
    );
    let (s, _) = post(
        &app,
        "/api/auth/refresh",
        None,
        json!({"refresh_token": renewed["refresh_token"]}),
    )
    .await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn bot_tokens_work_directly_and_revocation_closes_live_sockets() {
    let app = TestApp::spawn_with(Options {
        users: 2,
        ..Default::default()
    })
    .await;
    let people = app.wait_for_people(2).await;
    let (s, e) = post(
        &app,
        "/api/tokens",
        Some(&app.token),
        json!({"name": "bot", "topics": ["nope"]}),
    )
    .await;
    assert_eq!(
        (
            s,
            e["error"]["message"]
                .as_str()
                .map(|m| m.starts_with("topics:"))
        ),
        (422, Some(true))
    );
    let (s, created) = post(
        &app,
        "/api/tokens",
        Some(&app.token),
        json!({"name": "presence-bot", "topics": [people[0]["topic"]]}),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    let secret = created["token"].as_str().expect("shown once").to_owned();
    let list = app
        .http
        .get(app.url("/api/tokens"))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("list")
        .text()
        .await
        .expect("text");
    assert!(!list.contains(&secret), "the secret is never listed");

    assert_eq!(get_with(&app, "/api/users", &secret).await, 200);
    let mut ws = app.connect(Some(&secret)).await;
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "1", "topics": [people[1]["topic"]]}),
    )
    .await;
    assert_eq!(
        recv(&mut ws).await["code"],
        "forbidden",
        "outside the token's topics"
    );
    send(
        &mut ws,
        json!({"type": "subscribe", "id": "2", "topics": [people[0]["topic"]]}),
    )
    .await;
    assert_eq!(recv(&mut ws).await["type"], "subscribed");

    let id = created["id"].as_i64().expect("id");
    let r = app
        .http
        .delete(app.url(&format!("/api/tokens/{id}")))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 204);
    assert_eq!(
        close_code(&mut ws).await,
        Some(4001),
        "the live socket is closed at once"
    );
    assert_eq!(get_with(&app, "/api/users", &secret).await, 401);
}

#[tokio::test]
async fn admins_manage_accounts_and_connections() {
    let app = TestApp::spawn_with(Options {
        users: 2,
        ..Default::default()
    })
    .await;
    let (s, e) = post(
        &app,
        "/api/accounts",
        Some(&app.token),
        json!({"email": "nope", "password": "a long enough password"}),
    )
    .await;
    assert_eq!(
        (
            s,
            e["error"]["message"]
                .as_str()
                .map(|m| m.starts_with("email:"))
        ),
        (422, Some(true))
    );
    let (s, e) = post(
        &app,
        "/api/accounts",
        Some(&app.token),
        json!({"email": "m@example.com", "password": "short"}),
    )
    .await;
    assert_eq!(
        (
            s,
            e["error"]["message"]
                .as_str()
                .map(|m| m.starts_with("password:"))
        ),
        (422, Some(true))
    );
    let (s, a) = post(
        &app,
        "/api/accounts",
        Some(&app.token),
        json!({"email": "m@example.com", "password": "a long enough password"}),
    )
    .await;
    assert_eq!((s, a["role"].as_str()), (201, Some("member")));
    assert!(a.get("password_hash").is_none());
    let (s, _) = post(
        &app,
        "/api/accounts",
        Some(&app.token),
        json!({"email": "m@example.com", "password": "a long enough password"}),
    )
    .await;
    assert_eq!(s, 409);
    let id = a["id"].as_i64().expect("id");
    let r = app
        .http
        .patch(app.url(&format!("/api/accounts/{id}")))
        .bearer_auth(&app.token)
        .json(&json!({"disabled": true}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status().as_u16(), 200);
    let (s, _) = post(
        &app,
        "/api/auth/login",
        None,
        json!({"email": "m@example.com", "password": "a long enough password"}),
    )
    .await;
    assert_eq!(s, 401, "a disabled account cannot log in");

    app.wait_for_people(2).await;
    let (_, conns) = {
        let r = app
            .http
            .get(app.url("/api/connections"))
            .bearer_auth(&app.token)
            .send()
            .await
            .expect("get");
        (r.status().as_u16(), r.json::<Value>().await.expect("json"))
    };
    let conn = conns["connections"][0]["id"].as_i64().expect("id");
    let r = app
        .http
        .delete(app.url(&format!("/api/connections/{conn}")))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 204);
    tokio::time::sleep(std::time::Duration::from_secs(3)).await;
    let before = app.sim.calls("users.getPresence");
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(
        app.sim.calls("users.getPresence"),
        before,
        "deleting the connection stops its polling"
    );
    let r = app
        .http
        .delete(app.url(&format!("/api/connections/{conn}")))
        .bearer_auth(&app.token)
        .send()
        .await
        .expect("delete");
    assert_eq!(r.status().as_u16(), 404);
}

/// Claims as an operator's own backend would mint them for Chex.
fn operator_claims(org: i64, iss: &str, aud: &str, exp_in: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({
        "sub": "ext-42", "org": org, "role": "member", "iat": now, "exp": now + exp_in,
        "iss": iss, "aud": aud, "jti": uuid::Uuid::new_v4().to_string(),
    })
}

fn sign(alg: jsonwebtoken::Algorithm, key: &jsonwebtoken::EncodingKey, claims: &Value) -> String {
    jsonwebtoken::encode(&jsonwebtoken::Header::new(alg), claims, key).expect("sign")
}

fn key_file(name: &str) -> String {
    format!("{}/tests/keys/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn operator_keys_are_pinned_to_their_algorithm() {
    use jsonwebtoken::{Algorithm, EncodingKey};
    let app = TestApp::spawn_with(Options {
        users: 1,
        config: Box::new(|c| c.jwt_public_key = Some(key_file("rsa_public.pem"))),
        ..Default::default()
    })
    .await;
    let rsa = EncodingKey::from_rsa_pem(
        std::fs::read(key_file("rsa_private.pem"))
            .expect("key")
            .as_slice(),
    )
    .expect("rsa key");
    let org = app.org_id;
    let good = sign(
        Algorithm::RS256,
        &rsa,
        &operator_claims(org, "chex", "chex", 300),
    );
    assert_eq!(get_with(&app, "/api/users", &good).await, 200);
    let mut ws = app.connect(Some(&good)).await;
    send(&mut ws, json!({"type": "ping", "id": 1})).await;
    assert_eq!(recv(&mut ws).await["type"], "pong");

    // The classic confusion: HS256 "signed" with the RSA public key as the HMAC secret.
    let public_pem = std::fs::read(key_file("rsa_public.pem")).expect("pem");
    let confused = sign(
        Algorithm::HS256,
        &EncodingKey::from_secret(&public_pem).expect("hmac key"),
        &operator_claims(org, "chex", "chex", 300),
    );
    // `alg: none`: the same claims, no signature.
    let unsigned = {
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!(
            "{}.{}.",
            b64.encode(r#"{"alg":"none","typ":"JWT"}"#),
            b64.encode(operator_claims(org, "chex", "chex", 300).to_string())
        )
    };
    let refused = [
        ("alg none", unsigned),
        ("HS256 signed with the RS public key", confused),
        (
            "wrong iss",
            sign(
                Algorithm::RS256,
                &rsa,
                &operator_claims(org, "evil", "chex", 300),
            ),
        ),
        (
            "wrong aud",
            sign(
                Algorithm::RS256,
                &rsa,
                &operator_claims(org, "chex", "evil", 300),
            ),
        ),
        (
            "expired",
            sign(
                Algorithm::RS256,
                &rsa,
                &operator_claims(org, "chex", "chex", -300),
            ),
        ),
        (
            "unknown organization",
            sign(
                Algorithm::RS256,
                &rsa,
                &operator_claims(999, "chex", "chex", 300),
            ),
        ),
    ];
    for (why, token) in refused {
        assert_eq!(get_with(&app, "/api/users", &token).await, 401, "{why}");
        let mut ws = app.connect(None).await;
        send(&mut ws, json!({"type": "auth", "token": token})).await;
        assert_eq!(close_code(&mut ws).await, Some(4001), "{why}");
    }

    // An EC key is not accepted where an RSA key is configured, and the other way round.
    let ec = EncodingKey::from_ec_pem(
        std::fs::read(key_file("ec_private.pem"))
            .expect("key")
            .as_slice(),
    )
    .expect("ec key");
    let es = sign(
        Algorithm::ES256,
        &ec,
        &operator_claims(org, "chex", "chex", 300),
    );
    assert_eq!(get_with(&app, "/api/users", &es).await, 401);
    let ec_app = TestApp::spawn_with(Options {
        users: 1,
        config: Box::new(|c| c.jwt_public_key = Some(key_file("ec_public.pem"))),
        ..Default::default()
    })
    .await;
    let es = sign(
        Algorithm::ES256,
        &ec,
        &operator_claims(ec_app.org_id, "chex", "chex", 300),
    );
    assert_eq!(get_with(&ec_app, "/api/users", &es).await, 200);
    let rs = sign(
        Algorithm::RS256,
        &rsa,
        &operator_claims(ec_app.org_id, "chex", "chex", 300),
    );
    assert_eq!(get_with(&ec_app, "/api/users", &rs).await, 401);
}
