//! `/api/openapi.json` describes the routes the server really has.

use serde_json::{Value, json};

use crate::helpers::{Options, TestApp};

#[tokio::test]
async fn every_documented_operation_is_served() {
    let app = TestApp::spawn_with(Options {
        users: 1,
        ..Default::default()
    })
    .await;
    let (status, doc) = app.get("/api/openapi.json").await;
    assert_eq!(status, 200);
    assert_eq!(doc["openapi"], "3.1.0");
    let paths = doc["paths"].as_object().expect("paths");
    assert!(paths.len() >= 20, "{} paths", paths.len());
    let mut ops = Vec::new();
    for (path, methods) in paths {
        for (method, op) in methods.as_object().expect("methods") {
            assert!(op["summary"].is_string(), "{method} {path} has a summary");
            assert!(op["responses"].is_object(), "{method} {path} has responses");
            ops.push((
                method.clone(),
                path.replace("{id}", "999999")
                    .replace("{external_id}", "nobody%40example.com"),
            ));
        }
    }
    // Deletions last, on ids that do not exist: nothing of the fixture is destroyed.
    ops.sort_by_key(|(m, _)| m == "delete");
    for (method, path) in ops {
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let mut req = app.http.request(m, app.url(&path)).bearer_auth(&app.token);
        if method == "post" || method == "patch" {
            req = req.json(&json!({}));
        }
        let resp = req.send().await.expect("request");
        let status = resp.status().as_u16();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        assert_ne!(status, 405, "{method} {path}: method not routed");
        assert!(
            !(status == 404
                && body["error"]["message"]
                    .as_str()
                    .unwrap_or("")
                    .starts_with("no route")),
            "{method} {path}: documented but not routed"
        );
    }
    // And the reverse holds for a path nobody serves.
    let (status, body) = app.get("/api/nothing-here").await;
    assert_eq!(status, 404);
    assert!(
        body["error"]["message"]
            .as_str()
            .expect("message")
            .starts_with("no route")
    );
}
