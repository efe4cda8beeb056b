//! Drops `person_status`, the pointer to each person's latest event: the last entry of
//! `ux_status_events_person_seq` is the same pointer, and an append already writes that index's
//! leaf for the person. Keeping the table cost every appended event a leaf of its own and an
//! upsert: a fifth of SQLite's WAL frames per change (docs/benchmarks.md, session 16).
use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261129_000002_create_sources::People;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PersonStatus::Table).to_owned())
            .await
    }

    /// Recreates the table as 000003 made it, filled from each person's last event.
    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PersonStatus::Table)
                    .col(big_integer(PersonStatus::PersonId).primary_key())
                    .col(big_integer(PersonStatus::Seq))
                    .col(timestamp_with_time_zone(PersonStatus::ObservedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(PersonStatus::Table, PersonStatus::PersonId)
                            .to(People::Table, People::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
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

#[derive(DeriveIden)]
enum PersonStatus {
    Table,
    PersonId,
    Seq,
    ObservedAt,
}
