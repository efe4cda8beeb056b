//! `GET /api/openapi.json`: an OpenAPI 3.1 description of every HTTP route, built from one table
//! so that adding a route means adding a row here (the integration tests call every row).

use std::sync::LazyLock;

use serde_json::{Map, Value, json};

/// How a route is authorized.
#[derive(Clone, Copy)]
enum Auth {
    Public,
    Bearer,
    Admin,
}

/// One operation: method, path (OpenAPI template), auth, summary, query parameters, request body
/// schema, success status and response schema.
struct Op {
    method: &'static str,
    path: &'static str,
    auth: Auth,
    summary: &'static str,
    query: &'static [(&'static str, &'static str, &'static str)],
    body: Option<fn() -> Value>,
    ok: u16,
    response: fn() -> Value,
}

fn obj(props: &[(&str, Value)], required: &[&str]) -> Value {
    let p: Map<String, Value> = props
        .iter()
        .map(|(k, v)| ((*k).to_owned(), v.clone()))
        .collect();
    json!({"type": "object", "properties": p, "required": required, "additionalProperties": false})
}

fn s() -> Value {
    json!({"type": "string"})
}
fn i() -> Value {
    json!({"type": "integer"})
}
fn time() -> Value {
    json!({"type": "string", "format": "date-time"})
}
fn r(name: &str) -> Value {
    json!({"$ref": format!("#/components/schemas/{name}")})
}
fn list(key: &str, item: Value) -> Value {
    json!({"type": "object", "properties": {key: {"type": "array", "items": item}}})
}
fn any() -> Value {
    json!({"type": "object"})
}

const RANGE: &[(&str, &str, &str)] = &[
    ("from", "string", "RFC 3339 start (inclusive)"),
    ("to", "string", "RFC 3339 end (exclusive)"),
    ("cursor", "integer", "seq to continue after"),
    ("limit", "integer", "page size (≤ 1000)"),
];

static OPS: &[Op] = &[
    Op {
        method: "get",
        path: "/healthz",
        auth: Auth::Public,
        summary: "Liveness: the process answers",
        query: &[],
        body: None,
        ok: 200,
        response: any,
    },
    Op {
        method: "get",
        path: "/readyz",
        auth: Auth::Public,
        summary: "Readiness: database reachable and migrated (503 otherwise)",
        query: &[],
        body: None,
        ok: 200,
        response: any,
    },
    Op {
        method: "get",
        path: "/metrics",
        auth: Auth::Public,
        summary: "Prometheus text exposition",
        query: &[],
        body: None,
        ok: 200,
        response: s,
    },
    Op {
        method: "get",
        path: "/api/openapi.json",
        auth: Auth::Public,
        summary: "This document",
        query: &[],
        body: None,
        ok: 200,
        response: any,
    },
    Op {
        method: "post",
        path: "/api/auth/login",
        auth: Auth::Public,
        summary: "Email and password for an access and a refresh token",
        query: &[],
        body: Some(|| obj(&[("email", s()), ("password", s())], &["email", "password"])),
        ok: 200,
        response: || r("Session"),
    },
    Op {
        method: "post",
        path: "/api/auth/refresh",
        auth: Auth::Public,
        summary: "Spend a refresh token (once) for a new session",
        query: &[],
        body: Some(|| obj(&[("refresh_token", s())], &["refresh_token"])),
        ok: 200,
        response: || r("Session"),
    },
    Op {
        method: "post",
        path: "/api/auth/logout",
        auth: Auth::Bearer,
        summary: "Revoke the access token and, when given, the refresh token",
        query: &[],
        body: Some(|| obj(&[("refresh_token", s())], &[])),
        ok: 200,
        response: any,
    },
    Op {
        method: "get",
        path: "/api/users",
        auth: Auth::Bearer,
        summary: "Tracked people with their current status",
        ok: 200,
        query: &[
            ("team", "string", "Slack team id"),
            ("presence", "string", "active|away|unknown"),
            ("q", "string", "name contains"),
            ("limit", "integer", "page size (≤ 1000)"),
            ("cursor", "integer", "next_cursor of the previous page"),
        ],
        body: None,
        response: || json!({"type": "object", "properties": {"users": {"type": "array", "items": r("User")}, "next_cursor": {"type": ["integer", "null"]}}}),
    },
    Op {
        method: "get",
        path: "/api/users/{id}",
        auth: Auth::Bearer,
        summary: "One person's current status, with their Slack user and profile",
        query: &[],
        body: None,
        ok: 200,
        response: || r("User"),
    },
    Op {
        method: "get",
        path: "/api/users/{id}/history",
        auth: Auth::Bearer,
        summary: "Status events, oldest first, paged by seq",
        query: RANGE,
        body: None,
        ok: 200,
        response: || json!({"type": "object", "properties": {"events": {"type": "array", "items": r("StatusEvent")}, "next_cursor": {"type": ["integer", "null"]}}}),
    },
    Op {
        method: "get",
        path: "/api/users/{id}/summary",
        auth: Auth::Bearer,
        summary: "Seconds spent per presence, in DND and per status text",
        query: &RANGE_FROM_TO,
        body: None,
        ok: 200,
        response: any,
    },
    Op {
        method: "get",
        path: "/api/events",
        auth: Auth::Bearer,
        summary: "Server-Sent Events of status changes (Last-Event-ID resumes); see docs/protocol.md",
        query: &[
            ("topics", "string", "comma-separated team:<id> / user:<id>"),
            (
                "access_token",
                "string",
                "for EventSource, which cannot set headers",
            ),
            ("last_event_id", "integer", "as the Last-Event-ID header"),
        ],
        body: None,
        ok: 200,
        response: s,
    },
    Op {
        method: "get",
        path: "/ws",
        auth: Auth::Bearer,
        summary: "WebSocket upgrade, protocol v1 (docs/protocol.md); the token may also come as ?access_token or a first auth frame",
        query: &[("access_token", "string", "JWT or bot token")],
        body: None,
        ok: 101,
        response: any,
    },
    Op {
        method: "get",
        path: "/api/connections",
        auth: Auth::Admin,
        summary: "Workspaces with fingerprint, polling state and last error (never the token)",
        query: &[],
        body: None,
        ok: 200,
        response: || list("connections", r("Connection")),
    },
    Op {
        method: "post",
        path: "/api/connections/slack",
        auth: Auth::Admin,
        summary: "Upload (or replace) a workspace's bot token and signing secret; validated with auth.test, stored encrypted",
        query: &[],
        body: Some(|| obj(&[("token", s()), ("signing_secret", s())], &["token"])),
        ok: 201,
        response: || r("Connection"),
    },
    Op {
        method: "post",
        path: "/api/connections/jira",
        auth: Auth::Admin,
        summary: "Connect (or re-key) a Jira Cloud site: email + API token, checked with /myself, stored encrypted; tracks everyone linked",
        query: &[],
        body: Some(|| {
            obj(
                &[("site_url", s()), ("email", s()), ("api_token", s())],
                &["site_url", "email", "api_token"],
            )
        }),
        ok: 201,
        response: || r("Connection"),
    },
    Op {
        method: "post",
        path: "/api/connections/gmail",
        auth: Auth::Admin,
        summary: "Connect a Gmail mailbox: OAuth2 client and the owner's refresh token, checked by a refresh and users.getProfile, stored encrypted",
        query: &[],
        body: Some(|| {
            obj(
                &[
                    ("client_id", s()),
                    ("client_secret", s()),
                    ("refresh_token", s()),
                ],
                &["client_id", "client_secret", "refresh_token"],
            )
        }),
        ok: 201,
        response: || r("Connection"),
    },
    Op {
        method: "get",
        path: "/api/connections/{id}/identities",
        auth: Auth::Admin,
        summary: "Accounts of a Jira site or Gmail mailbox and the person each is linked to (by email, or pinned by an admin)",
        query: &[],
        body: None,
        ok: 200,
        response: || list("identities", r("Identity")),
    },
    Op {
        method: "put",
        path: "/api/connections/{id}/identities/{external_id}",
        auth: Auth::Admin,
        summary: "Pin an account to a person (person_id null: to nobody); automatic linking leaves it alone",
        query: &[],
        body: Some(|| obj(&[("person_id", json!({"type": ["integer", "null"]}))], &[])),
        ok: 200,
        response: || r("Identity"),
    },
    Op {
        method: "delete",
        path: "/api/connections/{id}/identities/{external_id}",
        auth: Auth::Admin,
        summary: "Unpin an account: it is linked by email again",
        query: &[],
        body: None,
        ok: 200,
        response: || r("Identity"),
    },
    Op {
        method: "delete",
        path: "/api/connections/{id}",
        auth: Auth::Admin,
        summary: "Delete a workspace; its polling stops",
        query: &[],
        body: None,
        ok: 200,
        response: any,
    },
    Op {
        method: "get",
        path: "/api/chex",
        auth: Auth::Bearer,
        summary: "Checks (what is polled)",
        query: &[],
        body: None,
        ok: 200,
        response: || list("checks", r("Check")),
    },
    Op {
        method: "post",
        path: "/api/chex/slack",
        auth: Auth::Admin,
        summary: "Watch a Slack user, or the whole workspace with user absent or *",
        query: &[],
        body: Some(|| {
            obj(
                &[
                    ("connection_id", i()),
                    ("user", s()),
                    ("interval_secs", i()),
                ],
                &["connection_id"],
            )
        }),
        ok: 201,
        response: || r("Check"),
    },
    Op {
        method: "post",
        path: "/api/chex/jira",
        auth: Auth::Admin,
        summary: "Track on a Jira site: * (everyone linked), one accountId, or one issue key (whatever its status)",
        query: &[],
        body: Some(|| {
            obj(
                &[("connection_id", i()), ("subject", s())],
                &["connection_id", "subject"],
            )
        }),
        ok: 201,
        response: || r("Check"),
    },
    Op {
        method: "get",
        path: "/api/chex/{id}",
        auth: Auth::Bearer,
        summary: "One check",
        query: &[],
        body: None,
        ok: 200,
        response: || r("Check"),
    },
    Op {
        method: "patch",
        path: "/api/chex/{id}",
        auth: Auth::Admin,
        summary: "Enable, disable or re-time a check",
        query: &[],
        body: Some(|| {
            obj(
                &[
                    ("enabled", json!({"type": "boolean"})),
                    ("interval_secs", i()),
                ],
                &[],
            )
        }),
        ok: 200,
        response: || r("Check"),
    },
    Op {
        method: "delete",
        path: "/api/chex/{id}",
        auth: Auth::Admin,
        summary: "Delete a check",
        query: &[],
        body: None,
        ok: 200,
        response: any,
    },
    Op {
        method: "post",
        path: "/api/tokens",
        auth: Auth::Admin,
        summary: "Create a bot token (shown once, stored hashed), optionally scoped to topics and expiring",
        query: &[],
        body: Some(|| {
            obj(
                &[
                    ("name", s()),
                    ("role", s()),
                    ("topics", json!({"type": "array", "items": s()})),
                    ("ttl_secs", i()),
                ],
                &["name"],
            )
        }),
        ok: 201,
        response: any,
    },
    Op {
        method: "get",
        path: "/api/tokens",
        auth: Auth::Admin,
        summary: "Bot tokens (never their secret)",
        query: &[],
        body: None,
        ok: 200,
        response: || list("tokens", any()),
    },
    Op {
        method: "delete",
        path: "/api/tokens/{id}",
        auth: Auth::Admin,
        summary: "Revoke a bot token; its live sockets close with 4001",
        query: &[],
        body: None,
        ok: 200,
        response: any,
    },
    Op {
        method: "get",
        path: "/api/accounts",
        auth: Auth::Admin,
        summary: "Accounts of the caller's organization",
        query: &[],
        body: None,
        ok: 200,
        response: || list("accounts", r("Account")),
    },
    Op {
        method: "post",
        path: "/api/accounts",
        auth: Auth::Admin,
        summary: "Create an account",
        query: &[],
        body: Some(|| {
            obj(
                &[("email", s()), ("password", s()), ("role", s())],
                &["email", "password"],
            )
        }),
        ok: 201,
        response: || r("Account"),
    },
    Op {
        method: "patch",
        path: "/api/accounts/{id}",
        auth: Auth::Admin,
        summary: "Change role or disable",
        query: &[],
        body: Some(|| {
            obj(
                &[("role", s()), ("disabled", json!({"type": "boolean"}))],
                &[],
            )
        }),
        ok: 200,
        response: || r("Account"),
    },
    Op {
        method: "post",
        path: "/slack/events",
        auth: Auth::Public,
        summary: "Slack Events API endpoint (request signature checked against the workspace's signing secret)",
        query: &[],
        body: Some(any),
        ok: 200,
        response: any,
    },
];

const RANGE_FROM_TO: [(&str, &str, &str); 2] = [RANGE[0], RANGE[1]];

fn schemas() -> Value {
    let status = json!({"type": "object", "properties": {
        "presence": {"enum": ["active", "away", "unknown"]}, "text": s(), "emoji": s(),
        "expires_at": {"type": ["string", "null"], "format": "date-time"},
        "dnd": {"type": "object", "properties": {"enabled": {"type": "boolean"}, "until": {"type": ["string", "null"], "format": "date-time"}}},
        "stale": {"type": "boolean"},
        "jira": {"type": "object", "description": "present once a Jira site is linked to the person", "properties": {
            "issues": {"type": "array", "items": {"type": "object", "properties": {"key": s(), "summary": s(), "status": s(),
                "category": {"enum": ["new", "indeterminate", "done"]}, "url": s(), "next": {"type": "array", "items": s()}}}},
            "moved": {"type": "array", "items": {"type": "object", "properties": {"key": s(), "summary": s(),
                "from": {"type": ["string", "null"]}, "to": {"type": ["string", "null"]}}}},
            "stale": {"type": "boolean"}}},
        "gmail": {"type": "object", "description": "present once a Gmail mailbox is linked to the person", "properties": {
            "address": s(), "auto_reply": {"type": "boolean"}, "out_of_office": {"type": "boolean"}, "subject": s(),
            "since": {"type": ["string", "null"], "format": "date-time"}, "until": {"type": ["string", "null"], "format": "date-time"},
            "stale": {"type": "boolean"}}}}});
    json!({
        "Error": {"type": "object", "properties": {"error": {"type": "object", "properties": {"code": s(), "message": s()}}}},
        "Session": {"type": "object", "properties": {"access_token": s(), "expires_at": time(), "refresh_token": s()}},
        "Status": status,
        "User": {"type": "object", "properties": {"id": i(), "topic": s(), "team_id": s(), "slack_id": s(), "name": s(), "display_name": s(),
                 "image_72": s(), "seq": i(), "status": r("Status"), "observed_at": time()}},
        "StatusEvent": {"type": "object", "properties": {"seq": i(), "status": r("Status"), "changed": {"type": "array", "items": s()},
                        "previous": any(), "observed_at": time(), "source": s()}},
        "Identity": {"type": "object", "properties": {"connection_id": i(), "external_id": s(), "email": {"type": ["string", "null"]},
                     "display_name": s(), "person_id": {"type": ["integer", "null"]}, "manual": {"type": "boolean"}, "updated_at": time()}},
        "Connection": {"type": "object", "properties": {"id": i(), "kind": {"enum": ["slack", "jira", "gmail"]}, "external_id": s(), "team_id": {"type": ["string", "null"]}, "name": s(), "fingerprint": s(), "status": s(), "last_error": {"type": ["string", "null"]}}},
        "Check": {"type": "object", "properties": {"id": i(), "connection_id": i(), "kind": s(), "subject": s(), "interval_secs": i(), "enabled": {"type": "boolean"}}},
        "Account": {"type": "object", "properties": {"id": i(), "email": s(), "role": s(), "disabled": {"type": "boolean"}}},
    })
}

fn operation(op: &Op) -> Value {
    let mut params: Vec<Value> = op
        .query
        .iter()
        .map(|(name, ty, desc)| json!({"name": name, "in": "query", "required": false, "description": desc, "schema": {"type": ty}}))
        .collect();
    if op.path.contains("{id}") {
        params.push(
            json!({"name": "id", "in": "path", "required": true, "schema": {"type": "integer"}}),
        );
    }
    if op.path.contains("{external_id}") {
        params.push(json!({"name": "external_id", "in": "path", "required": true, "schema": {"type": "string"},
            "description": "Jira accountId or Gmail address, percent-encoded"}));
    }
    let error =
        json!({"description": "error", "content": {"application/json": {"schema": r("Error")}}});
    let mut responses = Map::new();
    responses.insert(
        op.ok.to_string(),
        json!({"description": "success", "content": {"application/json": {"schema": (op.response)()}}}),
    );
    responses.insert("400".into(), error.clone());
    let mut v = json!({"summary": op.summary, "parameters": params});
    match op.auth {
        Auth::Public => {}
        Auth::Bearer | Auth::Admin => {
            v["security"] = json!([{"bearer": []}]);
            responses.insert("401".into(), error.clone());
        }
    }
    if matches!(op.auth, Auth::Admin) {
        v["description"] = json!("Admins of the organization only (403 otherwise).");
        responses.insert("403".into(), error);
    }
    if let Some(body) = op.body {
        v["requestBody"] =
            json!({"required": true, "content": {"application/json": {"schema": body()}}});
    }
    v["responses"] = Value::Object(responses);
    v
}

/// The document, built once.
pub static DOCUMENT: LazyLock<String> = LazyLock::new(|| {
    let mut paths = Map::new();
    for op in OPS {
        let entry = paths.entry(op.path.to_owned()).or_insert_with(|| json!({}));
        entry[op.method] = operation(op);
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "Chex", "version": env!("CARGO_PKG_VERSION"),
                 "description": "Live status of people across Slack (Jira and Gmail to come): REST, WebSocket and SSE. Times are RFC 3339 UTC."},
        "paths": paths,
        "components": {"schemas": schemas(), "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT or chex_bot_ token"}}},
    })
    .to_string()
});
