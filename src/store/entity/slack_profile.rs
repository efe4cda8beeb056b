use sea_orm::entity::prelude::*;

/// A Slack user's profile. Its key to the user is `slack_user_id`, a name no convention guesses,
/// so the relation below declares it (the seed's lesson).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "slack_profiles")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    #[sea_orm(unique)]
    pub slack_user_id: i64,
    pub avatar_hash: String,
    pub display_name: String,
    pub display_name_normalized: String,
    pub email: Option<String>,
    pub first_name: String,
    pub last_name: String,
    #[sea_orm(column_name = "image_24")]
    pub image_24: String,
    #[sea_orm(column_name = "image_32")]
    pub image_32: String,
    #[sea_orm(column_name = "image_48")]
    pub image_48: String,
    #[sea_orm(column_name = "image_72")]
    pub image_72: String,
    #[sea_orm(column_name = "image_192")]
    pub image_192: String,
    #[sea_orm(column_name = "image_512")]
    pub image_512: String,
    #[sea_orm(column_name = "image_1024")]
    pub image_1024: String,
    pub image_original: String,
    pub phone: String,
    pub real_name: String,
    pub real_name_normalized: String,
    pub skype: String,
    pub status_emoji: String,
    pub status_text: String,
    /// Unix seconds; 0 means the status does not expire (Slack's convention).
    pub status_expiration: i64,
    pub team: String,
    pub title: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(
        belongs_to = "super::slack_user::Entity",
        from = "Column::SlackUserId",
        to = "super::slack_user::Column::Id",
        on_delete = "Cascade"
    )]
    SlackUser,
}

impl Related<super::slack_user::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::SlackUser.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
