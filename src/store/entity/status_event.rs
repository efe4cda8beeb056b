use sea_orm::entity::prelude::*;

/// One observed change of a person's status. `(person_id, seq)` is unique and gap-free.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "status_events")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub person_id: i64,
    pub seq: i64,
    pub observed_at: ChronoDateTimeUtc,
    /// `active`, `away` or `unknown`.
    pub presence: String,
    pub status_text: String,
    pub status_emoji: String,
    pub status_expires_at: Option<ChronoDateTimeUtc>,
    pub dnd_enabled: bool,
    pub dnd_until: Option<ChronoDateTimeUtc>,
    pub stale: bool,
    /// Comma-separated names of the `status` fields that changed.
    pub changed: String,
    /// JSON of the previous values of the changed fields.
    pub previous: Option<String>,
    /// JSON of source-specific parts (Jira issues, Gmail out-of-office) when present.
    pub extra: Option<String>,
    pub source: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
