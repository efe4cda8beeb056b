use sea_orm::entity::prelude::*;

/// One source account: a Slack workspace (external id = team id), later a Jira site or Gmail
/// mailbox. Credentials are sealed with AES-256-GCM (see `crypto`) and never returned.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "connections")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub organization_id: i64,
    /// `slack`, `jira` or `gmail`.
    pub kind: String,
    pub external_id: String,
    pub name: String,
    pub credential_ciphertext: String,
    pub signing_secret_ciphertext: Option<String>,
    /// First 12 hex digits of the credential's SHA-256: lets an admin tell tokens apart.
    pub fingerprint: String,
    /// `active`, `error` (polling stopped until the credential is replaced) or `disabled`.
    pub status: String,
    pub last_error: Option<String>,
    pub created_at: ChronoDateTimeUtc,
    pub updated_at: ChronoDateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    #[sea_orm(has_many = "super::check::Entity")]
    Checks,
}

impl Related<super::check::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Checks.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
