//! REST for the sources beyond Slack: connecting a Jira site or a Gmail mailbox, Jira checks,
//! and the identities that link source accounts to people (an admin's override of the email
//! match).

use serde::Deserialize;
use serde_json::{Value, json};
use warp::filters::BoxedFilter;
use warp::http::StatusCode;
use warp::{Filter, Reply};

use super::error::ApiError;
use super::rest::{Resp, admin, authed, check_json, connection_json, json_body, reject};
use super::state::AppState;
use crate::auth::Claims;
use crate::crypto::fingerprint;
use crate::sources::gmail::{GmailCredentials, GmailError};
use crate::sources::jira::{JiraClient, JiraCredentials, JiraError, is_issue_key};
use crate::store::entity::{connection, source_identity};
use crate::store::{NewCheck, NewConnection};

pub fn routes(state: AppState) -> BoxedFilter<(warp::reply::Response,)> {
    let s = state.filter();
    let jira = warp::path!("api" / "connections" / "jira")
        .and(warp::post())
        .and(authed(state.clone()))
        .and(json_body())
        .and(s.clone())
        .and_then(connect_jira);
    let gmail = warp::path!("api" / "connections" / "gmail")
        .and(warp::post())
        .and(authed(state.clone()))
        .and(json_body())
        .and(s.clone())
        .and_then(connect_gmail);
    let jira_check = warp::path!("api" / "chex" / "jira")
        .and(warp::post())
        .and(authed(state.clone()))
        .and(json_body())
        .and(s.clone())
        .and_then(add_jira_check);
    let identities = warp::path!("api" / "connections" / i64 / "identities")
        .and(warp::get())
        .and(authed(state.clone()))
        .and(s.clone())
        .and_then(list_identities);
    let pin = warp::path!("api" / "connections" / i64 / "identities" / String)
        .and(warp::put())
        .and(authed(state.clone()))
        .and(json_body())
        .and(s.clone())
        .and_then(pin_identity);
    let unpin = warp::path!("api" / "connections" / i64 / "identities" / String)
        .and(warp::delete())
        .and(authed(state))
        .and(s)
        .and_then(unpin_identity);
    jira.or(gmail)
        .unify()
        .or(jira_check)
        .unify()
        .or(identities)
        .unify()
        .or(pin)
        .unify()
        .or(unpin)
        .unify()
        .boxed()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectJira {
    /// `https://your-domain.atlassian.net`.
    site_url: String,
    email: String,
    api_token: String,
}

/// Credentials travel to the site in a header: HTTPS only, except to this machine (simulators).
fn site_of(raw: &str) -> Result<(String, String), ApiError> {
    let bad = || {
        ApiError::Unprocessable(
            "site_url: must be an https:// URL like https://your-domain.atlassian.net".into(),
        )
    };
    let u = url::Url::parse(raw.trim()).map_err(|_| bad())?;
    let host = u.host_str().ok_or_else(bad)?.to_lowercase();
    let local = matches!(host.as_str(), "127.0.0.1" | "localhost" | "[::1]");
    if !(u.scheme() == "https" || (u.scheme() == "http" && local)) || !u.username().is_empty() {
        return Err(bad());
    }
    let external = match u.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    };
    Ok((format!("{}://{external}", u.scheme()), external))
}

async fn connect_jira(c: Claims, body: ConnectJira, s: AppState) -> Resp {
    admin(&c)?;
    let (site_url, external_id) = site_of(&body.site_url).map_err(reject)?;
    if body.api_token.trim().is_empty() || !body.email.contains('@') {
        return Err(reject(ApiError::Unprocessable(
            "email and api_token: give the Jira account's email and an API token".into(),
        )));
    }
    let creds = JiraCredentials {
        site_url,
        email: body.email.trim().to_owned(),
        api_token: body.api_token.trim().to_owned(),
    };
    let me = JiraClient::new(s.http.clone(), &creds)
        .myself()
        .await
        .map_err(|e| match e {
            JiraError::Unauthorized | JiraError::Forbidden(_) => reject(ApiError::Unprocessable(
                format!("api_token: Jira refused the email and token ({})", e.code()),
            )),
            e => reject(ApiError::BadGateway(format!(
                "Jira could not be reached: {}",
                e.code()
            ))),
        })?;
    tracing::info!(site = %external_id, account = %me.account_id, "Jira site connected");
    save(&s, &c, "jira", &external_id, &creds, &creds.api_token).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConnectGmail {
    /// The OAuth2 client the grant was made to.
    client_id: String,
    client_secret: String,
    /// The mailbox owner's grant (scope `gmail.settings.basic` or `gmail.readonly`).
    refresh_token: String,
}

async fn connect_gmail(c: Claims, body: ConnectGmail, s: AppState) -> Resp {
    admin(&c)?;
    if [&body.client_id, &body.client_secret, &body.refresh_token]
        .iter()
        .any(|v| v.trim().is_empty())
    {
        return Err(reject(ApiError::Unprocessable(
            "client_id, client_secret and refresh_token are required".into(),
        )));
    }
    let mut creds = GmailCredentials {
        client_id: body.client_id.trim().to_owned(),
        client_secret: body.client_secret.trim().to_owned(),
        refresh_token: body.refresh_token.trim().to_owned(),
        access_token: None,
        expires_at: None,
    };
    let upstream = |e: GmailError| {
        if e.is_credential_error() || matches!(e, GmailError::Unauthenticated) {
            reject(ApiError::Unprocessable(format!(
                "refresh_token: Google refused the grant ({})",
                e.code()
            )))
        } else {
            reject(ApiError::BadGateway(format!(
                "Gmail could not be reached: {}",
                e.code()
            )))
        }
    };
    s.gmail.refresh(&mut creds).await.map_err(upstream)?;
    let profile = s
        .gmail
        .profile(creds.access_token.as_deref().unwrap_or_default())
        .await
        .map_err(upstream)?;
    let address = profile.email_address.to_lowercase();
    save(&s, &c, "gmail", &address, &creds, &creds.refresh_token).await
}

/// Stores a checked connection (credentials sealed, `secret` fingerprinted so an admin can tell
/// them apart) and answers it, tracking everyone in it unless checks exist already.
async fn save<T: serde::Serialize>(
    s: &AppState,
    c: &Claims,
    kind: &str,
    external_id: &str,
    creds: &T,
    secret: &str,
) -> Resp {
    let sealed = serde_json::to_string(creds)
        .map(|j| s.secret_key.seal(&j))
        .map_err(|e| reject(ApiError::Internal(e.to_string())))?;
    let conn = s
        .store
        .upsert_connection(NewConnection {
            organization_id: c.org,
            kind,
            external_id,
            name: external_id,
            credential_ciphertext: sealed,
            signing_secret_ciphertext: None,
            fingerprint: fingerprint(secret),
        })
        .await
        .map_err(reject)?;
    created(s, conn).await
}

async fn created(s: &AppState, conn: connection::Model) -> Resp {
    let interval = match conn.kind.as_str() {
        "jira" => s.config.poll_jira_interval,
        _ => s.config.poll_gmail_interval,
    };
    s.store
        .track_everyone_unless_checked(&conn, interval.min(86_400) as i32)
        .await
        .map_err(reject)?;
    Ok(warp::reply::with_status(
        warp::reply::json(&connection_json(&conn)),
        StatusCode::CREATED,
    )
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddJiraCheck {
    connection_id: i64,
    /// `*` (everyone linked), a Jira accountId, or an issue key like `OPS-12`.
    subject: String,
}

async fn add_jira_check(c: Claims, body: AddJiraCheck, s: AppState) -> Resp {
    admin(&c)?;
    let conn = connection_in_org(&s, &c, body.connection_id)
        .await?
        .filter(|x| x.kind == "jira")
        .ok_or_else(|| {
            reject(ApiError::Unprocessable(
                "connection_id: no such Jira connection".into(),
            ))
        })?;
    let subject = body.subject.trim();
    let account_id = subject.len() <= 128
        && !subject.is_empty()
        && subject
            .chars()
            .all(|ch| ch.is_ascii_alphanumeric() || ch == ':' || ch == '-');
    if subject != "*" && !is_issue_key(subject) && !account_id {
        return Err(reject(ApiError::Unprocessable(
            "subject: must be *, a Jira accountId, or an issue key like OPS-12".into(),
        )));
    }
    let check = s
        .store
        .create_check(NewCheck {
            organization_id: c.org,
            connection_id: conn.id,
            kind: "jira",
            subject,
            interval_secs: s.config.poll_jira_interval.min(86_400) as i32,
        })
        .await
        .map_err(reject)?;
    Ok(
        warp::reply::with_status(warp::reply::json(&check_json(&check)), StatusCode::CREATED)
            .into_response(),
    )
}

async fn connection_in_org(
    s: &AppState,
    c: &Claims,
    id: i64,
) -> Result<Option<connection::Model>, warp::Rejection> {
    Ok(s.store
        .connection(id)
        .await
        .map_err(reject)?
        .filter(|x| x.organization_id == c.org))
}

pub(super) fn identity_json(i: &source_identity::Model) -> Value {
    json!({
        "connection_id": i.connection_id, "external_id": i.external_id, "email": i.email,
        "display_name": i.display_name, "person_id": i.person_id, "manual": i.manual,
        "updated_at": i.updated_at,
    })
}

async fn list_identities(id: i64, c: Claims, s: AppState) -> Resp {
    admin(&c)?;
    connection_in_org(&s, &c, id)
        .await?
        .ok_or_else(|| reject(ApiError::NotFound))?;
    let ids = s.store.identities(id).await.map_err(reject)?;
    Ok(
        warp::reply::json(
            &json!({"identities": ids.iter().map(identity_json).collect::<Vec<_>>()}),
        )
        .into_response(),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Pin {
    /// The person this account is; `null` for nobody.
    person_id: Option<i64>,
}

async fn pin_identity(id: i64, external: String, c: Claims, body: Pin, s: AppState) -> Resp {
    admin(&c)?;
    let external = decode(&external)?;
    let row = s
        .store
        .pin_identity(c.org, id, &external, body.person_id)
        .await
        .map_err(reject)?;
    Ok(warp::reply::json(&identity_json(&row)).into_response())
}

async fn unpin_identity(id: i64, external: String, c: Claims, s: AppState) -> Resp {
    admin(&c)?;
    let external = decode(&external)?;
    let row = s
        .store
        .unpin_identity(c.org, id, &external)
        .await
        .map_err(reject)?;
    Ok(warp::reply::json(&identity_json(&row)).into_response())
}

/// Path segments arrive percent-encoded (`557058%3Aabc`, `a%40b.com`).
fn decode(segment: &str) -> Result<String, warp::Rejection> {
    percent_decode(segment).ok_or_else(|| {
        reject(ApiError::BadRequest(
            "external id: not valid percent-encoded UTF-8".into(),
        ))
    })
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sites_must_be_https_unless_local() {
        assert_eq!(
            site_of("https://Acme.atlassian.net/").expect("ok"),
            (
                "https://acme.atlassian.net".into(),
                "acme.atlassian.net".into()
            )
        );
        assert!(site_of("http://127.0.0.1:4000").is_ok());
        for bad in [
            "http://acme.atlassian.net",
            "ftp://x",
            "acme",
            "https://u:p@x.net",
        ] {
            assert!(site_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_segments_decode() {
        assert_eq!(percent_decode("a%40b.com").as_deref(), Some("a@b.com"));
        assert_eq!(percent_decode("557058%3Ax").as_deref(), Some("557058:x"));
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
