//! The simulated state: workspaces, their people, presence, DND, and the faults tests inject.

use std::collections::HashMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use super::names::{COLORS, FIRST, LAST, STATUSES};
use crate::sources::slack::types::{DndInfo, Profile, User};

/// A workspace to simulate.
#[derive(Clone, Debug)]
pub struct WorkspaceSpec {
    pub token: String,
    pub team_id: String,
    pub team_name: String,
    pub users: usize,
    pub signing_secret: String,
}

impl WorkspaceSpec {
    /// A workspace named after its team id, with a token and secret derived from it.
    pub fn new(team_id: &str, users: usize) -> WorkspaceSpec {
        WorkspaceSpec {
            token: format!("xoxb-sim-{}", team_id.to_lowercase()),
            team_id: team_id.to_owned(),
            team_name: format!("Team {team_id}"),
            users,
            signing_secret: format!("signing-secret-{}", team_id.to_lowercase()),
        }
    }
}

/// Faults a test can switch on for one workspace.
#[derive(Clone, Debug, Default)]
pub struct Faults {
    /// Every call answers `token_revoked`.
    pub revoked: bool,
    /// The next N calls answer HTTP 500.
    pub fail_next: u32,
    /// The next N calls answer HTTP 200 with a body that is not JSON.
    pub malformed_next: u32,
    /// Every answer is delayed this long.
    pub slow_ms: u64,
}

pub struct SimWorkspace {
    pub spec: WorkspaceSpec,
    pub users: Vec<User>,
    /// `true` = active.
    pub presence: Vec<bool>,
    pub dnd: Vec<DndInfo>,
    pub faults: Faults,
    /// Cursors carry this; bumping it makes every outstanding cursor `invalid_cursor`.
    pub cursor_epoch: u64,
}

impl SimWorkspace {
    pub fn index_of(&self, user: &str) -> Option<usize> {
        self.users.iter().position(|u| u.id == user)
    }

    /// Clears statuses and DND windows whose time has passed, as Slack does.
    pub fn expire(&mut self, now: i64) {
        for u in &mut self.users {
            let p = &mut u.profile;
            if p.status_expiration > 0 && p.status_expiration <= now {
                p.status_text.clear();
                p.status_emoji.clear();
                p.status_expiration = 0;
            }
        }
        for d in &mut self.dnd {
            if d.dnd_enabled && d.next_dnd_end_ts <= now {
                *d = DndInfo {
                    dnd_enabled: false,
                    next_dnd_start_ts: 1,
                    next_dnd_end_ts: 1,
                    ..DndInfo::default()
                };
            }
        }
    }
}

/// A callback to deliver: signed afresh at each attempt, as Slack does, since a retry carries
/// a new request timestamp (`delivery`).
pub struct Push {
    pub url: String,
    pub secret: String,
    pub body: String,
}

pub struct World {
    pub workspaces: Vec<SimWorkspace>,
    pub events_url: Option<String>,
    /// Waits before each redelivery of a failed callback (`delivery`).
    pub retry_delays: Vec<std::time::Duration>,
    rng: StdRng,
    /// Event ids are this world's prefix and a count: unique across simulators too, so a
    /// simulator restarted beside a running Chex is not taken for Slack redelivering events
    /// Chex already has (it drops those by `event_id`).
    event_prefix: String,
    event_counter: u64,
}

pub fn now_unix() -> i64 {
    chrono::Utc::now().timestamp()
}

impl World {
    pub fn new(specs: &[WorkspaceSpec], seed: u64, base_url: String) -> World {
        let mut rng = StdRng::seed_from_u64(seed);
        let workspaces = specs
            .iter()
            .map(|spec| {
                let users: Vec<User> = (0..spec.users)
                    .map(|i| make_user(&mut rng, spec, i, &base_url))
                    .collect();
                let presence = users.iter().map(|_| rng.random_bool(0.6)).collect();
                let dnd = users
                    .iter()
                    .map(|_| DndInfo {
                        dnd_enabled: false,
                        next_dnd_start_ts: 1,
                        next_dnd_end_ts: 1,
                        ..DndInfo::default()
                    })
                    .collect();
                SimWorkspace {
                    spec: spec.clone(),
                    users,
                    presence,
                    dnd,
                    faults: Faults::default(),
                    cursor_epoch: 1,
                }
            })
            .collect();
        World {
            workspaces,
            events_url: None,
            retry_delays: super::delivery::SLACK_RETRY_DELAYS.to_vec(),
            rng,
            event_prefix: format!("Ev{:08X}", rand::random::<u32>()),
            event_counter: 0,
        }
    }

    pub fn by_token(&mut self, token: &str) -> Option<&mut SimWorkspace> {
        self.workspaces.iter_mut().find(|w| w.spec.token == token)
    }

    pub fn by_team(&mut self, team: &str) -> Option<&mut SimWorkspace> {
        self.workspaces.iter_mut().find(|w| w.spec.team_id == team)
    }

    pub fn set_presence(&mut self, team: &str, user: &str, active: bool) -> bool {
        let Some(ws) = self.by_team(team) else {
            return false;
        };
        let Some(i) = ws.index_of(user) else {
            return false;
        };
        ws.presence[i] = active;
        true
    }

    pub fn set_dnd(&mut self, team: &str, user: &str, minutes: i64) -> Option<Push> {
        let now = now_unix();
        let ws = self.by_team(team)?;
        let i = ws.index_of(user)?;
        ws.dnd[i] = if minutes > 0 {
            DndInfo {
                dnd_enabled: true,
                next_dnd_start_ts: now - 1,
                next_dnd_end_ts: now + minutes * 60,
                ..DndInfo::default()
            }
        } else {
            DndInfo {
                dnd_enabled: false,
                next_dnd_start_ts: 1,
                next_dnd_end_ts: 1,
                ..DndInfo::default()
            }
        };
        let event = json!({
            "type": "dnd_updated_user",
            "user": user,
            "dnd_status": {
                "dnd_enabled": ws.dnd[i].dnd_enabled,
                "next_dnd_start_ts": ws.dnd[i].next_dnd_start_ts,
                "next_dnd_end_ts": ws.dnd[i].next_dnd_end_ts,
            },
            "event_ts": format!("{now}.000100"),
        });
        self.callback(team, event)
    }

    /// Sets a custom status; `expiration` is unix seconds (0 = none).
    pub fn set_status(
        &mut self,
        team: &str,
        user: &str,
        text: &str,
        emoji: &str,
        expiration: i64,
    ) -> Option<Push> {
        let ws = self.by_team(team)?;
        let i = ws.index_of(user)?;
        let u = &mut ws.users[i];
        u.profile.status_text = text.to_owned();
        u.profile.status_emoji = emoji.to_owned();
        u.profile.status_expiration = expiration;
        u.updated = now_unix();
        let user = u.clone();
        self.user_change(team, &user)
    }

    pub fn delete_user(&mut self, team: &str, user: &str) -> Option<Push> {
        let ws = self.by_team(team)?;
        let i = ws.index_of(user)?;
        ws.users[i].deleted = true;
        ws.users[i].updated = now_unix();
        ws.presence[i] = false;
        let user = ws.users[i].clone();
        self.user_change(team, &user)
    }

    /// One tick of simulated life: a few people change presence, status, DND or profile.
    pub fn random_step(&mut self) -> Vec<Push> {
        let mut pushes = Vec::new();
        let now = now_unix();
        for wi in 0..self.workspaces.len() {
            let n = self.workspaces[wi].users.len();
            if n == 0 {
                continue;
            }
            let changes = 1 + n / 20;
            for _ in 0..changes {
                let i = self.rng.random_range(0..n);
                let team = self.workspaces[wi].spec.team_id.clone();
                let user = self.workspaces[wi].users[i].id.clone();
                if self.workspaces[wi].users[i].deleted {
                    continue;
                }
                match self.rng.random_range(0..100) {
                    0..45 => {
                        let ws = &mut self.workspaces[wi];
                        ws.presence[i] = !ws.presence[i];
                    }
                    45..75 => {
                        let (text, emoji, minutes) =
                            STATUSES[self.rng.random_range(0..STATUSES.len())];
                        let exp = if minutes > 0 { now + minutes * 60 } else { 0 };
                        pushes.extend(self.set_status(&team, &user, text, emoji, exp));
                    }
                    75..88 => pushes.extend(self.set_status(&team, &user, "", "", 0)),
                    88..97 => {
                        let minutes = if self.workspaces[wi].dnd[i].dnd_enabled {
                            0
                        } else {
                            self.rng.random_range(5..60)
                        };
                        pushes.extend(self.set_dnd(&team, &user, minutes));
                    }
                    99 if n > 10
                        && self.workspaces[wi]
                            .users
                            .iter()
                            .filter(|u| u.deleted)
                            .count()
                            * 20
                            < n =>
                    {
                        // Someone leaves the company now and then (at most one in twenty).
                        pushes.extend(self.delete_user(&team, &user));
                    }
                    _ => {
                        let titles = [
                            "Engineer",
                            "Senior Engineer",
                            "Designer",
                            "Product Manager",
                            "SRE",
                        ];
                        let title = titles[self.rng.random_range(0..titles.len())];
                        let ws = &mut self.workspaces[wi];
                        ws.users[i].profile.title = title.to_owned();
                        ws.users[i].updated = now;
                        let u = ws.users[i].clone();
                        pushes.extend(self.user_change(&team, &u));
                    }
                }
            }
        }
        pushes
    }

    fn user_change(&mut self, team: &str, user: &User) -> Option<Push> {
        let event = json!({
            "type": "user_change",
            "user": user_json(user),
            "cache_ts": now_unix(),
            "event_ts": format!("{}.000200", now_unix()),
        });
        self.callback(team, event)
    }

    /// Wraps an inner event in Slack's `event_callback` envelope (signed at delivery).
    fn callback(&mut self, team: &str, event: Value) -> Option<Push> {
        let url = self.events_url.clone()?;
        let secret = self.by_team(team)?.spec.signing_secret.clone();
        self.event_counter += 1;
        let now = now_unix();
        let body = json!({
            "token": "sim-verification-token",
            "team_id": team,
            "api_app_id": "A0SIMCHEX",
            "event": event,
            "type": "event_callback",
            "event_id": format!("{}{:010}", self.event_prefix, self.event_counter),
            "event_time": now,
            "authorizations": [{"team_id": team, "user_id": "U0SIMBOT", "is_bot": true, "is_enterprise_install": false}],
            "is_ext_shared_channel": false,
        })
        .to_string();
        Some(Push { url, secret, body })
    }
}

fn make_user(rng: &mut StdRng, spec: &WorkspaceSpec, i: usize, base: &str) -> User {
    let first = FIRST[i % FIRST.len()];
    let last = LAST[(i / FIRST.len() + i * 7) % LAST.len()];
    let handle = if i < FIRST.len() {
        first.to_lowercase()
    } else {
        format!("{}{}", first.to_lowercase(), i)
    };
    let id = format!("U{:08X}", 0x1000_0000u32.wrapping_add(i as u32 * 7919));
    let avatar = |size: u32| format!("{base}/_sim/avatar/{id}.svg?s={size}");
    let real = format!("{first} {last}");
    let (tz, label, offset) = match rng.random_range(0..3) {
        0 => ("Europe/London", "Greenwich Mean Time", 0),
        1 => ("America/New_York", "Eastern Standard Time", -18000),
        _ => ("Asia/Tokyo", "Japan Standard Time", 32400),
    };
    User {
        id: id.clone(),
        team_id: spec.team_id.clone(),
        name: handle.clone(),
        deleted: false,
        color: COLORS[i % COLORS.len()].to_owned(),
        real_name: real.clone(),
        tz: Some(tz.into()),
        tz_label: Some(label.into()),
        tz_offset: Some(offset),
        profile: Profile {
            avatar_hash: format!("g{:011x}", rng.random::<u64>() & 0xfff_ffff_ffff),
            display_name: handle.clone(),
            display_name_normalized: handle.clone(),
            email: Some(format!(
                "{handle}@{}.example.com",
                spec.team_id.to_lowercase()
            )),
            first_name: first.into(),
            last_name: last.into(),
            image_24: avatar(24),
            image_32: avatar(32),
            image_48: avatar(48),
            image_72: avatar(72),
            image_192: avatar(192),
            image_512: avatar(512),
            image_1024: avatar(1024),
            image_original: avatar(1024),
            phone: String::new(),
            real_name: real.clone(),
            real_name_normalized: real,
            skype: String::new(),
            status_emoji: String::new(),
            status_text: String::new(),
            status_expiration: 0,
            team: spec.team_id.clone(),
            title: "Engineer".into(),
        },
        is_admin: i == 0,
        is_owner: i == 0,
        is_primary_owner: i == 0,
        is_restricted: false,
        is_ultra_restricted: false,
        is_bot: false,
        is_app_user: false,
        has_2fa: i.is_multiple_of(3),
        updated: 1_700_000_000 + i as i64,
    }
}

/// A user as Slack serializes one: the typed fields plus the keys Chex does not read but real
/// payloads carry.
pub fn user_json(u: &User) -> Value {
    let mut v = serde_json::to_value(u).unwrap_or_default();
    if let Some(o) = v.as_object_mut() {
        o.insert("is_email_confirmed".into(), json!(true));
        o.insert("who_can_share_contact_card".into(), json!("EVERYONE"));
        if u.deleted {
            for k in [
                "tz",
                "tz_label",
                "tz_offset",
                "is_admin",
                "is_owner",
                "is_primary_owner",
                "is_restricted",
                "is_ultra_restricted",
                "has_2fa",
            ] {
                o.remove(k);
            }
        }
        if let Some(p) = o.get_mut("profile").and_then(Value::as_object_mut) {
            p.insert("fields".into(), Value::Null);
            p.insert("status_text_canonical".into(), json!(""));
            p.insert("status_emoji_display_info".into(), json!([]));
            p.insert("huddle_state".into(), json!("default_unset"));
            p.insert("huddle_state_expiration_ts".into(), json!(0));
            p.insert("is_custom_image".into(), json!(false));
            p.insert("always_active".into(), json!(false));
        }
    }
    v
}

/// `dnd.teamInfo` entries for the given users (all when empty).
pub fn dnd_map(ws: &SimWorkspace, users: &[&str]) -> HashMap<String, Value> {
    ws.users
        .iter()
        .zip(&ws.dnd)
        .filter(|(u, _)| users.is_empty() || users.contains(&u.id.as_str()))
        .map(|(u, d)| {
            (u.id.clone(), json!({"dnd_enabled": d.dnd_enabled, "next_dnd_start_ts": d.next_dnd_start_ts, "next_dnd_end_ts": d.next_dnd_end_ts}))
        })
        .collect()
}
