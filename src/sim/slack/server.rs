//! The simulator's HTTP surface: Slack's `/api/{method}`, plus `/_sim/…` control routes.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use super::SlackSim;
use super::world::{dnd_map, now_unix, user_json};

type Resp = warp::reply::Response;

pub async fn serve(listener: TcpListener, sim: SlackSim) {
    let shutdown = sim.shutdown.clone();
    let s = sim.clone();
    let api = warp::path!("api" / String)
        .and(warp::header::optional::<String>("authorization"))
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::body::bytes())
        .then(
            move |method: String,
                  auth: Option<String>,
                  query: HashMap<String, String>,
                  body: Bytes| {
                let sim = s.clone();
                async move { api(&sim, &method, auth, query, &body).await }
            },
        );
    let s = sim.clone();
    let control = warp::path(String::from("_sim"))
        .and(warp::path::tail())
        .and(warp::query::<HashMap<String, String>>())
        .and(warp::body::bytes())
        .then(
            move |tail: warp::path::Tail, q: HashMap<String, String>, body: Bytes| {
                let sim = s.clone();
                let path = tail.as_str().to_owned();
                async move { control(&sim, &path, q, &body).await }
            },
        );
    crate::sim::serve(listener, api.or(control).unify(), shutdown).await;
}

fn slack_json(v: Value) -> Resp {
    warp::reply::with_header(
        warp::reply::json(&v),
        "content-type",
        "application/json; charset=utf-8",
    )
    .into_response()
}

fn slack_error(code: &str) -> Resp {
    slack_json(json!({"ok": false, "error": code}))
}

async fn api(
    sim: &SlackSim,
    method: &str,
    auth: Option<String>,
    query: HashMap<String, String>,
    body: &[u8],
) -> Resp {
    // Slack takes arguments in the query string or a form body, and the token as a bearer header
    // or a `token` argument.
    let mut args = query;
    args.extend(url::form_urlencoded::parse(body).into_owned());
    let token = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::to_owned)
        .or_else(|| args.get("token").cloned());
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return slack_error("not_authed");
    };

    let (slow, fault) = {
        let mut w = sim.world.lock().unwrap_or_else(|p| p.into_inner());
        let Some(ws) = w.by_token(&token) else {
            drop(w);
            let _ = sim.limits.check(&token, method);
            return slack_error("invalid_auth");
        };
        let slow = ws.faults.slow_ms;
        let fault = if ws.faults.revoked {
            Some("revoked")
        } else if ws.faults.fail_next > 0 {
            ws.faults.fail_next -= 1;
            Some("500")
        } else if ws.faults.malformed_next > 0 {
            ws.faults.malformed_next -= 1;
            Some("malformed")
        } else {
            None
        };
        (slow, fault)
    };
    if let Err(retry) = sim.limits.check(&token, method) {
        let mut r = slack_json(json!({"ok": false, "error": "ratelimited"}));
        *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
        return crate::sim::with_retry_after(r, retry.as_secs());
    }
    if slow > 0 {
        tokio::time::sleep(Duration::from_millis(slow)).await;
    }
    match fault {
        Some("revoked") => return slack_error("token_revoked"),
        Some("500") => {
            let mut r = warp::reply::html("<html><body>Internal Server Error</body></html>")
                .into_response();
            *r.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
            return r;
        }
        Some(_) => return warp::reply::html("<html>upstream hiccup").into_response(),
        None => {}
    }

    let mut w = sim.world.lock().unwrap_or_else(|p| p.into_inner());
    let Some(ws) = w.by_token(&token) else {
        return slack_error("invalid_auth");
    };
    ws.expire(now_unix());
    let user_arg = args.get("user").cloned().unwrap_or_default();
    match method {
        "api.test" => slack_json(json!({"ok": true, "args": args})),
        "auth.test" => slack_json(json!({
            "ok": true,
            "url": format!("https://{}.slack.com/", ws.spec.team_name.to_lowercase().replace(' ', "-")),
            "team": ws.spec.team_name,
            "user": "chex",
            "team_id": ws.spec.team_id,
            "user_id": "U0SIMBOT",
            "bot_id": "B0SIMBOT",
            "is_enterprise_install": false,
        })),
        "team.info" => slack_json(json!({
            "ok": true,
            "team": {
                "id": ws.spec.team_id,
                "name": ws.spec.team_name,
                "domain": ws.spec.team_name.to_lowercase().replace(' ', "-"),
                "email_domain": format!("{}.example.com", ws.spec.team_id.to_lowercase()),
                "icon": {"image_34": "", "image_44": "", "image_68": "", "image_88": "", "image_102": "", "image_132": "", "image_default": true},
            }
        })),
        "users.list" => {
            let limit = args
                .get("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .filter(|l| *l > 0)
                .unwrap_or(100)
                .min(1000);
            let start = match args.get("cursor").filter(|c| !c.is_empty()) {
                None => 0,
                Some(c) => match decode_cursor(c) {
                    Some((epoch, off)) if epoch == ws.cursor_epoch => off,
                    _ => return slack_error("invalid_cursor"),
                },
            };
            let end = (start + limit).min(ws.users.len());
            let members: Vec<Value> = ws.users[start.min(end)..end]
                .iter()
                .map(user_json)
                .collect();
            let next = if end < ws.users.len() {
                encode_cursor(ws.cursor_epoch, end)
            } else {
                String::new()
            };
            slack_json(json!({
                "ok": true,
                "members": members,
                "cache_ts": now_unix(),
                "response_metadata": {"next_cursor": next},
            }))
        }
        "users.info" => match ws.index_of(&user_arg) {
            Some(i) => slack_json(json!({"ok": true, "user": user_json(&ws.users[i])})),
            None => slack_error("user_not_found"),
        },
        "users.getPresence" => {
            if user_arg.is_empty() || user_arg == "U0SIMBOT" {
                return slack_json(json!({
                    "ok": true, "presence": "active", "online": true, "auto_away": false,
                    "manual_away": false, "connection_count": 1, "last_activity": now_unix(),
                }));
            }
            match ws.index_of(&user_arg) {
                Some(i) => slack_json(
                    json!({"ok": true, "presence": if ws.presence[i] { "active" } else { "away" }}),
                ),
                None => slack_error("user_not_found"),
            }
        }
        "users.profile.get" => match ws.index_of(&user_arg) {
            Some(i) => {
                let u = user_json(&ws.users[i]);
                slack_json(json!({"ok": true, "profile": u["profile"]}))
            }
            None => slack_error("user_not_found"),
        },
        "dnd.info" => match ws.index_of(&user_arg) {
            Some(i) => {
                let d = &ws.dnd[i];
                slack_json(json!({
                    "ok": true, "dnd_enabled": d.dnd_enabled, "next_dnd_start_ts": d.next_dnd_start_ts,
                    "next_dnd_end_ts": d.next_dnd_end_ts,
                }))
            }
            None => slack_error("user_not_found"),
        },
        "dnd.teamInfo" => {
            let users_arg = args.get("users").cloned().unwrap_or_default();
            let users: Vec<&str> = users_arg.split(',').filter(|s| !s.is_empty()).collect();
            if users.len() > 50 {
                return slack_error("too_many_users");
            }
            slack_json(json!({"ok": true, "users": dnd_map(ws, &users)}))
        }
        _ => slack_error("unknown_method"),
    }
}

fn encode_cursor(epoch: u64, offset: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("sim:{epoch}:{offset}"))
}

fn decode_cursor(c: &str) -> Option<(u64, usize)> {
    use base64::Engine;
    let raw = base64::engine::general_purpose::STANDARD.decode(c).ok()?;
    let s = String::from_utf8(raw).ok()?;
    let mut parts = s.strip_prefix("sim:")?.split(':');
    Some((parts.next()?.parse().ok()?, parts.next()?.parse().ok()?))
}

#[derive(Deserialize)]
struct ControlBody {
    team: Option<String>,
    user: Option<String>,
    text: Option<String>,
    emoji: Option<String>,
    expiration: Option<i64>,
    presence: Option<String>,
    minutes: Option<i64>,
    revoked: Option<bool>,
    fail_next: Option<u32>,
    malformed_next: Option<u32>,
    slow_ms: Option<u64>,
    expire_cursors: Option<bool>,
    url: Option<String>,
}

async fn control(sim: &SlackSim, path: &str, q: HashMap<String, String>, body: &[u8]) -> Resp {
    if let Some(file) = path.strip_prefix("avatar/") {
        return avatar(sim, file.trim_end_matches(".svg"));
    }
    if path == "stats" {
        let methods = [
            "auth.test",
            "team.info",
            "users.list",
            "users.info",
            "users.getPresence",
            "users.profile.get",
            "dnd.info",
            "dnd.teamInfo",
        ];
        let calls: HashMap<String, u64> = methods
            .iter()
            .map(|m| (m.to_string(), sim.calls(m)))
            .collect();
        return warp::reply::json(&json!({"calls": calls, "rate_limited": sim.rate_limited()}))
            .into_response();
    }
    if path == "users" {
        let team = q.get("team").cloned().unwrap_or_default();
        let users = sim.with(|w| {
            w.by_team(&team).map(|ws| {
                ws.users.iter().zip(&ws.presence).map(|(u, p)| json!({"id": u.id, "name": u.real_name, "presence": if *p {"active"} else {"away"}, "status_text": u.profile.status_text})).collect::<Vec<_>>()
            })
        });
        return match users {
            Some(u) => warp::reply::json(&u).into_response(),
            None => not_found(),
        };
    }
    let b: ControlBody = match serde_json::from_slice(if body.is_empty() { b"{}" } else { body }) {
        Ok(b) => b,
        Err(e) => {
            let mut r = warp::reply::json(&json!({"error": e.to_string()})).into_response();
            *r.status_mut() = StatusCode::BAD_REQUEST;
            return r;
        }
    };
    let team = b.team.clone().unwrap_or_default();
    let user = b.user.clone().unwrap_or_default();
    let ok = match path {
        "step" => {
            sim.step().await;
            true
        }
        "events_url" => {
            sim.set_events_url(b.url.clone());
            true
        }
        "status" => {
            sim.set_status(
                &team,
                &user,
                b.text.as_deref().unwrap_or(""),
                b.emoji.as_deref().unwrap_or(""),
                b.expiration.unwrap_or(0),
            )
            .await
        }
        "presence" => sim.set_presence(&team, &user, b.presence.as_deref() == Some("active")),
        "dnd" => {
            let push = sim.with(|w| w.set_dnd(&team, &user, b.minutes.unwrap_or(0)));
            let found = sim.with(|w| w.by_team(&team).and_then(|ws| ws.index_of(&user)).is_some());
            sim.push(push.into_iter().collect()).await;
            found
        }
        "delete" => {
            let push = sim.with(|w| w.delete_user(&team, &user));
            let ok = push.is_some() || sim.with(|w| w.by_team(&team).is_some());
            sim.push(push.into_iter().collect()).await;
            ok
        }
        "faults" => sim.with(|w| {
            let Some(ws) = w.by_team(&team) else {
                return false;
            };
            if let Some(r) = b.revoked {
                ws.faults.revoked = r;
            }
            if let Some(n) = b.fail_next {
                ws.faults.fail_next = n;
            }
            if let Some(n) = b.malformed_next {
                ws.faults.malformed_next = n;
            }
            if let Some(ms) = b.slow_ms {
                ws.faults.slow_ms = ms;
            }
            if b.expire_cursors == Some(true) {
                ws.cursor_epoch += 1;
            }
            true
        }),
        _ => return not_found(),
    };
    if ok {
        warp::reply::json(&json!({"ok": true})).into_response()
    } else {
        not_found()
    }
}

fn not_found() -> Resp {
    let mut r = warp::reply::json(&json!({"error": "no such team, user or route"})).into_response();
    *r.status_mut() = StatusCode::NOT_FOUND;
    r
}

/// An SVG disc with the person's initials, so the dashboard has faces without the internet.
fn avatar(sim: &SlackSim, id: &str) -> Resp {
    let found = sim.with(|w| {
        w.workspaces.iter().find_map(|ws| {
            ws.users.iter().find(|u| u.id == id).map(|u| {
                (
                    u.profile.first_name.clone(),
                    u.profile.last_name.clone(),
                    u.color.clone(),
                )
            })
        })
    });
    let Some((first, last, color)) = found else {
        return not_found();
    };
    let initials: String = first.chars().take(1).chain(last.chars().take(1)).collect();
    let svg = format!(
        r##"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 72 72"><rect width="72" height="72" rx="12" fill="#{color}"/><text x="36" y="46" font-family="sans-serif" font-size="28" fill="#fff" text-anchor="middle">{}</text></svg>"##,
        html_escape(&initials)
    );
    warp::reply::with_header(svg, "content-type", "image/svg+xml").into_response()
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}
