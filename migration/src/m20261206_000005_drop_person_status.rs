//! Drops `person_status`, the pointer to each person's latest event: the last entry of
//! `ux_status_events_person_seq` is the same pointer, and an append already writes that index's
//! leaf for the person. Keeping the table cost every appended event a leaf of its own and an
//! upsert: a fifth of SQLite's WAL frames per change (docs/benchmarks-history.md, session 16).
use sea_orm_migration::prelude::*;

use crate::m20261129_000003_create_status_events::{PersonStatus, person_status_table};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PersonStatus::Table).to_owned())
            .await
    }

    /// Makes the table again as 000003 made it, filled from each person's last event.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager.create_table(person_status_table()).await?;
        // Standard SQL, the same on both backends.
        manager
            .get_connection()
            .execute_unprepared(
                "INSERT INTO person_status (person_id, seq, observed_at) \
                 SELECT e.person_id, e.seq, e.observed_at FROM status_events e \
                 WHERE e.seq = (SELECT MAX(l.seq) FROM status_events l WHERE l.person_id = e.person_id)",
            )
            .await
            .map(drop)
    }
}
