//! The simulator's HTTP surface: `POST /token` and `/gmail/v1/users/{userId}/…`.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use super::{CLIENT_ID, CLIENT_SECRET, GmailSim};
use crate::sim::faults::Fault;
use crate::sources::gmail::types::VacationSettings;

type Resp = warp::reply::Response;

pub async fn serve(listener: TcpListener, sim: GmailSim) {
    let shutdown = sim.shutdown.clone();
    let s = sim.clone();
    let token = warp::path!("token")
        .and(warp::post())
        .and(warp::body::content_length_limit(16 * 1024))
        .and(warp::body::bytes())
        .map(move |body: Bytes| token(&s, &body));
    let api = warp::path!("gmail" / "v1" / "users" / String / ..)
        .and(warp::path::tail())
        .and(warp::method())
        .and(warp::header::optional::<String>("authorization"))
        // No length limit filter: it answers 411 to the GETs, which carry no body.
        .and(warp::body::bytes())
        .map(
            move |user: String,
                  tail: warp::path::Tail,
                  method: warp::http::Method,
                  auth: Option<String>,
                  body: Bytes| {
                api(&sim, &user, tail.as_str(), &method, auth, &body)
            },
        );
    crate::sim::serve(listener, token.or(api).unify(), shutdown).await;
}

fn reply(status: StatusCode, v: Value) -> Resp {
    let mut r = warp::reply::json(&v).into_response();
    *r.status_mut() = status;
    r
}

/// Google's error envelope.
fn google_error(code: u16, status: &str, reason: &str, domain: &str, message: &str) -> Resp {
    reply(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        json!({"error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": domain, "reason": reason}],
            "status": status,
        }}),
    )
}

fn token(sim: &GmailSim, body: &[u8]) -> Resp {
    sim.count("oauth2.token");
    let form: HashMap<String, String> = url::form_urlencoded::parse(body).into_owned().collect();
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
    if get("client_id") != CLIENT_ID || get("client_secret") != CLIENT_SECRET {
        return reply(
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid_client", "error_description": "The OAuth client was not found."}),
        );
    }
    if get("grant_type") != "refresh_token" {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "unsupported_grant_type", "error_description": "Invalid grant_type: "}),
        );
    }
    let now = chrono::Utc::now().timestamp();
    let mut w = sim.world.lock().unwrap_or_else(|p| p.into_inner());
    let found = w
        .mailboxes
        .iter()
        .position(|m| m.refresh_token == get("refresh_token") && !m.faults.revoked);
    let Some(i) = found else {
        return reply(
            StatusCode::BAD_REQUEST,
            json!({"error": "invalid_grant", "error_description": "Token has been expired or revoked."}),
        );
    };
    let access = w.issue_access_token(i, now);
    reply(
        StatusCode::OK,
        json!({
            "access_token": access,
            "expires_in": super::ACCESS_TOKEN_SECS,
            "scope": "https://www.googleapis.com/auth/gmail.settings.basic https://www.googleapis.com/auth/gmail.readonly",
            "token_type": "Bearer",
        }),
    )
}

fn api(
    sim: &GmailSim,
    user: &str,
    path: &str,
    method: &warp::http::Method,
    auth: Option<String>,
    body: &[u8],
) -> Resp {
    let op: &'static str = match (method.as_str(), path) {
        ("GET", "profile") => "users.getProfile",
        ("GET", "settings/vacation") => "users.settings.getVacation",
        ("PUT", "settings/vacation") => "users.settings.updateVacation",
        _ => {
            return google_error(
                404,
                "NOT_FOUND",
                "notFound",
                "global",
                "Requested entity was not found.",
            );
        }
    };
    sim.count(op);
    let now = chrono::Utc::now().timestamp();
    let mut w = sim.world.lock().unwrap_or_else(|p| p.into_inner());
    let token = auth
        .as_deref()
        .and_then(|a| a.strip_prefix("Bearer "))
        .unwrap_or("");
    let Some(m) = w.by_access_token(token, now).filter(|m| !m.faults.revoked) else {
        return google_error(
            401,
            "UNAUTHENTICATED",
            "authError",
            "global",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        );
    };
    if user != "me" && user != m.address {
        return google_error(
            403,
            "PERMISSION_DENIED",
            "forbidden",
            "global",
            "Delegation denied for this mailbox.",
        );
    }
    match m.faults.take() {
        Some(Fault::RateLimited { retry_after_secs }) => {
            let r = if m.quota_as_403 {
                google_error(
                    403,
                    "PERMISSION_DENIED",
                    "userRateLimitExceeded",
                    "usageLimits",
                    "User-rate limit exceeded.",
                )
            } else {
                google_error(
                    429,
                    "RESOURCE_EXHAUSTED",
                    "rateLimitExceeded",
                    "global",
                    "Too many concurrent requests for user.",
                )
            };
            return crate::sim::with_retry_after(r, retry_after_secs);
        }
        Some(Fault::Fail) => {
            return google_error(500, "INTERNAL", "backendError", "global", "Backend Error");
        }
        Some(Fault::Malformed) => {
            return warp::reply::html("<!DOCTYPE html><title>Error 502 (Server Error)!!1</title>")
                .into_response();
        }
        None => {}
    }
    match op {
        "users.getProfile" => reply(
            StatusCode::OK,
            json!({
                "emailAddress": m.address,
                "messagesTotal": m.messages_total,
                "threadsTotal": m.messages_total * 2 / 3,
                "historyId": "9876543",
            }),
        ),
        "users.settings.getVacation" => reply(StatusCode::OK, vacation_json(&m.vacation)),
        _ => match serde_json::from_slice::<VacationSettings>(body) {
            Ok(v) => {
                m.vacation = v;
                reply(StatusCode::OK, vacation_json(&m.vacation))
            }
            Err(e) => google_error(
                400,
                "INVALID_ARGUMENT",
                "invalidArgument",
                "global",
                &format!("Invalid JSON payload received. {e}"),
            ),
        },
    }
}

/// As Gmail renders it: int64 times as strings, absent fields left out.
fn vacation_json(v: &VacationSettings) -> Value {
    let mut out = json!({
        "enableAutoReply": v.enable_auto_reply,
        "restrictToContacts": v.restrict_to_contacts,
        "restrictToDomain": v.restrict_to_domain,
    });
    if let Some(s) = &v.response_subject {
        out["responseSubject"] = json!(s);
    }
    if let Some(s) = &v.response_body_plain_text {
        out["responseBodyPlainText"] = json!(s);
    }
    if let Some(s) = &v.response_body_html {
        out["responseBodyHtml"] = json!(s);
    }
    if let Some(t) = v.start_time {
        out["startTime"] = json!(t.to_string());
    }
    if let Some(t) = v.end_time {
        out["endTime"] = json!(t.to_string());
    }
    out
}
