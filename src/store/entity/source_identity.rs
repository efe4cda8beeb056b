use sea_orm::entity::prelude::*;

/// An account in a non-Slack source (a Jira `accountId`, a Gmail address) and the person it is.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "source_identities")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub organization_id: i64,
    pub connection_id: i64,
    pub external_id: String,
    /// Lowercased; what automatic linking matches on.
    pub email: Option<String>,
    pub display_name: String,
    pub person_id: Option<i64>,
    /// An admin chose `person_id` (or chose none): automatic linking leaves the row alone.
    pub manual: bool,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
