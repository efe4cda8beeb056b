//! Slack's Web API and Events API payloads, as far as Chex reads them.
//!
//! Every field is optional on the wire: real bodies omit keys (a deleted bot has no `tz`), send
//! `null` (`"fields": null`, `"tz": null`) and add keys no doc lists. So every struct defaults, every
//! field tolerates `null`, and unknown keys are ignored.

use std::collections::HashMap;

use chrono::{DateTime, TimeZone, Utc};
use serde::{Deserialize, Deserializer, Serialize};

use crate::domain::{CustomStatus, Dnd, Presence};

/// `null` reads as the type's default.
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// The fields every response carries.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Envelope {
    #[serde(deserialize_with = "nullable")]
    pub ok: bool,
    pub error: Option<String>,
    pub needed: Option<String>,
    pub provided: Option<String>,
    pub warning: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct Profile {
    #[serde(deserialize_with = "nullable")]
    pub avatar_hash: String,
    #[serde(deserialize_with = "nullable")]
    pub display_name: String,
    #[serde(deserialize_with = "nullable")]
    pub display_name_normalized: String,
    pub email: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub first_name: String,
    #[serde(deserialize_with = "nullable")]
    pub last_name: String,
    #[serde(deserialize_with = "nullable")]
    pub image_24: String,
    #[serde(deserialize_with = "nullable")]
    pub image_32: String,
    #[serde(deserialize_with = "nullable")]
    pub image_48: String,
    #[serde(deserialize_with = "nullable")]
    pub image_72: String,
    #[serde(deserialize_with = "nullable")]
    pub image_192: String,
    #[serde(deserialize_with = "nullable")]
    pub image_512: String,
    #[serde(deserialize_with = "nullable")]
    pub image_1024: String,
    #[serde(deserialize_with = "nullable")]
    pub image_original: String,
    #[serde(deserialize_with = "nullable")]
    pub phone: String,
    #[serde(deserialize_with = "nullable")]
    pub real_name: String,
    #[serde(deserialize_with = "nullable")]
    pub real_name_normalized: String,
    #[serde(deserialize_with = "nullable")]
    pub skype: String,
    #[serde(deserialize_with = "nullable")]
    pub status_emoji: String,
    #[serde(deserialize_with = "nullable")]
    pub status_text: String,
    /// Unix seconds; 0 means no expiry.
    #[serde(deserialize_with = "nullable")]
    pub status_expiration: i64,
    #[serde(deserialize_with = "nullable")]
    pub team: String,
    #[serde(deserialize_with = "nullable")]
    pub title: String,
}

impl Profile {
    /// The custom status, normalized: Slack's `0` expiry is "never".
    pub fn custom_status(&self) -> CustomStatus {
        StatusHead {
            status_emoji: self.status_emoji.clone(),
            status_text: self.status_text.clone(),
            status_expiration: self.status_expiration,
        }
        .custom_status()
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct User {
    #[serde(deserialize_with = "nullable")]
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub team_id: String,
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub deleted: bool,
    #[serde(deserialize_with = "nullable")]
    pub color: String,
    #[serde(deserialize_with = "nullable")]
    pub real_name: String,
    pub tz: Option<String>,
    pub tz_label: Option<String>,
    pub tz_offset: Option<i32>,
    #[serde(deserialize_with = "nullable")]
    pub profile: Profile,
    #[serde(deserialize_with = "nullable")]
    pub is_admin: bool,
    #[serde(deserialize_with = "nullable")]
    pub is_owner: bool,
    #[serde(deserialize_with = "nullable")]
    pub is_primary_owner: bool,
    #[serde(deserialize_with = "nullable")]
    pub is_restricted: bool,
    #[serde(deserialize_with = "nullable")]
    pub is_ultra_restricted: bool,
    #[serde(deserialize_with = "nullable")]
    pub is_bot: bool,
    #[serde(deserialize_with = "nullable")]
    pub is_app_user: bool,
    #[serde(deserialize_with = "nullable")]
    pub has_2fa: bool,
    #[serde(deserialize_with = "nullable")]
    pub updated: i64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ResponseMetadata {
    #[serde(deserialize_with = "nullable")]
    pub next_cursor: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct AuthTest {
    #[serde(deserialize_with = "nullable")]
    pub url: String,
    #[serde(deserialize_with = "nullable")]
    pub team: String,
    #[serde(deserialize_with = "nullable")]
    pub user: String,
    #[serde(deserialize_with = "nullable")]
    pub team_id: String,
    #[serde(deserialize_with = "nullable")]
    pub user_id: String,
    pub bot_id: Option<String>,
    #[serde(deserialize_with = "nullable")]
    pub is_enterprise_install: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct Team {
    #[serde(deserialize_with = "nullable")]
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub name: String,
    #[serde(deserialize_with = "nullable")]
    pub domain: String,
    #[serde(deserialize_with = "nullable")]
    pub email_domain: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct TeamInfo {
    #[serde(deserialize_with = "nullable")]
    pub team: Team,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct UsersList {
    #[serde(deserialize_with = "nullable")]
    pub members: Vec<User>,
    #[serde(deserialize_with = "nullable")]
    pub response_metadata: ResponseMetadata,
}

/// What a sweep reads of every member (see [`super::UsersPage`]): who, whether the record moved,
/// and the status.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct UserHead {
    #[serde(deserialize_with = "nullable")]
    pub id: String,
    #[serde(deserialize_with = "nullable")]
    pub deleted: bool,
    #[serde(deserialize_with = "nullable")]
    pub is_bot: bool,
    #[serde(deserialize_with = "nullable")]
    pub updated: i64,
    #[serde(deserialize_with = "nullable")]
    pub profile: StatusHead,
}

/// The status fields of a profile (see [`Profile`]): all a sweep reads of most members.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct StatusHead {
    #[serde(deserialize_with = "nullable")]
    pub status_emoji: String,
    #[serde(deserialize_with = "nullable")]
    pub status_text: String,
    #[serde(deserialize_with = "nullable")]
    pub status_expiration: i64,
}

impl StatusHead {
    /// The custom status, normalized: Slack's `0` expiry is "never".
    pub fn custom_status(self) -> CustomStatus {
        CustomStatus {
            text: self.status_text,
            emoji: self.status_emoji,
            expires_at: unix(self.status_expiration),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct UsersInfo {
    #[serde(deserialize_with = "nullable")]
    pub user: User,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct UserPresence {
    #[serde(deserialize_with = "nullable")]
    pub presence: String,
    /// Only for the token's own user, like the fields below.
    pub online: Option<bool>,
    pub auto_away: Option<bool>,
    pub manual_away: Option<bool>,
    pub connection_count: Option<i64>,
    pub last_activity: Option<i64>,
}

impl UserPresence {
    pub fn presence(&self) -> Presence {
        match self.presence.as_str() {
            "active" => Presence::Active,
            "away" => Presence::Away,
            _ => Presence::Unknown,
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct ProfileGet {
    #[serde(deserialize_with = "nullable")]
    pub profile: Profile,
}

/// `dnd.info`, and one user's entry of `dnd.teamInfo`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(default)]
pub struct DndInfo {
    #[serde(deserialize_with = "nullable")]
    pub dnd_enabled: bool,
    #[serde(deserialize_with = "nullable")]
    pub next_dnd_start_ts: i64,
    #[serde(deserialize_with = "nullable")]
    pub next_dnd_end_ts: i64,
    /// Only for the token's own user.
    pub snooze_enabled: Option<bool>,
    pub snooze_endtime: Option<i64>,
    pub snooze_remaining: Option<i64>,
}

impl DndInfo {
    /// Whether DND is on at `now`, and until when.
    ///
    /// `dnd_enabled` says a DND schedule exists; it is in force between the next start and end.
    /// A snooze (own user only) is in force until its end time.
    pub fn at(&self, now: DateTime<Utc>) -> Dnd {
        if self.snooze_enabled == Some(true)
            && let Some(end) = self.snooze_endtime.and_then(unix)
            && end > now
        {
            return Dnd {
                enabled: true,
                until: Some(end),
            };
        }
        let (Some(start), Some(end)) = (unix(self.next_dnd_start_ts), unix(self.next_dnd_end_ts))
        else {
            return Dnd::default();
        };
        if self.dnd_enabled && start <= now && now < end {
            Dnd {
                enabled: true,
                until: Some(end),
            }
        } else {
            Dnd::default()
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct DndTeamInfo {
    #[serde(deserialize_with = "nullable")]
    pub users: HashMap<String, DndInfo>,
}

/// Unix seconds to a time; Slack's 0 (and 1, used as a placeholder by `dnd.teamInfo`) is "none".
pub fn unix(secs: i64) -> Option<DateTime<Utc>> {
    if secs <= 1 {
        return None;
    }
    Utc.timestamp_opt(secs, 0).single()
}
