//! Tracked people and the Slack users behind them.

use std::collections::HashMap;

use sea_orm::sea_query::{Expr, Func, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, ExprTrait,
    QueryFilter, QueryOrder, QuerySelect,
};

use super::entity::{person, slack_profile, slack_user};
use super::{Result, Store};
use crate::domain::{PersonCard, now};

/// A Slack user as a source reported it, ready to store. Mirrors `slack_users` + `slack_profiles`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SlackUserRecord {
    pub slack_id: String,
    pub team_id: String,
    pub name: String,
    pub real_name: String,
    pub color: String,
    pub deleted: bool,
    pub has_2fa: bool,
    pub is_admin: bool,
    pub is_app_user: bool,
    pub is_bot: bool,
    pub is_owner: bool,
    pub is_primary_owner: bool,
    pub is_restricted: bool,
    pub is_ultra_restricted: bool,
    pub tz: Option<String>,
    pub tz_label: Option<String>,
    pub tz_offset: Option<i32>,
    pub updated: i64,
    pub profile: SlackProfileRecord,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct SlackProfileRecord {
    pub avatar_hash: String,
    pub display_name: String,
    pub display_name_normalized: String,
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
    pub image_24: String,
    pub image_32: String,
    pub image_48: String,
    pub image_72: String,
    pub image_192: String,
    pub image_512: String,
    pub image_1024: String,
    pub image_original: String,
    pub phone: String,
    pub real_name: String,
    pub real_name_normalized: String,
    pub skype: String,
    pub status_emoji: String,
    pub status_text: String,
    pub status_expiration: i64,
    pub team: String,
    pub title: String,
}

impl SlackUserRecord {
    /// The name people know this user by: real name, else handle.
    pub fn best_name(&self) -> &str {
        [&self.profile.real_name, &self.real_name, &self.name]
            .into_iter()
            .find(|s| !s.is_empty())
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// A tracked person with the Slack identity behind them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PersonRow {
    pub person_id: i64,
    pub organization_id: i64,
    pub connection_id: Option<i64>,
    pub slack_id: Option<String>,
    pub team_id: Option<String>,
    pub name: String,
    pub display_name: String,
    pub email: Option<String>,
    pub image_72: String,
    pub deleted: bool,
    pub is_bot: bool,
    pub tz: Option<String>,
    pub title: String,
}

impl PersonRow {
    pub fn card(&self) -> PersonCard {
        PersonCard {
            id: self.person_id,
            organization_id: self.organization_id,
            topic: PersonCard::topic_for(self.person_id),
            team_id: self.team_id.clone(),
            name: self.name.clone(),
            display_name: self.display_name.clone(),
            image_72: self.image_72.clone(),
        }
    }
}

/// Filters of the people list (`GET /api/users`).
#[derive(Clone, Debug, Default)]
pub struct PeopleFilter {
    pub team_id: Option<String>,
    pub query: Option<String>,
    pub after_id: Option<i64>,
    pub limit: u64,
}

impl Store {
    /// Inserts or updates Slack users with their profiles, creating the person behind each new
    /// one. One transaction for the whole batch: a sweep page lands whole or not at all.
    pub async fn upsert_slack_users(
        &self,
        connection_id: i64,
        organization_id: i64,
        users: &[SlackUserRecord],
    ) -> Result<Vec<PersonRow>> {
        let (_turn, txn) = self.begin_write().await?;
        let mut out = Vec::with_capacity(users.len());
        for chunk in users.chunks(500) {
            let mut existing: HashMap<(String, String), slack_user::Model> = HashMap::new();
            let team_ids: Vec<&str> = chunk.iter().map(|u| u.team_id.as_str()).collect();
            let slack_ids: Vec<&str> = chunk.iter().map(|u| u.slack_id.as_str()).collect();
            for row in slack_user::Entity::find()
                .filter(slack_user::Column::SlackId.is_in(slack_ids))
                .filter(slack_user::Column::TeamId.is_in(team_ids))
                .all(&txn)
                .await?
            {
                existing.insert((row.team_id.clone(), row.slack_id.clone()), row);
            }
            for u in chunk {
                let key = (u.team_id.clone(), u.slack_id.clone());
                let row = match existing.remove(&key) {
                    Some(found) => update_slack_user(&txn, found, u).await?,
                    None => insert_slack_user(&txn, connection_id, organization_id, u).await?,
                };
                out.push(person_row(organization_id, &row, u));
            }
        }
        txn.commit().await?;
        Ok(out)
    }

    /// People of an organization, ordered by id, for paging with `after_id`.
    pub async fn people(&self, organization_id: i64, f: &PeopleFilter) -> Result<Vec<PersonRow>> {
        let mut q = person::Entity::find()
            .filter(person::Column::OrganizationId.eq(organization_id))
            .order_by_asc(person::Column::Id)
            .limit(f.limit);
        if let Some(after) = f.after_id {
            q = q.filter(person::Column::Id.gt(after));
        }
        if let Some(team) = &f.team_id {
            q = q.filter(
                person::Column::Id.in_subquery(
                    Query::select()
                        .column(slack_user::Column::PersonId)
                        .from(slack_user::Entity)
                        .and_where(slack_user::Column::TeamId.eq(team.as_str()))
                        .to_owned(),
                ),
            );
        }
        if let Some(text) = f.query.as_deref().filter(|t| !t.is_empty()) {
            let pattern = format!("%{}%", escape_like(&text.to_lowercase()));
            q = q.filter(
                Expr::expr(Func::lower(Expr::col((
                    person::Entity,
                    person::Column::Name,
                ))))
                .like(sea_orm::sea_query::LikeExpr::new(pattern).escape('\\')),
            );
        }
        let people = q.all(&self.db).await?;
        self.rows_for(people).await
    }

    pub async fn person(&self, id: i64) -> Result<Option<PersonRow>> {
        let Some(p) = person::Entity::find_by_id(id).one(&self.db).await? else {
            return Ok(None);
        };
        Ok(self.rows_for(vec![p]).await?.pop())
    }

    /// The given people (those that exist), by id.
    pub async fn people_by_ids(&self, ids: &[i64]) -> Result<Vec<PersonRow>> {
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let people = person::Entity::find()
                .filter(person::Column::Id.is_in(chunk.to_vec()))
                .order_by_asc(person::Column::Id)
                .all(&self.db)
                .await?;
            out.extend(self.rows_for(people).await?);
        }
        Ok(out)
    }

    /// Every person behind a Slack connection, keyed by Slack user id: the poller's start-up map.
    pub async fn slack_people(&self, connection_id: i64) -> Result<Vec<(String, i64, PersonRow)>> {
        let users = slack_user::Entity::find()
            .filter(slack_user::Column::ConnectionId.eq(connection_id))
            .order_by_asc(slack_user::Column::Id)
            .all(&self.db)
            .await?;
        let ids: Vec<i64> = users.iter().map(|u| u.person_id).collect();
        let mut rows: HashMap<i64, PersonRow> = HashMap::new();
        for chunk in ids.chunks(500) {
            let people = person::Entity::find()
                .filter(person::Column::Id.is_in(chunk.to_vec()))
                .all(&self.db)
                .await?;
            for r in self.rows_for(people).await? {
                rows.insert(r.person_id, r);
            }
        }
        Ok(users
            .into_iter()
            .filter_map(|u| {
                let row = rows.remove(&u.person_id)?;
                Some((u.slack_id, u.updated, row))
            })
            .collect())
    }

    /// The person behind one Slack user of a connection.
    pub async fn slack_person(
        &self,
        connection_id: i64,
        slack_id: &str,
    ) -> Result<Option<PersonRow>> {
        let Some(u) = slack_user::Entity::find()
            .filter(slack_user::Column::ConnectionId.eq(connection_id))
            .filter(slack_user::Column::SlackId.eq(slack_id))
            .one(&self.db)
            .await?
        else {
            return Ok(None);
        };
        self.person(u.person_id).await
    }

    /// The stored Slack user and profile of a person, for the REST detail view.
    pub async fn slack_user_of(
        &self,
        person_id: i64,
    ) -> Result<Option<(slack_user::Model, Option<slack_profile::Model>)>> {
        Ok(slack_user::Entity::find()
            .filter(slack_user::Column::PersonId.eq(person_id))
            .find_also_related(slack_profile::Entity)
            .one(&self.db)
            .await?)
    }

    async fn rows_for(&self, people: Vec<person::Model>) -> Result<Vec<PersonRow>> {
        let ids: Vec<i64> = people.iter().map(|p| p.id).collect();
        let mut slack: HashMap<i64, (slack_user::Model, Option<slack_profile::Model>)> =
            HashMap::new();
        if !ids.is_empty() {
            for (u, p) in slack_user::Entity::find()
                .filter(slack_user::Column::PersonId.is_in(ids))
                .find_also_related(slack_profile::Entity)
                .all(&self.db)
                .await?
            {
                slack.insert(u.person_id, (u, p));
            }
        }
        Ok(people
            .into_iter()
            .map(|p| {
                let (u, prof) = match slack.remove(&p.id) {
                    Some((u, prof)) => (Some(u), prof),
                    None => (None, None),
                };
                PersonRow {
                    person_id: p.id,
                    organization_id: p.organization_id,
                    connection_id: u.as_ref().map(|u| u.connection_id),
                    slack_id: u.as_ref().map(|u| u.slack_id.clone()),
                    team_id: u.as_ref().map(|u| u.team_id.clone()),
                    name: p.name,
                    display_name: prof
                        .as_ref()
                        .map(|p| p.display_name.clone())
                        .unwrap_or_default(),
                    email: p.email,
                    image_72: prof
                        .as_ref()
                        .map(|p| p.image_72.clone())
                        .unwrap_or_default(),
                    deleted: u.as_ref().is_some_and(|u| u.deleted),
                    is_bot: u.as_ref().is_some_and(|u| u.is_bot),
                    tz: u.as_ref().and_then(|u| u.tz.clone()),
                    title: prof.map(|p| p.title).unwrap_or_default(),
                }
            })
            .collect())
    }
}

fn escape_like(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_")
}

fn person_row(organization_id: i64, row: &slack_user::Model, u: &SlackUserRecord) -> PersonRow {
    PersonRow {
        person_id: row.person_id,
        organization_id,
        connection_id: Some(row.connection_id),
        slack_id: Some(u.slack_id.clone()),
        team_id: Some(u.team_id.clone()),
        name: u.best_name().to_owned(),
        display_name: u.profile.display_name.clone(),
        email: u.profile.email.clone(),
        image_72: u.profile.image_72.clone(),
        deleted: u.deleted,
        is_bot: u.is_bot,
        tz: u.tz.clone(),
        title: u.profile.title.clone(),
    }
}

async fn insert_slack_user<C: ConnectionTrait>(
    db: &C,
    connection_id: i64,
    organization_id: i64,
    u: &SlackUserRecord,
) -> Result<slack_user::Model> {
    let person = person::ActiveModel {
        organization_id: Set(organization_id),
        name: Set(u.best_name().to_owned()),
        email: Set(u.profile.email.clone().map(|e| e.to_lowercase())),
        created_at: Set(now()),
        ..Default::default()
    }
    .insert(db)
    .await?;
    let mut am = slack_user::ActiveModel {
        connection_id: Set(connection_id),
        person_id: Set(person.id),
        ..Default::default()
    };
    fill_user(&mut am, u);
    let row = am.insert(db).await?;
    let mut pm = slack_profile::ActiveModel {
        slack_user_id: Set(row.id),
        ..Default::default()
    };
    fill_profile(&mut pm, &u.profile);
    pm.insert(db).await?;
    Ok(row)
}

async fn update_slack_user<C: ConnectionTrait>(
    db: &C,
    found: slack_user::Model,
    u: &SlackUserRecord,
) -> Result<slack_user::Model> {
    let person_id = found.person_id;
    let user_id = found.id;
    let mut am: slack_user::ActiveModel = found.into();
    fill_user(&mut am, u);
    let row = am.update(db).await?;

    let profile = slack_profile::Entity::find()
        .filter(slack_profile::Column::SlackUserId.eq(user_id))
        .one(db)
        .await?;
    match profile {
        Some(p) => {
            let mut pm: slack_profile::ActiveModel = p.into();
            fill_profile(&mut pm, &u.profile);
            pm.update(db).await?;
        }
        None => {
            let mut pm = slack_profile::ActiveModel {
                slack_user_id: Set(user_id),
                ..Default::default()
            };
            fill_profile(&mut pm, &u.profile);
            pm.insert(db).await?;
        }
    }
    if let Some(p) = person::Entity::find_by_id(person_id).one(db).await? {
        let name = u.best_name().to_owned();
        let email = u.profile.email.clone().map(|e| e.to_lowercase());
        if p.name != name || (email.is_some() && p.email != email) {
            let mut pm: person::ActiveModel = p.into();
            pm.name = Set(name);
            if email.is_some() {
                pm.email = Set(email);
            }
            pm.update(db).await?;
        }
    }
    Ok(row)
}

fn fill_user(am: &mut slack_user::ActiveModel, u: &SlackUserRecord) {
    am.team_id = Set(u.team_id.clone());
    am.slack_id = Set(u.slack_id.clone());
    am.name = Set(u.name.clone());
    am.real_name = Set(u.real_name.clone());
    am.color = Set(u.color.clone());
    am.deleted = Set(u.deleted);
    am.has_2fa = Set(u.has_2fa);
    am.is_admin = Set(u.is_admin);
    am.is_app_user = Set(u.is_app_user);
    am.is_bot = Set(u.is_bot);
    am.is_owner = Set(u.is_owner);
    am.is_primary_owner = Set(u.is_primary_owner);
    am.is_restricted = Set(u.is_restricted);
    am.is_ultra_restricted = Set(u.is_ultra_restricted);
    am.tz = Set(u.tz.clone());
    am.tz_label = Set(u.tz_label.clone());
    am.tz_offset = Set(u.tz_offset);
    am.updated = Set(u.updated);
    am.synced_at = Set(now());
}

fn fill_profile(pm: &mut slack_profile::ActiveModel, p: &SlackProfileRecord) {
    pm.avatar_hash = Set(p.avatar_hash.clone());
    pm.display_name = Set(p.display_name.clone());
    pm.display_name_normalized = Set(p.display_name_normalized.clone());
    pm.email = Set(p.email.clone());
    pm.first_name = Set(p.first_name.clone());
    pm.last_name = Set(p.last_name.clone());
    pm.image_24 = Set(p.image_24.clone());
    pm.image_32 = Set(p.image_32.clone());
    pm.image_48 = Set(p.image_48.clone());
    pm.image_72 = Set(p.image_72.clone());
    pm.image_192 = Set(p.image_192.clone());
    pm.image_512 = Set(p.image_512.clone());
    pm.image_1024 = Set(p.image_1024.clone());
    pm.image_original = Set(p.image_original.clone());
    pm.phone = Set(p.phone.clone());
    pm.real_name = Set(p.real_name.clone());
    pm.real_name_normalized = Set(p.real_name_normalized.clone());
    pm.skype = Set(p.skype.clone());
    pm.status_emoji = Set(p.status_emoji.clone());
    pm.status_text = Set(p.status_text.clone());
    pm.status_expiration = Set(p.status_expiration);
    pm.team = Set(p.team.clone());
    pm.title = Set(p.title.clone());
}
