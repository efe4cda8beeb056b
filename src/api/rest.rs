//! REST: health, login, people with status and history, Slack connections and checks.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::{Value, json};
use warp::filters::BoxedFilter;
use warp::{Filter, Rejection, Reply};

use super::error::ApiError;
use super::state::AppState;
use crate::auth::{Claims, verify_password};
use crate::crypto::{fingerprint, random_token, sha256_hex};
use crate::store::{NewCheck, NewConnection, PeopleFilter, PersonRow};

pub(super) type Resp = Result<warp::reply::Response, Rejection>;

pub(super) fn reject(e: impl Into<ApiError>) -> Rejection {
    warp::reject::custom(e.into())
}

/// The caller, from `Authorization: Bearer <JWT or bot token>`.
pub fn authed(state: AppState) -> impl Filter<Extract = (Claims,), Error = Rejection> + Clone {
    warp::header::optional::<String>("authorization")
        .and(state.filter())
        .and_then(|h: Option<String>, s: AppState| async move {
            let token = h
                .as_deref()
                .and_then(|h| h.strip_prefix("Bearer "))
                .ok_or_else(|| {
                    reject(ApiError::Unauthorized(
                        "send Authorization: Bearer <token>".into(),
                    ))
                })?;
            claims_for(&s, token.trim()).await.map_err(reject)
        })
}

/// Validates a JWT or a bot token, and that its organization exists.
pub async fn claims_for(s: &AppState, token: &str) -> Result<Claims, ApiError> {
    let claims = if token.starts_with("chex_bot_") {
        let t = s
            .store
            .api_token_by_hash(&sha256_hex(token))
            .await?
            .ok_or_else(|| ApiError::Unauthorized("unknown bot token".into()))?;
        if t.revoked_at.is_some() {
            return Err(ApiError::Unauthorized("bot token revoked".into()));
        }
        if t.expires_at.is_some_and(|e| e <= Utc::now()) {
            return Err(ApiError::Unauthorized("bot token expired".into()));
        }
        let topics = t
            .topics
            .as_deref()
            .and_then(|j| serde_json::from_str(j).ok());
        s.keys
            .mint(
                &format!("bot:{}", t.id),
                t.organization_id,
                &t.role,
                topics,
                Some(300),
            )
            .1
    } else {
        s.keys.verify(token)?
    };
    if s.store.organization(claims.org).await?.is_none() {
        return Err(ApiError::Unauthorized("token is invalid".into()));
    }
    Ok(claims)
}

pub(super) fn admin(c: &Claims) -> Result<(), Rejection> {
    if c.is_admin() {
        Ok(())
    } else {
        Err(reject(ApiError::Forbidden("admins only".into())))
    }
}

pub(super) fn json_body<T: serde::de::DeserializeOwned + Send>()
-> impl Filter<Extract = (T,), Error = Rejection> + Clone {
    warp::body::content_length_limit(64 * 1024).and(warp::body::json())
}

pub fn routes(state: AppState) -> BoxedFilter<(warp::reply::Response,)> {
    let s = state.filter();
    let state2 = state.clone();
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .map(|| warp::reply::json(&json!({"status": "ok"})).into_response());
    let readyz =
        warp::path!("readyz")
            .and(warp::get())
            .and(s.clone())
            .then(|s: AppState| async move {
                match s.store.ready().await {
                    Ok(true) => warp::reply::json(&json!({"status": "ready"})).into_response(),
                    Ok(false) => warp::reply::with_status(
                        warp::reply::json(&json!({"status": "migrations pending"})),
                        warp::http::StatusCode::SERVICE_UNAVAILABLE,
                    )
                    .into_response(),
                    Err(_) => warp::reply::with_status(
                        warp::reply::json(&json!({"status": "database unreachable"})),
                        warp::http::StatusCode::SERVICE_UNAVAILABLE,
                    )
                    .into_response(),
                }
            });
    let metrics = warp::path!("metrics").and(warp::get()).map(|| {
        warp::reply::with_header(
            crate::metrics::METRICS.render(),
            "content-type",
            "text/plain; version=0.0.4",
        )
        .into_response()
    });
    let openapi = warp::path!("api" / "openapi.json")
        .and(warp::get())
        .map(|| {
            warp::reply::with_header(
                super::openapi::DOCUMENT.as_str(),
                "content-type",
                "application/json",
            )
            .into_response()
        });
    let login = warp::path!("api" / "auth" / "login")
        .and(warp::post())
        .and(json_body())
        .and(s.clone())
        .and_then(login);
    let users = warp::path!("api" / "users")
        .and(warp::get())
        .and(authed(state.clone()))
        .and(warp::query())
        .and(s.clone())
        .and_then(list_users);
    let user = warp::path!("api" / "users" / i64)
        .and(warp::get())
        .and(authed(state.clone()))
        .and(s.clone())
        .and_then(get_user);
    let history = warp::path!("api" / "users" / i64 / "history")
        .and(warp::get())
        .and(authed(state.clone()))
        .and(warp::query())
        .and(s.clone())
        .and_then(history);
    let summary = warp::path!("api" / "users" / i64 / "summary")
        .and(warp::get())
        .and(authed(state.clone()))
        .and(warp::query())
        .and(s.clone())
        .and_then(summary);
    let connect = warp::path!("api" / "connections" / "slack")
        .and(warp::post())
        .and(authed(state.clone()))
        .and(json_body())
        .and(s.clone())
        .and_then(connect_slack);
    let connections = warp::path!("api" / "connections")
        .and(warp::get())
        .and(authed(state.clone()))
        .and(s.clone())
        .and_then(list_connections);
    let add_check = warp::path!("api" / "chex" / "slack")
        .and(warp::post())
        .and(authed(state.clone()))
        .and(json_body())
        .and(s.clone())
        .and_then(add_check);
    let checks = warp::path!("api" / "chex")
        .and(warp::get())
        .and(authed(state.clone()))
        .and(s.clone())
        .and_then(list_checks);
    let check = warp::path!("api" / "chex" / i64)
        .and(warp::get())
        .and(authed(state.clone()))
        .and(s.clone())
        .and_then(get_check);
    let patch = warp::path!("api" / "chex" / i64)
        .and(warp::patch())
        .and(authed(state.clone()))
        .and(json_body())
        .and(s.clone())
        .and_then(patch_check);
    let delete = warp::path!("api" / "chex" / i64)
        .and(warp::delete())
        .and(authed(state.clone()))
        .and(s.clone())
        .and_then(delete_check);
    let refresh = warp::path!("api" / "auth" / "refresh")
        .and(warp::post())
        .and(json_body())
        .and(s.clone())
        .and_then(refresh);
    let logout = warp::path!("api" / "auth" / "logout")
        .and(warp::post())
        .and(authed(state2.clone()))
        .and(json_body())
        .and(s.clone())
        .and_then(logout);
    let create_token = warp::path!("api" / "tokens")
        .and(warp::post())
        .and(authed(state2.clone()))
        .and(json_body())
        .and(s.clone())
        .and_then(create_token);
    let list_tokens = warp::path!("api" / "tokens")
        .and(warp::get())
        .and(authed(state2.clone()))
        .and(s.clone())
        .and_then(list_tokens);
    let revoke_token = warp::path!("api" / "tokens" / i64)
        .and(warp::delete())
        .and(authed(state2))
        .and(s.clone())
        .and_then(revoke_token);
    let accounts = warp::path!("api" / "accounts")
        .and(warp::get())
        .and(authed(state.clone()))
        .and(s.clone())
        .and_then(list_accounts);
    let create_account = warp::path!("api" / "accounts")
        .and(warp::post())
        .and(authed(state.clone()))
        .and(json_body())
        .and(s.clone())
        .and_then(create_account);
    let patch_account = warp::path!("api" / "accounts" / i64)
        .and(warp::patch())
        .and(authed(state.clone()))
        .and(json_body())
        .and(s.clone())
        .and_then(patch_account);
    let delete_connection = warp::path!("api" / "connections" / i64)
        .and(warp::delete())
        .and(authed(state.clone()))
        .and(s.clone())
        .and_then(delete_connection);
    let routes: Vec<BoxedFilter<(warp::reply::Response,)>> = vec![
        healthz.boxed(),
        readyz.boxed(),
        metrics.boxed(),
        openapi.boxed(),
        login.boxed(),
        users.boxed(),
        user.boxed(),
        history.boxed(),
        summary.boxed(),
        connect.boxed(),
        connections.boxed(),
        add_check.boxed(),
        checks.boxed(),
        check.boxed(),
        patch.boxed(),
        delete.boxed(),
        refresh.boxed(),
        logout.boxed(),
        create_token.boxed(),
        list_tokens.boxed(),
        revoke_token.boxed(),
        accounts.boxed(),
        create_account.boxed(),
        patch_account.boxed(),
        delete_connection.boxed(),
    ];
    routes
        .into_iter()
        .reduce(|a, b| a.or(b).unify().boxed())
        .expect("routes are listed above")
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Login {
    email: String,
    password: String,
}

async fn login(body: Login, s: AppState) -> Resp {
    let account = s
        .store
        .account_by_email(&body.email)
        .await
        .map_err(reject)?;
    let Some(a) =
        account.filter(|a| !a.disabled && verify_password(&body.password, &a.password_hash))
    else {
        return Err(reject(ApiError::Unauthorized(
            "wrong email or password".into(),
        )));
    };
    Ok(warp::reply::json(&issue_session(&s, &a).await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UsersQuery {
    team: Option<String>,
    presence: Option<String>,
    q: Option<String>,
    limit: Option<u64>,
    cursor: Option<i64>,
}

/// A person with their current status, as REST returns them.
pub fn person_json(
    row: &PersonRow,
    latest: Option<&crate::store::entity::status_event::Model>,
) -> Value {
    let card = row.card();
    json!({
        "id": row.person_id,
        "topic": card.topic,
        "team_id": row.team_id,
        "slack_id": row.slack_id,
        "name": row.name,
        "display_name": row.display_name,
        "email": row.email,
        "title": row.title,
        "tz": row.tz,
        "image_72": row.image_72,
        "deleted": row.deleted,
        "seq": latest.map(|e| e.seq),
        "status": latest.map(|e| serde_json::to_value(e.status()).unwrap_or_default()),
        "observed_at": latest.map(|e| e.observed_at),
    })
}

async fn list_users(c: Claims, q: UsersQuery, s: AppState) -> Resp {
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(reject(ApiError::Unprocessable(
            "limit: must be between 1 and 1000".into(),
        )));
    }
    if let Some(p) = &q.presence
        && crate::domain::Presence::parse(p).is_none()
    {
        return Err(reject(ApiError::Unprocessable(
            "presence: must be active, away or unknown".into(),
        )));
    }
    let mut out = Vec::new();
    let mut after = q.cursor;
    // Presence is a property of the latest event, so filter page by page until the page is full.
    let next_cursor = loop {
        let f = PeopleFilter {
            team_id: q.team.clone(),
            query: q.q.clone(),
            after_id: after,
            limit,
        };
        let rows = s.store.people(c.org, &f).await.map_err(reject)?;
        let ids: Vec<i64> = rows.iter().map(|r| r.person_id).collect();
        let latest = s.store.latest_events(&ids).await.map_err(reject)?;
        let exhausted = (rows.len() as u64) < limit;
        for r in &rows {
            let l = latest.get(&r.person_id);
            if let Some(p) = &q.presence
                && l.map(|e| e.presence.as_str()).unwrap_or("unknown") != p
            {
                continue;
            }
            if (out.len() as u64) < limit {
                out.push(person_json(r, l));
                after = Some(r.person_id);
            }
        }
        if exhausted {
            break None;
        }
        if out.len() as u64 >= limit {
            break after;
        }
        after = rows.last().map(|r| r.person_id);
    };
    Ok(warp::reply::json(&json!({"users": out, "next_cursor": next_cursor})).into_response())
}

async fn person_in_org(s: &AppState, c: &Claims, id: i64) -> Result<PersonRow, Rejection> {
    match s.store.person(id).await.map_err(reject)? {
        Some(p) if p.organization_id == c.org => Ok(p),
        _ => Err(reject(ApiError::NotFound)),
    }
}

async fn get_user(id: i64, c: Claims, s: AppState) -> Resp {
    let p = person_in_org(&s, &c, id).await?;
    let latest = s.store.latest_events(&[id]).await.map_err(reject)?;
    let mut v = person_json(&p, latest.get(&id));
    let links = s.store.identities_of(id).await.map_err(reject)?;
    v["identities"] = json!(
        links
            .iter()
            .map(super::sources::identity_json)
            .collect::<Vec<_>>()
    );
    if let Some((u, prof)) = s.store.slack_user_of(id).await.map_err(reject)? {
        v["slack"] = json!({
            "id": u.slack_id, "team_id": u.team_id, "name": u.name, "real_name": u.real_name, "color": u.color,
            "deleted": u.deleted, "has_2fa": u.has_2fa, "is_admin": u.is_admin, "is_app_user": u.is_app_user,
            "is_bot": u.is_bot, "is_owner": u.is_owner, "is_primary_owner": u.is_primary_owner,
            "is_restricted": u.is_restricted, "is_ultra_restricted": u.is_ultra_restricted, "tz": u.tz,
            "tz_label": u.tz_label, "tz_offset": u.tz_offset, "updated": u.updated,
            "profile": prof.map(|p| json!({
                "avatar_hash": p.avatar_hash, "display_name": p.display_name, "display_name_normalized": p.display_name_normalized,
                "email": p.email, "first_name": p.first_name, "last_name": p.last_name, "image_24": p.image_24,
                "image_32": p.image_32, "image_48": p.image_48, "image_72": p.image_72, "image_192": p.image_192,
                "image_512": p.image_512, "image_1024": p.image_1024, "image_original": p.image_original,
                "phone": p.phone, "real_name": p.real_name, "real_name_normalized": p.real_name_normalized,
                "skype": p.skype, "status_emoji": p.status_emoji, "status_text": p.status_text,
                "status_expiration": p.status_expiration, "team": p.team, "title": p.title,
            })),
        });
    }
    Ok(warp::reply::json(&v).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RangeQuery {
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
    cursor: Option<i64>,
    limit: Option<u64>,
}

async fn history(id: i64, c: Claims, q: RangeQuery, s: AppState) -> Resp {
    let p = person_in_org(&s, &c, id).await?;
    let limit = q.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return Err(reject(ApiError::Unprocessable(
            "limit: must be between 1 and 1000".into(),
        )));
    }
    let page = s
        .store
        .history(id, q.from, q.to, q.cursor, limit)
        .await
        .map_err(reject)?;
    let card = std::sync::Arc::new(p.card());
    let events: Vec<Value> = page
        .events
        .iter()
        .map(|e| e.to_event(card.clone()).to_value(&card.topic))
        .collect();
    Ok(
        warp::reply::json(&json!({"events": events, "next_cursor": page.next_cursor}))
            .into_response(),
    )
}

async fn summary(id: i64, c: Claims, q: RangeQuery, s: AppState) -> Resp {
    person_in_org(&s, &c, id).await?;
    let to = q.to.unwrap_or_else(Utc::now);
    let from = q.from.unwrap_or(to - chrono::Duration::days(1));
    if from >= to {
        return Err(reject(ApiError::Unprocessable(
            "from: must be before to".into(),
        )));
    }
    let sum = s.store.summary(id, from, to).await.map_err(reject)?;
    Ok(warp::reply::json(&sum).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectSlack {
    token: String,
    signing_secret: Option<String>,
}

async fn connect_slack(c: Claims, body: ConnectSlack, s: AppState) -> Resp {
    admin(&c)?;
    if !body.token.starts_with("xox") {
        return Err(reject(ApiError::Unprocessable(
            "token: must be a Slack token (xoxb-… or xoxp-…)".into(),
        )));
    }
    let auth = s.slack.auth_test(&body.token).await.map_err(|e| {
        if e.is_credential_error() {
            reject(ApiError::Unprocessable(format!(
                "token: Slack refused it ({})",
                e.code()
            )))
        } else {
            reject(ApiError::BadGateway(format!(
                "Slack could not be reached: {}",
                e.code()
            )))
        }
    })?;
    let conn = s
        .store
        .upsert_connection(NewConnection {
            organization_id: c.org,
            kind: "slack",
            external_id: &auth.team_id,
            name: &auth.team,
            credential_ciphertext: s.secret_key.seal(&body.token),
            signing_secret_ciphertext: body.signing_secret.as_deref().map(|x| s.secret_key.seal(x)),
            fingerprint: fingerprint(&body.token),
        })
        .await
        .map_err(reject)?;
    s.forget_workspace(&conn.external_id, conn.id);
    Ok(warp::reply::with_status(
        warp::reply::json(&connection_json(&conn)),
        warp::http::StatusCode::CREATED,
    )
    .into_response())
}

pub(super) fn connection_json(c: &crate::store::entity::connection::Model) -> Value {
    json!({
        "id": c.id, "kind": c.kind, "external_id": c.external_id,
        "team_id": (c.kind == "slack").then_some(&c.external_id), "name": c.name, "fingerprint": c.fingerprint,
        "status": c.status, "last_error": c.last_error, "has_signing_secret": c.signing_secret_ciphertext.is_some(),
        "created_at": c.created_at, "updated_at": c.updated_at,
    })
}

async fn list_connections(c: Claims, s: AppState) -> Resp {
    admin(&c)?;
    let conns = s.store.connections(Some(c.org)).await.map_err(reject)?;
    Ok(warp::reply::json(
        &json!({"connections": conns.iter().map(connection_json).collect::<Vec<_>>()}),
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddCheck {
    connection_id: i64,
    /// A Slack user id, or absent / `*` for the whole workspace.
    user: Option<String>,
    interval_secs: Option<i32>,
}

async fn add_check(c: Claims, body: AddCheck, s: AppState) -> Resp {
    admin(&c)?;
    let conn = s
        .store
        .connection(body.connection_id)
        .await
        .map_err(reject)?;
    let Some(conn) = conn.filter(|x| x.organization_id == c.org && x.kind == "slack") else {
        return Err(reject(ApiError::Unprocessable(
            "connection_id: no such Slack connection".into(),
        )));
    };
    let subject = body.user.unwrap_or_else(|| "*".into());
    if subject != "*"
        && !(subject.len() <= 32 && subject.chars().all(|ch| ch.is_ascii_alphanumeric()))
    {
        return Err(reject(ApiError::Unprocessable(
            "user: must be a Slack user id like U012AB3CD".into(),
        )));
    }
    let interval = body
        .interval_secs
        .unwrap_or(s.config.poll_watched_interval as i32);
    if !(1..=86_400).contains(&interval) {
        return Err(reject(ApiError::Unprocessable(
            "interval_secs: must be between 1 and 86400".into(),
        )));
    }
    let check = s
        .store
        .create_check(NewCheck {
            organization_id: c.org,
            connection_id: conn.id,
            kind: "slack",
            subject: &subject,
            interval_secs: interval,
        })
        .await
        .map_err(reject)?;
    Ok(warp::reply::with_status(
        warp::reply::json(&check_json(&check)),
        warp::http::StatusCode::CREATED,
    )
    .into_response())
}

pub(super) fn check_json(c: &crate::store::entity::check::Model) -> Value {
    json!({
        "id": c.id, "kind": c.kind, "connection_id": c.connection_id, "subject": c.subject, "enabled": c.enabled,
        "interval_secs": c.interval_secs, "last_polled_at": c.last_polled_at, "last_error": c.last_error,
    })
}

async fn list_checks(c: Claims, s: AppState) -> Resp {
    let checks = s
        .store
        .checks(Some(c.org), None, None)
        .await
        .map_err(reject)?;
    Ok(
        warp::reply::json(&json!({"checks": checks.iter().map(check_json).collect::<Vec<_>>()}))
            .into_response(),
    )
}

fn check_state(s: &AppState, c: &crate::store::entity::check::Model) -> Value {
    let mut v = check_json(c);
    let every = chrono::Duration::seconds(
        i64::from(c.interval_secs).min(s.config.poll_sweep_interval as i64),
    );
    v["next_poll_at"] = json!(c.last_polled_at.map(|t| t + every));
    v
}

async fn get_check(id: i64, c: Claims, s: AppState) -> Resp {
    let check = s.store.check(c.org, id).await.map_err(reject)?;
    Ok(warp::reply::json(&check_state(&s, &check)).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchCheck {
    enabled: Option<bool>,
    interval_secs: Option<i32>,
}

async fn patch_check(id: i64, c: Claims, body: PatchCheck, s: AppState) -> Resp {
    admin(&c)?;
    if body
        .interval_secs
        .is_some_and(|i| !(1..=86_400).contains(&i))
    {
        return Err(reject(ApiError::Unprocessable(
            "interval_secs: must be between 1 and 86400".into(),
        )));
    }
    let patch = crate::store::CheckPatch {
        enabled: body.enabled,
        interval_secs: body.interval_secs,
    };
    let check = s
        .store
        .update_check(c.org, id, patch)
        .await
        .map_err(reject)?;
    Ok(warp::reply::json(&check_state(&s, &check)).into_response())
}

async fn delete_check(id: i64, c: Claims, s: AppState) -> Resp {
    admin(&c)?;
    s.store.delete_check(c.org, id).await.map_err(reject)?;
    Ok(warp::reply::with_status(warp::reply(), warp::http::StatusCode::NO_CONTENT).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshBody {
    refresh_token: String,
}

async fn issue_session(
    s: &AppState,
    a: &crate::store::entity::account::Model,
) -> Result<Value, Rejection> {
    let (token, claims) = s
        .keys
        .mint(&a.id.to_string(), a.organization_id, &a.role, None, None);
    let refresh = random_token("chex_rt_");
    let refresh_exp = Utc::now() + chrono::Duration::seconds(s.config.refresh_token_ttl as i64);
    s.store
        .create_refresh_token(a.id, &sha256_hex(&refresh), refresh_exp)
        .await
        .map_err(reject)?;
    Ok(
        json!({"access_token": token, "expires_at": claims.expires_at(), "refresh_token": refresh, "role": a.role}),
    )
}

async fn refresh(body: RefreshBody, s: AppState) -> Resp {
    let account_id = s
        .store
        .spend_refresh_token(&sha256_hex(&body.refresh_token))
        .await
        .map_err(reject)?;
    let account = match account_id {
        Some(id) => s.store.account(id).await.map_err(reject)?,
        None => None,
    };
    let Some(a) = account.filter(|a| !a.disabled) else {
        return Err(reject(ApiError::Unauthorized(
            "refresh token is invalid, spent or expired".into(),
        )));
    };
    Ok(warp::reply::json(&issue_session(&s, &a).await?).into_response())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct LogoutBody {
    refresh_token: Option<String>,
}

async fn logout(c: Claims, body: LogoutBody, s: AppState) -> Resp {
    s.store
        .revoke_jti(&c.jti, c.expires_at())
        .await
        .map_err(reject)?;
    s.keys.revoke(&c.jti);
    if let Some(rt) = body.refresh_token {
        s.store
            .spend_refresh_token(&sha256_hex(&rt))
            .await
            .map_err(reject)?;
    }
    Ok(warp::reply::with_status(warp::reply(), warp::http::StatusCode::NO_CONTENT).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewToken {
    name: String,
    role: Option<String>,
    topics: Option<Vec<String>>,
    ttl_secs: Option<i64>,
}

fn token_json(t: &crate::store::ApiTokenRecord) -> Value {
    json!({
        "id": t.id, "name": t.name, "role": t.role,
        "topics": t.topics.as_deref().and_then(|j| serde_json::from_str::<Value>(j).ok()),
        "expires_at": t.expires_at, "revoked_at": t.revoked_at, "created_at": t.created_at,
    })
}

async fn create_token(c: Claims, body: NewToken, s: AppState) -> Resp {
    admin(&c)?;
    let name = body.name.trim();
    if name.is_empty() || name.len() > 100 {
        return Err(reject(ApiError::Unprocessable(
            "name: 1 to 100 characters".into(),
        )));
    }
    let role = body.role.unwrap_or_else(|| "member".into());
    if role != "admin" && role != "member" {
        return Err(reject(ApiError::Unprocessable(
            "role: must be admin or member".into(),
        )));
    }
    if let Some(t) = &body.topics
        && t.iter().any(|x| crate::domain::Topic::parse(x).is_none())
    {
        return Err(reject(ApiError::Unprocessable(
            "topics: each must be user:<id> or team:<id>".into(),
        )));
    }
    if body.ttl_secs.is_some_and(|t| t <= 0) {
        return Err(reject(ApiError::Unprocessable(
            "ttl_secs: must be positive".into(),
        )));
    }
    let secret = random_token("chex_bot_");
    let expires_at = body
        .ttl_secs
        .map(|t| Utc::now() + chrono::Duration::seconds(t));
    let t = s
        .store
        .create_api_token(
            c.org,
            name,
            &sha256_hex(&secret),
            &role,
            body.topics.as_deref(),
            expires_at,
        )
        .await
        .map_err(reject)?;
    let mut v = token_json(&t);
    v["token"] = json!(secret);
    Ok(
        warp::reply::with_status(warp::reply::json(&v), warp::http::StatusCode::CREATED)
            .into_response(),
    )
}

async fn list_tokens(c: Claims, s: AppState) -> Resp {
    admin(&c)?;
    let tokens = s.store.api_tokens(c.org).await.map_err(reject)?;
    Ok(
        warp::reply::json(&json!({"tokens": tokens.iter().map(token_json).collect::<Vec<_>>()}))
            .into_response(),
    )
}

async fn revoke_token(id: i64, c: Claims, s: AppState) -> Resp {
    admin(&c)?;
    s.store.revoke_api_token(c.org, id).await.map_err(reject)?;
    s.revoke_credential(&format!("bot:{id}"));
    Ok(warp::reply::with_status(warp::reply(), warp::http::StatusCode::NO_CONTENT).into_response())
}

fn account_json(a: &crate::store::entity::account::Model) -> Value {
    json!({"id": a.id, "email": a.email, "role": a.role, "disabled": a.disabled, "created_at": a.created_at})
}

async fn list_accounts(c: Claims, s: AppState) -> Resp {
    admin(&c)?;
    let accounts = s.store.accounts(c.org).await.map_err(reject)?;
    Ok(warp::reply::json(
        &json!({"accounts": accounts.iter().map(account_json).collect::<Vec<_>>()}),
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAccountBody {
    email: String,
    password: String,
    role: Option<String>,
}

fn valid_role(role: &str) -> Result<(), Rejection> {
    if role == "admin" || role == "member" {
        Ok(())
    } else {
        Err(reject(ApiError::Unprocessable(
            "role: must be admin or member".into(),
        )))
    }
}

async fn create_account(c: Claims, body: NewAccountBody, s: AppState) -> Resp {
    admin(&c)?;
    let email = body.email.trim();
    if !(email.contains('@') && email.len() <= 254 && !email.contains(char::is_whitespace)) {
        return Err(reject(ApiError::Unprocessable(
            "email: not an email address".into(),
        )));
    }
    if body.password.len() < 12 {
        return Err(reject(ApiError::Unprocessable(
            "password: at least 12 characters".into(),
        )));
    }
    let role = body.role.unwrap_or_else(|| "member".into());
    valid_role(&role)?;
    let hash = crate::auth::hash_password(&body.password);
    let a = s
        .store
        .create_account(crate::store::NewAccount {
            organization_id: c.org,
            email,
            password_hash: &hash,
            role: &role,
        })
        .await
        .map_err(reject)?;
    Ok(warp::reply::with_status(
        warp::reply::json(&account_json(&a)),
        warp::http::StatusCode::CREATED,
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchAccount {
    role: Option<String>,
    disabled: Option<bool>,
}

async fn patch_account(id: i64, c: Claims, body: PatchAccount, s: AppState) -> Resp {
    admin(&c)?;
    if let Some(r) = &body.role {
        valid_role(r)?;
    }
    let a = s
        .store
        .update_account(c.org, id, body.role.as_deref(), body.disabled)
        .await
        .map_err(reject)?;
    Ok(warp::reply::json(&account_json(&a)).into_response())
}

async fn delete_connection(id: i64, c: Claims, s: AppState) -> Resp {
    admin(&c)?;
    s.store.delete_connection(c.org, id).await.map_err(reject)?;
    // Which team it was is gone with the row: forget every cached workspace (they reload).
    s.workspaces.clear();
    s.known_users.forget_connection(id);
    Ok(warp::reply::with_status(warp::reply(), warp::http::StatusCode::NO_CONTENT).into_response())
}
