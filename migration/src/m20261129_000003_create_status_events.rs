//! The time series: one row per observed change of a person's status, plus a pointer to each
//! person's latest row so "current status" and "next seq" never scan history.
use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261129_000002_create_sources::People;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(StatusEvents::Table)
                    .col(big_pk_auto(StatusEvents::Id))
                    .col(big_integer(StatusEvents::PersonId))
                    .col(big_integer(StatusEvents::Seq))
                    .col(timestamp_with_time_zone(StatusEvents::ObservedAt))
                    .col(string(StatusEvents::Presence))
                    .col(text(StatusEvents::StatusText))
                    .col(string(StatusEvents::StatusEmoji))
                    .col(timestamp_with_time_zone_null(StatusEvents::StatusExpiresAt))
                    .col(boolean(StatusEvents::DndEnabled))
                    .col(timestamp_with_time_zone_null(StatusEvents::DndUntil))
                    .col(boolean(StatusEvents::Stale))
                    .col(string(StatusEvents::Changed))
                    .col(text_null(StatusEvents::Previous))
                    .col(text_null(StatusEvents::Extra))
                    .col(string(StatusEvents::Source))
                    .foreign_key(
                        ForeignKey::create()
                            .from(StatusEvents::Table, StatusEvents::PersonId)
                            .to(People::Table, People::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        let indexes = [
            (
                "ux_status_events_person_seq",
                vec![StatusEvents::PersonId, StatusEvents::Seq],
                true,
            ),
            (
                "ux_status_events_person_observed_at",
                vec![StatusEvents::PersonId, StatusEvents::ObservedAt],
                true,
            ),
            (
                "ix_status_events_observed_at",
                vec![StatusEvents::ObservedAt],
                false,
            ),
            (
                "ix_status_events_presence",
                vec![StatusEvents::Presence],
                false,
            ),
            (
                "ix_status_events_observed_at_presence",
                vec![StatusEvents::ObservedAt, StatusEvents::Presence],
                false,
            ),
        ];
        for (name, cols, unique) in indexes {
            let mut index = Index::create();
            index.name(name).table(StatusEvents::Table);
            for col in cols {
                index.col(col);
            }
            if unique {
                index.unique();
            }
            manager.create_index(index.to_owned()).await?;
        }

        manager.create_table(person_status_table()).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(PersonStatus::Table).to_owned())
            .await?;
        manager
            .drop_table(Table::drop().table(StatusEvents::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum StatusEvents {
    Table,
    Id,
    PersonId,
    Seq,
    ObservedAt,
    Presence,
    StatusText,
    StatusEmoji,
    StatusExpiresAt,
    DndEnabled,
    DndUntil,
    Stale,
    Changed,
    Previous,
    Extra,
    Source,
}

/// Each person's last seq and its time (000005 drops it; its down makes it again from here).
pub(crate) fn person_status_table() -> TableCreateStatement {
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
        .to_owned()
}

#[derive(DeriveIden)]
pub(crate) enum PersonStatus {
    Table,
    PersonId,
    Seq,
    ObservedAt,
}
