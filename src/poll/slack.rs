//! The Slack poller pool.
//!
//! Each active Slack connection runs three loops — a `users.list` sweep (profiles and custom
//! status), `users.getPresence` (watched people first), and `dnd.teamInfo` rounds — every call
//! through the shared governor, so steady polling stays inside Slack's tiers. In-flight calls
//! across all workspaces are bounded by one semaphore: the pool. The poller learns who is watched
//! from [`Watched`], nothing more.
//!
//! A credential error (revoked, invalid) stops the workspace and records the error on its
//! connection; transient failures mark its people `stale` and keep retrying with backoff.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::pipeline::{Observation, Pipeline};
use super::presence::{People, Tracked, WatchView, next_presence};
use crate::crypto::SecretKey;
use crate::domain::{CustomStatus, PersonCard, Source, StatusPatch, now};
use crate::hub::Watched;
use crate::metrics::METRICS;
use crate::sources::slack::types::{DndInfo, User};
use crate::sources::slack::{SlackClient, SlackError};
use crate::store::entity::connection;
use crate::store::{PersonRow, SlackProfileRecord, SlackUserRecord, Store};

/// Poll timing, from config.
#[derive(Clone, Debug)]
pub struct Intervals {
    pub watched: Duration,
    pub sweep: Duration,
    pub dnd: Duration,
    /// Poll people nobody watches with the presence budget left over (`CHEX_POLL_UNWATCHED_PRESENCE`).
    pub unwatched_presence: bool,
}

/// Everything a connection's loops share.
#[derive(Clone)]
pub struct PollContext {
    pub store: Store,
    pub client: SlackClient,
    pub pipeline: Pipeline,
    pub watched: Watched,
    pub key: SecretKey,
    pub intervals: Intervals,
    pub pool: Arc<Semaphore>,
    /// Shared with the Events API path: what a sweep stores, pushed events need not store again.
    pub known: KnownUsers,
}

struct Conn {
    ctx: PollContext,
    model: connection::Model,
    token: String,
    people: Mutex<People>,
    stop: CancellationToken,
}

pub async fn poll_connection(ctx: PollContext, model: connection::Model, stop: CancellationToken) {
    let token = match ctx.key.open(&model.credential_ciphertext) {
        Ok(t) => t,
        Err(e) => {
            tracing::error!(connection = model.id, error = %e, "cannot decrypt the workspace token; is CHEX_SECRET_KEY the one it was stored under?");
            let _ = ctx
                .store
                .set_connection_status(model.id, "error", Some("token cannot be decrypted"))
                .await;
            return;
        }
    };
    let mut people = People::default();
    match ctx.store.slack_people(model.id).await {
        Ok(rows) => {
            for (slack_id, updated, row) in rows {
                let trackable = !row.deleted && !row.is_bot;
                people.insert(
                    slack_id,
                    Tracked {
                        card: Arc::new(row.card()),
                        updated,
                        trackable,
                        last_presence: None,
                    },
                );
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not load known Slack users"),
    }
    let conn = Arc::new(Conn {
        ctx,
        model,
        token,
        people: Mutex::new(people),
        stop,
    });
    tracing::info!(connection = conn.model.id, team = %conn.model.external_id, "polling Slack workspace");
    tokio::join!(
        sweep_loop(conn.clone()),
        presence_loop(conn.clone()),
        dnd_loop(conn.clone())
    );
}

impl Conn {
    fn people(&self) -> std::sync::MutexGuard<'_, People> {
        self.people.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Which Slack users the checks track: everyone (`*`), or the named ones.
    async fn tracked_subjects(&self) -> Option<std::collections::HashSet<String>> {
        let checks = self
            .ctx
            .store
            .checks(None, Some(self.model.id), Some("slack"))
            .await
            .ok()?;
        let enabled: Vec<_> = checks.into_iter().filter(|c| c.enabled).collect();
        if enabled.iter().any(|c| c.subject == "*") {
            return None;
        }
        Some(enabled.into_iter().map(|c| c.subject).collect())
    }

    /// Handles a failed call. Returns true when the connection must stop.
    async fn failed(&self, e: &SlackError) -> bool {
        if e.is_credential_error() {
            tracing::warn!(connection = self.model.id, error = %e, "Slack refused the workspace token; polling stopped");
            let _ = self
                .ctx
                .store
                .set_connection_status(self.model.id, "error", Some(&e.to_string()))
                .await;
            let _ = self
                .ctx
                .store
                .record_poll(self.model.id, now(), Some(&e.code()))
                .await;
            self.mark_stale().await;
            self.stop.cancel();
            return true;
        }
        tracing::warn!(connection = self.model.id, error = %e, "Slack call failed; retrying with backoff");
        let _ = self
            .ctx
            .store
            .record_poll(self.model.id, now(), Some(&e.code()))
            .await;
        self.mark_stale().await;
        false
    }

    async fn mark_stale(&self) {
        let cards: Vec<_> = self
            .people()
            .values()
            .filter(|t| t.trackable)
            .map(|t| t.card.clone())
            .collect();
        let stale = StatusPatch {
            stale: Some(true),
            ..Default::default()
        };
        self.observe_all(cards.into_iter().map(|c| (c, stale.clone())), now())
            .await;
    }

    async fn observe(&self, person: Arc<PersonCard>, patch: StatusPatch) {
        observe_at(&self.ctx.pipeline, person, patch, now()).await;
    }

    /// Hands what Slack said about several people in one answer to the pipeline, to be committed
    /// together; `asked_at` was taken before the request for it (`pipeline::Observation`).
    async fn observe_all(
        &self,
        seen: impl IntoIterator<Item = (Arc<PersonCard>, StatusPatch)>,
        asked_at: DateTime<Utc>,
    ) {
        self.ctx
            .pipeline
            .observe_all(seen, asked_at, Source::Slack)
            .await;
    }

    async fn sleep(&self, d: Duration) -> bool {
        tokio::select! {
            _ = self.stop.cancelled() => false,
            _ = tokio::time::sleep(d) => true,
        }
    }

    async fn permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.ctx.pool.clone().acquire_owned().await.ok()
    }
}

async fn sweep_loop(conn: Arc<Conn>) {
    loop {
        let ok = sweep(&conn).await;
        let wait = if ok {
            conn.ctx.intervals.sweep
        } else {
            Duration::from_secs(5)
        };
        if conn.stop.is_cancelled() || !conn.sleep(wait).await {
            return;
        }
    }
}

/// One full `users.list` pass, page by page. Returns false on failure.
async fn sweep(conn: &Arc<Conn>) -> bool {
    let subjects = conn.tracked_subjects().await;
    let mut cursor = String::new();
    loop {
        let Some(_permit) = conn.permit().await else {
            return false;
        };
        let asked_at = now();
        let page = match conn.ctx.client.users_page(&conn.token, &cursor, 200).await {
            Ok(p) => p,
            Err(SlackError::InvalidCursor) => {
                cursor.clear();
                continue;
            }
            Err(e) => {
                conn.failed(&e).await;
                return false;
            }
        };
        drop(_permit);
        // Every member's head is read; the whole record only when its `updated` moved.
        let mut heads = Vec::with_capacity(page.members().len());
        let mut changed: Vec<SlackUserRecord> = Vec::new();
        let mut unreadable = None;
        {
            let people = conn.people();
            for member in page.members() {
                let head = match member.head() {
                    Ok(h) if !h.id.is_empty() => h,
                    Ok(_) => continue,
                    Err(e) => {
                        unreadable = Some(e);
                        continue;
                    }
                };
                if people
                    .get(&head.id)
                    .is_none_or(|t| t.updated != head.updated)
                {
                    match member.user() {
                        Ok(u) => changed.push(record(u)),
                        Err(e) => {
                            unreadable = Some(e);
                            continue;
                        }
                    }
                }
                heads.push(head);
            }
        }
        let next_cursor = page.into_next_cursor();
        if let Some(e) = unreadable {
            // The rest of the page still counts; the member is read again next sweep.
            tracing::warn!(error = %e, "users.list members of an unexpected shape skipped");
        }
        if !changed.is_empty() {
            match conn
                .ctx
                .store
                .upsert_slack_users(conn.model.id, conn.model.organization_id, &changed)
                .await
            {
                Ok(rows) => {
                    let mut people = conn.people();
                    for (rec, row) in changed.iter_mut().zip(rows) {
                        let card = Arc::new(row.card());
                        let trackable = trackable(&row);
                        if trackable {
                            let print = KnownUsers::fingerprint(rec);
                            conn.ctx.known.insert(
                                conn.model.id,
                                &rec.slack_id,
                                print,
                                card.clone(),
                            );
                        }
                        let last_presence = people.get(&rec.slack_id).and_then(|t| t.last_presence);
                        people.insert(
                            rec.slack_id.clone(),
                            Tracked {
                                card,
                                updated: rec.updated,
                                trackable,
                                last_presence,
                            },
                        );
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "storing Slack users failed");
                    return false;
                }
            }
        }
        let observations: Vec<_> = {
            let mut people = conn.people();
            heads
                .into_iter()
                .filter_map(|h| {
                    let trackable = !h.deleted
                        && !h.is_bot
                        && h.id != "USLACKBOT"
                        && subjects.as_ref().is_none_or(|s| s.contains(&h.id));
                    let t = people.set_trackable(&h.id, trackable)?;
                    trackable.then(|| (t.card.clone(), h.profile.custom_status()))
                })
                .collect()
        };
        conn.observe_all(
            observations.into_iter().map(|(card, custom)| {
                let patch = StatusPatch {
                    custom: Some(custom),
                    stale: Some(false),
                    ..Default::default()
                };
                (card, patch)
            }),
            asked_at,
        )
        .await;
        cursor = next_cursor;
        if cursor.is_empty() {
            let _ = conn.ctx.store.record_poll(conn.model.id, now(), None).await;
            METRICS.slack_sweeps.inc();
            return true;
        }
    }
}

fn trackable(row: &PersonRow) -> bool {
    !row.deleted && !row.is_bot && row.slack_id.as_deref() != Some("USLACKBOT")
}

async fn presence_loop(conn: Arc<Conn>) {
    let interval = conn.ctx.intervals.watched;
    let mut view = WatchView::of(&mut conn.people(), &conn.ctx.watched);
    loop {
        if conn.stop.is_cancelled() {
            return;
        }
        let pick = {
            let mut people = conn.people();
            if !view.fresh() {
                view.renew(&mut people, &conn.ctx.watched);
            }
            next_presence(&people, &view, interval)
                .filter(|(_, watched)| *watched || conn.ctx.intervals.unwatched_presence)
        };
        let Some((slack_id, watched)) = pick else {
            if !conn.sleep(Duration::from_millis(500)).await {
                return;
            }
            continue;
        };
        let Some(permit) = conn.permit().await else {
            return;
        };
        let result = conn.ctx.client.get_presence(&conn.token, &slack_id).await;
        drop(permit);
        let Some((card, before)) = conn.people().polled(&slack_id) else {
            continue;
        };
        if watched && before.is_some_and(|l| l.elapsed() > interval * 2) {
            METRICS.watched_presence_overdue.inc();
        }
        match result {
            Ok(p) => {
                conn.observe(
                    card,
                    StatusPatch {
                        presence: Some(p.presence()),
                        stale: Some(false),
                        ..Default::default()
                    },
                )
                .await
            }
            Err(SlackError::UserNotFound) => {}
            Err(e) => {
                if conn.failed(&e).await {
                    return;
                }
                if !conn.sleep(Duration::from_secs(1)).await {
                    return;
                }
            }
        }
    }
}

async fn dnd_loop(conn: Arc<Conn>) {
    loop {
        let ids: Vec<String> = conn
            .people()
            .iter()
            .filter(|(_, t)| t.trackable)
            .map(|(id, _)| id.clone())
            .collect();
        for batch in ids.chunks(crate::sources::slack::DND_TEAM_BATCH) {
            let Some(permit) = conn.permit().await else {
                return;
            };
            let asked_at = now();
            let result = conn.ctx.client.dnd_team_info(&conn.token, batch).await;
            drop(permit);
            match result {
                Ok(info) => {
                    let at = now();
                    let cards: Vec<_> = {
                        let people = conn.people();
                        info.users
                            .iter()
                            .filter_map(|(id, d)| {
                                people.get(id).map(|t| (t.card.clone(), d.at(at)))
                            })
                            .collect()
                    };
                    conn.observe_all(
                        cards.into_iter().map(|(card, dnd)| {
                            let patch = StatusPatch {
                                dnd: Some(dnd),
                                ..Default::default()
                            };
                            (card, patch)
                        }),
                        asked_at,
                    )
                    .await;
                }
                Err(e) => {
                    if conn.failed(&e).await {
                        return;
                    }
                    break;
                }
            }
        }
        if !conn.sleep(conn.ctx.intervals.dnd).await {
            return;
        }
    }
}

/// A Slack user as the store keeps them, made of the parsed user's own fields (moved, not
/// copied: every caller is done with the parsed user).
pub fn record(u: User) -> SlackUserRecord {
    let p = u.profile;
    SlackUserRecord {
        slack_id: u.id,
        team_id: u.team_id,
        name: u.name,
        real_name: u.real_name,
        color: u.color,
        deleted: u.deleted,
        has_2fa: u.has_2fa,
        is_admin: u.is_admin,
        is_app_user: u.is_app_user,
        is_bot: u.is_bot,
        is_owner: u.is_owner,
        is_primary_owner: u.is_primary_owner,
        is_restricted: u.is_restricted,
        is_ultra_restricted: u.is_ultra_restricted,
        tz: u.tz,
        tz_label: u.tz_label,
        tz_offset: u.tz_offset,
        updated: u.updated,
        profile: SlackProfileRecord {
            avatar_hash: p.avatar_hash,
            display_name: p.display_name,
            display_name_normalized: p.display_name_normalized,
            email: p.email,
            first_name: p.first_name,
            last_name: p.last_name,
            image_24: p.image_24,
            image_32: p.image_32,
            image_48: p.image_48,
            image_72: p.image_72,
            image_192: p.image_192,
            image_512: p.image_512,
            image_1024: p.image_1024,
            image_original: p.image_original,
            phone: p.phone,
            real_name: p.real_name,
            real_name_normalized: p.real_name_normalized,
            skype: p.skype,
            status_emoji: p.status_emoji,
            status_text: p.status_text,
            status_expiration: p.status_expiration,
            team: p.team,
            title: p.title,
        },
    }
}

/// A user pushed by the Events API (`user_change` / `user_status_changed`), made ready once: its
/// record, the record's fingerprint, its custom status and when it happened (its arrival, or for
/// Slack's redelivery of a failed one its dispatch: `events::happened_by`). A failed attempt to
/// store it is retried with the same one, so a retry is still ordered by that time
/// (`pipeline::Observation`).
pub struct PushedUser {
    rec: SlackUserRecord,
    print: u64,
    custom: CustomStatus,
    happened_at: DateTime<Utc>,
}

impl PushedUser {
    pub fn new(user: User, conn: &connection::Model, happened_at: DateTime<Utc>) -> PushedUser {
        let custom = user.profile.custom_status();
        let mut rec = record(user);
        if rec.team_id.is_empty() {
            rec.team_id = conn.external_id.clone();
        }
        let print = KnownUsers::fingerprint(&mut rec);
        PushedUser {
            rec,
            print,
            custom,
            happened_at,
        }
    }

    /// What the push says of `person`: its custom status, as of when it happened.
    fn observation(&self, person: Arc<PersonCard>) -> Observation {
        Observation {
            person,
            patch: StatusPatch {
                custom: Some(self.custom.clone()),
                ..Default::default()
            },
            observed_at: self.happened_at,
            source: Source::Slack,
        }
    }
}

/// The common case of a pushed user, done without waiting: a user known unchanged apart from
/// the status, whose status goes straight into the pipeline's queue. False when that is not the
/// case (unknown or changed user, full queue): then [`ingest_user`] does the whole job.
pub fn try_ingest_known_user(
    pipeline: &Pipeline,
    known: &KnownUsers,
    conn: &connection::Model,
    user: &PushedUser,
) -> bool {
    let Some(card) = known.get(conn.id, &user.rec.slack_id, user.print) else {
        return false;
    };
    pipeline.try_observe(user.observation(card))
}

/// Applies a pushed user: stores it unless it is known unchanged, and observes its custom status.
pub async fn ingest_user(
    store: &Store,
    pipeline: &Pipeline,
    known: &KnownUsers,
    conn: &connection::Model,
    user: &PushedUser,
) -> crate::store::Result<()> {
    let rec = &user.rec;
    if let Some(card) = known.get(conn.id, &rec.slack_id, user.print) {
        pipeline.observe(user.observation(card)).await;
        return Ok(());
    }
    let rows = store
        .upsert_slack_users(conn.id, conn.organization_id, std::slice::from_ref(rec))
        .await?;
    if let Some(row) = rows.into_iter().next().filter(trackable) {
        let card = Arc::new(row.card());
        known.insert(conn.id, &rec.slack_id, user.print, card.clone());
        pipeline.observe(user.observation(card)).await;
    }
    Ok(())
}

/// Users whose stored record is known to match what Slack last sent, apart from the status.
///
/// Slack sends the whole user on every `user_change`, and most are status edits: the status
/// itself goes to the pipeline, and rewriting the unchanged user and profile rows each time would
/// double the writes of the busiest path. The profile row's copy of the status is refreshed by
/// the next sweep or by any other profile edit.
#[derive(Clone, Default)]
pub struct KnownUsers {
    inner: Arc<dashmap::DashMap<KnownKey, (u64, Arc<PersonCard>)>>,
}

/// `(connection id, Slack user id)`.
type KnownKey = (i64, String);

impl KnownUsers {
    /// A hash of the record with the status fields and `updated` (bumped by each status edit)
    /// left out. They are moved out for the hash and back after, rather than hashing a copy of
    /// the record with them blanked: a copy was some thirty allocations per `user_change`.
    /// Hashed with foldhash rather than the standard library's SipHash: a change detector kept
    /// in memory needs no defence against chosen collisions (the input is Slack's, signed), and
    /// SipHash over a whole profile was 4% of the request's CPU (users at 8,000/s, session 23).
    fn fingerprint(rec: &mut SlackUserRecord) -> u64 {
        use std::hash::BuildHasher;
        let text = std::mem::take(&mut rec.profile.status_text);
        let emoji = std::mem::take(&mut rec.profile.status_emoji);
        let expiration = std::mem::take(&mut rec.profile.status_expiration);
        let updated = std::mem::take(&mut rec.updated);
        let print = foldhash::quality::FixedState::default().hash_one(&*rec);
        rec.profile.status_text = text;
        rec.profile.status_emoji = emoji;
        rec.profile.status_expiration = expiration;
        rec.updated = updated;
        print
    }

    fn get(&self, conn: i64, slack_id: &str, print: u64) -> Option<Arc<PersonCard>> {
        self.inner
            .get(&(conn, slack_id.to_owned()))
            .filter(|e| e.0 == print)
            .map(|e| e.1.clone())
    }

    fn insert(&self, conn: i64, slack_id: &str, print: u64, card: Arc<PersonCard>) {
        self.inner
            .insert((conn, slack_id.to_owned()), (print, card));
    }

    /// Drops what is known of a connection's users (it was replaced or deleted).
    pub fn forget_connection(&self, conn: i64) {
        self.inner.retain(|k, _| k.0 != conn);
    }
}

/// Applies a pushed `dnd_updated_user`, which happened at `happened_at`.
pub async fn ingest_dnd(
    store: &Store,
    pipeline: &Pipeline,
    conn: &connection::Model,
    slack_id: &str,
    dnd: &DndInfo,
    happened_at: DateTime<Utc>,
) -> crate::store::Result<()> {
    if let Some(row) = store.slack_person(conn.id, slack_id).await? {
        let patch = StatusPatch {
            dnd: Some(dnd.at(now())),
            ..Default::default()
        };
        observe_at(pipeline, Arc::new(row.card()), patch, happened_at).await;
    }
    Ok(())
}

/// Hands what Slack said about `person` at `at` to the pipeline.
async fn observe_at(
    pipeline: &Pipeline,
    person: Arc<PersonCard>,
    patch: StatusPatch,
    at: DateTime<Utc>,
) {
    pipeline
        .observe(Observation {
            person,
            patch,
            observed_at: at,
            source: Source::Slack,
        })
        .await;
}
