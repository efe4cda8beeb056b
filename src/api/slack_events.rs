//! `POST /slack/events`: Slack's Events API. Verified, acknowledged at once, processed after.

use std::sync::Arc;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use serde_json::json;
use warp::http::StatusCode;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use super::state::{AppState, CachedWorkspace, WORKSPACE_TTL};
use crate::metrics::METRICS;
use crate::poll::slack::{PushedUser, ingest_dnd, ingest_user, try_ingest_known_user};
use crate::sources::slack::events::{Envelope, Event, happened_by, verify};
use crate::sources::slack::types::DndInfo;
use crate::store::entity::connection;

/// Slack's own limit on an event payload is far below this.
const MAX_BODY: u64 = 1024 * 1024;

pub fn route(
    state: AppState,
) -> impl Filter<Extract = (warp::reply::Response,), Error = Rejection> + Clone {
    warp::path!("slack" / "events")
        .and(warp::post())
        .and(warp::header::optional::<String>(
            "x-slack-request-timestamp",
        ))
        .and(warp::header::optional::<String>("x-slack-signature"))
        .and(warp::header::optional::<String>("x-slack-retry-num"))
        .and(warp::body::content_length_limit(MAX_BODY))
        .and(warp::body::bytes())
        .and(state.filter())
        .then(handle)
}

fn refuse(why: &str) -> warp::reply::Response {
    METRICS.slack_events_rejected.inc();
    ApiError::Unauthorized(why.to_owned()).into_response()
}

/// A body that can never be taken: the same bytes again would fail the same way, so Slack is
/// told not to retry it (a refused signature is retried: the secret may be mid-rotation).
fn malformed(why: String) -> warp::reply::Response {
    let mut r = ApiError::BadRequest(why).into_response();
    r.headers_mut().insert(
        "x-slack-no-retry",
        warp::http::HeaderValue::from_static("1"),
    );
    r
}

async fn handle(
    ts: Option<String>,
    sig: Option<String>,
    retry_num: Option<String>,
    body: Bytes,
    s: AppState,
) -> warp::reply::Response {
    let received = crate::domain::now();
    let env: Envelope = match serde_json::from_slice(&body) {
        Ok(e) => e,
        Err(e) => return malformed(format!("body is not an Events API envelope: {e}")),
    };
    let Some(team) = env.team_id else {
        return refuse("no team_id: cannot pick a signing secret");
    };
    // Shared, not copied: a copy of the connection's row and secret was a dozen allocations on
    // every event.
    let cached = s
        .workspaces
        .get(&team)
        .filter(|w| w.at.elapsed() < WORKSPACE_TTL)
        .map(|w| Arc::clone(&w));
    let ws = match cached {
        Some(w) => w,
        None => match s.store.connection_by_external_id("slack", &team).await {
            Ok(Some(c)) => {
                let w = Arc::new(CachedWorkspace {
                    at: std::time::Instant::now(),
                    signing_secret: c
                        .signing_secret_ciphertext
                        .as_deref()
                        .and_then(|sealed| s.secret_key.open(sealed).ok()),
                    connection: c,
                });
                s.workspaces.insert(team.clone(), w.clone());
                w
            }
            Ok(None) => return refuse("unknown workspace"),
            Err(e) => return ApiError::from(e).into_response(),
        },
    };
    let conn = &ws.connection;
    let Some(secret) = ws.signing_secret.as_deref() else {
        return refuse("workspace has no signing secret");
    };
    if let Err(e) = verify(
        secret,
        ts.as_deref(),
        sig.as_deref(),
        &body,
        chrono::Utc::now().timestamp(),
    ) {
        return refuse(&e.to_string());
    }
    if env.kind == "url_verification" {
        return warp::reply::json(&json!({"challenge": env.challenge})).into_response();
    }
    if env.kind == "app_rate_limited" {
        // More than 30,000 events in an hour from this workspace: Slack drops some for a
        // while, and only the sweeps will see what they said.
        tracing::warn!(
            team,
            "Slack is rate limiting this workspace's events; sweeps will catch statuses up"
        );
    }
    let Some(inner) = env.event else {
        return warp::reply::with_status(warp::reply(), StatusCode::OK).into_response();
    };
    let event = match Event::read(inner) {
        Ok(e) => e,
        Err(e) => return malformed(format!("malformed event: {e}")),
    };
    // From here on the event is taken (answered 2xx): a redelivery of it is not.
    if let Some(id) = env.event_id.as_deref()
        && !s.seen_events.first_time(id, std::time::Instant::now())
    {
        METRICS.slack_events_duplicate.inc();
        tracing::debug!(team, event_id = id, retry = ?retry_num, "dropping a redelivered Slack event already taken");
        return warp::reply::with_status(warp::reply(), StatusCode::OK).into_response();
    }
    METRICS.slack_events_received.inc();
    let at = happened_by(received, retry_num.is_some(), env.event_time);
    let work = Work::new(event, conn, at);
    // Most events are a known user's status edit, one push into the pipeline's queue: done here,
    // not in a task of its own, which was a spawn and one more wait for a core per change (the
    // users scenario's p99 a third lower with the writer's inline appends,
    // docs/benchmarks-history.md).
    if let Work::User(u) = &work
        && try_ingest_known_user(&s.pipeline, &s.known_users, conn, u)
    {
        return warp::reply::with_status(warp::reply(), StatusCode::OK).into_response();
    }
    // Anything else acknowledges now and is processed after: Slack wants a 2xx within 3 s. The
    // pipeline retries its own writes, so an acknowledged event is not lost to a slow database.
    tokio::spawn(async move {
        let conn = &ws.connection;
        let mut wait = std::time::Duration::from_millis(100);
        for attempt in 1..=5 {
            let r = match &work {
                Work::User(u) => ingest_user(&s.store, &s.pipeline, &s.known_users, conn, u).await,
                Work::Dnd { user, dnd, at } => {
                    ingest_dnd(&s.store, &s.pipeline, conn, user, dnd, *at).await
                }
                Work::Other(kind) => {
                    METRICS.slack_events_unknown.inc();
                    tracing::debug!(kind, "ignoring Slack event type");
                    Ok(())
                }
            };
            match r {
                Ok(()) => return,
                Err(e) => {
                    tracing::warn!(error = %e, attempt, "storing a Slack event failed; retrying");
                    tokio::time::sleep(wait).await;
                    wait *= 2;
                }
            }
        }
        METRICS.events_lost.inc();
        tracing::error!("a Slack event could not be stored after every retry");
    });
    warp::reply::with_status(warp::reply(), StatusCode::OK).into_response()
}

/// What a verified event asks for, made ready once before the first attempt to store it.
enum Work {
    User(Box<PushedUser>),
    /// `at`: when it happened (`happened_by`), which orders it against polls even when a retry
    /// stores it late.
    Dnd {
        user: String,
        dnd: DndInfo,
        at: DateTime<Utc>,
    },
    Other(String),
}

impl Work {
    fn new(event: Event, conn: &connection::Model, at: DateTime<Utc>) -> Work {
        match event {
            Event::UserChange(u) | Event::UserStatusChanged(u) => {
                Work::User(Box::new(PushedUser::new(*u, conn, at)))
            }
            Event::DndUpdatedUser { user, dnd } => Work::Dnd { user, dnd, at },
            Event::Other(kind) => Work::Other(kind),
        }
    }
}
