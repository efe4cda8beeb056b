//! Where status comes from: source connections (a Slack workspace, later a Jira site or a Gmail
//! mailbox), the checks that say what is tracked, the people being tracked, and the Slack users and
//! profiles behind them.
use sea_orm_migration::{prelude::*, schema::*};

use crate::m20261129_000001_create_accounts::Organizations;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Connections::Table)
                    .col(big_pk_auto(Connections::Id))
                    .col(big_integer(Connections::OrganizationId))
                    .col(string(Connections::Kind))
                    .col(string(Connections::ExternalId))
                    .col(string(Connections::Name))
                    .col(text(Connections::CredentialCiphertext))
                    .col(text_null(Connections::SigningSecretCiphertext))
                    .col(string(Connections::Fingerprint))
                    .col(string(Connections::Status))
                    .col(text_null(Connections::LastError))
                    .col(timestamp_with_time_zone(Connections::CreatedAt))
                    .col(timestamp_with_time_zone(Connections::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Connections::Table, Connections::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // One workspace belongs to one organization: Slack's Events API names the workspace, and
        // its signing secret must be unambiguous.
        manager
            .create_index(
                Index::create()
                    .name("ux_connections_kind_external_id")
                    .table(Connections::Table)
                    .col(Connections::Kind)
                    .col(Connections::ExternalId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Checks::Table)
                    .col(big_pk_auto(Checks::Id))
                    .col(big_integer(Checks::OrganizationId))
                    .col(big_integer(Checks::ConnectionId))
                    .col(string(Checks::Kind))
                    .col(string(Checks::Subject))
                    .col(boolean(Checks::Enabled).default(true))
                    .col(integer(Checks::IntervalSecs))
                    .col(timestamp_with_time_zone_null(Checks::LastPolledAt))
                    .col(text_null(Checks::LastError))
                    .col(timestamp_with_time_zone(Checks::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Checks::Table, Checks::ConnectionId)
                            .to(Connections::Table, Connections::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_checks_connection_subject")
                    .table(Checks::Table)
                    .col(Checks::ConnectionId)
                    .col(Checks::Subject)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(People::Table)
                    .col(big_pk_auto(People::Id))
                    .col(big_integer(People::OrganizationId))
                    .col(string(People::Name))
                    .col(string_null(People::Email))
                    .col(timestamp_with_time_zone(People::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(People::Table, People::OrganizationId)
                            .to(Organizations::Table, Organizations::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ix_people_organization_email")
                    .table(People::Table)
                    .col(People::OrganizationId)
                    .col(People::Email)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(SlackUsers::Table)
                    .col(big_pk_auto(SlackUsers::Id))
                    .col(big_integer(SlackUsers::ConnectionId))
                    .col(big_integer(SlackUsers::PersonId))
                    .col(string(SlackUsers::TeamId))
                    .col(string(SlackUsers::SlackId))
                    .col(string(SlackUsers::Name))
                    .col(string(SlackUsers::RealName))
                    .col(string(SlackUsers::Color))
                    .col(boolean(SlackUsers::Deleted))
                    .col(boolean(SlackUsers::Has2fa))
                    .col(boolean(SlackUsers::IsAdmin))
                    .col(boolean(SlackUsers::IsAppUser))
                    .col(boolean(SlackUsers::IsBot))
                    .col(boolean(SlackUsers::IsOwner))
                    .col(boolean(SlackUsers::IsPrimaryOwner))
                    .col(boolean(SlackUsers::IsRestricted))
                    .col(boolean(SlackUsers::IsUltraRestricted))
                    .col(string_null(SlackUsers::Tz))
                    .col(string_null(SlackUsers::TzLabel))
                    .col(integer_null(SlackUsers::TzOffset))
                    .col(big_integer(SlackUsers::Updated))
                    .col(timestamp_with_time_zone(SlackUsers::SyncedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(SlackUsers::Table, SlackUsers::ConnectionId)
                            .to(Connections::Table, Connections::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(SlackUsers::Table, SlackUsers::PersonId)
                            .to(People::Table, People::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("ux_slack_users_team_slack_id")
                    .table(SlackUsers::Table)
                    .col(SlackUsers::TeamId)
                    .col(SlackUsers::SlackId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        // The profile hangs off `slack_user_id`, a key name no convention guesses, so the foreign
        // key is declared here and in the entity's relation.
        manager
            .create_table(
                Table::create()
                    .table(SlackProfiles::Table)
                    .col(big_pk_auto(SlackProfiles::Id))
                    .col(big_integer_uniq(SlackProfiles::SlackUserId))
                    .col(string(SlackProfiles::AvatarHash))
                    .col(string(SlackProfiles::DisplayName))
                    .col(string(SlackProfiles::DisplayNameNormalized))
                    .col(string_null(SlackProfiles::Email))
                    .col(string(SlackProfiles::FirstName))
                    .col(string(SlackProfiles::LastName))
                    .col(text(SlackProfiles::Image24))
                    .col(text(SlackProfiles::Image32))
                    .col(text(SlackProfiles::Image48))
                    .col(text(SlackProfiles::Image72))
                    .col(text(SlackProfiles::Image192))
                    .col(text(SlackProfiles::Image512))
                    .col(text(SlackProfiles::Image1024))
                    .col(text(SlackProfiles::ImageOriginal))
                    .col(string(SlackProfiles::Phone))
                    .col(string(SlackProfiles::RealName))
                    .col(string(SlackProfiles::RealNameNormalized))
                    .col(string(SlackProfiles::Skype))
                    .col(string(SlackProfiles::StatusEmoji))
                    .col(text(SlackProfiles::StatusText))
                    .col(big_integer(SlackProfiles::StatusExpiration))
                    .col(string(SlackProfiles::Team))
                    .col(string(SlackProfiles::Title))
                    .foreign_key(
                        ForeignKey::create()
                            .name("fk_slack_profiles_slack_user_id")
                            .from(SlackProfiles::Table, SlackProfiles::SlackUserId)
                            .to(SlackUsers::Table, SlackUsers::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            SlackProfiles::Table.into_iden(),
            SlackUsers::Table.into_iden(),
            People::Table.into_iden(),
            Checks::Table.into_iden(),
            Connections::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Connections {
    Table,
    Id,
    OrganizationId,
    Kind,
    ExternalId,
    Name,
    CredentialCiphertext,
    SigningSecretCiphertext,
    Fingerprint,
    Status,
    LastError,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Checks {
    Table,
    Id,
    OrganizationId,
    ConnectionId,
    Kind,
    Subject,
    Enabled,
    IntervalSecs,
    LastPolledAt,
    LastError,
    CreatedAt,
}

#[derive(DeriveIden)]
pub enum People {
    Table,
    Id,
    OrganizationId,
    Name,
    Email,
    CreatedAt,
}

#[derive(DeriveIden)]
enum SlackUsers {
    Table,
    Id,
    ConnectionId,
    PersonId,
    TeamId,
    SlackId,
    Name,
    RealName,
    Color,
    Deleted,
    #[sea_orm(iden = "has_2fa")]
    Has2fa,
    IsAdmin,
    IsAppUser,
    IsBot,
    IsOwner,
    IsPrimaryOwner,
    IsRestricted,
    IsUltraRestricted,
    Tz,
    TzLabel,
    TzOffset,
    Updated,
    SyncedAt,
}

#[derive(DeriveIden)]
enum SlackProfiles {
    Table,
    Id,
    SlackUserId,
    AvatarHash,
    DisplayName,
    DisplayNameNormalized,
    Email,
    FirstName,
    LastName,
    #[sea_orm(iden = "image_24")]
    Image24,
    #[sea_orm(iden = "image_32")]
    Image32,
    #[sea_orm(iden = "image_48")]
    Image48,
    #[sea_orm(iden = "image_72")]
    Image72,
    #[sea_orm(iden = "image_192")]
    Image192,
    #[sea_orm(iden = "image_512")]
    Image512,
    #[sea_orm(iden = "image_1024")]
    Image1024,
    ImageOriginal,
    Phone,
    RealName,
    RealNameNormalized,
    Skype,
    StatusEmoji,
    StatusText,
    StatusExpiration,
    Team,
    Title,
}
