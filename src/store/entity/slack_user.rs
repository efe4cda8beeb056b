use sea_orm::entity::prelude::*;

/// A Slack user as `users.list` / `users.info` / `user_change` describe them.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "slack_users")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub connection_id: i64,
    pub person_id: i64,
    pub team_id: String,
    /// Slack's own id (`U…`/`W…`); unique with `team_id`.
    pub slack_id: String,
    pub name: String,
    pub real_name: String,
    pub color: String,
    pub deleted: bool,
    #[sea_orm(column_name = "has_2fa")]
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
    pub synced_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_one = "super::slack_profile::Entity")]
    Profile,
}

impl Related<super::slack_profile::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Profile.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
