//! The simulator's HTTP surface: Jira's `/rest/api/3/…`.

use std::collections::HashMap;

use base64::Engine;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use super::JiraSim;
use super::world::{Jql, WORKFLOW};
use crate::sim::faults::Fault;

type Resp = warp::reply::Response;

pub async fn serve(listener: TcpListener, sim: JiraSim) {
    let shutdown = sim.shutdown.clone();
    let routes = warp::path!("rest" / "api" / "3" / ..)
        .and(warp::path::tail())
        .and(warp::method())
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::query::<HashMap<String, String>>())
        // No length limit filter: it answers 411 to the GETs, which carry no body.
        .and(warp::body::bytes())
        .then(
            move |tail: warp::path::Tail,
                  method: warp::http::Method,
                  auth: Option<String>,
                  q: HashMap<String, String>,
                  body: Bytes| {
                let sim = sim.clone();
                async move { handle(&sim, tail.as_str(), &method, auth, &q, &body) }
            },
        );
    crate::sim::serve(listener, routes, shutdown).await;
}

fn reply(status: StatusCode, v: Value) -> Resp {
    let mut r = warp::reply::json(&v).into_response();
    *r.status_mut() = status;
    r
}

fn error(status: StatusCode, message: &str) -> Resp {
    reply(status, json!({"errorMessages": [message], "errors": {}}))
}

fn handle(
    sim: &JiraSim,
    path: &str,
    method: &warp::http::Method,
    auth: Option<String>,
    q: &HashMap<String, String>,
    body: &[u8],
) -> Resp {
    let parts: Vec<&str> = path.split('/').collect();
    let op: &'static str = match (method.as_str(), parts.as_slice()) {
        ("GET", ["myself"]) => "myself",
        ("GET", ["users", "search"]) => "users.search",
        ("GET", ["search", "jql"]) => "search.jql",
        ("GET", ["issue", _]) => "issue.get",
        ("POST", ["issue", _, "transitions"]) => "issue.transition",
        ("PUT", ["issue", _, "assignee"]) => "issue.assign",
        _ => return error(StatusCode::NOT_FOUND, "Not Found"),
    };
    sim.count(op);
    if let Some(b) = &sim.budget {
        let spent = b.lock().unwrap_or_else(|p| p.into_inner()).spend();
        if let Err(wait) = spent {
            return rate_limited(wait);
        }
    }
    let mut w = sim.world.lock().unwrap_or_else(|p| p.into_inner());
    let authorized = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Basic "))
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .is_some_and(|pair| pair == format!("{}:{}", w.email, w.api_token));
    if !authorized || w.faults.revoked {
        return error(
            StatusCode::UNAUTHORIZED,
            "Client must be authenticated to access this resource.",
        );
    }
    match w.faults.take() {
        Some(Fault::RateLimited { retry_after_secs }) => return rate_limited(retry_after_secs),
        Some(Fault::Fail) => {
            let mut r = warp::reply::html("<html><body>Internal server error</body></html>")
                .into_response();
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return r;
        }
        Some(Fault::Malformed) => {
            return warp::reply::html("<html><title>Atlassian maintenance</title>").into_response();
        }
        None => {}
    }
    let me = w
        .users
        .iter()
        .find(|u| u.email == w.email)
        .map(|u| u.account_id.clone())
        .unwrap_or_default();
    let fields: Vec<&str> = q
        .get("fields")
        .map(|f| f.split(',').map(str::trim).collect())
        .unwrap_or_default();
    let max = |default: usize, cap: usize| {
        q.get("maxResults")
            .and_then(|m| m.parse::<usize>().ok())
            .unwrap_or(default)
            .clamp(1, cap)
    };
    match op {
        "myself" => {
            let u = w.users.iter().find(|u| u.account_id == me).cloned();
            match u {
                Some(u) => reply(StatusCode::OK, w.user_json(&u)),
                None => error(StatusCode::NOT_FOUND, "The user does not exist."),
            }
        }
        "users.search" => {
            let start = q
                .get("startAt")
                .and_then(|s| s.parse::<usize>().ok())
                .unwrap_or(0);
            let page: Vec<Value> = w
                .users
                .iter()
                .skip(start)
                .take(max(50, 1000))
                .map(|u| w.user_json(u))
                .collect();
            reply(StatusCode::OK, Value::Array(page))
        }
        "search.jql" => {
            let Some(jql) = q.get("jql") else {
                return error(StatusCode::BAD_REQUEST, "The 'jql' parameter is required.");
            };
            let parsed = match Jql::parse(jql) {
                Ok(p) => p,
                Err(m) => return error(StatusCode::BAD_REQUEST, &m),
            };
            // The page token is opaque to clients; here it is the offset, signed with the query
            // so a token is refused with another query, as Jira does.
            let offset = match q.get("nextPageToken") {
                None => 0,
                Some(t) => match t
                    .strip_prefix(&format!("{:x}-", fnv(jql)))
                    .and_then(|n| n.parse::<usize>().ok())
                {
                    Some(n) => n,
                    None => return error(StatusCode::BAD_REQUEST, "Invalid nextPageToken."),
                },
            };
            let size = max(50, 5000);
            let found: Vec<_> = w
                .issues
                .values()
                .filter(|i| parsed.matches(i, &me))
                .collect();
            let page: Vec<Value> = found
                .iter()
                .skip(offset)
                .take(size)
                .map(|i| w.issue_json(i, &fields, false))
                .collect();
            let mut v = json!({"issues": page});
            if offset + size < found.len() {
                v["nextPageToken"] = json!(format!("{:x}-{}", fnv(jql), offset + size));
                v["isLast"] = json!(false);
            } else {
                v["isLast"] = json!(true);
            }
            reply(StatusCode::OK, v)
        }
        "issue.get" => match w.issues.get(parts[1]) {
            Some(i) => {
                let expand = q.get("expand").is_some_and(|e| e.contains("transitions"));
                reply(StatusCode::OK, w.issue_json(i, &fields, expand))
            }
            None => error(
                StatusCode::NOT_FOUND,
                "Issue does not exist or you do not have permission to see it.",
            ),
        },
        "issue.transition" => {
            let id = serde_json::from_slice::<Value>(body)
                .ok()
                .and_then(|v| v["transition"]["id"].as_str().map(str::to_owned));
            let target = id.and_then(|id| {
                WORKFLOW
                    .iter()
                    .enumerate()
                    .find(|(i, _)| ((i + 1) * 10 + 1).to_string() == id)
                    .map(|(_, s)| s.1)
            });
            match target {
                Some(name) if w.transition(parts[1], name) => {
                    warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response()
                }
                Some(_) => error(
                    StatusCode::NOT_FOUND,
                    "Issue does not exist or you do not have permission to see it.",
                ),
                None => reply(
                    StatusCode::BAD_REQUEST,
                    json!({"errorMessages": [], "errors": {"transition": "Transition id is not valid for this issue."}}),
                ),
            }
        }
        _ => {
            let account = serde_json::from_slice::<Value>(body)
                .ok()
                .map(|v| v["accountId"].as_str().map(str::to_owned));
            match account {
                Some(a) if w.assign(parts[1], a.as_deref()) => {
                    warp::reply::with_status(warp::reply(), StatusCode::NO_CONTENT).into_response()
                }
                Some(_) => error(
                    StatusCode::NOT_FOUND,
                    "Issue does not exist or you do not have permission to see it.",
                ),
                None => error(
                    StatusCode::BAD_REQUEST,
                    "The request body is not valid JSON.",
                ),
            }
        }
    }
}

fn rate_limited(retry_after_secs: u64) -> Resp {
    crate::sim::with_retry_after(
        error(StatusCode::TOO_MANY_REQUESTS, "Rate limit exceeded."),
        retry_after_secs,
    )
}

/// FNV-1a: a stable tag tying a page token to its query.
fn fnv(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
