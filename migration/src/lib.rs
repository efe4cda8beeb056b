//! Versioned schema for Chex. Every migration runs on SQLite and PostgreSQL alike, so it uses only
//! SeaQuery's portable schema helpers, or standard SQL where they have no word for a statement,
//! and no backend-specific SQL.

pub use sea_orm_migration::prelude::*;

mod m20261129_000001_create_accounts;
mod m20261129_000002_create_sources;
mod m20261129_000003_create_status_events;
mod m20261129_000004_create_source_identities;
mod m20261206_000005_drop_person_status;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261129_000001_create_accounts::Migration),
            Box::new(m20261129_000002_create_sources::Migration),
            Box::new(m20261129_000003_create_status_events::Migration),
            Box::new(m20261129_000004_create_source_identities::Migration),
            Box::new(m20261206_000005_drop_person_status::Migration),
        ]
    }
}
