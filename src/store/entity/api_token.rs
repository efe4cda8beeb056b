use sea_orm::entity::prelude::*;

/// A bot's credential. Only the SHA-256 of the secret is kept; the secret is shown once.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_tokens")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub organization_id: i64,
    pub name: String,
    #[sea_orm(unique)]
    pub token_hash: String,
    /// `admin` or `member`: what the bot may do through REST.
    pub role: String,
    /// JSON array of topics the bot may subscribe to; `None` means any topic of its organization.
    pub topics: Option<String>,
    pub expires_at: Option<ChronoDateTimeUtc>,
    pub revoked_at: Option<ChronoDateTimeUtc>,
    pub created_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
