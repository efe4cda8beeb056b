//! The Checks API (`/api/chex`): create, read, change, delete, with field-named validation errors.

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp};

async fn call(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = app
        .http
        .request(method, app.url(path))
        .bearer_auth(&app.token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    let resp = r.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn checks_can_be_created_read_changed_and_deleted() {
    use reqwest::Method;
    let app = TestApp::spawn_with(Options {
        users: 3,
        track: false,
        ..Default::default()
    })
    .await;
    let (_, conns) = call(&app, Method::GET, "/api/connections", None).await;
    let conn_id = conns["connections"][0]["id"]
        .as_i64()
        .expect("connection id");

    let (s, e) = call(
        &app,
        Method::POST,
        "/api/chex/slack",
        Some(json!({"connection_id": conn_id, "user": "not an id!"})),
    )
    .await;
    assert_eq!(s, 422);
    assert!(
        e["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("user:"),
        "{e}"
    );
    let (s, e) = call(
        &app,
        Method::POST,
        "/api/chex/slack",
        Some(json!({"connection_id": 9999})),
    )
    .await;
    assert_eq!(s, 422);
    assert!(
        e["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("connection_id:")
    );
    let (s, _) = call(
        &app,
        Method::POST,
        "/api/chex/slack",
        Some(json!({"connection_id": conn_id, "surprise": 1})),
    )
    .await;
    assert_eq!(s, 400, "unknown fields are refused");

    let (s, created) = call(
        &app,
        Method::POST,
        "/api/chex/slack",
        Some(json!({"connection_id": conn_id})),
    )
    .await;
    assert_eq!(s, 201, "{created}");
    assert_eq!(created["subject"], "*");
    let id = created["id"].as_i64().expect("id");
    let (s, _) = call(
        &app,
        Method::POST,
        "/api/chex/slack",
        Some(json!({"connection_id": conn_id})),
    )
    .await;
    assert_eq!(s, 409, "the same subject twice");

    app.wait_for_people(3).await;
    let (s, one) = call(&app, Method::GET, &format!("/api/chex/{id}"), None).await;
    assert_eq!(s, 200);
    assert!(one["last_polled_at"].is_string(), "{one}");
    assert!(one.get("next_poll_at").is_some());

    let (s, e) = call(
        &app,
        Method::PATCH,
        &format!("/api/chex/{id}"),
        Some(json!({"interval_secs": 0})),
    )
    .await;
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (422, Some("unprocessable"))
    );
    let (s, changed) = call(
        &app,
        Method::PATCH,
        &format!("/api/chex/{id}"),
        Some(json!({"interval_secs": 60, "enabled": false})),
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(
        (
            changed["interval_secs"].as_i64(),
            changed["enabled"].as_bool()
        ),
        (Some(60), Some(false))
    );

    let (_, list) = call(&app, Method::GET, "/api/chex", None).await;
    assert_eq!(list["checks"].as_array().expect("checks").len(), 1);
    let (s, _) = call(&app, Method::DELETE, &format!("/api/chex/{id}"), None).await;
    assert_eq!(s, 204);
    let (s, _) = call(&app, Method::GET, &format!("/api/chex/{id}"), None).await;
    assert_eq!(s, 404);
    let (s, _) = call(&app, Method::DELETE, &format!("/api/chex/{id}"), None).await;
    assert_eq!(s, 404);

    let (member, _) = app
        .server
        .state
        .keys
        .mint("2", app.org_id, "member", None, None);
    let r = app
        .http
        .post(app.url("/api/chex/slack"))
        .bearer_auth(member)
        .json(&json!({"connection_id": conn_id}))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 403, "members cannot add checks");
}
