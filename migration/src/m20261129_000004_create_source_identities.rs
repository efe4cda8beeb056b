//! Who is who across sources: a Jira account or a Gmail mailbox, and the person it belongs to.
//! Linked by email automatically; an admin's choice (`manual`) is never overwritten.
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
                    .table(SourceIdentities::Table)
                    .col(big_pk_auto(SourceIdentities::Id))
                    .col(big_integer(SourceIdentities::OrganizationId))
                    .col(big_integer(SourceIdentities::ConnectionId))
                    .col(string(SourceIdentities::ExternalId))
                    .col(string_null(SourceIdentities::Email))
                    .col(string(SourceIdentities::DisplayName))
                    .col(big_integer_null(SourceIdentities::PersonId))
                    .col(boolean(SourceIdentities::Manual))
                    .col(timestamp_with_time_zone(SourceIdentities::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SourceIdentities::Table, SourceIdentities::ConnectionId)
                            .to(Connections::Table, Connections::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SourceIdentities::Table, SourceIdentities::PersonId)
                            .to(People::Table, People::Id)
                            .on_delete(ForeignKeyAction::SetNull),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_source_identities_connection_external")
                    .table(SourceIdentities::Table)
                    .col(SourceIdentities::ConnectionId)
                    .col(SourceIdentities::ExternalId)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_source_identities_person")
                    .table(SourceIdentities::Table)
                    .col(SourceIdentities::PersonId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(SourceIdentities::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Connections {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum SourceIdentities {
    Table,
    Id,
    OrganizationId,
    ConnectionId,
    ExternalId,
    Email,
    DisplayName,
    PersonId,
    Manual,
    UpdatedAt,
}
